"""Tests of the rate–distortion evaluation (compressai_psic.evaluation.rd) with
tiny randomly initialised models and generated images; its command line,
``compressai_psic.utils.eval_model``, is tested in tests/utils."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim

from compressai_psic import zoo
from compressai_psic.evaluation import rd
from compressai_psic.utils import crop_padding, eval_model, pad_to_multiple

TINY = {"N": 16, "M": 24}


def _pattern(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 3, yy * 5, (xx + yy) * 2], axis=-1) % 256
    noisy = base + rng.normal(0.0, 12.0, base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _tiny_model(seed: int = 0, perturb: bool = False):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = zoo.bmshj2018_hyperprior(1, **TINY)
        if perturb:
            # Fresh projections are zero (both paths equal): give them weights so
            # the protected decode differs from the full one.
            for param in model.trigger_proj.parameters():
                param.data.normal_(0.0, 0.5)
    return eval_model.prepare_model(model, "cpu")


def test_evaluate_image_measures_each_path():
    model = _tiny_model(seed=1, perturb=True)
    torch.manual_seed(0)
    x = torch.from_numpy(_pattern(170, 180, 7).astype(np.float32) / 255)
    x = x.permute(2, 0, 1).unsqueeze(0)
    result = rd.evaluate_image(model, x)
    assert list(result["paths"]) == ["full", "protected"]
    assert result["bpp_source"] == "psic-file"
    assert result["bpp"] == result["bytes"] * 8 / (170 * 180)

    with torch.no_grad():
        x_padded, padding = pad_to_multiple(x, 64)
        encoded = model.compress(x_padded)
        for label in ("full", "protected"):
            x_hat = model.decompress(encoded["strings"], encoded["shape"], label)
            x_hat = crop_padding(x_hat["x_hat"], padding)
            org = (x * 255).round()
            rec = (x_hat * 255).clamp(0, 255).round()
            psnr = 20 * math.log10(255) - 10 * math.log10(
                (org - rec).pow(2).mean().item()
            )
            path = result["paths"][label]
            assert path["psnr-rgb"] == pytest.approx(psnr, abs=1e-3)
            assert path["ms-ssim-rgb"] == pytest.approx(
                ms_ssim(org, rec, data_range=255).item(), abs=1e-4
            )
            assert path["max_abs_diff_joint"] < 1e-4
    assert result["paths"]["full"]["psnr-rgb"] != pytest.approx(
        result["paths"]["protected"]["psnr-rgb"], abs=1e-3
    )


def test_entropy_estimation_uses_likelihoods():
    model = _tiny_model(seed=2)
    x = torch.from_numpy(_pattern(64, 64, 3).astype(np.float32) / 255)
    x = x.permute(2, 0, 1).unsqueeze(0)
    result = rd.evaluate_image(model, x, entropy_estimation=True)
    with torch.no_grad():
        likelihoods = model(x)["likelihoods"]
    bits = sum(-torch.log2(v).sum().item() for v in likelihoods.values())
    assert result["bpp_source"] == "entropy-estimation"
    assert result["bpp"] == pytest.approx(bits / (64 * 64), rel=1e-5)
    real = rd.evaluate_image(model, x)
    # Real bytes add the header, checksum and coder overhead to the estimate.
    assert bits / 8 < real["bytes"] < bits / 8 + 200


def test_metrics_edge_cases():
    x = torch.rand(1, 3, 170, 170)
    assert rd.psnr_rgb(x, x) == math.inf
    assert rd.ms_ssim_rgb(x, x) == pytest.approx(1.0)
    assert math.isnan(rd.ms_ssim_rgb(x[..., :160, :], x[..., :160, :]))
    assert rd.parse_condition("full") == "full"
    assert rd.parse_condition("0.25") == 0.25
    with pytest.raises(ValueError, match="protected"):
        rd.parse_condition("locked")
    with pytest.raises(ValueError, match="beta"):
        rd.parse_condition(1.5)
    assert rd.condition_label(0.5) == "beta0.5"
