"""Load FER-2013 from the Kaggle folder layout (msambare/fer2013, as kagglehub downloads it).

    <root>/train/<class>/Training_<id>.jpg
    <root>/test/<class>/PublicTest_<id>.jpg and PrivateTest_<id>.jpg

<class> is one of angry, disgust, fear, happy, neutral, sad, surprise (mapped to the canonical label order of
`fer_bench.CLASS_NAMES`). `root` may also be a folder holding exactly one such layout (an unpacked archive).
Images are .jpg/.jpeg (or .png), 8-bit grayscale, 48x48. Hidden entries (names starting with ".", such as
.DS_Store or .ipynb_checkpoints) are ignored; any other stray file or folder is an error, so that a half-copied or
mixed-up data set is never benchmarked silently.

Order of the returned images: usage (Training, PublicTest, PrivateTest), then the number in the file name, then
the label (FER-2013 has a few file names that occur in two class folders). The ids are the file names without
extension ("PublicTest_123"); they are therefore not unique in the real data.
"""

from __future__ import annotations

import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fer_bench import CLASS_NAMES, IMAGE_SIZE, USAGES
from fer_bench.data import cache
from fer_bench.data.dataset import Dataset
from fer_bench.errors import FerBenchError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Split folder -> the usages its file names may carry.
SPLIT_FOLDERS = {"train": ("Training",), "test": ("PublicTest", "PrivateTest")}
# Modes that hold colour (or alpha) and become 8-bit gray with Image.convert("L") when rgb_to_gray is set.
CONVERTIBLE_MODES = ("RGB", "RGBA", "P", "PA", "LA", "CMYK", "YCbCr")
LAYOUT_HINT = "expected the Kaggle layout <root>/train/<class>/Training_<id>.jpg, <root>/test/<class>/*.jpg"

_FILE_NAME = re.compile(r"(Training|PublicTest|PrivateTest)_(\d+)")
_CLASS_INDEX = {name: index for index, name in enumerate(CLASS_NAMES)}
_CHUNK_SIZE = 256  # images per thread-pool task: large enough that scheduling overhead is negligible


@dataclass(frozen=True)
class ImageEntry:
    """One image file of the listing, with everything the ordering and the cache key need."""

    path: str
    relative: str
    usage: str
    number: int
    label: int
    size: int
    mtime_ns: int

    @property
    def id(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]


def is_kaggle_root(path: Path) -> bool:
    return (path / "train").is_dir() and (path / "test").is_dir()


def visible_entries(path: Path | str) -> list[os.DirEntry]:
    """Entries of a folder other than hidden ones, sorted by name; unreadable folders become FerBenchError."""
    try:
        with os.scandir(path) as entries:
            return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)
    except PermissionError:
        raise FerBenchError(f"{path}: permission denied, cannot list this folder") from None
    except FileNotFoundError:
        raise FerBenchError(f"{path}: no such folder") from None
    except NotADirectoryError:
        raise FerBenchError(f"{path}: not a folder") from None
    except OSError as exc:
        raise FerBenchError(f"{path}: cannot list this folder ({exc.strerror or exc})") from None


def find_layout_root(root: Path | str) -> Path:
    """The folder holding train/ and test/: `root` itself or its single non-hidden sub-folder."""
    root = Path(root)
    if not root.exists():
        raise FerBenchError(f"{root}: no such file or folder")
    if not root.is_dir():
        raise FerBenchError(f"{root}: not a folder ({LAYOUT_HINT})")
    if is_kaggle_root(root):
        return root
    children = [Path(e.path) for e in visible_entries(root) if e.is_dir()]
    if len(children) == 1 and is_kaggle_root(children[0]):
        return children[0]
    missing = " and ".join(f"{name}/" for name in SPLIT_FOLDERS if not (root / name).is_dir())
    raise FerBenchError(f"{root}: missing {missing} ({LAYOUT_HINT})")


def list_images(root: Path) -> list[ImageEntry]:
    """Every image below a layout root, validated by name and place, in data set order."""
    entries = []
    for split_folder, usages in SPLIT_FOLDERS.items():
        split_dir = root / split_folder
        for class_entry in visible_entries(split_dir):
            if not class_entry.is_dir():
                raise FerBenchError(f"{class_entry.path}: stray file next to the class folders; "
                                    f"{split_dir} must hold only the folders {', '.join(CLASS_NAMES)}")
            label = _CLASS_INDEX.get(class_entry.name.lower())
            if label is None:
                raise FerBenchError(f"{class_entry.path}: unknown class folder {class_entry.name!r}; "
                                    f"expected one of {', '.join(CLASS_NAMES)}")
            for file_entry in visible_entries(class_entry.path):
                relative = f"{split_folder}/{class_entry.name}/{file_entry.name}"
                entries.append(_image_entry(file_entry, relative, split_folder, usages, label))
    for usage in USAGES:
        if not any(e.usage == usage for e in entries):
            folder = next(name for name, usages in SPLIT_FOLDERS.items() if usage in usages)
            raise FerBenchError(f"{root / folder}: no {usage} images (expected {folder}/<class>/{usage}_<id>.jpg)")
    entries.sort(key=lambda e: (USAGES.index(e.usage), e.number, e.label, e.path))
    return entries


