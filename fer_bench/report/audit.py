"""The report's use of `fer-bench data audit`: audit.csv read once, the test images with a duplicate in
Training (the *clean* subset leaves them out), and the short data-audit section."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from fer_bench.audit import KINDS, TEST_SPLITS


def read_audit_rows(out: Path) -> list[dict] | None:
    """The rows of <out>/audit.csv, None when there is none or it cannot be read (said on stderr)."""
    path = Path(out) / "audit.csv"
    if not path.exists():
        return None
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        print(f"report: skipping the audit ({path}: {exc})", file=sys.stderr)
        return None


#: audit kinds whose test images the clean subset leaves out: a copy in Training (the model trained on it) or in
#: the other test split (PublicTest chose hyper-parameters, epochs and views having seen a near-copy)
NOT_CLEAN_KINDS = ("train_test_leak", "duplicate_across_test_splits")


def leaked_ids(audit_rows: list[dict] | None, cells, out: Path) -> frozenset:
    """Test image ids with a pixel-identical (or near-identical) image in Training or in the other test split.

    Empty when not one of them names a stored test image: then audit.csv was made from the other format of the
    data (the CSV's row ids vs the folder's file names) and would call every test image clean."""
    if not audit_rows:
        return frozenset()
    leaked = frozenset(r["image_id"] for r in audit_rows
                       if r.get("kind") in NOT_CLEAN_KINDS and r.get("split") != "Training")
    if leaked and leaked.isdisjoint(id_ for cell in cells for id_ in cell.image_ids.tolist()):
        print(f"report: {Path(out) / 'audit.csv'} names none of the stored test images (audit made from the other "
              "data format?); the clean subset is left out; rerun `fer-bench data audit` on the data of the runs",
              file=sys.stderr)
        return frozenset()
    return leaked


def audit_markdown(ctx) -> str | None:
    """A short data-audit section when the results folder holds audit.csv."""
    rows = ctx.inputs.audit_rows
    if rows is None:
        return None
    groups = {kind: len({r["group_id"] for r in rows if r.get("kind") == kind}) for kind in KINDS}
    leaked = {s: len({(r["image_id"], r["label"]) for r in rows
                      if r.get("kind") == "train_test_leak" and r.get("split") == s}) for s in TEST_SPLITS}
    blank = sum(1 for r in rows if r.get("kind") == "blank")
    return (f"From `fer-bench data audit` (details and thresholds in [audit.md](audit.md)): "
            f"{groups['train_test_leak']:,} groups of exact or near duplicates span Training and a test split, "
            f"so {leaked['PublicTest']:,} PublicTest and {leaked['PrivateTest']:,} PrivateTest images have a copy "
            f"in Training; {groups['duplicate_within_split']:,} groups repeat within a split, "
            f"{groups['conflicting_labels']:,} carry conflicting labels, and {blank:,} images are blank.")
