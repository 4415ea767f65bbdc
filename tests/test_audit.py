"""`fer-bench data audit`: exact and near duplicates, leakage, conflicting labels, blank images, output files."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_grid
from PIL import Image, ImageDraw

from fer_bench import CLASS_NAMES, USAGES
from fer_bench.audit import (
    CSV_COLUMNS,
    KINDS,
    NEAR_CORRELATION,
    find_groups,
    near_pairs,
    run_audit,
)
from fer_bench.cli import main
from fer_bench.data import load_folder
from fer_bench.data.dataset import Dataset
from fer_bench.data.synthetic import make_synthetic
from fer_bench.errors import FerBenchError

SIZES = {"n_train": 700, "n_public": 210, "n_private": 210}


def read_rows(out: Path) -> list[dict]:
    with open(out / "audit.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def make_dataset(images, usage, labels=None, name="handmade") -> Dataset:
    images = np.asarray(images, dtype=np.uint8)
    labels = np.zeros(len(images), dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    return Dataset(name=name, images=images, labels=labels, usage=np.asarray(usage),
                   ids=np.array([f"img{i:03d}" for i in range(len(images))]), source="test")


def smooth_field(seed: int) -> np.ndarray:
    """A structured 48x48 image (blurred noise): unrelated seeds give uncorrelated images."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(6, 6))
    image = np.kron(coarse, np.ones((8, 8)))
    for _ in range(3):  # smooth like a photo at this size, so a one-pixel shift changes the image only slightly
        for axis in (0, 1):
            image = (np.roll(image, 1, axis) + 2 * image + np.roll(image, -1, axis)) / 4
    return np.clip(128 + 40 * image, 0, 255).astype(np.uint8)


# --- the artifacts make_synthetic plants, found exactly ------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic(small_synthetic):
    """conftest's small_synthetic: the SIZES, seed 0, artifacts planted."""
    assert (len(small_synthetic.split("Training")), len(small_synthetic.split("PublicTest")),
            len(small_synthetic.split("PrivateTest"))) == tuple(SIZES.values())
    return small_synthetic


@pytest.fixture(scope="module")
def planted(synthetic):
    """The planted artifacts, recovered independently of the audit: images that differ from the artifact-free
    data set are targets; a target with a pixel-identical partner is a copy, one without is a blank frame."""
    clean = make_synthetic(**SIZES, seed=0, artifacts=False)
    images = synthetic.images.reshape(len(synthetic), -1)
    targets = np.flatnonzero((synthetic.images != clean.images).any(axis=(1, 2)))
    copies, blanks = {}, []
    for t in targets:
        partners = [int(j) for j in np.flatnonzero((images == images[t]).all(axis=1)) if j != t]
        if partners:
            copies[int(t)] = partners[0]
        else:
            blanks.append(int(t))
    split = synthetic.usage
    leaks = {t: s for t, s in copies.items() if split[t] != "Training"}
    conflicting = {t: s for t, s in copies.items() if synthetic.labels[t] != synthetic.labels[s]}
    assert (len(copies), len(leaks), len(conflicting), len(blanks)) == (20, 10, 2, 3)  # as documented
    return {"copies": copies, "leaks": leaks, "conflicting": conflicting, "blanks": blanks}


@pytest.fixture(scope="module")
def synthetic_audit(tmp_path_factory, synthetic):
    out = tmp_path_factory.mktemp("audit") / "results"
    run_audit(dataset=synthetic, out=out)
    index_of = {str(image_id): i for i, image_id in enumerate(synthetic.ids)}
    rows = read_rows(out)
    for row in rows:
        row["index"] = index_of[row["image_id"]]
    return out, rows


def test_every_planted_copy_is_an_exact_match_and_nothing_else_is(synthetic_audit, planted):
    _, rows = synthetic_audit
    exact = {r["index"] for r in rows if r["match"] == "exact" and r["kind"] != "blank"}
    assert exact == set(planted["copies"]) | set(planted["copies"].values())


def test_planted_leaks_are_train_test_leaks_with_their_training_source(synthetic_audit, planted, synthetic):
    _, rows = synthetic_audit
    leak_rows = [r for r in rows if r["kind"] == "train_test_leak"]
    exact_test = {r["index"] for r in leak_rows if r["match"] == "exact" and r["split"] != "Training"}
    assert exact_test == set(planted["leaks"])
    for target, source in planted["leaks"].items():
        group = next(r["group_id"] for r in leak_rows if r["index"] == target)
        members = {r["index"]: r for r in leak_rows if r["group_id"] == group}
        assert members[source]["split"] == "Training" and members[source]["match"] == "exact"
        assert members[target]["split"] == synthetic.usage[target]