def _image_entry(entry: os.DirEntry, relative: str, split_folder: str, usages: tuple[str, ...],
                 label: int) -> ImageEntry:
    stem, extension = os.path.splitext(entry.name)
    if entry.is_dir():
        raise FerBenchError(f"{entry.path}: stray folder inside a class folder (expected only images)")
    if extension.lower() not in IMAGE_EXTENSIONS:
        raise FerBenchError(f"{entry.path}: stray file, not an image (expected {'/'.join(IMAGE_EXTENSIONS)})")
    match = _FILE_NAME.fullmatch(stem)
    if match is None or match.group(1) not in usages:
        expected = " or ".join(f"{usage}_<id>{extension}" for usage in usages)
        raise FerBenchError(f"{entry.path}: unexpected file name in {split_folder}/, expected {expected}")
    try:
        stat = entry.stat()
    except OSError as exc:
        raise FerBenchError(f"{entry.path}: cannot read file ({exc.strerror or exc})") from None
    return ImageEntry(path=entry.path, relative=relative, usage=match.group(1), number=int(match.group(2)),
                      label=label, size=stat.st_size, mtime_ns=stat.st_mtime_ns)


def decode_image(path: str, *, rgb_to_gray: bool = False) -> np.ndarray:
    """One image file as a uint8 (48, 48) array; anything unusable raises FerBenchError naming the file."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except PermissionError:
        raise FerBenchError(f"{path}: permission denied, cannot read this image") from None
    except OSError as exc:
        raise FerBenchError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if not data:
        raise FerBenchError(f"{path}: empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG", "PNG")) as image:
            # load() decodes now; with PIL's default ImageFile.LOAD_TRUNCATED_IMAGES=False a truncated file raises.
            image.load()
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                width, height = image.size
                raise FerBenchError(f"{path}: image is {width}x{height} pixels, expected {IMAGE_SIZE}x{IMAGE_SIZE}")
            if image.mode != "L":
                if image.mode not in CONVERTIBLE_MODES:
                    raise FerBenchError(f"{path}: unsupported image mode {image.mode}, expected 8-bit grayscale")
                if not rgb_to_gray:
                    raise FerBenchError(f"{path}: {image.mode} image, expected 8-bit grayscale; "
                                        f"pass --rgb-to-gray (rgb_to_gray=True) to convert it")
                image = image.convert("L")
            return np.asarray(image, dtype=np.uint8)
    except UnidentifiedImageError:
        raise FerBenchError(f"{path}: not a JPEG or PNG image (cannot be decoded)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise FerBenchError(f"{path}: corrupt or truncated image ({exc})") from None


def _worker_count() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def decode_images(paths: list[str], *, rgb_to_gray: bool = False) -> np.ndarray:
    """Decode many files into one (N, 48, 48) array, in threads (PIL releases the GIL while decoding).

    On a bad file, the error of the first bad file in `paths` order is raised."""
    images = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)

    def decode_chunk(start: int) -> None:
        for offset, path in enumerate(paths[start:start + _CHUNK_SIZE]):
            images[start + offset] = decode_image(path, rgb_to_gray=rgb_to_gray)

    starts = range(0, len(paths), _CHUNK_SIZE)
    with ThreadPoolExecutor(max_workers=_worker_count()) as pool:
        futures = [pool.submit(decode_chunk, start) for start in starts]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return images


def load_folder(root: Path | str, *, rgb_to_gray: bool = False, use_cache: bool = True) -> Dataset:
    """FER-2013 from the Kaggle folder layout (see the module docstring) as a Dataset named "fer2013"."""
    layout_root = find_layout_root(root)
    source = str(layout_root.resolve())
    entries = list_images(layout_root)
    key = cache.cache_key("folder", sorted((e.relative, e.size, e.mtime_ns) for e in entries),
                          rgb_to_gray=rgb_to_gray)
    if use_cache:
        cached = cache.load_cached(key, name="fer2013", source=source)
        if cached is not None:
            return cached
    images = decode_images([e.path for e in entries], rgb_to_gray=rgb_to_gray)
    dataset = Dataset(
        name="fer2013",
        images=images,
        labels=np.array([e.label for e in entries], dtype=np.int64),
        usage=np.array([e.usage for e in entries], dtype=str),
        ids=np.array([e.id for e in entries], dtype=str),
        source=source,
    )
    if use_cache:
        cache.save_cached(key, dataset)
    return dataset
