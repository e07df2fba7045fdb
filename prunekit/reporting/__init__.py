"""Tables and plots shared by ``prunekit run``, ``prunekit compare`` and ``prunekit report``."""

from prunekit.reporting.plots import compare_plot, plot_title, run_plot
from prunekit.reporting.tables import FORMATS, Table, compare_table, run_table
from prunekit.reporting.text import counted, provenance_items

__all__ = [
    "FORMATS",
    "Table",
    "compare_plot",
    "compare_table",
    "counted",
    "plot_title",
    "provenance_items",
    "run_plot",
    "run_table",
]
