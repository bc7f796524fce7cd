"""The install lists every package of the source tree."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setuptools_config() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.9 and 3.10
        import tomli as tomllib
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]


def test_every_package_directory_is_listed():
    config = _setuptools_config()
    listed = set(config["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "compressai_psic").rglob("__init__.py")
    }
    missing = sorted(on_disk - listed)
    assert not missing, f"packages missing from pyproject.toml: {missing}"
    # Every listed package exists: in the tree, or mapped to another folder.
    mapped = config.get("package-dir", {})
    stale = sorted(name for name in listed - on_disk if name not in mapped)
    assert not stale, f"pyproject.toml lists packages that do not exist: {stale}"
    assert mapped["compressai_psic.zoo_files"] == "zoo"