def test_planted_conflicting_labels_and_blank_frames(synthetic_audit, planted, synthetic):
    _, rows = synthetic_audit
    conflicting = {r["index"] for r in rows if r["kind"] == "conflicting_labels" and r["match"] == "exact"}
    assert conflicting == set(planted["conflicting"]) | set(planted["conflicting"].values())
    blank_rows = [r for r in rows if r["kind"] == "blank"]
    assert sorted(r["index"] for r in blank_rows) == sorted(planted["blanks"])
    assert len({r["group_id"] for r in blank_rows}) == 1
    # a blank frame is never part of a duplicate group
    assert not {r["index"] for r in rows if r["kind"] != "blank"} & set(planted["blanks"])
    for r in blank_rows:
        assert r["label"] == CLASS_NAMES[synthetic.labels[r["index"]]]


def test_audit_csv_is_sorted_and_rewritten_byte_identically(synthetic_audit, synthetic):
    out, rows = synthetic_audit
    text = (out / "audit.csv").read_text()
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    keys = [(KINDS.index(r["kind"]), r["group_id"], r["index"]) for r in rows]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)  # one row per image per group and kind
    assert {r["match"] for r in rows} <= {"exact", "near"}
    for r in rows:
        assert r["split"] == synthetic.usage[r["index"]] and r["label"] == CLASS_NAMES[synthetic.labels[r["index"]]]
    markdown = (out / "audit.md").read_bytes()
    run_audit(dataset=synthetic, out=out)
    assert (out / "audit.csv").read_text() == text and (out / "audit.md").read_bytes() == markdown
    assert not list(out.glob(".*"))  # no temporary files left
    marker = json.loads((out / "fer-bench.json").read_text())
    assert marker["dataset"] == "synthetic" and marker["fingerprint"] == synthetic.fingerprint


def test_audit_md_states_counts_thresholds_and_leaks(synthetic_audit):
    out, rows = synthetic_audit
    text = (out / "audit.md").read_text()
    for split in ("PublicTest", "PrivateTest"):
        leaked = {r["image_id"] for r in rows if r["kind"] == "train_test_leak" and r["split"] == split}
        assert f"- {split}: **{len(leaked)}** of 210 images" in text
    assert f">= {NEAR_CORRELATION}" in text and "16x16" in text and "standard deviation < 3" in text
    for kind in KINDS:
        kind_rows = [r for r in rows if r["kind"] == kind]
        assert f"| {kind} | {len({r['group_id'] for r in kind_rows})} | {len(kind_rows)} |" in text
    assert "synthetic" in text


def test_results_folder_for_other_data_is_refused(tmp_path, synthetic):
    out = tmp_path / "results"
    out.mkdir()
    (out / "fer-bench.json").write_text(json.dumps({"format": 1, "dataset": "fer2013", "fingerprint": "0" * 16}))
    with pytest.raises(FerBenchError, match="holds results for other data"):
        run_audit(dataset=synthetic, out=out)
    assert sorted(p.name for p in out.iterdir()) == ["fer-bench.json"]


# --- near duplicates -------------------------------------------------------------------------------------------

def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


def watermarked(image: np.ndarray) -> np.ndarray:
    """A half-transparent white text across the image, like a stock-photo watermark."""
    mask = Image.new("L", (48, 48), 0)
    ImageDraw.Draw(mask).text((2, 30), "stock", fill=255)
    opacity = 0.5 * np.asarray(mask, dtype=float) / 255
    return np.clip(image * (1 - opacity) + 255 * opacity, 0, 255).astype(np.uint8)


EDITS = {
    "brighter and flatter": lambda im: np.clip(0.6 * im.astype(float) + 70, 0, 255).astype(np.uint8),
    "darker and steeper": lambda im: np.clip(1.3 * im.astype(float) - 40, 0, 255).astype(np.uint8),
    "shifted one pixel": lambda im: np.hstack([im[:, :1], im[:, :-1]]),  # re-cropped: edge column repeated
    "JPEG quality 60": lambda im: jpeg_round_trip(im, 60),
    "watermark": watermarked,
}


