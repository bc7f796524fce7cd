"""Tests of ``psic demo``'s command (compressai_psic.demo.command): a short run,
and its output folder checked before any work."""

from __future__ import annotations

import json

import pytest

from compressai_psic import cli


def test_cli_demo_smoke(tmp_path, capsys):
    out = tmp_path / "demo"
    status = cli.main(
        ["demo", "-n", "10", "-o", str(out), "--no-robustness", "--quiet"]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "protected" in printed and "Recall@1" in printed
    assert (out / "grid.png").is_file()
    assert json.loads((out / "report.json").read_text())["num_images"] == 10


class _Ran(Exception):
    """Raised by a stand-in for the demo's slow work."""


def _no_slow_work(**kwargs):
    raise _Ran(kwargs["output_dir"])


@pytest.mark.parametrize("existing", ["grid.png", "report.json"])
def test_cli_demo_refuses_an_earlier_runs_output_before_any_work(
    tmp_path, capsys, monkeypatch, existing
):
    monkeypatch.setattr("compressai_psic.demo.command.run_demo", _no_slow_work)
    (tmp_path / existing).write_text("mine")
    status = cli.main(["demo", "-n", "4", "-o", str(tmp_path), "--quiet"])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"psic: error: {tmp_path / existing} exists; pass -f/--force to replace "
        "it or -o another folder"
    )
    assert (tmp_path / existing).read_text() == "mine"
    # Asked to, it goes on (here into the stand-in).
    with pytest.raises(_Ran):
        cli.main(["demo", "-n", "4", "-o", str(tmp_path), "--quiet", "-f"])


def test_cli_demo_refuses_a_file_as_output_dir(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("compressai_psic.demo.command.run_demo", _no_slow_work)
    target = tmp_path / "out"
    target.write_text("mine")
    for force in ([], ["-f"]):
        assert cli.main(["demo", "-n", "4", "-o", str(target), *force]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"psic: error: --output-dir {target}: exists and is not a folder"
    assert target.read_text() == "mine"


def test_cli_demo_writes_into_an_existing_folder_without_outputs(tmp_path, monkeypatch):
    monkeypatch.setattr("compressai_psic.demo.command.run_demo", _no_slow_work)
    (tmp_path / "other.txt").write_text("mine")
    with pytest.raises(_Ran, match=str(tmp_path)):
        cli.main(["demo", "-n", "4", "-o", str(tmp_path), "--quiet"])
