"""Tests of the shipped scene CLIPs (compressai_psic.vlp.zoo_vlps): the demo and
evaluation VLPs load from the manifest, sha256-checked, and the compact file
format round-trips."""

import json
import shutil

import pytest
import torch

from compressai_psic.datasets.scenes import split_samples
from compressai_psic.io.files import file_sha256 as sha256_file
from compressai_psic.vlp import (
    DEMO_VLP_CONFIG,
    DEMO_VLP_NAME,
    EVAL_VLPS,
    OPENAI_CLIP_MEAN,
    VLP_ARCHITECTURES,
    VLPAdapter,
    build_demo_clip,
    build_vlp,
    demo_state_dict,
    load_demo_state_dict,
    load_demo_vlp,
    load_eval_vlp,
    wrap_demo_clip,
)
from compressai_psic.zoo import manifest_entry, zoo_dir

from .helpers import TINY_CONFIG, TINY_RN_CONFIG, model_tokens


@pytest.fixture(scope="module")
def shipped():
    entry = manifest_entry(name=DEMO_VLP_NAME)
    if entry is None:
        pytest.fail("zoo/manifest.json has no demo-vlp entry")
    return entry, load_demo_vlp()


def test_shipped_entry_matches_its_file(shipped):
    entry, _ = shipped
    path = zoo_dir() / entry["file"]
    assert path.is_file()
    digest = sha256_file(path)
    assert digest == entry["sha256"]
    assert entry["file"] == f"demo-vlp-{digest[:8]}.pth.tar"
    assert path.stat().st_size < 8 * 2**20  # a few MB
    assert entry["config"] == DEMO_VLP_CONFIG
    # Plain tensors only: loadable with weights_only=True.
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_shipped_model_embeds_images_and_texts(shipped):
    _, vlp = shipped
    assert isinstance(vlp, VLPAdapter)
    dim = DEMO_VLP_CONFIG["embed_dim"]
    assert vlp.embed_dim == dim
    for size in (64, 128):
        emb = vlp.encode_image(torch.rand(3, 3, size, size))
        assert emb.shape == (3, dim)
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    texts = vlp.encode_text(["a large red circle at the top left on a plain grey "
                             "background", "two small blue stars on a striped "
                             "olive background"])  # fmt: skip
    assert texts.shape == (2, dim) and not torch.allclose(texts[0], texts[1])
    # Frozen, but differentiable with respect to the images (PSIC trains
    # through it).
    assert not any(p.requires_grad for p in vlp.parameters())
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    vlp.encode_image(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_sha256_mismatch_is_refused(shipped, tmp_path, monkeypatch):
    entry, _ = shipped
    target = tmp_path / entry["file"]
    shutil.copy(zoo_dir() / entry["file"], target)
    with open(target, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))
    clean = {k: v for k, v in entry.items() if not k.startswith("_")}
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [clean]}))
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(tmp_path / "manifest.json"))
    monkeypatch.setenv("COMPRESSAI_PSIC_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="sha256"):
        load_demo_vlp()


def test_missing_entry_and_missing_file(tmp_path, monkeypatch):
    empty = {"models": [], "include_shipped": False}  # hide the shipped VLPs
    (tmp_path / "manifest.json").write_text(json.dumps(empty))
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(tmp_path / "manifest.json"))
    with pytest.raises(RuntimeError, match="demo-vlp"):
        load_demo_vlp()
    with pytest.raises(FileNotFoundError):
        load_demo_vlp(tmp_path / "nothing.pth.tar")