def test_edited_copies_are_near_matches_and_unrelated_images_are_not():
    originals = [smooth_field(seed) for seed in range(len(EDITS))]
    edited = [edit(original) for original, edit in zip(originals, EDITS.values(), strict=True)]
    unrelated = [smooth_field(100 + seed) for seed in range(20)]
    images = originals + edited + unrelated
    usage = ["Training"] * len(originals) + ["PrivateTest"] * len(edited) + ["PublicTest"] * len(unrelated)
    result = find_groups(make_dataset(images, usage))
    leak_rows = result.kind_rows("train_test_leak")
    for k, name in enumerate(EDITS):
        original, copy = k, len(originals) + k
        groups = {r.group for r in leak_rows if r.index in (original, copy)}
        assert len(groups) == 1, f"{name}: copy not grouped with its original"
        assert {r.match for r in leak_rows if r.index in (original, copy)} == {"near"}, name
    grouped = {r.index for r in result.rows}
    assert grouped == set(range(len(originals) + len(edited)))  # none of the unrelated images


def test_near_pairs_equals_brute_force():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(400, 256))
    # near neighbours at several distances around the threshold, plus a cluster for the low threshold
    noisy = base[:150] + rng.normal(size=(150, 256)) * rng.uniform(0.05, 0.4, size=(150, 1))
    vectors = np.vstack([base, noisy])
    vectors -= vectors.mean(axis=1, keepdims=True)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for threshold in (NEAR_CORRELATION, 0.9, 0.5):
        correlation = vectors @ vectors.T
        i, j = np.nonzero(np.triu(correlation >= threshold, k=1))
        expected = sorted(zip(i.tolist(), j.tolist(), strict=True))
        found = [tuple(p) for p in near_pairs(vectors, min_correlation=threshold).tolist()]
        assert found == expected and len(expected) > 10, threshold


# --- kinds and blank frames on hand-made data ------------------------------------------------------------------

def test_each_kind_applies_to_the_right_groups_and_rows():
    faces = [smooth_field(seed) for seed in range(5)]
    cases = [  # (face, split, label)
        (0, "Training", 3), (0, "Training", 3),  # within Training, same label
        (1, "Training", 3), (1, "PublicTest", 3),  # leak
        (2, "PublicTest", 4), (2, "PrivateTest", 4),  # across the test splits only
        (3, "Training", 0), (3, "Training", 5), (3, "PrivateTest", 5),  # conflicting labels, within and leak
        (4, "Training", 6),  # a single image: in no group
    ]
    ds = make_dataset([faces[f] for f, _, _ in cases], [s for _, s, _ in cases], [lab for _, _, lab in cases])
    result = find_groups(ds)

    def rows(kind):
        return sorted(r.index for r in result.kind_rows(kind))

    assert rows("duplicate_within_split") == [0, 1, 6, 7]
    assert rows("train_test_leak") == [2, 3, 6, 7, 8]
    assert rows("duplicate_across_test_splits") == [4, 5]
    assert rows("conflicting_labels") == [6, 7, 8]
    assert rows("blank") == []
    assert {r.match for r in result.rows} == {"exact"}
    assert result.leaked("PublicTest") == [3] and result.leaked("PrivateTest") == [8]
    assert result.n_groups == 4


def test_blank_frames_are_reported_as_blank_only():
    rng = np.random.default_rng(0)
    black = np.zeros((48, 48), np.uint8)
    flat_grey = np.clip(120 + rng.integers(-2, 3, (48, 48)), 0, 255).astype(np.uint8)  # std ~1.4
    low_contrast_face = np.clip(128 + (smooth_field(7).astype(float) - 128) / 8, 0, 255).astype(np.uint8)
    assert low_contrast_face.std() > 3
    images = [black, black, flat_grey, low_contrast_face, smooth_field(8)]
    usage = ["Training", "PrivateTest", "Training", "Training", "PublicTest"]
    result = find_groups(make_dataset(images, usage))
    assert [(r.index, r.match) for r in result.rows] == [(0, "exact"), (1, "exact"), (2, "near")]
    assert {r.kind for r in result.rows} == {"blank"}


# --- CLI, report, real data ------------------------------------------------------------------------------------

