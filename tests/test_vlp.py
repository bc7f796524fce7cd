import json
import sys
import types

import open_clip
import pytest
import torch
import torch.nn.functional as F

from compressai_psic.testing import save_torchscript_state_dict, tiny_clip, tiny_vlp
from compressai_psic.vlp import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    OpenAIClipAdapter,
    OpenCLIPAdapter,
    VLPEnsemble,
    build_vlp,
    load_clip_state_dict,
    vlp_members,
)
from compressai_psic.vlp import _split_spec as split_spec

MEAN = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def vlp():
    return tiny_vlp()


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


def test_openai_torchscript_file_loads(tmp_path, vlp):
    path = save_torchscript_state_dict(vlp.model.state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(RuntimeError), pytest.warns(UserWarning):
        torch.load(path, weights_only=True)  # why such files need special handling
    state_dict = load_clip_state_dict(path)
    assert "input_resolution" not in state_dict
    assert set(state_dict) == set(vlp.model.state_dict())

    loaded = OpenCLIPAdapter("ViT-B-32", pretrained=str(path))
    assert loaded.embed_dim == 32 and loaded.image_size == (32, 32)
    x = torch.rand(2, 3, 32, 32)
    # OpenAI files hold float16 weights, hence the tolerance.
    torch.testing.assert_close(
        loaded.encode_image(x), vlp.encode_image(x), atol=5e-3, rtol=0
    )
    torch.testing.assert_close(
        loaded.encode_text(["a cat"]), vlp.encode_text(["a cat"]), atol=5e-3, rtol=0
    )
    assert all(not p.requires_grad for p in loaded.parameters())

    # A directory holding the file, named as OpenAI's downloader names it.
    (tmp_path / "weights").mkdir()
    (tmp_path / "tiny.pt").rename(tmp_path / "weights" / "ViT-B-32.pt")
    from_dir = OpenCLIPAdapter("ViT-B-32", pretrained=str(tmp_path / "weights"))
    torch.testing.assert_close(from_dir.encode_image(x), loaded.encode_image(x))


@pytest.fixture()
def tiny_config(tmp_path):
    config = {
        "embed_dim": 32,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 16, "width": 64, "heads": 1, "layers": 1},
    }
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "PSIC-Test-Tiny.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "cfg")
    return "PSIC-Test-Tiny"


def test_open_clip_checkpoint_file_and_random_weights(tmp_path, tiny_config, vlp):
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save({"state_dict": vlp.model.state_dict()}, path)
    loaded = OpenCLIPAdapter(tiny_config, pretrained=str(path))
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded.encode_image(x), vlp.encode_image(x))
    from_dir = OpenCLIPAdapter(tiny_config, pretrained=str(tmp_path))
    torch.testing.assert_close(from_dir.encode_image(x), vlp.encode_image(x))

    with pytest.warns(UserWarning, match="random weights"):
        OpenCLIPAdapter(tiny_config)
    explicit = build_vlp(f"open_clip:{tiny_config}:random")
    assert explicit.embed_dim == 32


def test_missing_weights_name_the_expected_file(tmp_path, tiny_config, monkeypatch):
    missing = tmp_path / "nowhere" / "ViT-B-32.pt"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        OpenCLIPAdapter("ViT-B-32", pretrained=str(missing))
    with pytest.raises(FileNotFoundError, match="open_clip_pytorch_model.bin"):
        OpenCLIPAdapter(tiny_config, pretrained=str(tmp_path))  # empty directory
    with pytest.raises(ValueError, match="laion2b_s34b_b79k"):
        OpenCLIPAdapter("ViT-B-32", pretrained="no-such-tag")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_clip_state_dict(missing)

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", offline)
    with pytest.raises(FileNotFoundError) as info:
        OpenCLIPAdapter("ViT-B-32", pretrained="openai", cache_dir=str(tmp_path))
    message = str(info.value)
    assert "openai" in message and str(tmp_path) in message
    assert "ViT-B-32.pt" in message and "vit_base_patch32_clip_224.openai" in message


