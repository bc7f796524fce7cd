"""Result files: strict JSON, no silent overwrite, checked loading."""

from __future__ import annotations

import json
import math

import pytest

from compressai_psic.utils.results import (
    check_new_files,
    finite_json,
    load_results,
    write_json,
)


def test_non_finite_numbers_are_written_as_null(tmp_path):
    data = {"results": {"ms-ssim-rgb": [math.nan, 0.9], "psnr-rgb": [math.inf, 30.0]}}
    path = write_json(tmp_path / "sub" / "r.json", dict(data, bpp=[0.1, 0.2]))
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["results"]["ms-ssim-rgb"] == [None, 0.9]
    assert finite_json((1, [math.nan], {"a": -math.inf})) == [1, [None], {"a": None}]


def test_load_results_round_trips_null_and_names_bad_files(tmp_path):
    path = write_json(
        tmp_path / "r.json",
        {"name": "x", "results": {"bpp": [0.1], "ms-ssim-rgb": [math.nan]}},
    )
    assert math.isnan(load_results(path)["results"]["ms-ssim-rgb"][0])
    bad = tmp_path / "bad.json"
    bad.write_text('{"recall": {}}')
    with pytest.raises(ValueError, match="bad.json: not an eval_model result"):
        load_results(bad)
    bad.write_text("{nope")
    with pytest.raises(ValueError, match="bad.json: not JSON"):
        load_results(bad)


def test_existing_files_are_refused_unless_forced(tmp_path):
    path = tmp_path / "a.json"
    check_new_files([path])
    path.write_text("{}")
    with pytest.raises(FileExistsError, match="a.json exists; pass -f/--force"):
        check_new_files([tmp_path / "b.json", path])
    check_new_files([path], force=True)
