"""`fer-bench data audit`: duplicate, leaked, conflicting and blank images.

What is looked for (the thresholds are module constants, documented again in audit.md):

* **exact** duplicates: pixel-identical 48x48 images.
* **near** duplicates: the same photograph re-encoded, re-cropped by a few pixels, with a watermark added, or
  with other brightness/contrast. Two images match when the Pearson correlation of their 16x16 thumbnails
  (3x3 block means) is >= `NEAR_CORRELATION`; subtracting the mean and dividing by the norm makes the test blind
  to brightness and contrast. Equivalently the Euclidean distance of the normalised thumbnails is
  <= sqrt(2 (1 - NEAR_CORRELATION)).
* **blank** images: near-uniform frames (pixel standard deviation < `BLANK_STD`). They show no face, so they are
  only reported as blank and never take part in duplicate groups (all black frames "match" each other).

Duplicate groups are the connected components of the "exact or near match" graph. Each group gets the kinds
that apply to it, and audit.csv has one row per image per (group, kind):

* `duplicate_within_split`: two or more members in one split (rows: the members of such splits);
* `train_test_leak`: members in Training and in PublicTest and/or PrivateTest (rows: all members);
  `fer-bench report` scores PrivateTest once more without the leaked images (subset "clean");
* `duplicate_across_test_splits`: members in PublicTest and in PrivateTest, so choosing on PublicTest sees some
  PrivateTest faces (rows: the test members);
* `conflicting_labels`: members with different labels (rows: all members);
* `blank`: one group with every blank image.

A row's `match` is `exact` when the image is pixel-identical to one of the images that put it under that kind
(for a leak: a test image to a Training image, a Training image to a test image; for conflicting labels: to an
image with another label; within a split: to another image of that split; for blank: to another blank image),
else `near`.

The near threshold was chosen on FER-2013 photographs. The built-in synthetic faces are much more alike at
16x16, so on them the near test also pairs different faces; the artifacts the generator plants are exact.

Speed: near matches are searched among distinct images only (exact copies collapse to one), as a radius query
of a KD-tree over a PCA projection of the normalised thumbnails. A projection onto orthonormal axes never
lengthens a distance, so every pair within the radius in thumbnail space is among the candidates; each
candidate is then checked on the full thumbnails. The result equals a brute-force comparison of all pairs
(about 9 s of CPU time for the 35,887 FER-2013 images, instead of a minute or more).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from fer_bench import CLASS_NAMES, IMAGE_SIZE, USAGES, __version__
from fer_bench.data.dataset import Dataset
from fer_bench.data.reference import DatasetReference
from fer_bench.errors import FerBenchError
from fer_bench.staging import folder_lock
from fer_bench.storage import atomic_write, check_results_folder, default_results_folder

#: minimum correlation of the 16x16 thumbnails for a near duplicate (see NEAR_THRESHOLD_WHY)
NEAR_CORRELATION = 0.95
#: thumbnail side: 48 / 3, so each thumbnail pixel is the mean of a 3x3 block
THUMBNAIL_SIZE = 16
#: an image whose pixel standard deviation (0..255 scale) is below this is blank
BLANK_STD = 3.0
#: PCA dimensions of the candidate search (only speed depends on it, never the result)
SEARCH_DIMENSIONS = 20
#: images the PCA axes are computed from (a seeded sample: using all 35,887 adds time, not accuracy)
PCA_SAMPLE = 5000

KINDS = ("train_test_leak", "duplicate_across_test_splits", "conflicting_labels", "duplicate_within_split", "blank")
CSV_COLUMNS = ("group_id", "kind", "match", "image_id", "split", "label")
TEST_SPLITS = ("PublicTest", "PrivateTest")
EXAMPLE_GROUPS = 5

NEAR_THRESHOLD_WHY = (
    "Chosen by looking at pairs of the real FER-2013 (Kaggle folder version): of 40 random non-identical "
    "pairs per correlation band, all 80 pairs with correlation 0.95-0.97 were the same photograph (re-encoded, "
    "shifted or re-cropped by a pixel or two, a stock-photo watermark added or removed); in 0.94-0.95, 38 of 40 "
    "were, in 0.93-0.94 about 37 of 40 (the others the same person in another photo, or two similar faces), and "
    "at 0.91-0.92 only about half. 0.95 keeps false matches rare; a few re-cropped copies below it are missed, so "
    "the near counts are a lower bound.")
BLANK_THRESHOLD_WHY = (
    "In FER-2013 (Kaggle folder version) 12 images are all black (standard deviation 0) and the next "
    "flattest image has a standard deviation of 42.6, so any threshold in between finds the same images; 3 "
    "also catches flat frames with a little sensor or JPEG noise.")


@dataclass(frozen=True)
class AuditRow:
    group: int  # group number (0-based, in order of each group's first image in data set order)
    kind: str
    match: str
    index: int  # position of the image in the Dataset


@dataclass
class AuditResult:
    """What run_audit found, with the data set it looked at."""

    dataset: Dataset
    rows: list[AuditRow]
    n_groups: int
    n_pairs_near: int  # near-matching pairs of distinct images

    def kind_rows(self, kind: str) -> list[AuditRow]:
        return [r for r in self.rows if r.kind == kind]

    def leaked(self, split: str) -> list[int]:
        """Indices of the `split` images with a duplicate in Training."""
        return sorted({r.index for r in self.kind_rows("train_test_leak") if self.dataset.usage[r.index] == split})


# --- finding the groups -----------------------------------------------------------------------------------------

def blank_mask(images: np.ndarray) -> np.ndarray:
    """True for near-uniform images (pixel standard deviation < BLANK_STD)."""
    flat = images.reshape(len(images), -1).astype(np.float32)
    return flat.std(axis=1) < BLANK_STD


def content_ids(images: np.ndarray) -> np.ndarray:
    """An integer per image; equal exactly when the images are pixel-identical."""
    flat = np.ascontiguousarray(images.reshape(len(images), -1))
    as_bytes = flat.view(np.dtype((np.void, flat.shape[1])))[:, 0]
    _, inverse = np.unique(as_bytes, return_inverse=True)
    return inverse.ravel()


def normalised_thumbnails(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm, zero-mean THUMBNAIL_SIZE^2 vectors (dot product = correlation), and which ones are usable
    (a thumbnail with no variation cannot be normalised)."""
    n, block = len(images), IMAGE_SIZE // THUMBNAIL_SIZE
    # Integer block sums (exact and fast); the 1/9 of the mean drops out in the normalisation.
    sums = images.reshape(n, THUMBNAIL_SIZE, block, IMAGE_SIZE).sum(axis=2, dtype=np.uint16)
    sums = sums.reshape(n, THUMBNAIL_SIZE, THUMBNAIL_SIZE, block).sum(axis=3, dtype=np.uint16)
    thumbs = sums.reshape(n, -1).astype(np.float64)
    thumbs -= thumbs.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(thumbs, axis=1)
    usable = norms > 1e-9
    thumbs[usable] /= norms[usable, None]
    return thumbs, usable