def _fake_clip_module(state_dict_builder):
    """Stands in for OpenAI's ``clip`` package (not installable offline)."""
    clip = types.ModuleType("clip")
    clip.clip = types.SimpleNamespace(
        _MODELS={"Tiny/8": "https://example.invalid/0123/Tiny-8.pt"},
        _download=lambda url, root: (_ for _ in ()).throw(OSError("offline")),
    )
    clip.model = types.SimpleNamespace(build_model=state_dict_builder)
    clip.tokenize = lambda texts, truncate=False: open_clip.SimpleTokenizer(
        context_length=16
    )(texts)
    return clip


def test_openai_clip_adapter(tmp_path, monkeypatch, vlp):
    monkeypatch.setitem(sys.modules, "clip", None)  # makes `import clip` fail
    with pytest.raises(ImportError, match="open_clip"):
        OpenAIClipAdapter("ViT-B/32")
    with pytest.raises(ImportError, match="clip"):
        build_vlp("clip:ViT-B/32")

    from open_clip.model import build_model_from_openai_state_dict

    def build_model(state_dict):
        model = build_model_from_openai_state_dict(state_dict, cast_dtype=None)
        model.visual.input_resolution = model.visual.image_size[0]
        return model

    monkeypatch.setitem(sys.modules, "clip", _fake_clip_module(build_model))
    path = save_torchscript_state_dict(vlp.model.state_dict(), tmp_path / "Tiny-8.pt")
    adapter = OpenAIClipAdapter(str(path))
    x = torch.rand(1, 3, 40, 32)
    torch.testing.assert_close(
        adapter.encode_image(x), vlp.encode_image(x), atol=5e-3, rtol=0
    )
    assert adapter.encode_text(["a very long caption " * 20]).shape == (1, 32)

    by_name = OpenAIClipAdapter("Tiny/8", download_root=str(tmp_path))
    torch.testing.assert_close(by_name.encode_image(x), adapter.encode_image(x))
    empty = tmp_path / "empty"
    with pytest.raises(FileNotFoundError, match="Tiny-8.pt"):
        OpenAIClipAdapter("Tiny/8", download_root=str(empty))
    with pytest.raises(ValueError, match="Tiny/8"):
        OpenAIClipAdapter("ViT-H/99")
    with pytest.raises(FileNotFoundError, match="gone.pt"):
        OpenAIClipAdapter(str(tmp_path / "gone.pt"))


def test_build_vlp_specs_and_ensembles(tmp_path):
    assert split_spec("open_clip:ViT-B-32:/w/ViT-B-32.pt") == (
        "open_clip",
        "ViT-B-32",
        "/w/ViT-B-32.pt",
    )
    assert split_spec("open_clip:ViT-B-32:C:\\w\\b.pt")[2] == "C:\\w\\b.pt"
    assert split_spec("open_clip:hf-hub:org/repo") == (
        "open_clip",
        "hf-hub:org/repo",
        None,
    )
    assert split_spec("clip:ViT-B/32") == ("clip", "ViT-B/32", None)
    with pytest.raises(ValueError, match="'open_clip', 'clip', 'demo', 'tiny'"):
        build_vlp("blip:base")
    with pytest.raises(ValueError, match="model name"):
        build_vlp("open_clip:")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        build_vlp(f"open_clip:ViT-B-32:{tmp_path / 'missing.pt'}")

    single = build_vlp("tiny")
    assert build_vlp(single) is single and build_vlp(["tiny"]).name == "tiny:0"
    ensemble = build_vlp(["tiny:0", "tiny:1"])
    assert isinstance(ensemble, VLPEnsemble) and len(ensemble) == 2
    x = torch.rand(2, 3, 32, 32)
    first, second = ensemble.encode_image(x)
    assert not torch.allclose(first, second)  # different seeds, different models
    assert [w for _, w in vlp_members(ensemble)] == [0.5, 0.5]
    ensemble.train()
    assert not any(m.training for m in ensemble.modules())
    with pytest.raises(ValueError, match="positive sum"):
        VLPEnsemble([single], weights=[0.0])
    with pytest.raises(ValueError, match="VLPAdapter"):
        VLPEnsemble([torch.nn.Linear(2, 2)])
