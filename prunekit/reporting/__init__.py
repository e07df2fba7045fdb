"""Tables and plots shared by ``prunekit run``, ``prunekit compare`` and ``prunekit report``."""

from prunekit.reporting.plots import compare_plot, run_plot
from prunekit.reporting.tables import FORMATS, Table, compare_table, run_table

__all__ = ["FORMATS", "Table", "compare_plot", "compare_table", "run_plot", "run_table"]