def test_compact_state_dict_round_trip(tmp_path):
    model = build_demo_clip(TINY_CONFIG, seed=0).eval()
    samples = split_samples("train", 8, captions_per_image=1)
    captions = [s.captions[0] for s in samples]
    tokens = model_tokens(captions)
    model.used_token_ids = sorted(set(tokens.unique().tolist()))
    state = demo_state_dict(model, dtype=torch.float32)
    assert "token_embedding.weight" not in state
    assert state["token_embedding.kept_rows"].shape == (
        len(model.used_token_ids),
        TINY_CONFIG["text_cfg"]["width"],
    )
    torch.save(state, tmp_path / "w.pth.tar")
    restored = build_demo_clip(TINY_CONFIG, seed=1).eval()
    load_demo_state_dict(
        restored, torch.load(tmp_path / "w.pth.tar", weights_only=True)
    )
    with torch.no_grad():
        torch.testing.assert_close(
            restored.encode_text(tokens), model.encode_text(tokens)
        )
        x = torch.rand(2, 3, 32, 32)
        torch.testing.assert_close(restored.encode_image(x), model.encode_image(x))
    unused = torch.ones(restored.token_embedding.weight.shape[0], dtype=torch.bool)
    unused[model.used_token_ids] = False
    assert restored.token_embedding.weight[unused].abs().sum() == 0
    # float16 files are half the size and load into the float32 model.
    half = demo_state_dict(model)
    assert half["token_embedding.kept_rows"].dtype == torch.float16
    load_demo_state_dict(build_demo_clip(TINY_CONFIG), half)


def test_resnet_tower_wraps_with_its_own_normalisation_and_name():
    model = build_demo_clip(TINY_RN_CONFIG, seed=0)
    assert type(model.visual).__name__ == "ModifiedResNet"
    assert isinstance(model.visual.image_size, int)  # what broke the old wrap
    vlp = wrap_demo_clip(model, name="eval-test")
    assert vlp.name == "eval-test"
    assert vlp.image_size == (32, 32)
    torch.testing.assert_close(vlp.mean.flatten(), torch.tensor([0.5, 0.4, 0.3]))
    torch.testing.assert_close(vlp.std.flatten(), torch.tensor([0.2, 0.25, 0.3]))
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    torch.testing.assert_close(vlp.preprocess(x), (x - mean) / std)
    # Other sizes are resized to the tower's input; embeddings are normalised.
    emb = vlp.encode_image(torch.rand(2, 3, 48, 40))
    assert emb.shape == (2, 32)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    assert vlp.encode_text(["a red circle"]).shape == (1, 32)


