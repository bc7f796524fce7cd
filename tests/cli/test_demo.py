"""Tests of the ``psic demo`` command's wrapper (compressai_psic.cli.demo): its
dependency check. The demo itself is tested in tests/demo."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ..helpers import ROOT


@pytest.mark.slow
def test_demo_without_open_clip_names_the_extra(tmp_path):
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'open_clip':\n"
        "            raise ModuleNotFoundError(\"No module named 'open_clip'\")\n"
        "sys.meta_path.insert(0, Block())\n"
        "from compressai_psic.cli import main\n"
        f"sys.exit(main(['demo', '-n', '2', '-o', {str(tmp_path / 'd')!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "psic demo needs open_clip" in lines[0]
    assert "pip install 'compressai-psic[demo]'" in lines[0]
    assert not (tmp_path / "d").exists()