def near_pairs(thumbs: np.ndarray, *, min_correlation: float = NEAR_CORRELATION) -> np.ndarray:
    """(k, 2) index pairs i < j of unit-norm rows whose dot product is >= min_correlation (all of them)."""
    n = len(thumbs)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    # One BLAS thread: the matrices are small, and on a busy machine spinning BLAS threads made the
    # eigen-decomposition 100 times slower.
    with threadpool_limits(limits=1):
        return _near_pairs(thumbs, min_correlation)


def _near_pairs(thumbs: np.ndarray, min_correlation: float) -> np.ndarray:
    from sklearn.neighbors import KDTree

    n = len(thumbs)
    radius = np.sqrt(max(2.0 * (1.0 - min_correlation), 0.0))
    rng = np.random.default_rng(0)
    sample = thumbs[np.sort(rng.choice(n, size=min(n, PCA_SAMPLE), replace=False))]
    sample = sample - sample.mean(axis=0)
    # Principal axes from the eigenvectors of the (small, 256x256) covariance, largest variance first.
    _, eigenvectors = np.linalg.eigh(sample.T @ sample)
    axes = eigenvectors[:, ::-1][:, :SEARCH_DIMENSIONS]
    # Orthonormal axes: projected distances are lower bounds of the full ones, so no match is lost.
    projected = thumbs @ axes
    # A hair of slack so floating-point rounding in the projection cannot drop a pair exactly at the radius.
    neighbours = KDTree(projected).query_radius(projected, r=radius + 1e-9)
    first = np.repeat(np.arange(n), [len(found) for found in neighbours])
    second = np.concatenate(neighbours).astype(np.int64)
    keep = first < second
    first, second = first[keep], second[keep]
    correlation = np.einsum("ij,ij->i", thumbs[first], thumbs[second])
    match = correlation >= min_correlation
    pairs = np.stack([first[match], second[match]], axis=1)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))] if len(pairs) else pairs


