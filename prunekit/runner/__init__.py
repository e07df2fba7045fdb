"""Driving tasks end to end: configuration, the pruning loop, comparisons, export."""
