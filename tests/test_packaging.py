"""The installed package is the source tree: every package folder is listed in pyproject.toml, so a wheel (tox,
a user's `pip install .`) holds every module that an editable install finds."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _listed_packages() -> set[str]:
    # tomllib is 3.11+; the project supports 3.10, and this one list is simple to read
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r"^packages\s*=\s*\[(.*?)\]", text, re.S | re.M)
    assert match, "pyproject.toml has no [tool.setuptools] packages list"
    return set(re.findall(r'"([\w.]+)"', match.group(1)))


def _package_folders() -> set[str]:
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "fer_bench").rglob("__init__.py")}
    found |= {"fer_bench.baselines"} if (ROOT / "baselines" / "__init__.py").is_file() else set()
    return found


def test_every_package_folder_is_listed_in_pyproject():
    assert _package_folders() - _listed_packages() == set()


def test_every_listed_package_exists():
    assert _listed_packages() - _package_folders() == set()
