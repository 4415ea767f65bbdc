"""Loaders (Kaggle folders and CSV), their agreement, the decoded-data cache, discovery and download."""

from __future__ import annotations

import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_bench import CLASS_NAMES, USAGES
from fer_bench.data import (
    cache,
    csv_format,
    download_fer2013,
    find_fer2013,
    folder,
    load_csv,
    load_dataset,
    load_folder,
    search_locations,
    write_csv,
)
from fer_bench.errors import FerBenchError

SPEC = {"Training": 3, "PublicTest": 2, "PrivateTest": 1}


def expected_listing(root: Path) -> list[tuple[int, int, int, Path]]:
    """(usage index, file number, label, path) of every image under root, sorted, computed independently."""
    rows = []
    for path in root.glob("*/*/*.*"):
        usage, number = path.stem.split("_")
        rows.append((USAGES.index(usage), int(number), CLASS_NAMES.index(path.parent.name), path))
    return sorted(rows)


def assert_same_data(a, b):
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.usage, b.usage)
    assert a.fingerprint == b.fingerprint


def rewrite_image(path: Path, pixels: np.ndarray) -> None:
    """Replace an image and move its mtime forward, as an edit a second later would."""
    stat = path.stat()
    Image.fromarray(pixels).save(path, format="PNG" if path.suffix == ".png" else "JPEG")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


# --- folders ---------------------------------------------------------------------------------------------------

def test_load_folder_reads_every_image_in_usage_then_number_order(tmp_path, make_fer_folder):
    root = make_fer_folder(tmp_path / "fer", SPEC)
    ds = load_folder(root)
    listing = expected_listing(root)
    assert ds.name == "fer2013"
    assert ds.source == str(root.resolve())
    assert ds.images.dtype == np.uint8 and ds.images.shape == (len(listing), 48, 48)
    assert ds.labels.dtype == np.int64
    assert list(ds.usage) == [USAGES[u] for u, _, _, _ in listing]
    assert list(ds.labels) == [label for _, _, label, _ in listing]
    assert list(ds.ids) == [path.stem for *_, path in listing]
    for image, (*_, path) in zip(ds.images, listing, strict=True):
        np.testing.assert_array_equal(image, np.asarray(Image.open(path)))
    assert ds.counts() == {usage: dict.fromkeys(CLASS_NAMES, n) for usage, n in SPEC.items()}


def test_numbers_sort_numerically_and_a_shared_number_sorts_by_label(tmp_path, make_fer_folder):
    root = make_fer_folder(tmp_path / "fer", {"Training": {"angry": 0}, "PublicTest": 1, "PrivateTest": 1})
    pixels = np.zeros((48, 48), np.uint8)
    for class_name, number in [("happy", 100), ("happy", 9), ("angry", 10), ("surprise", 10), ("fear", 10)]:
        (root / "train" / class_name).mkdir(exist_ok=True)
        Image.fromarray(pixels).save(root / "train" / class_name / f"Training_{number}.jpg")
    training = load_folder(root).split("Training")
    assert list(training.ids) == ["Training_9", "Training_10", "Training_10", "Training_10", "Training_100"]
    assert [CLASS_NAMES[i] for i in training.labels] == ["happy", "angry", "fear", "surprise", "happy"]


def test_empty_or_missing_class_folders_are_allowed(tmp_path, make_fer_folder):
    root = make_fer_folder(tmp_path / "fer", {"Training": {"angry": 2, "happy": 1}, "PublicTest": {"happy": 1},
                                              "PrivateTest": {"sad": 1}})
    (root / "train" / "disgust").mkdir()
    counts = load_folder(root).counts()
    assert counts["Training"]["angry"] == 2 and counts["Training"]["disgust"] == 0
    assert sum(counts["PrivateTest"].values()) == 1


