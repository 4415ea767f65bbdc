"""The committed reports and README stay short enough to read: summary.md at most 250 lines with the headline and
findings on its first screen, README at most 220 lines (details live in the CSVs and docs/)."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the reports committed with the project (a user's own runs under results/ are theirs)
COMMITTED = [ROOT / "results" / "fer2013", ROOT / "results" / "synthetic-reference"]


@pytest.mark.parametrize("folder", COMMITTED, ids=[p.name for p in COMMITTED])
def test_a_committed_summary_is_at_most_250_lines_with_the_answer_first(folder):
    lines = (folder / "summary.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"{folder.name}/summary.md has {len(lines)} lines"
    headings = [k for k, line in enumerate(lines) if line.startswith("## ")]
    assert lines[headings[0]].startswith("## Headline") and lines[headings[1]] == "## Findings"
    assert headings[1] < 40  # the findings start on the first screen


def test_the_readme_is_at_most_220_lines():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 220
