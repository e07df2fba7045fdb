"""Demo prunekit plugins: ``--criterion demo_magnitude`` (see ``criterion.py``) and
``--recovery demo_bias_correct`` (see ``recovery.py``)."""

from prunekit_demo_criterion.criterion import DemoMagnitude
from prunekit_demo_criterion.recovery import BiasCorrect

__all__ = ["BiasCorrect", "DemoMagnitude"]