def test_hidden_files_and_folders_are_ignored(tiny_fer_folder):
    before = load_folder(tiny_fer_folder, use_cache=False)
    (tiny_fer_folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tiny_fer_folder / "train" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tiny_fer_folder / "train" / "happy" / "._Training_1.jpg").write_bytes(b"AppleDouble")
    (tiny_fer_folder / "test" / ".ipynb_checkpoints").mkdir()
    after = load_folder(tiny_fer_folder, use_cache=False)
    assert_same_data(before, after)


def test_png_images_are_accepted(tiny_fer_folder):
    jpg = sorted((tiny_fer_folder / "test" / "sad").glob("PublicTest_*.jpg"))[0]
    pixels = np.arange(48 * 48, dtype=np.uint8).reshape(48, 48)
    Image.fromarray(pixels).save(jpg.with_suffix(".png"))
    jpg.unlink()
    ds = load_folder(tiny_fer_folder)
    np.testing.assert_array_equal(ds.images[list(ds.ids).index(jpg.stem)], pixels)


def test_rgb_image_is_converted_with_rgb_to_gray(tiny_fer_folder):
    path = sorted((tiny_fer_folder / "train" / "fear").glob("*.jpg"))[0]
    rgb = np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    ds = load_folder(tiny_fer_folder, rgb_to_gray=True)
    expected = np.asarray(Image.open(path).convert("L"))
    np.testing.assert_array_equal(ds.images[list(ds.ids).index(path.stem)], expected)


def test_a_parent_folder_of_exactly_one_layout_is_accepted(tmp_path, make_fer_folder):
    inner = make_fer_folder(tmp_path / "download" / "archive", SPEC)
    ds = load_folder(tmp_path / "download")
    assert ds.source == str(inner.resolve())
    assert_same_data(ds, load_folder(inner))


# --- CSV ------------------------------------------------------------------------------------------------------

def test_csv_round_trip_gives_identical_data(tiny_fer_folder, tmp_path):
    ds = load_folder(tiny_fer_folder)
    csv_path = write_csv(ds, tmp_path / "out" / "fer2013.csv")
    back = load_csv(csv_path)
    assert_same_data(ds, back)
    assert list(back.ids) == [f"row{k}" for k in range(len(ds))]
    assert back.name == "fer2013" and back.source == str(csv_path.resolve())
    assert [p.name for p in csv_path.parent.iterdir()] == ["fer2013.csv"]  # no temporary file left


def test_csv_text_is_the_original_challenge_format(tiny_fer_folder, tmp_path):
    ds = load_folder(tiny_fer_folder)
    lines = write_csv(ds, tmp_path / "fer2013.csv").read_text().splitlines()
    assert lines[0] == "emotion,pixels,Usage"
    assert len(lines) == len(ds) + 1
    emotion, pixels, usage = lines[1].split(",")
    assert int(emotion) == ds.labels[0] and usage == ds.usage[0]
    assert [int(v) for v in pixels.split(" ")] == ds.images[0].ravel().tolist()


def test_csv_rows_are_ordered_by_usage_keeping_file_order(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 48 * 48))
    usages = ["PrivateTest", "Training", "PublicTest", "Training"]
    lines = ["Usage,emotion,pixels,comment"]  # columns in another order plus an extra one
    for label, (usage, image) in enumerate(zip(usages, images, strict=True)):
        lines.append(f"{usage},{label},{' '.join(map(str, image))},x")
    path = tmp_path / "mixed.csv"
    path.write_text("\r\n".join(lines) + "\r\n\r\n")  # Windows line ends and a trailing blank line
    ds = load_csv(path)
    assert list(ds.ids) == ["row1", "row3", "row2", "row0"]
    assert list(ds.usage) == ["Training", "Training", "PublicTest", "PrivateTest"]
    assert list(ds.labels) == [1, 3, 2, 0]
    np.testing.assert_array_equal(ds.images.reshape(4, -1), images[[1, 3, 2, 0]])


