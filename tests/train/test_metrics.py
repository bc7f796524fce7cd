"""Tests of compressai_psic.train.metrics: the epoch totals (each term averaged
over the samples it concerns), PSNR of each path, and the log line."""

from __future__ import annotations

import math

import pytest
import torch

from compressai_psic.train.metrics import MetricTotals, _format, _scalars


def test_terms_are_averaged_over_the_samples_they_concern():
    totals = MetricTotals()
    totals.update({"images": 4, "num_full": 1, "num_protected": 3, "loss": 2.0})
    totals.update({"images": 2, "num_full": 2, "num_protected": 0, "loss": 5.0})
    totals.update({"mse_loss_full": 0.01, "num_full": 1, "images": 1})
    summary = totals.summary()
    assert summary["loss"] == pytest.approx((2.0 * 4 + 5.0 * 2) / 6)
    assert summary["mse_loss_full"] == pytest.approx(0.01)
    assert summary["psnr_full"] == pytest.approx(20.0)
    assert "psnr_protected" not in summary  # no protected MSE was seen
    assert (summary["images"], summary["num_full"], summary["num_protected"]) == (
        7,
        4,
        3,
    )
    assert "vlp_loss" not in summary


def test_a_term_with_no_weight_is_left_out():
    totals = MetricTotals()
    totals.update({"images": 2, "num_protected": 0, "mse_loss_protected": 0.5})
    assert "mse_loss_protected" not in totals.summary()


def test_all_reduce_without_a_process_group_changes_nothing():
    totals = MetricTotals()
    totals.update({"images": 2, "loss": 1.5})
    before = totals.summary()
    totals.all_reduce(torch.device("cpu"))
    assert totals.summary() == before


def test_scalars_keep_numbers_and_one_element_tensors():
    result = {
        "loss": torch.tensor(1.25),
        "x_hat": torch.zeros(2, 3),
        "num_clean": 3,
        "flag": True,
        "name": "full",
    }
    assert _scalars(result, 4) == {"images": 4.0, "loss": 1.25, "num_clean": 3.0}


def test_log_line_lists_terms_in_order_then_counts():
    line = _format(
        {"bpp_loss": 0.5, "loss": 1.0, "vlp_loss": -0.0, "images": 8, "num_clean": 3}
    )
    assert line == (
        "loss=1 bpp_loss=0.5 vlp_loss=0 images=8 clean/uncertain=3/0 full/protected=0/0"
    )
    assert not math.isnan(MetricTotals().summary().get("loss", 0.0))