def test_explicit_mean_std_override_the_config_and_defaults_stay_openai():
    model = build_demo_clip(TINY_RN_CONFIG, seed=0)
    vlp = wrap_demo_clip(model, mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 3.0))
    torch.testing.assert_close(vlp.mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(vlp.std.flatten(), torch.tensor([1.0, 2.0, 3.0]))
    plain = wrap_demo_clip(build_demo_clip(TINY_CONFIG, seed=0))
    assert plain.name == DEMO_VLP_NAME
    assert plain.image_size == (32, 32)
    torch.testing.assert_close(plain.mean.flatten(), torch.tensor(OPENAI_CLIP_MEAN))
    with pytest.raises(ValueError, match="3 values"):
        wrap_demo_clip(model, mean=(0.5, 0.5))


def test_state_dict_keeps_only_the_rows_of_the_captions():
    model = build_demo_clip(TINY_CONFIG, seed=0).eval()
    captions = [s.captions[0] for s in split_samples("train", 6)]
    tokens = model_tokens(captions)
    used = sorted(set(tokens.unique().tolist()))
    assert 0 in used and 49406 in used and 49407 in used  # pad, start, end
    # No source of kept rows: an error, not a 49,408-row file.
    assert not hasattr(model, "used_token_ids")
    with pytest.raises(ValueError, match="token_ids= or captions="):
        demo_state_dict(model)
    with pytest.raises(ValueError, match="not both"):
        demo_state_dict(model, token_ids=used, captions=captions)
    with pytest.raises(ValueError, match="vocabulary"):
        demo_state_dict(model, token_ids=[1, 49408])
    from_captions = demo_state_dict(model, torch.float32, captions=captions)
    assert from_captions["token_embedding.kept_ids"].tolist() == used
    from_ids = demo_state_dict(model, torch.float32, token_ids=reversed(used))
    assert from_ids["token_embedding.kept_ids"].tolist() == used
    torch.testing.assert_close(
        from_ids["token_embedding.kept_rows"],
        model.token_embedding.weight.detach()[used],
    )
    restored = load_demo_state_dict(build_demo_clip(TINY_CONFIG, seed=3), from_ids)
    assert restored.used_token_ids == used
    with torch.no_grad():
        torch.testing.assert_close(
            restored.encode_text(tokens), model.encode_text(tokens)
        )
    # The restored model remembers its rows: saving it again needs no argument.
    again = demo_state_dict(restored, torch.float32)
    assert again["token_embedding.kept_ids"].tolist() == used


# ------------------------------------------------------------ evaluation VLPs


@pytest.mark.parametrize("spec", sorted(EVAL_VLPS))
def test_shipped_eval_vlps_load_and_match_the_manifest(spec):
    name, arch = EVAL_VLPS[spec]
    entry = manifest_entry(name=name)
    assert entry is not None, f"zoo/manifest.json has no {name} entry"
    path = zoo_dir() / entry["file"]
    digest = sha256_file(path)
    assert digest == entry["sha256"]
    assert entry["file"] == f"{name}-{digest[:8]}.pth.tar"
    assert path.stat().st_size < 8 * 2**20
    assert entry["config"] == VLP_ARCHITECTURES[arch]
    assert entry["role"] == "evaluation"
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert "token_embedding.weight" not in state
    assert state["token_embedding.kept_ids"].numel() < 200
    # Not the demo VLP's seeds, and the evaluation scenes were excluded.
    demo = manifest_entry(name=DEMO_VLP_NAME)
    seeds = ("scene_seed", "init_seed", "shuffle_seed")
    assert all(entry["recipe"][k] != demo["recipe"]["seed"] for k in seeds)
    assert entry["recipe"]["exclude_test_scenes"] >= 500
    assert {0, 2025} <= set(entry["recipe"]["exclude_test_seeds"])
    metrics = entry["metrics"]["test_64px"]
    assert metrics["i2t_R@1"] >= 0.8 and metrics["t2i_R@1"] >= 0.8

    vlp = build_vlp(spec)
    assert isinstance(vlp, VLPAdapter) and vlp.name == name
    preprocess = entry["config"]["preprocess_cfg"]
    torch.testing.assert_close(vlp.mean.flatten(), torch.tensor(preprocess["mean"]))
    torch.testing.assert_close(vlp.std.flatten(), torch.tensor(preprocess["std"]))
    assert not any(p.requires_grad for p in vlp.parameters())
    tower = type(vlp.model.visual).__name__
    assert tower == ("ModifiedResNet" if arch == "resnet" else "VisionTransformer")
    assert vlp.embed_dim == entry["config"]["embed_dim"]


def test_eval_vit_differs_from_the_demo_vit():
    demo, wide = DEMO_VLP_CONFIG["vision_cfg"], VLP_ARCHITECTURES["vit-wide"]
    assert wide["vision_cfg"]["width"] != demo["width"]
    assert wide["vision_cfg"]["layers"] != demo["layers"]
    assert isinstance(VLP_ARCHITECTURES["resnet"]["vision_cfg"]["layers"], list)


def test_unknown_eval_vlp_and_missing_entry(tmp_path, monkeypatch):
    assert EVAL_VLPS == {
        "eval-rn": ("eval-vlp-rn", "resnet"), "eval-vit": ("eval-vlp-vit", "vit-wide"),
    }  # fmt: skip
    with pytest.raises(ValueError, match="eval-rn"):
        load_eval_vlp("eval-convnext")
    empty = {"models": [], "include_shipped": False}  # hide the shipped VLPs
    (tmp_path / "manifest.json").write_text(json.dumps(empty))
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(tmp_path / "manifest.json"))
    with pytest.raises(RuntimeError, match="eval-vlp-vit"):
        build_vlp("eval-vit")
