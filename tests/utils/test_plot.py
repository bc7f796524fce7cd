"""``python -m compressai_psic.utils.plot``: files given as arguments (``-f`` is
``--force``, as in every tool), BD-rates that cannot be computed say why."""

from __future__ import annotations

import json

import pytest

from compressai_psic.utils import plot


def _curve(path, name, bpp, psnr):
    results = {"bpp": bpp, "psnr-rgb": psnr}
    path.write_text(json.dumps({"name": name, "description": "", "results": results}))
    return path


def test_files_are_arguments_and_f_is_force(tmp_path, capsys):
    a = _curve(tmp_path / "a.json", "a", [0.2, 0.4, 0.8], [28.0, 31.0, 34.0])
    b = _curve(tmp_path / "b.json", "b", [0.25, 0.5, 0.9], [28.0, 31.0, 34.0])
    png = tmp_path / "rd.png"
    plot.main([str(a), "-r", str(b), "-o", str(png)])
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit) as refused:
        plot.main([str(a), "-o", str(png)])
    assert refused.value.code == 2
    assert "pass -f/--force" in capsys.readouterr().err
    # CompressAI's ``plot -f a.json b.json`` still reads both files (and replaces).
    plot.main(["-f", str(a), str(b), "-o", str(png)])
    with pytest.raises(SystemExit):
        plot.main(["-o", str(tmp_path / "none.png")])
    assert "give the eval_model JSON files" in capsys.readouterr().err


def test_bd_rate_not_computable_says_why(tmp_path, capsys):
    a = _curve(tmp_path / "a.json", "a", [0.2], [28.0])
    b = _curve(tmp_path / "b.json", "b", [0.3], [29.0])
    rows = plot.main([str(a), str(b), "--anchor", "a", "-o", str(tmp_path / "x.png")])
    assert rows[0]["bd_rate"] is None
    out = capsys.readouterr().out
    assert "BD-rate of b against a: n/a (akima needs at least" in out
