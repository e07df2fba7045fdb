"""Toy prunekit task plugin: ``prunekit run toy`` (see ``task.py``)."""

from prunekit_toy.task import ToyTask

__all__ = ["ToyTask"]
