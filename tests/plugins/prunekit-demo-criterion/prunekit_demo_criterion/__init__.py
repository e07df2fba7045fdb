"""Demo prunekit criterion plugin: ``--criterion demo_magnitude`` (see ``criterion.py``)."""

from prunekit_demo_criterion.criterion import DemoMagnitude

__all__ = ["DemoMagnitude"]
