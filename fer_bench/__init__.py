"""fer-bench: a reproducible FER-2013 benchmark of a Keras CNN against classic baselines.

Data flow: data (fer_bench.data) -> task (fer_bench.tasks) -> model (fer_bench.models, fer_bench.baselines)
-> run (fer_bench.run, fer_bench.cell, fer_bench.measure) -> predictions (fer_bench.storage)
-> metrics (fer_bench.metrics) -> tables and figures (fer_bench.report, fer_bench.figures), with
fer_bench.settings read by the last two.
"""

__version__ = "0.1.0"

# Canonical FER-2013 label order (the original challenge CSV's `emotion` column).
CLASS_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
IMAGE_SIZE = 48
USAGES = ("Training", "PublicTest", "PrivateTest")


def open_results(path, *, settings=None):
    """The results folder `path` (e.g. "results/fer2013") in Python: a fer_bench.results.Results whose tables are
    pandas DataFrames and whose plot_* methods return the report's figures. Imported on first call, so that
    `import fer_bench` loads neither pandas nor matplotlib."""
    from fer_bench.results import open_results as open_results_folder

    return open_results_folder(path, settings=settings)