def test_failed_write_keeps_the_previous_csv(tiny_fer_folder, tmp_path, monkeypatch):
    ds = load_folder(tiny_fer_folder)
    path = tmp_path / "fer2013.csv"
    path.write_text("previous content\n")

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)  # the atomic write's final rename fails
    with pytest.raises(OSError, match="No space left"):
        write_csv(ds, path)
    assert path.read_text() == "previous content\n"
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_load_dataset_accepts_a_folder_a_csv_or_a_folder_holding_fer2013_csv(tiny_fer_folder, tmp_path):
    from_folder = load_dataset(tiny_fer_folder)
    csv_dir = tmp_path / "csv_only"
    csv_path = write_csv(from_folder, csv_dir / "fer2013.csv")
    assert_same_data(from_folder, load_dataset(csv_path))
    from_csv_dir = load_dataset(csv_dir)
    assert from_csv_dir.source == str(csv_path.resolve())
    assert_same_data(from_folder, from_csv_dir)


# --- real FER-2013 -------------------------------------------------------------------------------------------

def copy_fer2013_subset(source: Path, target: Path, per_usage: int) -> Path:
    """Copy the first `per_usage` files (by name) of each usage, keeping the class folders."""
    for usage in USAGES:
        split_folder = "train" if usage == "Training" else "test"
        files = sorted(source.glob(f"{split_folder}/*/{usage}_*.jpg"), key=lambda p: p.name)[:per_usage]
        for path in files:
            destination = target / split_folder / path.parent.name / path.name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
    return target


def test_real_subset_loads_identically_from_folder_and_csv(fer2013_dir, tmp_path):
    subset = copy_fer2013_subset(fer2013_dir, tmp_path / "fer2013", per_usage=300)
    ds = load_folder(subset)
    assert {usage: sum(c.values()) for usage, c in ds.counts().items()} == dict.fromkeys(USAGES, 300)
    for index in (0, 299, 300, 899):
        (path,) = subset.glob(f"*/{CLASS_NAMES[ds.labels[index]]}/{ds.ids[index]}.jpg")
        assert ds.ids[index].startswith(ds.usage[index] + "_")
        np.testing.assert_array_equal(ds.images[index], np.asarray(Image.open(path)))
    back = load_csv(write_csv(ds, tmp_path / "subset.csv"))
    assert_same_data(ds, back)


@pytest.mark.fer2013
def test_full_real_fer2013_counts(fer2013_dir):
    ds = load_folder(fer2013_dir, use_cache=False)  # no 87 MB cache file in the pytest tmp folder
    counts = ds.counts()
    assert {usage: sum(c.values()) for usage, c in counts.items()} == {
        "Training": 28_709, "PublicTest": 3_589, "PrivateTest": 3_589}
    assert counts["Training"] == {"angry": 3_995, "disgust": 436, "fear": 4_097, "happy": 7_215, "sad": 4_830,
                                  "surprise": 3_171, "neutral": 4_965}
    assert ds.images.shape == (35_887, 48, 48)


# --- cache ----------------------------------------------------------------------------------------------------

def cache_files(cache_folder: Path) -> list[Path]:
    return sorted(cache_folder.glob("*.npz")) if cache_folder.exists() else []


def forbid_decoding(monkeypatch):
    def decode_images(*args, **kwargs):
        raise AssertionError("images were decoded although the cache should have been used")

    monkeypatch.setattr(folder, "decode_images", decode_images)


def test_second_load_comes_from_the_cache(tiny_fer_folder, isolated_data_cache, monkeypatch):
    first = load_folder(tiny_fer_folder)
    assert len(cache_files(isolated_data_cache)) == 1
    forbid_decoding(monkeypatch)
    second = load_folder(tiny_fer_folder)
    assert_same_data(first, second)
    np.testing.assert_array_equal(first.ids, second.ids)
    assert second.source == first.source


def test_changed_image_invalidates_the_cache(tiny_fer_folder):
    load_folder(tiny_fer_folder)
    path = sorted((tiny_fer_folder / "test" / "happy").glob("*.jpg"))[0]
    rewrite_image(path, np.full((48, 48), 200, np.uint8))
    ds = load_folder(tiny_fer_folder)
    np.testing.assert_array_equal(ds.images[list(ds.ids).index(path.stem)], np.asarray(Image.open(path)))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other_pixels"])
