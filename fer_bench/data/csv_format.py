"""Read and write FER-2013 in the original challenge CSV format.

    emotion,pixels,Usage
    0,70 80 82 ... (2,304 space-separated integers 0..255, row-major 48x48),Training

Columns may come in any order; extra columns are ignored. Rows are ordered by usage (Training, PublicTest,
PrivateTest), keeping file order within a usage, and get the ids "row<k>" (k = 0-based data row in the file).
Problems are reported with the line number an editor shows (the header is line 1).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from fer_bench import CLASS_NAMES, IMAGE_SIZE, USAGES
from fer_bench.atomic import atomic_file
from fer_bench.data import cache
from fer_bench.data.dataset import Dataset
from fer_bench.errors import FerBenchError

COLUMNS = ("emotion", "pixels", "Usage")
N_PIXELS = IMAGE_SIZE * IMAGE_SIZE
_NOT_PIXEL_TEXT = re.compile(r"[^0-9\s+-]")

# Text of each pixel value followed by a space, zero-padded to 4 bytes: writing becomes a table look-up.
_PIXEL_TEXT = np.zeros((256, 4), dtype=np.uint8)
for _value in range(256):
    _text = f"{_value} ".encode()
    _PIXEL_TEXT[_value, :len(_text)] = np.frombuffer(_text, dtype=np.uint8)


def load_csv(path: Path | str, *, rgb_to_gray: bool = False, use_cache: bool = True) -> Dataset:
    """FER-2013 from a fer2013.csv-style file as a Dataset named "fer2013".

    `rgb_to_gray` is accepted for symmetry with load_folder and ignored: CSV pixels are gray by construction."""
    path = Path(path)
    if not path.exists():
        raise FerBenchError(f"{path}: no such file")
    if not path.is_file():
        raise FerBenchError(f"{path}: not a file")
    try:
        stat = path.stat()
    except OSError as exc:
        raise FerBenchError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    source = str(path.resolve())
    key = cache.cache_key("csv", [(path.name, stat.st_size, stat.st_mtime_ns)])
    if use_cache:
        cached = cache.load_cached(key, name="fer2013", source=source)
        if cached is not None:
            return cached
    images, labels, usage = _parse(path)
    ids = np.array([f"row{k}" for k in range(len(labels))], dtype=str)
    order = np.argsort(np.array([USAGES.index(u) for u in usage]), kind="stable")
    dataset = Dataset(name="fer2013", images=images[order], labels=labels[order],
                      usage=np.array(usage, dtype=str)[order], ids=ids[order], source=source)
    if use_cache:
        cache.save_cached(key, dataset)
    return dataset


def _parse(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rows, labels, usage = [], [], []
    try:
        # utf-8-sig: a CSV saved by a spreadsheet program may start with a byte-order mark.
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise FerBenchError(f"{path}: empty CSV file (expected the header {','.join(COLUMNS)})")
            header = [name.strip() for name in header]
            missing = [name for name in COLUMNS if name not in header]
            if missing:
                raise FerBenchError(f"{path}, line 1: missing column(s) {', '.join(missing)}; "
                                    f"the header is {','.join(header)!r}, expected {','.join(COLUMNS)}")
            emotion_at, pixels_at, usage_at = (header.index(name) for name in COLUMNS)
            for row in reader:
                if not any(field.strip() for field in row):
                    continue  # blank line, e.g. at the end of the file
                where = f"{path}, line {reader.line_num}"
                if len(row) != len(header):
                    raise FerBenchError(f"{where}: {len(row)} fields, expected {len(header)} ({','.join(header)})")
                labels.append(_parse_label(row[emotion_at], where))
                usage.append(_parse_usage(row[usage_at], where))
                rows.append(_parse_pixels(row[pixels_at], where))
    except UnicodeDecodeError:
        raise FerBenchError(f"{path}: not a text CSV file (cannot be decoded as UTF-8)") from None
    except csv.Error as exc:
        raise FerBenchError(f"{path}: malformed CSV ({exc})") from None
    except PermissionError:
        raise FerBenchError(f"{path}: permission denied, cannot read this file") from None
    except OSError as exc:
        raise FerBenchError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if not rows:
        raise FerBenchError(f"{path}: no data rows after the header")
    images = np.stack(rows).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    return images, np.array(labels, dtype=np.int64), usage


def _parse_label(text: str, where: str) -> int:
    text = text.strip()
    if not text.isdigit() or int(text) >= len(CLASS_NAMES):
        raise FerBenchError(f"{where}: emotion {text!r} is not a label 0..{len(CLASS_NAMES) - 1}")
    return int(text)


def _parse_usage(text: str, where: str) -> str:
    text = text.strip()
    if text not in USAGES:
        raise FerBenchError(f"{where}: unknown Usage {text!r}, expected one of {', '.join(USAGES)}")
    return text


def _parse_pixels(text: str, where: str) -> np.ndarray:
    try:
        # Parsing in C is what makes the full 35,887-row file load in seconds.
        values = np.fromstring(text, dtype=np.int64, sep=" ")
    except ValueError:
        values = None  # a token that is not an integer; found below for the message
    # fromstring stops quietly at a token like "12.5" (older NumPy: after reading its "12"), so a row whose last
    # pixel is fractional can still yield N_PIXELS values: any character but digits, signs and spaces is an error
    if values is None or values.size != N_PIXELS or _NOT_PIXEL_TEXT.search(text):
        tokens = text.split()
        for position, token in enumerate(tokens, start=1):
            if not token.lstrip("+-").isdigit() or _NOT_PIXEL_TEXT.search(token):
                raise FerBenchError(f"{where}: pixel {position} is {token!r}, not an integer 0..255")
        raise FerBenchError(f"{where}: {len(tokens)} pixel values, expected {N_PIXELS} ({IMAGE_SIZE}x{IMAGE_SIZE})")
    out_of_range = np.flatnonzero((values < 0) | (values > 255))
    if out_of_range.size:
        position = int(out_of_range[0])
        raise FerBenchError(f"{where}: pixel {position + 1} is {int(values[position])}, outside 0..255")
    return values.astype(np.uint8)


def _pixels_text(image: np.ndarray) -> bytes:
    padded = _PIXEL_TEXT[image.ravel()].ravel()
    return padded[padded != 0].tobytes()[:-1]  # drop the padding and the trailing space


def write_csv(dataset: Dataset, path: Path | str) -> Path:
    """Write `dataset` as emotion,pixels,Usage rows in dataset order; atomic (storage.atomic_file)."""
    path = Path(path)
    labels = np.asarray(dataset.labels)
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise ValueError(f"labels must be 0..{len(CLASS_NAMES) - 1} to be written as FER-2013 CSV")
    unknown = set(map(str, dataset.usage)) - set(USAGES)
    if unknown:
        raise ValueError(f"unknown usage values {sorted(unknown)}")
    with atomic_file(path) as fh:
        fh.write((",".join(COLUMNS) + "\n").encode())
        for image, label, usage in zip(dataset.images, labels, dataset.usage, strict=True):
            fh.write(b"%d,%s,%s\n" % (label, _pixels_text(image), str(usage).encode()))
    return path