def find_groups(dataset: Dataset) -> AuditResult:
    """Exact and near duplicate groups (with their kinds) and blank images of `dataset`."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    images, n = dataset.images, len(dataset)
    blank = blank_mask(images)
    content = content_ids(images)
    candidates = np.flatnonzero(~blank)
    # One representative (the first image) per distinct content among the non-blank images.
    _, first_of_content = np.unique(content[candidates], return_index=True)
    representatives = candidates[np.sort(first_of_content)]
    thumbs, usable = normalised_thumbnails(images[representatives])
    searchable = representatives[usable]
    pairs = searchable[near_pairs(thumbs[usable])] if len(searchable) else np.empty((0, 2), dtype=np.int64)

    # Graph: every non-blank image -> the representative of its content (exact copies), plus the near pairs.
    representative_of = np.full(content.max() + 1 if n else 0, -1, dtype=np.int64)
    representative_of[content[representatives]] = representatives
    edges_from = np.concatenate([candidates, pairs[:, 0]])
    edges_to = np.concatenate([representative_of[content[candidates]], pairs[:, 1]])
    graph = coo_matrix((np.ones(len(edges_from)), (edges_from, edges_to)), shape=(n, n))
    _, component = connected_components(graph, directed=False)

    rows: list[AuditRow] = []
    members_of: dict[int, list[int]] = {}
    for index in candidates:
        members_of.setdefault(int(component[index]), []).append(int(index))
    groups = sorted((m for m in members_of.values() if len(m) > 1), key=lambda m: m[0])
    for number, members in enumerate(groups):
        rows += _group_rows(number, members, dataset, content)
    if blank.any():
        rows += _group_rows(len(groups), [int(i) for i in np.flatnonzero(blank)], dataset, content, blank=True)
    rows.sort(key=lambda r: (KINDS.index(r.kind), r.group, r.index))
    return AuditResult(dataset=dataset, rows=rows, n_groups=len(groups) + int(blank.any()), n_pairs_near=len(pairs))


def _group_rows(number: int, members: list[int], dataset: Dataset, content: np.ndarray, *,
                blank: bool = False) -> list[AuditRow]:
    split_of = {i: str(dataset.usage[i]) for i in members}
    label_of = {i: int(dataset.labels[i]) for i in members}

    def rows_for(kind: str, indices, counterparts) -> list[AuditRow]:
        """Rows of `indices`; "exact" when the image is pixel-identical to one of its counterparts (the images
        that put it under this kind), else "near"."""
        return [AuditRow(number, kind, "exact" if any(content[j] == content[i] for j in counterparts(i)) else "near",
                         i) for i in indices]

    def others(condition):
        return lambda i: [j for j in members if j != i and condition(i, j)]

    if blank:
        return rows_for("blank", members, others(lambda i, j: True))
    per_split = Counter(split_of.values())
    rows = []
    if "Training" in per_split and any(s in per_split for s in TEST_SPLITS):
        # a test image against the Training images, a Training image against the test images
        rows += rows_for("train_test_leak", members,
                         others(lambda i, j: (split_of[i] == "Training") != (split_of[j] == "Training")))
    if all(s in per_split for s in TEST_SPLITS):
        rows += rows_for("duplicate_across_test_splits", [i for i in members if split_of[i] in TEST_SPLITS],
                         others(lambda i, j: split_of[j] in TEST_SPLITS and split_of[j] != split_of[i]))
    if len(set(label_of.values())) > 1:
        rows += rows_for("conflicting_labels", members, others(lambda i, j: label_of[j] != label_of[i]))
    crowded = {s for s, count in per_split.items() if count > 1}
    if crowded:
        rows += rows_for("duplicate_within_split", [i for i in members if split_of[i] in crowded],
                         others(lambda i, j: split_of[j] == split_of[i]))
    return rows


# --- output -----------------------------------------------------------------------------------------------------

def _group_id(number: int) -> str:
    return f"g{number + 1:05d}"


def audit_csv(result: AuditResult) -> str:
    ds = result.dataset
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in result.rows:
        writer.writerow([_group_id(r.group), r.kind, r.match, ds.ids[r.index], ds.usage[r.index],
                         CLASS_NAMES[int(ds.labels[r.index])]])
    return buf.getvalue()


def _split_sizes(ds: Dataset) -> dict[str, int]:
    return {u: int((ds.usage == u).sum()) for u in USAGES}


def _counts_table(result: AuditResult) -> list[str]:
    ds = result.dataset
    lines = ["| kind | groups | images | " + " | ".join(USAGES) + " | exact | near |",
             "|---|---:|---:|" + "---:|" * (len(USAGES) + 2)]
    for kind in KINDS:
        rows = result.kind_rows(kind)
        per_split = Counter(str(ds.usage[r.index]) for r in rows)
        per_match = Counter(r.match for r in rows)
        lines.append(f"| {kind} | {len({r.group for r in rows}):,} | {len(rows):,} | "
                     + " | ".join(f"{per_split[u]:,}" for u in USAGES)
                     + f" | {per_match['exact']:,} | {per_match['near']:,} |")
    return lines


def _examples(result: AuditResult, kind: str) -> list[str]:
    ds = result.dataset
    by_group: dict[int, list[AuditRow]] = {}
    for r in result.kind_rows(kind):
        by_group.setdefault(r.group, []).append(r)
    lines = []
    # The smallest groups first: they read best as examples (the largest are listed in audit.csv).
    for number, rows in sorted(by_group.items(), key=lambda item: (len(item[1]), item[0]))[:EXAMPLE_GROUPS]:
        members = ", ".join(f"{ds.ids[r.index]} ({CLASS_NAMES[int(ds.labels[r.index])]}, {r.match})"
                            for r in rows[:8])
        more = f", ... {len(rows) - 8} more" if len(rows) > 8 else ""
        lines.append(f"- {_group_id(number)}: {members}{more}")
    return lines or ["- none"]


def audit_markdown(result: AuditResult) -> str:
    ds = result.dataset
    sizes = _split_sizes(ds)
    distance = np.sqrt(2 * (1 - NEAR_CORRELATION))
    lines = [
        f"# Data audit: {ds.name}", "",
        f"Data: **{ds.name}** (fingerprint `{ds.fingerprint}`, {len(ds):,} images: "
        + ", ".join(f"{u} {sizes[u]:,}" for u in USAGES) + f"), from {ds.source}.",
        f"Written by `fer-bench data audit` {__version__}. `audit.csv` lists every image of every group: one row "
        "per image, group and kind (columns group_id, kind, match, image_id, split, label).", "",
        "## Leakage", "",
    ]
    for split in TEST_SPLITS:
        leaked = result.leaked(split)
        exact = {r.index for r in result.kind_rows("train_test_leak") if r.match == "exact"} & set(leaked)
        lines.append(f"- {split}: **{len(leaked):,}** of {sizes[split]:,} images "
                     f"({100 * len(leaked) / max(sizes[split], 1):.2f}%) have a duplicate in Training "
                     f"({len(exact):,} pixel-identical, {len(leaked) - len(exact):,} near).")
    lines += ["", "`fer-bench report` on this results folder also scores PrivateTest without these images "
              "(subset `clean` in metrics.csv).", "", "## Counts", "",
              "Images per kind and split; a group is counted under every kind that applies to it. *exact*: the "
              "image is pixel-identical to one of the images that put it under the kind (for a leak: a test image "
              "to a Training image and vice versa); *near*: it only matches them near-identically.", "",
              *_counts_table(result), "",
              f"{result.n_groups:,} groups in all; {result.n_pairs_near:,} near-matching pairs of distinct images.",
              "", "## Definitions", "",
              "- **exact**: pixel-identical 48x48 images.",
              f"- **near**: Pearson correlation of the {THUMBNAIL_SIZE}x{THUMBNAIL_SIZE} thumbnails (means of "
              f"{IMAGE_SIZE // THUMBNAIL_SIZE}x{IMAGE_SIZE // THUMBNAIL_SIZE} pixel blocks) >= {NEAR_CORRELATION}, "
              "i.e. the thumbnails, each shifted to mean 0 and scaled to norm 1 (blind to brightness and "
              f"contrast), are at most {distance:.3f} apart. {NEAR_THRESHOLD_WHY}",
              f"- **blank**: pixel standard deviation < {BLANK_STD:g} (0-255 scale). {BLANK_THRESHOLD_WHY} Blank "
              "images show no face: they are listed under `blank` only, never in duplicate groups.",
              "- **groups**: connected components of the exact-or-near match graph; a group can chain images that "
              "match through a third one.",
              *([f"- On the built-in **synthetic** data the near test also pairs different faces: the procedural "
                 f"faces are far more alike at {THUMBNAIL_SIZE}x{THUMBNAIL_SIZE} than photographs. The artifacts "
                 "the generator plants (duplicates, conflicting labels, leaks) are all exact matches."]
                if ds.name == "synthetic" else []),
              "- kinds: `train_test_leak` (members in Training and in a test split), "
              "`duplicate_across_test_splits` (members in PublicTest and in PrivateTest), `conflicting_labels` "
              "(members with different labels), `duplicate_within_split` (two or more members in one split; rows "
              "for the members of such splits), `blank`.", "",
              "## Examples", ""]
    for kind in KINDS:
        lines += [f"**{kind}**", "", *_examples(result, kind), ""]
    return "\n".join(lines)


def summary_lines(result: AuditResult) -> list[str]:
    """Short stdout summary."""
    ds = result.dataset
    sizes = _split_sizes(ds)
    lines = [f"audited {len(ds):,} {ds.name} images (fingerprint {ds.fingerprint})"]
    for kind in KINDS:
        rows = result.kind_rows(kind)
        per_match = Counter(r.match for r in rows)
        lines.append(f"  {kind:<29} {len({r.group for r in rows}):>6,} groups {len(rows):>7,} images "
                     f"({per_match['exact']:,} exact, {per_match['near']:,} near)")
    leaks = ", ".join(f"{s} {len(result.leaked(s)):,}/{sizes[s]:,}" for s in TEST_SPLITS)
    lines.append(f"  test images with a duplicate in Training: {leaks}")
    return lines


def run_audit(data=None, out=None, rgb_to_gray: bool = False, dataset: Dataset | None = None) -> Path:
    """Audit `dataset` (or the data at `data`, found as `fer-bench run` finds it); write audit.csv and audit.md
    under `out` (default results/<dataset name>) and return `out`."""
    if dataset is None:
        from fer_bench.data import load_dataset

        dataset = load_dataset(data, rgb_to_gray=rgb_to_gray)
    out = Path(out) if out else default_results_folder(dataset.name)
    # Before the work: a folder holding results for other data is refused up front.
    check_results_folder(out, dataset=dataset.name, fingerprint=dataset.fingerprint,
                         reference=DatasetReference.of(dataset, rgb_to_gray=rgb_to_gray).to_json(), create=True)
    result = find_groups(dataset)
    try:
        with folder_lock(out):  # as run, report and maps: another command's .tmp files are not its leftovers
            atomic_write(out / "audit.csv", audit_csv(result))
            atomic_write(out / "audit.md", audit_markdown(result))
    except OSError as exc:
        raise FerBenchError(f"cannot write the audit under {out}: {exc.strerror or exc}") from None
    for line in summary_lines(result):
        print(line)
    print(f"audit written to {out / 'audit.csv'} and {out / 'audit.md'}")
    return out
