"""The report's settings, in one place: which split is the headline, how intervals and bins are computed.

Every table, figure and sentence of `fer-bench report` reads these from the `Settings` it is given (the
defaults below unless a caller passes others), so changing one here changes it everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the split models choose on (hyper-parameters, epochs, checkpoints, test-time views) and the held-out split
#: the headline numbers come from; PrivateTest never influences any choice
SELECTION_SPLIT = "PublicTest"
HEADLINE_SPLIT = "PrivateTest"
#: percentile-bootstrap resamples of every 95% interval (accuracy, macro-F1, per-class recall and its gains)
BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE_LEVEL = 0.95
#: equal-width top-label confidence bins of the ECE and the reliability diagrams
ECE_BINS = 15
#: (true, predicted) pairs kept per cell in confusions.csv and drawn per model in the confused-pairs figure
TOP_CONFUSIONS = 5
#: the model every other one is compared against (significance, gains, confusion differences, findings) when it
#: is in a task; otherwise, and unless a reference is named (--reference), the task's most accurate model on the
#: selection split (PublicTest: the choice of what to compare against never looks at PrivateTest)
REFERENCE_MODEL = "cnn"
#: the classic model the robustness section's corruption errors are relative to (ImageNet-C's mCE divides by
#: AlexNet's errors); a task without its results uses its most accurate classic model
ROBUSTNESS_REFERENCE = "hog_svm"


@dataclass(frozen=True)
class Settings:
    headline_split: str = HEADLINE_SPLIT
    selection_split: str = SELECTION_SPLIT
    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES
    confidence_level: float = CONFIDENCE_LEVEL
    ece_bins: int = ECE_BINS
    top_confusions: int = TOP_CONFUSIONS
    #: None: REFERENCE_MODEL where a task has it, else the task's most accurate model on the selection split
    reference_model: str | None = None
    robustness_reference: str = ROBUSTNESS_REFERENCE
