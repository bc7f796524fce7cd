"""The parser, the command registry and ``python -m compressai_psic``."""

from __future__ import annotations

import runpy
import sys

import pytest

from compressai_psic import cli

from .helpers import (
    corrupt,
    run,
)


def test_usage_errors_and_help(capsys):
    assert run() == 2
    assert run("compress") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("psic") for line in err)
    assert run("--help") == 0
    assert "decompress" in capsys.readouterr().out


def test_register_command_adds_a_subcommand(capsys):
    calls = []

    def add_arguments(parser):
        parser.add_argument("--level", type=int, default=1)

    def run_extra(args):
        calls.append(args.level)
        return 0

    cli.register_command(cli.Command("extra", "test command", add_arguments, run_extra))
    try:
        assert run("extra", "--level", "5") == 0
        assert calls == [5]
        run("--help")
        assert "extra" in capsys.readouterr().out
    finally:
        del cli.COMMANDS["extra"]


def test_module_entry_point_has_no_traceback(valid_psic, monkeypatch, capsys):
    # ``python -m compressai_psic``, in this process (a subprocess costs seconds).
    bad = corrupt(valid_psic, "bit-flip")
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["psic", "decompress", str(bad)])
    with pytest.raises(SystemExit) as exit_status:
        runpy.run_module("compressai_psic", run_name="__main__", alter_sys=True)
    assert exit_status.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().startswith("psic: error:")


def test_version(capsys):
    from compressai_psic import __version__

    assert run("--version") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"psic {__version__} (compressai ")
