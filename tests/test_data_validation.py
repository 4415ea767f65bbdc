"""Every malformed input raises FerBenchError with one line that names the file (or CSV line), and writes nothing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_bench.data import folder, load_csv, load_dataset, load_folder
from fer_bench.errors import FerBenchError

VALID_PIXELS = " ".join(str(v % 256) for v in range(48 * 48))


@pytest.fixture
def expect_error(isolated_data_cache):
    """Call a loader, expect a one-line FerBenchError matching `pattern`, check no cache file was written."""

    def check(load, *args, pattern: str, **kwargs) -> str:
        with pytest.raises(FerBenchError, match=pattern) as error:
            load(*args, **kwargs)
        message = str(error.value)
        assert "\n" not in message
        assert not isolated_data_cache.exists() or list(isolated_data_cache.iterdir()) == []
        return message

    return check


def an_image(root: Path, split_folder: str = "train", class_name: str = "happy") -> Path:
    return sorted((root / split_folder / class_name).glob("*.jpg"))[0]


# Each breaker damages a valid tiny folder and returns (the path the message must name, the expected problem).
def truncated_half(root):
    path = an_image(root)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path, "corrupt or truncated image"


def truncated_end_marker(root):
    path = an_image(root)
    path.write_bytes(path.read_bytes()[:-2])  # only the JPEG end-of-image marker is missing
    return path, "corrupt or truncated image"


def zero_bytes(root):
    path = an_image(root, "test", "sad")
    path.write_bytes(b"")
    return path, r"empty file \(0 bytes\)"


def text_named_jpg(root):
    path = an_image(root, "test", "neutral")
    path.write_text("not really a picture\n")
    return path, "not a JPEG or PNG image"


def wrong_size(root):
    path = an_image(root)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(path)
    return path, "image is 64x64 pixels, expected 48x48"


def rgb_image(root):
    path = an_image(root, "train", "fear")
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(path)
    return path, r"RGB image, expected 8-bit grayscale; pass --rgb-to-gray"


def sixteen_bit_png(root):
    path = an_image(root).with_name("Training_999999999.png")
    Image.fromarray(np.zeros((48, 48), np.uint16)).save(path)
    return path, "unsupported image mode I"


def stray_file_in_class_folder(root):
    path = root / "train" / "angry" / "notes.txt"
    path.write_text("hello")
    return path, "stray file, not an image"


def stray_folder_in_class_folder(root):
    path = root / "test" / "angry" / "more"
    path.mkdir()
    return path, "stray folder inside a class folder"


def stray_file_next_to_class_folders(root):
    path = root / "test" / "labels.csv"
    path.write_text("a,b\n")
    return path, "stray file next to the class folders"


def unknown_class_folder(root):
    path = root / "train" / "contempt"
    path.mkdir()
    shutil.copy(an_image(root), path / "Training_424242.jpg")
    return path, "unknown class folder 'contempt'"


def public_test_image_in_train(root):
    path = an_image(root).with_name("PublicTest_424242.jpg")
    shutil.copy(an_image(root), path)
    return path, r"unexpected file name in train/, expected Training_<id>\.jpg"


def unnumbered_name_in_test(root):
    path = an_image(root, "test", "sad").with_name("face.jpg")
    shutil.copy(an_image(root, "test", "sad"), path)
    return path, "unexpected file name in test/, expected PublicTest_<id>.jpg or PrivateTest_<id>.jpg"


def missing_train(root):
    shutil.rmtree(root / "train")
    return root, "missing train/"


def missing_test(root):
    shutil.rmtree(root / "test")
    return root, "missing test/"


def no_private_test_images(root):
    for path in root.glob("test/*/PrivateTest_*.jpg"):
        path.unlink()
    return root / "test", "no PrivateTest images"


BREAKERS = [truncated_half, truncated_end_marker, zero_bytes, text_named_jpg, wrong_size, rgb_image,
            sixteen_bit_png, stray_file_in_class_folder, stray_folder_in_class_folder,
            stray_file_next_to_class_folders, unknown_class_folder, public_test_image_in_train, unnumbered_name_in_test,
            missing_train, missing_test, no_private_test_images]


@pytest.mark.parametrize("breaker", BREAKERS, ids=[b.__name__ for b in BREAKERS])
def test_broken_folder_is_rejected_naming_the_path(tiny_fer_folder, expect_error, breaker):
    named_path, problem = breaker(tiny_fer_folder)
    message = expect_error(load_dataset, tiny_fer_folder, pattern=problem)
    assert message.startswith(f"{named_path}:")


def test_rgb_image_is_accepted_with_rgb_to_gray(tiny_fer_folder):
    path, _ = rgb_image(tiny_fer_folder)
    ds = load_folder(tiny_fer_folder, rgb_to_gray=True)
    assert path.stem in set(ds.ids)


def test_first_bad_file_in_data_order_is_reported(tiny_fer_folder, expect_error):
    bad = sorted(tiny_fer_folder.glob("train/*/*.jpg"), key=lambda p: int(p.stem.split("_")[1]))
    for path in (bad[3], bad[-1]):
        path.write_bytes(b"")
    message = expect_error(load_folder, tiny_fer_folder, pattern="empty file")
    assert message.startswith(str(bad[3]))


def test_missing_path_is_rejected(tmp_path, expect_error):
    expect_error(load_dataset, tmp_path / "nothing_here", pattern="nothing_here: no such file or folder")
    expect_error(load_folder, tmp_path / "nothing_here", pattern="nothing_here: no such file or folder")
    expect_error(load_csv, tmp_path / "nothing.csv", pattern="nothing.csv: no such file")


def test_a_file_that_is_neither_csv_nor_folder_is_rejected(tmp_path, expect_error):
    path = tmp_path / "fer2013.zip"
    path.write_bytes(b"PK")
    expect_error(load_dataset, path, pattern="fer2013.zip: not a .csv file")


def test_unreadable_class_folder_is_rejected(tiny_fer_folder, expect_error, monkeypatch):
    locked = tiny_fer_folder / "test" / "surprise"
    real_scandir = os.scandir

    def scandir(path):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    message = expect_error(load_dataset, tiny_fer_folder, pattern="permission denied")
    assert message.startswith(f"{locked}:")


def test_unreadable_image_is_rejected(tiny_fer_folder, expect_error, monkeypatch):
    locked = an_image(tiny_fer_folder, "test", "disgust")

    def guarded_open(path, *args, **kwargs):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(folder, "open", guarded_open, raising=False)
    message = expect_error(load_dataset, tiny_fer_folder, pattern="permission denied")
    assert message.startswith(f"{locked}:")


# --- CSV ------------------------------------------------------------------------------------------------------

def csv_file(tmp_path: Path, *rows: str, header: str = "emotion,pixels,Usage") -> Path:
    path = tmp_path / "fer2013.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def row(emotion="3", pixels=VALID_PIXELS, usage="Training") -> str:
    return f"{emotion},{pixels},{usage}"


def replace_pixel(position: int, value: str) -> str:
    values = VALID_PIXELS.split(" ")
    values[position - 1] = value
    return " ".join(values)


CSV_CASES = {
    "missing_column": (("emotion,pixels", "0," + VALID_PIXELS), r"line 1: missing column\(s\) Usage"),
    "too_few_pixels": (("emotion,pixels,Usage", row(), row(), row(pixels=VALID_PIXELS.rsplit(" ", 1)[0])),
                       r"line 4: 2303 pixel values, expected 2304 \(48x48\)"),
    "too_many_pixels": (("emotion,pixels,Usage", row(pixels=VALID_PIXELS + " 7")),
                        "line 2: 2305 pixel values, expected 2304"),
    "non_numeric_pixel": (("emotion,pixels,Usage", row(), row(pixels=replace_pixel(5, "12a"))),
                          "line 3: pixel 5 is '12a', not an integer 0..255"),
    "fractional_pixel": (("emotion,pixels,Usage", row(pixels=replace_pixel(2304, "1.5"))),
                         "line 2: pixel 2304 is '1.5', not an integer"),
    "pixel_above_255": (("emotion,pixels,Usage", row(), row(pixels=replace_pixel(1, "256"))),
                        r"line 3: pixel 1 is 256, outside 0\.\.255"),
    "negative_pixel": (("emotion,pixels,Usage", row(pixels=replace_pixel(100, "-1"))),
                       r"line 2: pixel 100 is -1, outside 0\.\.255"),
    "label_7": (("emotion,pixels,Usage", row(), row(emotion="7")), r"line 3: emotion '7' is not a label 0\.\.6"),
    "label_not_a_number": (("emotion,pixels,Usage", row(emotion="happy")), "line 2: emotion 'happy' is not a label"),
    "unknown_usage": (("emotion,pixels,Usage", row(usage="Validation")),
                      "line 2: unknown Usage 'Validation', expected one of Training, PublicTest, PrivateTest"),
    "missing_field": (("emotion,pixels,Usage", "3," + VALID_PIXELS), "line 2: 2 fields, expected 3"),
    "header_only": (("emotion,pixels,Usage",), "no data rows after the header"),
}


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_broken_csv_is_rejected_naming_the_line(tmp_path, expect_error, case):
    (header, *rows), problem = CSV_CASES[case]
    path = csv_file(tmp_path, *rows, header=header)
    message = expect_error(load_dataset, path, pattern=problem)
    assert message.startswith(str(path))


def test_line_numbers_count_blank_lines_as_an_editor_does(tmp_path, expect_error):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + row() + "\n\n" + row(emotion="9") + "\n")
    expect_error(load_csv, path, pattern="line 4: emotion '9'")


def test_empty_csv_is_rejected(tmp_path, expect_error):
    path = tmp_path / "fer2013.csv"
    path.write_bytes(b"")
    expect_error(load_csv, path, pattern="fer2013.csv: empty CSV file")


def test_binary_file_named_csv_is_rejected(tmp_path, expect_error):
    path = tmp_path / "fer2013.csv"
    path.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x80\x81")
    expect_error(load_csv, path, pattern="fer2013.csv: not a text CSV file")
