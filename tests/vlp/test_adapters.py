"""Tests of the VLP interface (compressai_psic.vlp.adapters) on the tiny VLP."""

import open_clip
import pytest
import torch
import torch.nn.functional as F

from compressai_psic.vlp import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    OpenCLIPAdapter,
    tiny_clip,
    tiny_vlp,
)

MEAN = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)


def test_encoders_match_the_wrapped_model(vlp):
    x = torch.rand(3, 3, 32, 32)
    expected = F.normalize(vlp.model.encode_image((x - MEAN) / STD), dim=-1)
    got = vlp.encode_image(x)
    assert got.shape == (3, vlp.embed_dim) == (3, 32)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(3))
    raw = vlp.encode_image(x, normalize=False)
    torch.testing.assert_close(F.normalize(raw, dim=-1), got)

    texts = ["a photo of a cat", "a diagram", "a photo of a cat"]
    tokens = open_clip.SimpleTokenizer(context_length=16)(texts)
    expected = F.normalize(vlp.model.encode_text(tokens), dim=-1)
    got = vlp.encode_text(texts)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got[0], got[2])
    assert not got.requires_grad
    assert vlp.encode_text("a diagram").shape == (1, 32)


def test_preprocess_resizes_shortest_side_and_centre_crops(vlp):
    # 32x64: already 32 high, so only the centre 32 columns are kept.
    x = torch.rand(1, 3, 32, 64)
    torch.testing.assert_close(vlp.preprocess(x), (x[..., 16:48] - MEAN) / STD)
    # 64x64 is halved: a constant image stays constant, a two-tone one keeps
    # its halves.
    half = torch.zeros(1, 3, 64, 64)
    half[..., 32:] = 1.0
    out = vlp.preprocess(half) * STD + MEAN
    assert out.shape == (1, 3, 32, 32)
    torch.testing.assert_close(out[..., :12], torch.zeros(1, 3, 32, 12))
    torch.testing.assert_close(out[..., -12:], torch.ones(1, 3, 32, 12))
    with pytest.raises(ValueError, match="RGB images"):
        vlp.preprocess(torch.rand(3, 32, 32))


def test_squash_mode_keeps_whole_image():
    squash = OpenCLIPAdapter.from_model(tiny_clip(), resize_mode="squash")
    x = torch.zeros(1, 3, 32, 64)
    x[..., :16] = 1.0  # a stripe that centre cropping would remove
    assert (squash.preprocess(x) * STD + MEAN).max() > 0.9
    with pytest.raises(ValueError, match="'shortest', 'squash'"):
        OpenCLIPAdapter.from_model(tiny_clip(), resize_mode="fit")


def test_gradients_reach_images_not_vlp(vlp):
    x = torch.rand(2, 3, 48, 40, requires_grad=True)
    vlp.encode_image(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in vlp.parameters())


def test_vlp_stays_frozen_in_eval_mode(vlp):
    container = torch.nn.ModuleDict({"vlp": vlp})
    container.train()
    assert not vlp.training and not vlp.model.training
    assert not any(m.training for m in vlp.modules())
    with pytest.raises(ValueError, match="frozen"):
        vlp.requires_grad_(True)
    vlp.requires_grad_(False)
    container.requires_grad_(True)  # bypasses the adapter's own requires_grad_
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    vlp.encode_image(x).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in vlp.parameters())
    assert vlp.device == torch.device("cpu") and vlp.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_autocast():
    gpu = tiny_vlp().to("cuda")
    assert gpu.device.type == "cuda"
    x = torch.rand(2, 3, 40, 40, device="cuda", requires_grad=True)
    emb = gpu.encode_image(x)
    assert emb.dtype == torch.float32 and emb.device.type == "cuda"
    emb.sum().backward()
    assert torch.isfinite(x.grad).all()
    cpu = tiny_vlp().encode_image(x.detach().cpu())
    torch.testing.assert_close(emb.detach().cpu(), cpu, atol=2e-2, rtol=0)
    assert gpu.encode_text(["a cat"]).dtype == torch.float32
