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


def test_one_version_source_and_release_files():
    import ast

    from compressai_psic import __version__

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.9 and 3.10
        import tomli as tomllib
    with open(ROOT / "pyproject.toml", "rb") as f:
        pyproject = tomllib.load(f)
    project = pyproject["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    attr = pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "compressai_psic.__version__"
    # setuptools reads the literal without importing the package.
    tree = ast.parse((ROOT / "compressai_psic" / "__init__.py").read_text())
    literal = next(
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__version__"]
    )
    assert literal == __version__
    assert project["license"] == {"text": "BSD-3-Clause-Clear"}
    assert (ROOT / "LICENSE").read_text().startswith("The Clear BSD License")
    assert f"## {__version__}" in (ROOT / "CHANGELOG.md").read_text()
    assert (ROOT / "compressai_psic" / "py.typed").is_file()
    assert (
        "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["compressai_psic"]
    )
    assert any(c.startswith("License :: ") for c in project["classifiers"])
    assert project["urls"]["Paper"] == "https://arxiv.org/abs/2506.15201"
    # Extras named by the error messages and the README.
    extras = project["optional-dependencies"]
    assert any(d.startswith("open_clip_torch") for d in extras["demo"])
    assert any(d.startswith("bjontegaard") for d in extras["eval"])
    assert any(d.startswith("bjontegaard") for d in extras["dev"])


def test_demo_output_is_git_ignored():
    lines = (ROOT / ".gitignore").read_text().split()
    assert "psic-demo/" in lines
