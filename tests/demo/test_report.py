"""Tests of compressai_psic.demo.report: the demo's summary table, from a report
written by hand (the demo run itself is tested in test_pipeline.py)."""

from __future__ import annotations

from compressai_psic.demo.report import format_table


def _recall(i2t, t2i):
    return {"i2t": {"R@1": i2t}, "t2i": {"R@1": t2i}}


def _entry(name, role, protected):
    return {
        "name": name,
        "role": role,
        "recall": {
            "original": _recall(0.9, 0.8),
            "full": _recall(0.85, 0.75),
            "protected": _recall(protected, protected),
            "protected_jpeg75": _recall(0.2, 0.25),
        },
        "asr": {
            "protected": {
                "vs_full": _recall(0.7, 0.6),
                "vs_original": _recall(0.65, 0.55),
            }
        },
    }


def _report(**extra):
    report = {
        "num_images": 20,
        "bpp": 0.51234,
        "psnr": {"full": 30.126, "protected": None},
        "attacks": ["jpeg75", "greyworld"],
        "vlps": [_entry("demo-vlp", "train", 0.1), _entry("eval-rn", "eval", 0.15)],
    }
    report.update(extra)
    return report


def test_the_table_has_shared_figures_then_one_block_per_vlp():
    lines = format_table(_report()).splitlines()
    assert lines[0] == "20 test scenes, one bitstream each; chance Recall@1 = 0.050"
    assert lines[1].split() == ["rate", "0.512", "bpp", "(real", "bytes)"]
    assert lines[2].endswith("30.13 / n/a dB")  # a missing figure is n/a
    blocks = "\n".join(lines).split("\n\n")[1:]
    assert [b.splitlines()[0].split(",")[1].split()[:2] for b in blocks] == [
        ["demo-vlp", "(train)"],
        ["eval-rn", "(eval)"],
    ]
    first = blocks[0].splitlines()
    # Attacks without a recall (greyworld here) get no row.
    assert [line.split()[0] for line in first[1:5]] == [
        "original",
        "full",
        "protected",
        "protected_jpeg75",
    ]
    assert first[3].split()[1:] == ["0.100", "0.100"]
    assert first[-2].split()[-2:] == ["0.700", "0.600"]
    assert "ASR@1 vs originals" in first[-1]
    assert "MS-SSIM" not in lines[3] and "worst" not in "\n".join(lines)


def test_optional_figures_and_the_worst_attacks_appear_when_given():
    summary = {
        "name": "demo-vlp",
        "i2t": {"worst_blind": 0.2, "worst_blind_attack": "jpeg75"},
        "t2i": {"worst_blind": 0.25, "worst_blind_attack": "jpeg75"},
    }
    table = format_table(
        _report(
            ms_ssim={"full": 0.98765, "protected": 0.9},
            ms_ssim_window=3,
            image_dependence={
                "common_share": 0.4,
                "global_offset_share": 0.1,
                "mean_offset_rgb": [0.01, -0.02, 0.0],
            },
            fit={"num_images": 50, "dataset": "scenes:val:seed0:50"},
            summary={"vlps": [summary]},
        )
    )
    assert "MS-SSIM full / protected 0.9877 / 0.9000 (window 3)" in table
    assert "common to all images 0.400 of its energy" in table
    assert "shift 0.100 (+0.010/-0.020/+0.000)" in table
    assert "fitted on 50 other scenes (scenes:val:seed0:50)" in table
    (worst,) = [line for line in table.splitlines() if "worst blind" in line]
    assert worst.split()[-4:] == ["0.250", "(jpeg75", "/", "jpeg75)"]


def test_a_report_of_one_vlp_without_a_vlps_list():
    report = _report()
    entry = report.pop("vlps")[0]
    report.update(recall=entry["recall"], asr=entry["asr"], vlp="scene-clip")
    table = format_table(report)
    assert "Recall@1, scene-clip (train)" in table
    assert table.count("Recall@1,") == 1
