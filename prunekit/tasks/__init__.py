"""Tasks: what a model is, what data it learns from and how it is judged."""

from prunekit.tasks.base import Task

__all__ = ["Task"]