def test_damaged_cache_file_is_ignored_and_rebuilt(tiny_fer_folder, isolated_data_cache, damage):
    original = load_folder(tiny_fer_folder)
    (cache_file,) = cache_files(isolated_data_cache)
    if damage == "garbage":
        cache_file.write_bytes(b"this is not a zip file")
    elif damage == "truncated":
        cache_file.write_bytes(cache_file.read_bytes()[: cache_file.stat().st_size // 2])
    else:  # a readable file whose pixels no longer match the stored fingerprint
        with np.load(cache_file) as npz:
            arrays = dict(npz)
        arrays["images"] = 255 - arrays["images"]
        np.savez(cache_file, **arrays)
    rebuilt = load_folder(tiny_fer_folder)
    assert_same_data(original, rebuilt)
    assert cache.load_cached(cache_file.stem, name="fer2013", source="") is not None  # rewritten, valid again


def test_use_cache_false_writes_nothing(tiny_fer_folder, isolated_data_cache):
    load_folder(tiny_fer_folder, use_cache=False)
    assert cache_files(isolated_data_cache) == []


def test_rgb_to_gray_is_part_of_the_cache_key(tiny_fer_folder):
    path = sorted((tiny_fer_folder / "train" / "sad").glob("*.jpg"))[0]
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(path)
    load_folder(tiny_fer_folder, rgb_to_gray=True)
    with pytest.raises(FerBenchError, match="RGB image"):
        load_folder(tiny_fer_folder)


def test_csv_loads_are_cached(tiny_fer_folder, tmp_path, isolated_data_cache, monkeypatch):
    csv_path = write_csv(load_folder(tiny_fer_folder), tmp_path / "fer2013.csv")
    first = load_csv(csv_path)
    monkeypatch.setattr(csv_format, "_parse", lambda path: pytest.fail("CSV parsed again"))
    assert_same_data(first, load_csv(csv_path))


def test_cache_folder_location(monkeypatch, tmp_path):
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "explicit"))
    assert cache.cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("FER_BENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "fer-bench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "fer-bench"


# --- discovery ------------------------------------------------------------------------------------------------

@pytest.fixture
def nowhere(tmp_path, monkeypatch) -> Path:
    """A working folder with no data, FER2013_DIR unset and an empty kagglehub cache."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("FER2013_DIR", raising=False)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    return workdir


def kagglehub_version(tmp_path: Path, version: int) -> Path:
    return tmp_path / "kagglehub" / "datasets" / "msambare" / "fer2013" / "versions" / str(version)


def test_explicit_path_comes_first_and_must_exist(nowhere, make_fer_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("FER2013_DIR", str(make_fer_folder(tmp_path / "env", SPEC)))
    explicit = make_fer_folder(tmp_path / "explicit", SPEC)
    assert find_fer2013(explicit) == explicit
    missing = tmp_path / "no_such_folder"
    with pytest.raises(FerBenchError, match="no_such_folder: no such file or folder"):
        find_fer2013(missing)
    with pytest.raises(FerBenchError, match="no_such_folder"):
        load_dataset(missing, fallback_to_synthetic=True)


def test_env_var_comes_before_the_working_folder(nowhere, make_fer_folder, tmp_path, monkeypatch):
    make_fer_folder(nowhere / "data" / "fer2013", SPEC)
    env_dir = make_fer_folder(tmp_path / "env", SPEC)
    monkeypatch.setenv("FER2013_DIR", str(env_dir))
    assert find_fer2013() == env_dir
    assert search_locations()[:2] == [env_dir, nowhere / "data" / "fer2013"]


def test_env_var_naming_a_missing_folder_is_an_error(nowhere, monkeypatch, tmp_path):
    monkeypatch.setenv("FER2013_DIR", str(tmp_path / "typo"))
    with pytest.raises(FerBenchError, match="FER2013_DIR=.*typo: no such file or folder"):
        load_dataset()


def test_working_folder_comes_before_the_kagglehub_cache(nowhere, make_fer_folder, tmp_path):
    make_fer_folder(kagglehub_version(tmp_path, 2), SPEC)
    local = make_fer_folder(nowhere / "data" / "fer2013", SPEC)
    assert find_fer2013() == local
    assert load_dataset().source == str(local.resolve())


def test_kagglehub_cache_highest_usable_version_first(nowhere, make_fer_folder, tmp_path):
    make_fer_folder(kagglehub_version(tmp_path, 2), SPEC)
    newest = make_fer_folder(kagglehub_version(tmp_path, 10), SPEC)  # 10 > 9 > 2 numerically, not as text
    kagglehub_version(tmp_path, 9).mkdir()
    assert search_locations()[1:] == [newest, kagglehub_version(tmp_path, 9), kagglehub_version(tmp_path, 2)]
    assert find_fer2013() == newest
    shutil.rmtree(newest / "test")  # an incomplete download is skipped
    assert find_fer2013() == kagglehub_version(tmp_path, 2)


def test_working_folder_holding_only_a_csv_is_found(nowhere, tiny_fer_folder):
    csv_path = write_csv(load_folder(tiny_fer_folder), nowhere / "data" / "fer2013" / "fer2013.csv")
    assert find_fer2013() == csv_path


def test_nothing_found_without_fallback_is_an_error(nowhere, tmp_path):
    assert find_fer2013() is None
    assert search_locations() == [nowhere / "data" / "fer2013",
                                  tmp_path / "kagglehub" / "datasets" / "msambare" / "fer2013" / "versions"]
    with pytest.raises(FerBenchError, match="FER-2013 not found") as error:
        load_dataset(fallback_to_synthetic=False)
    assert str(nowhere / "data" / "fer2013") in str(error.value) and "\n" not in str(error.value)


def test_nothing_found_falls_back_to_synthetic_data_with_one_line(nowhere, capsys):
    pytest.importorskip("fer_bench.data.synthetic")
    ds = load_dataset()
    assert ds.name == "synthetic" and len(ds) > 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "FER-2013 not found" in err and str(nowhere / "data" / "fer2013") in err and "synthetic" in err


# --- download -------------------------------------------------------------------------------------------------

def fake_kagglehub(dataset_download) -> types.ModuleType:
    module = types.ModuleType("kagglehub")
    module.dataset_download = dataset_download
    return module


def test_download_returns_the_kagglehub_folder(monkeypatch, tiny_fer_folder):
    handles = []

    def dataset_download(handle):
        handles.append(handle)
        return str(tiny_fer_folder)

    monkeypatch.setitem(sys.modules, "kagglehub", fake_kagglehub(dataset_download))
    assert download_fer2013() == tiny_fer_folder
    assert handles == ["msambare/fer2013"]


def test_download_failure_is_one_line_with_the_reason(monkeypatch):
    def offline(handle):
        raise ConnectionError("Failed to resolve 'www.kaggle.com'\n(Name or service not known)")

    monkeypatch.setitem(sys.modules, "kagglehub", fake_kagglehub(offline))
    with pytest.raises(FerBenchError) as error:
        download_fer2013()
    message = str(error.value)
    assert message.startswith("could not download FER-2013 from Kaggle: Failed to resolve 'www.kaggle.com';")
    assert "--data" in message and "\n" not in message


def test_download_of_a_folder_without_data_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "kagglehub", fake_kagglehub(lambda handle: str(tmp_path)))
    with pytest.raises(FerBenchError, match="holds no train/ and test/"):
        download_fer2013()


def test_download_without_kagglehub_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # makes `import kagglehub` raise ImportError
    with pytest.raises(FerBenchError, match=r"pip install 'fer-bench\[download\]'"):
        download_fer2013()
