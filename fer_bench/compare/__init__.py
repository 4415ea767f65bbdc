"""`fer-bench compare A B`: two results folders side by side, per (task, model), on the headline split, as a gate.

Where the numbers come from: every metric is recomputed from the stored predictions of each folder
(`fer_bench.report.inputs.load_cells`, the registry's metric functions, the report's settings), never read from
a folder's CSVs: a CSV may be stale or hand-edited, the predictions are what the cells produced. Fit time and
inference images/s come from each cell's timings.json.

For each (task, model) present in both folders, on the headline split (`Settings.headline_split`, PrivateTest):

* the registry's brief metrics (accuracy, macro-F1, ROC AUC (macro), and any registered brief=True) of A and B,
  each the mean over the folder's seeds (A and B may have different seeds);
* an exact McNemar test (`fer_bench.metrics.mcnemar_exact`) on the images both folders predicted, matched by
  image id. Over seeds the test reads each folder's **seed majority**: an image counts as right for a folder
  when more than half of its seeds predicted it right (a tie is wrong), so every image is counted once however
  many seeds there are. The accuracy difference is **significant** when p < SIGNIFICANCE_LEVEL; its flag then
  says whether B is better or worse than A;
* the timings (fit time, inference images/s), also seed means: shown only when every cell of both folders ran
  on one machine (`fer_bench.provenance.machine_label` of the manifests) unless asked for. A timing difference
  is never counted as a difference: only accuracy gates.

`Comparison.worse_by_more_than(points)` lists what `--fail-if-worse POINTS` fails on: a (task, model) whose
accuracy in B is more than `points` percentage points below A's, significantly.

Folders holding results for different data (the "fingerprint" of fer-bench.json) are refused unless
`allow_different_data`, in which case the comparison says so. Computing (`compare_folders`, a `Comparison`) is
kept apart from writing it (`render`: text, markdown, HTML, CSV, JSON).
"""

from fer_bench.compare.folders import (
    SIGNIFICANCE_LEVEL,
    Comparison,
    ModelComparison,
    PairedTest,
    Side,
    Timing,
    compare_folders,
    different_data_message,
)
from fer_bench.compare.formats import (
    View,
    comparison_records,
    format_for,
    record_columns,
    render,
    summary_line,
)

__all__ = ["SIGNIFICANCE_LEVEL", "Comparison", "ModelComparison", "PairedTest", "Side", "Timing", "View",
           "compare_folders", "comparison_records", "different_data_message", "format_for", "record_columns",
           "render", "summary_line"]
