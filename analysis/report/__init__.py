"""``parity-ray report``: a static HTML report of an experiment.

Tables, a lineage tree, an instance explorer, a run-vs-run comparison and interactive charts
(Plotly, shipped in the folder), with the static PNG figures beside them. The report is a
folder (``index.html``, its scripts, per-run data files and thumbnail sheets, all linked
relatively) that opens from disk with no server and no network. It is written whole or not at
all: locally it is built in a staging folder next to the target and renamed into place; on S3
every other file is uploaded first and ``index.html`` last, so a reader never sees an index
pointing at missing files.

The package splits by concern, its imports going one way (formatting <- sections <- building ->
publishing): :mod:`.building` loads the tables, decides what goes in and returns the summary
(``build_report``); :mod:`.publishing` puts a rendered folder in place (locally, or on S3);
:mod:`.sections` holds the page's HTML sections; :mod:`.formatting` the values, headers and tables
they show and the terminal summary (``format_summary``).
"""

# The names used from outside the package (split_box_predictions: named as report.split_box_predictions by
# analysis/explorer.py).
from .building import build_report, split_box_predictions
from .formatting import format_summary

__all__ = ["build_report", "format_summary", "split_box_predictions"]
