"""Tests of the protection report (compressai_psic.evaluation.protection)."""

import json

import pytest
import torch

from compressai_psic.datasets import SceneCaptions
from compressai_psic.evaluation.protection import (
    PROTECTION_ATTACKS,
    evaluate_protection,
    protection_summary,
)
from compressai_psic.vlp import tiny_vlp
from compressai_psic.zoo import bmshj2018_hyperprior


def r1(i2t, t2i):
    return {"i2t": {"R@1": i2t, "R@5": 1.0}, "t2i": {"R@1": t2i, "R@5": 1.0}}


def hand_report():
    return {
        "attacks": ["jpeg75", "blur1", "affine_fit", "inversion"],
        "psnr": {
            "protected_jpeg75": 30.5,
            "full_jpeg75": 33.0,
            "protected_blur1": 28.0,
            "full_blur1": 29.5,
            "protected_affine_fit": 31.0,
        },
        "vlps": [
            {
                "name": "seen",
                "role": "train",
                "recall": {
                    "original": r1(0.8, 0.7),
                    "full": r1(0.75, 0.7),
                    "protected": r1(0.2, 0.3),
                    "protected_jpeg75": r1(0.3, 0.25),
                    "protected_blur1": r1(0.5, 0.2),
                    # A fitted attack: not blind, never the worst blind one.
                    "protected_affine_fit": r1(0.9, 0.9),
                    "protected_inversion": r1(0.5, 0.7),
                },
            },
            {
                "name": "unseen",
                "role": "eval",
                "recall": {
                    "original": r1(0.6, 0.6),
                    "full": r1(0.6, 0.6),
                    "protected": r1(0.6, 0.7),
                    "protected_jpeg75": r1(0.5, 0.6),
                },
            },
        ],
    }


def test_protection_summary_hand_made():
    summary = protection_summary(hand_report())
    json.dumps(summary)
    assert summary["psnr"]["jpeg75"] == {"protected": 30.5, "full": 33.0}
    assert summary["psnr"]["blur1"] == {"protected": 28.0, "full": 29.5}
    assert summary["psnr"]["affine_fit"] == {"protected": 31.0, "full": None}
    assert summary["psnr"]["inversion"] == {"protected": None, "full": None}
    seen, unseen = summary["vlps"]
    assert (seen["name"], seen["role"]) == ("seen", "train")
    assert (unseen["name"], unseen["role"]) == ("unseen", "eval")
    i2t, t2i = seen["i2t"], seen["t2i"]
    assert (i2t["original"], i2t["full"], i2t["protected"]) == (0.8, 0.75, 0.2)
    assert i2t["worst_blind"] == 0.5 and i2t["worst_blind_attack"] == "blur1"
    assert t2i["worst_blind"] == 0.3 and t2i["worst_blind_attack"] == "none"
    assert i2t["inversion"] == 0.5
    assert i2t["inversion_recovered"] == pytest.approx(0.5)
    assert t2i["inversion_recovered"] == pytest.approx(1.0)
    # Nothing was lost on the unseen VLP: no inversion, protection kept.
    row = unseen["i2t"]
    assert "inversion" not in row and "inversion_recovered" not in row
    assert row["worst_blind"] == 0.6 and row["worst_blind_attack"] == "none"


def test_protection_summary_recovered_none_when_nothing_lost():
    report = hand_report()
    report["vlps"][1]["recall"]["protected_inversion"] = r1(0.7, 0.7)
    row = protection_summary(report)["vlps"][1]["i2t"]
    assert row["inversion"] == 0.7 and row["inversion_recovered"] is None


def test_protection_summary_custom_blind_list():
    summary = protection_summary(hand_report(), blind=["jpeg75"])
    assert summary["vlps"][0]["i2t"]["worst_blind"] == pytest.approx(0.3)
    assert summary["vlps"][0]["i2t"]["worst_blind_attack"] == "jpeg75"
    empty = protection_summary(hand_report(), blind=[])
    assert "worst_blind" not in empty["vlps"][0]["i2t"]


def test_protection_attacks_cover_all_kinds():
    assert {"noisyup", "blur1", "affine_fit"} <= set(PROTECTION_ATTACKS)
    assert "inversion" not in PROTECTION_ATTACKS


def test_evaluate_protection_end_to_end():
    torch.manual_seed(0)
    model = bmshj2018_hyperprior(1, N=16, M=24, trigger_dim=32).eval()
    kwargs = {"image_size": 32, "captions_per_image": 2, "distinct_captions": True}
    dataset = SceneCaptions("test", num_samples=3, **kwargs)
    fit = SceneCaptions("val", num_samples=2, **kwargs)
    own = SceneCaptions("train", num_samples=2, **kwargs)
    train_vlp, eval_vlp = tiny_vlp(seed=0), tiny_vlp(seed=1)
    with pytest.raises(ValueError, match="other images"):
        evaluate_protection(
            model, dataset, [train_vlp], [eval_vlp], fit, inversion_dataset=dataset,
            attacks=["blur1"], progress=False,
        )  # fmt: skip
    report = evaluate_protection(
        model,
        dataset,
        [train_vlp],
        [eval_vlp],
        fit,
        inversion_dataset=own,
        inversion_kwargs={"steps": 2, "batch_size": 2, "channels": 4, "layers": 2},
        attacks=["blur1", "offset_fit"],
        batch_size=2,
        progress=False,
    )
    json.dumps(report)
    assert report["inversion"]["steps"] == 2 and report["inversion"]["pairs"] == 2
    summary = report["summary"]
    assert set(summary["psnr"]) == {"blur1", "offset_fit", "inversion"}
    assert summary["psnr"]["blur1"]["full"] is not None  # blind: on full too
    assert len(summary["vlps"]) == 2
    for entry in summary["vlps"]:
        for direction in ("i2t", "t2i"):
            row = entry[direction]
            for key in ("original", "full", "protected", "worst_blind", "inversion"):
                assert 0 <= row[key] <= 1
            assert row["worst_blind"] >= row["protected"]
            assert row["worst_blind_attack"] in ("blur1", "none")
    assert summary == protection_summary(report)
