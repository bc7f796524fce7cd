"""Tests of compressai_psic.cli.output: what ``psic`` prints (notes, warnings,
errors above a progress bar) and its exit statuses."""

from __future__ import annotations

from compressai_psic.cli import output

from .helpers import run


def test_notes_and_warnings_are_prefixed_lines_on_stderr(capsys):
    output.note("created the output folder out")
    output.warn("a.png: alpha channel dropped")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "psic: note: created the output folder out",
        "psic: warning: a.png: alpha channel dropped",
    ]


def test_errors_print_as_given_with_and_without_a_progress_bar(capsys):
    for bar in (False, True):
        output.print_error("psic: error: a.psic: no such file", bar)
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err == "psic: error: a.psic: no such file\n"


def test_exit_statuses_are_those_of_the_commands(tmp_path, capsys):
    assert (output.EXIT_OK, output.EXIT_ERROR, output.PROG) == (0, 2, "psic")
    assert run("decompress", tmp_path / "missing.psic") == output.EXIT_ERROR
    assert capsys.readouterr().err.startswith(f"{output.PROG}: error: ")
    assert run("--help") == output.EXIT_OK
