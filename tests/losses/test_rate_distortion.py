"""Tests of the dual-path rate–distortion loss
(compressai_psic.losses.rate_distortion)."""

import re

import numpy as np
import pytest
import torch
from compressai.losses import RateDistortionLoss
from pytorch_msssim import ms_ssim

from compressai_psic.losses import (
    DualPathRateDistortionLoss,
    decoded_paths,
)

from .helpers import (
    model_output,
)


def test_rd_single_path_equals_compressai():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 16, 16, generator=g)
    x_hat = torch.rand(4, 3, 16, 16, generator=g)
    output = model_output(x_hat)
    ours = DualPathRateDistortionLoss(lmbda_full=0.5, lmbda_protected=0.013)
    theirs = RateDistortionLoss(lmbda=0.013)(output, x)
    out = ours(output, x, beta="protected")
    assert out["bpp_loss"].item() == pytest.approx(theirs["bpp_loss"].item(), 1e-6)
    assert out["loss"].item() == pytest.approx(theirs["loss"].item(), 1e-6)
    assert out["mse_loss_protected"].item() == pytest.approx(theirs["mse_loss"].item())
    assert out["num_full"] == 0 and out["mse_loss_full"].item() == 0


def test_rd_both_paths_formula():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, 8, 8, generator=g)
    x_full = torch.rand(3, 3, 8, 8, generator=g)
    x_prot = torch.rand(3, 3, 8, 8, generator=g)
    out = DualPathRateDistortionLoss(0.01, 0.002)(
        model_output([x_full, x_prot], batch=3), x
    )
    xn = x.numpy().astype(np.float64)
    mse_f = np.mean((x_full.numpy() - xn) ** 2)
    mse_p = np.mean((x_prot.numpy() - xn) ** 2)
    expected = 0.5 * (0.01 * 255**2 * mse_f + 0.002 * 255**2 * mse_p)
    assert out["distortion_loss"].item() == pytest.approx(expected, rel=1e-5)
    assert out["mse_loss_full"].item() == pytest.approx(mse_f, rel=1e-5)
    assert out["loss"].item() == pytest.approx(
        out["bpp_loss"].item() + expected, rel=1e-5
    )
    # The betas say which reconstruction is which, in any order.
    listed = model_output([x_prot, x_full], batch=3, beta=["protected", torch.zeros(3)])
    again = DualPathRateDistortionLoss(0.01, 0.002)(listed, x)
    assert again["loss"].item() == pytest.approx(out["loss"].item())


def test_rd_per_sample_paths():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 3, 8, 8, generator=g)
    x_hat = torch.rand(4, 3, 8, 8, generator=g)
    beta = torch.tensor([1.0, 0.0, 1.0, 1.0])
    out = DualPathRateDistortionLoss(0.01, 0.002)(model_output(x_hat), x, beta=beta)
    per_image = ((x_hat - x) ** 2).flatten(1).mean(1).numpy()
    lmbda = np.where(beta.numpy() == 1, 0.002, 0.01)
    expected = np.mean(lmbda * 255**2 * per_image)
    assert out["distortion_loss"].item() == pytest.approx(expected, rel=1e-5)
    assert out["mse_loss_full"].item() == pytest.approx(per_image[1], rel=1e-5)
    assert out["mse_loss_protected"].item() == pytest.approx(
        per_image[[0, 2, 3]].mean(), rel=1e-5
    )
    assert (out["num_full"], out["num_protected"]) == (1, 3)
    # beta may also come with the output.
    with_beta = dict(model_output(x_hat), beta=beta)
    again = DualPathRateDistortionLoss(0.01, 0.002)(with_beta, x)
    assert again["loss"].item() == pytest.approx(out["loss"].item())


def test_rd_ms_ssim_on_large_images():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 176, 176, generator=g)
    x_full = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    x_prot = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    loss = DualPathRateDistortionLoss(3.0, 5.0, metric="ms-ssim")
    out = loss(model_output([x_full, x_prot], batch=2), x)
    full = ms_ssim(x_full, x, data_range=1.0).item()
    prot = ms_ssim(x_prot, x, data_range=1.0).item()
    assert out["ms_ssim_loss_full"].item() == pytest.approx(full, rel=1e-5)
    assert out["ms_ssim_loss_protected"].item() == pytest.approx(prot, rel=1e-5)
    expected = 0.5 * (3.0 * (1 - full) + 5.0 * (1 - prot))
    assert out["distortion_loss"].item() == pytest.approx(expected, rel=1e-5)
    theirs = RateDistortionLoss(lmbda=5.0, metric="ms-ssim")(model_output(x_prot, 2), x)
    ours = loss(model_output(x_prot, 2), x, beta="protected")
    assert ours["loss"].item() == pytest.approx(theirs["loss"].item(), rel=1e-5)


def test_rd_errors():
    x = torch.rand(2, 3, 8, 8)
    loss = DualPathRateDistortionLoss()
    with pytest.raises(ValueError, match="beta"):
        loss(model_output(x, 2), x)
    with pytest.raises(ValueError, match="0 \\(full\\) or 1 \\(protected\\)"):
        loss(model_output(x, 2), x, beta=torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="2 images"):
        loss(model_output(x, 2), x, beta=torch.ones(3))
    with pytest.raises(ValueError, match="'mse', 'ms-ssim'"):
        DualPathRateDistortionLoss(metric="psnr")
    with pytest.raises(ValueError, match="2 reconstructions for 1 beta sets"):
        decoded_paths({"x_hat": [x, x], "beta": [torch.zeros(2)]}, x)
    with pytest.raises(ValueError, match="'full', 'protected'"):
        decoded_paths({"x_hat": x, "beta": "unlocked"}, x)


def exactly(message):
    return f"^{re.escape(message)}$"


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_rate_distortion_messages_and_overall_mean():
    x = rand(3, 3, 4, 4)
    loss = DualPathRateDistortionLoss()
    with pytest.raises(
        ValueError,
        match=exactly(
            'The output has no "beta": decode with a shielded model\'s forward or '
            "forward_multi, or pass beta (a (B,) tensor, 1 = protected, 0 = full)"
        ),
    ):
        decoded_paths({"x_hat": x}, x)
    with pytest.raises(
        ValueError,
        match=exactly(
            "beta must hold 0 (full) or 1 (protected) for each sample; got [0.0, 0.5]"
        ),
    ):
        decoded_paths({"x_hat": x}, x, torch.tensor([0.0, 0.5, 0.5]))
    with pytest.raises(
        ValueError, match=exactly("output holds no reconstruction on any path")
    ):
        empty = {"x_hat": x[:0], "likelihoods": {"y": rand(0, 8, 2, 2)}}
        loss(empty, x[:0], beta=torch.zeros(0))
    x_hat = [rand(3, 3, 4, 4, seed=1), rand(3, 3, 4, 4, seed=2)]
    out = loss(model_output(x_hat, 3), x)
    errors = torch.cat([(h - x).pow(2).flatten(1).mean(1) for h in x_hat])
    assert out["mse_loss"].item() == pytest.approx(errors.mean().item())
