"""``tools/cross_device.py`` and ``tools/decode_breakdown.py`` on the CPU: the
GPU script's steps work, and a CPU-to-CPU decode on another thread count is
never wrong."""

from __future__ import annotations

from compressai_psic.models import rans
from tools import cross_device, decode_breakdown


def test_cross_device_rows_on_the_cpu(tmp_path):
    report = cross_device.main(
        [
            "-a",
            "bmshj2018-hyperprior",
            "mbt2018",
            "--photos",
            "2",
            "--size",
            "64",
            "--ar-size",
            "64",
            "--encode-device",
            "cpu",
            "--encode-threads",
            "2",
            "--decode-threads",
            "1",
            "--json",
            str(tmp_path / "cross.json"),
        ]
    )
    modes = [(row["architecture"], row["mode"]) for row in report["rows"]]
    assert modes == [
        ("bmshj2018-hyperprior", "default"),
        ("bmshj2018-hyperprior", "portable"),
        ("mbt2018", "default"),
    ]
    for row in report["rows"]:
        assert row["wrong"] == 0 and row["same"] + row["detected"] == 2
    assert (tmp_path / "cross.json").exists()


def test_decode_breakdown_names_every_part():
    (row,) = decode_breakdown.main(
        ["-a", "bmshj2018-factorized", "--size", "64", "64", "--repeats", "3"]
    )["rows"]
    for part in ("base", "shielded", "pad", "base_padded", "check_finite"):
        assert row[part] >= 0
    # A shielded model's strings are decoded in bounds: nothing is padded.
    assert (row["padding_mib"] == 0) == rans.available()