def test_cli_audit_of_a_folder_finds_a_copied_test_image(tiny_fer_folder, tmp_path, capsys):
    source = sorted((tiny_fer_folder / "train" / "sad").glob("*.jpg"))[0]
    shutil.copy(source, tiny_fer_folder / "test" / "sad" / "PrivateTest_999999.jpg")
    out = tmp_path / "results"
    assert main(["data", "audit", "--data", str(tiny_fer_folder), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "PublicTest 0/14, PrivateTest 1/15" in stdout
    assert str(out / "audit.csv") in stdout
    leak = [(r["image_id"], r["split"], r["match"], r["label"]) for r in read_rows(out)
            if r["kind"] == "train_test_leak"]
    assert leak == [(source.stem, "Training", "exact", "sad"), ("PrivateTest_999999", "PrivateTest", "exact", "sad")]


def test_report_scores_privatetest_without_leaked_images_and_links_the_audit(tmp_path, synthetic, baseline_grid):
    from fer_bench.report import build_report

    # the 7class/logreg cell of the shared grid (conftest), computed on this data set
    out = copy_grid(baseline_grid, tmp_path / "results", cells=["7class/logreg/seed0"])
    run_audit(dataset=synthetic, out=out)
    leaked = {r["image_id"] for r in read_rows(out) if r["kind"] in ("train_test_leak", "duplicate_across_test_splits")
              and r["split"] == "PrivateTest"}
    report = build_report(out)
    private = {r["subset"]: r for r in report.metric_rows if r["split"] == "PrivateTest"}
    assert private["all"]["n"] == 210 and private["clean"]["n"] == 210 - len(leaked)
    section = next(s for s in report.sections if s.title == "Data audit")
    assert "audit.md" in section.markdown and f"{len(leaked)} PrivateTest" in section.markdown
    assert "## Data audit" in report.files["summary.md"]


def test_real_fer2013_cross_split_copies_are_found(fer2013_dir, tmp_path):
    """On the disgust images of FER-2013 (547 files): the exact leaks equal an independent byte comparison."""
    root = tmp_path / "fer2013"
    for split_folder in ("train", "test"):
        (root / split_folder).mkdir(parents=True)
        (root / split_folder / "disgust").symlink_to(fer2013_dir / split_folder / "disgust")
    ds = load_folder(root)
    assert set(ds.usage) == set(USAGES)
    result = find_groups(ds)
    training = {ds.images[i].tobytes() for i in np.flatnonzero(ds.usage == "Training")}
    expected = {i for i in np.flatnonzero(ds.usage != "Training") if ds.images[i].tobytes() in training}
    exact_leaks = {r.index for r in result.kind_rows("train_test_leak")
                   if r.match == "exact" and ds.usage[r.index] != "Training"}
    assert exact_leaks == expected and len(expected) > 0  # FER-2013 is known to hold such copies
    near_leaks = {r.index for r in result.kind_rows("train_test_leak") if ds.usage[r.index] != "Training"}
    assert near_leaks >= exact_leaks


def test_report_leaves_out_the_clean_subset_when_the_audit_names_other_ids(tmp_path, synthetic, baseline_grid,
                                                                          capsys):
    from fer_bench.report import build_report

    out = copy_grid(baseline_grid, tmp_path / "results", cells=["binary/logreg/seed0"])
    run_audit(dataset=synthetic, out=out)
    rows = read_rows(out)
    for row in rows:  # the ids an audit of the CSV format would have written (row numbers)
        row["image_id"] = f"row{row['image_id']}"
    with open(out / "audit.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    capsys.readouterr()
    report = build_report(out)
    assert {r["subset"] for r in report.metric_rows} == {"all"}
    assert "names none of the stored test images" in capsys.readouterr().err


def test_the_clean_subset_leaves_out_copies_in_training_and_in_publictest(tmp_path):
    from types import SimpleNamespace

    from fer_bench.report.audit import leaked_ids

    rows = [{"kind": "train_test_leak", "split": "Training", "image_id": "Training_1"},
            {"kind": "train_test_leak", "split": "PrivateTest", "image_id": "PrivateTest_2"},
            {"kind": "duplicate_across_test_splits", "split": "PublicTest", "image_id": "PublicTest_3"},
            {"kind": "duplicate_across_test_splits", "split": "PrivateTest", "image_id": "PrivateTest_4"},
            {"kind": "duplicate_within_split", "split": "PrivateTest", "image_id": "PrivateTest_5"},
            {"kind": "blank", "split": "PrivateTest", "image_id": "PrivateTest_6"}]
    cell = SimpleNamespace(image_ids=np.array(["PrivateTest_2", "PrivateTest_4", "PrivateTest_5", "PrivateTest_6"]))
    assert leaked_ids(rows, [cell], tmp_path) == {"PrivateTest_2", "PublicTest_3", "PrivateTest_4"}
