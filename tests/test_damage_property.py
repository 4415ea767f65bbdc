"""Property: a stored cell's predictions.csv or manifest.json damaged at random (cut at a random byte, a byte
flipped, a line deleted, a field replaced with garbage) makes `report` either succeed (the damage was harmless,
e.g. a digit changed within the stored tolerance) or exit 2 with exactly one line on stderr, no traceback, and
the folder unchanged. Few examples (hypothesis), on a copy of one cell of the shared tiny_grid: 6 per file in the
inner loop, 25 more (a report each) in the slow-marked thorough run."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import copy_grid, snapshot

hypothesis = pytest.importorskip("hypothesis", reason="property tests need hypothesis (pip install -e '.[dev]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fer_bench.cli import main  # noqa: E402

CELL = "runs/binary/logreg/seed0"
#: what a damaged field is replaced with
GARBAGE_TEXT = ["", "nan", "-1", "1e309", "inf", "abc", "0x10", "1,2", '"', "\x00", "PrivateTest", "é", " 0.5 "]
GARBAGE_JSON = [None, "", "garbage", -1, 0, 1.5, True, [], {}, [1, "x"], {"name": 3}, "x" * 300]


@pytest.fixture(scope="module")
def one_cell(tiny_grid, tmp_path_factory) -> Path:
    return copy_grid(tiny_grid, tmp_path_factory.mktemp("damage") / "out", cells=[CELL.removeprefix("runs/")])




def damage_bytes(data, content: bytes, kind: str) -> bytes:
    if kind == "truncate":
        return content[:data.draw(st.integers(0, max(len(content) - 1, 0)), label="cut at")]
    if kind == "flip":
        at = data.draw(st.integers(0, len(content) - 1), label="byte")
        return content[:at] + bytes([content[at] ^ data.draw(st.integers(1, 255), label="xor")]) + content[at + 1:]
    lines = content.split(b"\n")
    at = data.draw(st.integers(0, len(lines) - 1), label="line")
    return b"\n".join(lines[:at] + lines[at + 1:])


def damage_file(data, path: Path, garbage_field) -> None:
    """Damage `path` one of four ways, the last (a garbage field) in the file format's own terms."""
    kind = data.draw(st.sampled_from(["truncate", "flip", "delete line", "garbage field"]), label="damage")
    content = path.read_bytes()
    if kind == "garbage field":
        garbage_field(data, path, content)
    else:
        path.write_bytes(damage_bytes(data, content, kind))


def garbage_csv_field(data, path: Path, content: bytes) -> None:
    lines = content.decode("utf-8").split("\n")
    at = data.draw(st.integers(0, len([line for line in lines if line]) - 1), label="line")
    fields = lines[at].split(",")
    field = data.draw(st.integers(0, len(fields) - 1), label="field")
    fields[field] = data.draw(st.sampled_from(GARBAGE_TEXT), label="garbage")
    lines[at] = ",".join(fields)
    path.write_text("\n".join(lines), encoding="utf-8")


def garbage_json_field(data, path: Path, content: bytes) -> None:
    info = json.loads(content)
    key = data.draw(st.sampled_from(sorted(info)), label="key")
    value = info[key]
    if isinstance(value, dict) and value and data.draw(st.booleans(), label="nested"):
        value[data.draw(st.sampled_from(sorted(value)), label="subkey")] = data.draw(st.sampled_from(GARBAGE_JSON))
    else:
        info[key] = data.draw(st.sampled_from(GARBAGE_JSON), label="garbage")
    path.write_text(json.dumps(info, indent=2), encoding="utf-8")


def check_report(out: Path) -> None:
    before = snapshot(out)
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(["report", "--out", str(out)])
        except SystemExit as exc:
            code = exc.code
    err = stderr.getvalue()
    assert "Traceback" not in err, err
    if code == 0:
        return  # harmless damage: the report was written
    assert code == 2, (code, err)
    assert len(err.strip().splitlines()) == 1, err
    assert stdout.getvalue() == ""
    assert snapshot(out) == before


THOROUGH = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
QUICK = settings(THOROUGH, max_examples=6)
TARGETS = ["predictions.csv", "manifest.json"]


def damage_and_report(one_cell: Path, target: str, data) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        shutil.copytree(one_cell, out)
        path = out / CELL / target
        damage_file(data, path, garbage_csv_field if target == "predictions.csv" else garbage_json_field)
        check_report(out)


@pytest.mark.parametrize("target", TARGETS)
@QUICK
@given(data=st.data())
def test_a_randomly_damaged_cell_is_reported_or_refused_in_one_line(one_cell, target, data):
    damage_and_report(one_cell, target, data)


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
@THOROUGH
@given(data=st.data())
def test_a_randomly_damaged_cell_is_reported_or_refused_in_one_line_thoroughly(one_cell, target, data):
    damage_and_report(one_cell, target, data)
