import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from compressai_psic.demo_vlp import (
    DEMO_VLP_CONFIG,
    DEMO_VLP_NAME,
    EVAL_VLPS,
    VLP_ARCHITECTURES,
    DemoTrainConfig,
    build_demo_clip,
    demo_state_dict,
    evaluate_demo_clip,
    held_out_captions,
    load_demo_state_dict,
    load_demo_vlp,
    train_demo_clip,
    training_samples,
    wrap_demo_clip,
)
from compressai_psic.scenes import split_samples
from compressai_psic.utils import sha256_file
from compressai_psic.vlp import OPENAI_CLIP_MEAN, VLPAdapter, build_vlp
from compressai_psic.zoo import manifest_entry, zoo_dir

ROOT = Path(__file__).resolve().parents[1]

TINY_CONFIG = {
    "embed_dim": 32,
    "quick_gelu": False,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 1},
    "text_cfg": {"context_length": 48, "width": 64, "heads": 1, "layers": 1},
}


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


def test_shipped_model_retrieves_held_out_scenes(shipped):
    _, vlp = shipped
    recalls = evaluate_demo_clip(vlp, num_scenes=20)
    # Chance is 1/20 = 0.05.
    assert recalls["i2t_R@1"] >= 0.5
    assert recalls["t2i_R@1"] >= 0.5


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
    (tmp_path / "manifest.json").write_text(json.dumps({"models": []}))
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


def model_tokens(captions):
    import open_clip

    return open_clip.SimpleTokenizer(context_length=48)(captions)


def test_training_lowers_the_contrastive_loss():
    config = DemoTrainConfig(
        train_scenes=64, steps=30, batch_size=32, warmup_steps=3, image_size=32,
        captions_per_image=2, lr=2e-3,
    )  # fmt: skip
    model, info = train_demo_clip(config, TINY_CONFIG, log=None, log_every=10)
    assert not model.training
    assert [h["step"] for h in info["history"]] == [10, 20, 30]
    # A batch of 32 starts at chance, ln(32) ≈ 3.47.
    assert info["final_loss"] < math.log(32) - 0.5
    assert info["recipe"]["steps"] == 30
    with pytest.raises(ValueError, match="allowed"):
        DemoTrainConfig(epochs=3)


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_tool_writes_weights_manifest_and_card(tmp_path, capsys):
    tool = _load_tool("train_demo_vlp")
    other = {"name": "demo-psic", "architecture": "bmshj2018-hyperprior"}
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [other]}))
    common = ["--steps", "2", "--train-scenes", "32", "--batch-size", "16",
              "--eval-scenes", "10", "--zoo", str(tmp_path)]  # fmt: skip
    threads = torch.get_num_threads()
    try:
        first = tool.main(common + ["--threads", "1", "--seed", "1"])
        second = tool.main(common + ["--threads", "1", "--seed", "2"])
    finally:
        torch.set_num_threads(threads)
    assert second["sha256"] != first["sha256"]
    models = json.loads((tmp_path / "manifest.json").read_text())["models"]
    assert models[0] == other and models[1] == second  # replaced in place
    # The replaced entry's file is gone; the new one matches its hash.
    assert not (tmp_path / first["file"]).exists()
    assert sha256_file(tmp_path / second["file"]) == second["sha256"]
    assert second["file"] == f"demo-vlp-{second['sha256'][:8]}.pth.tar"
    assert set(second["metrics"]["test_64px"]) == {
        "i2t_R@1", "i2t_R@5", "t2i_R@1", "t2i_R@5",
    }  # fmt: skip
    card = (tmp_path / "DEMO_VLP.md").read_text()
    assert second["file"] in card and "--seed 2" in card
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.rindex("\n{\n") + 1 :]) == second
    # The written file loads through load_demo_vlp with an explicit path.
    vlp = load_demo_vlp(tmp_path / second["file"])
    assert vlp.encode_text(["a red circle"]).shape == (1, DEMO_VLP_CONFIG["embed_dim"])


# --------------------------------------------------------------- issue 11, item 4

TINY_RN_CONFIG = {
    "embed_dim": 32,
    "quick_gelu": False,
    # A list of layers builds open_clip's ModifiedResNet (an int tower size).
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8,
                   "head_width": 16},
    "text_cfg": {"context_length": 48, "width": 32, "heads": 1, "layers": 1},
    "preprocess_cfg": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]},
}  # fmt: skip

TINY_TRAIN = dict(
    train_scenes=16, steps=0, batch_size=8, warmup_steps=1, image_size=32,
    captions_per_image=1,
)  # fmt: skip


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


def test_training_normalises_like_the_adapter():
    from compressai_psic.demo_vlp import _normalise

    model = build_demo_clip(TINY_RN_CONFIG, seed=0)
    x = torch.rand(3, 3, 32, 32)
    expected = wrap_demo_clip(model).preprocess(x)
    torch.testing.assert_close(_normalise(x, model), expected)


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_seeds_are_independent():
    def run(**seeds):
        return train_demo_clip(dict(TINY_TRAIN, **seeds), TINY_CONFIG, log=None)

    base_model, base = run(scene_seed=1, init_seed=2, shuffle_seed=3)
    assert base["seeds"] == {"scene_seed": 1, "init_seed": 2, "shuffle_seed": 3}
    # Another shuffle seed: same initialisation, same scenes.
    model, info = run(scene_seed=1, init_seed=2, shuffle_seed=4)
    assert torch.equal(_params(model), _params(base_model))
    assert info["scene_names"] == base["scene_names"]
    # Another init seed: other weights, same scenes.
    model, info = run(scene_seed=1, init_seed=5, shuffle_seed=3)
    assert not torch.equal(_params(model), _params(base_model))
    assert info["scene_names"] == base["scene_names"]
    # Another scene seed: same weights, other scenes (same names, other content).
    model, info = run(scene_seed=6, init_seed=2, shuffle_seed=3)
    assert torch.equal(_params(model), _params(base_model))
    captions = {s.captions[0] for s in split_samples("train", 16, seed=1)}
    others = {s.captions[0] for s in split_samples("train", 16, seed=6)}
    assert captions != others
    # Unset seeds fall back to ``seed``.
    assert DemoTrainConfig(seed=7, init_seed=1).seeds() == {
        "scene_seed": 7, "init_seed": 1, "shuffle_seed": 7,
    }  # fmt: skip


def test_shuffle_seed_changes_the_batches_only():
    def run(shuffle_seed):
        config = dict(TINY_TRAIN, steps=1, init_seed=0, shuffle_seed=shuffle_seed)
        return train_demo_clip(config, TINY_CONFIG, log=None)[0]

    assert torch.equal(_params(run(1)), _params(run(1)))  # deterministic
    assert not torch.equal(_params(run(1)), _params(run(2)))


def test_excluded_scenes_are_not_trained_on():
    first = split_samples("train", 12, seed=0)
    by_name = {first[2].name, first[5].name}
    by_caption = {first[7].captions[0]}
    kept = training_samples(10, 0, exclude=by_name | by_caption)
    assert len(kept) == 10
    names = [s.name for s in kept]
    assert not by_name & set(names)
    assert not by_caption & {s.captions[0] for s in kept}
    # Later scenes take their places, in split order.
    expected = [
        s.name for s in split_samples("train", 20, seed=0)
        if s.name not in by_name and s.captions[0] not in by_caption
    ][:10]  # fmt: skip
    assert names == expected and "train_000010" in names
    _, info = train_demo_clip(
        dict(TINY_TRAIN, train_scenes=10), TINY_CONFIG, log=None,
        exclude=by_name | by_caption,
    )  # fmt: skip
    assert info["scene_names"] == names
    assert info["excluded"] == 3
    # Scenes 0..last index were drawn, 10 kept: the others were skipped.
    assert info["skipped_scenes"] == int(names[-1].split("_")[1]) + 1 - 10 >= 3


def test_test_split_captions_can_be_excluded():
    held_out = held_out_captions(30, seeds=(0, 2025))
    assert len(held_out) > 30  # two seeds, (almost) no shared caption
    test = split_samples("test", 30, seed=2025, distinct_captions=True)
    assert {s.captions[0] for s in test} <= held_out
    # Training scenes that repeat a test caption exist and are skipped.
    train = split_samples("train", 64, seed=0)
    planted = {train[3].captions[0], train[9].captions[0]}
    kept = training_samples(64, 0, exclude=held_out | planted)
    assert not (held_out | planted) & {s.captions[0] for s in kept}
    _, info = train_demo_clip(
        dict(TINY_TRAIN, exclude_test_scenes=30, exclude_test_seeds=[0, 2025]),
        TINY_CONFIG, log=None,
    )  # fmt: skip
    assert info["excluded"] == len(held_out)
    assert info["recipe"]["exclude_test_seeds"] == [0, 2025]


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


def test_training_records_the_tokens_of_its_captions():
    model, info = train_demo_clip(TINY_TRAIN, TINY_RN_CONFIG, log=None)
    samples = split_samples("train", 16, seed=0)
    expected = model_tokens([s.captions[0] for s in samples]).unique().tolist()
    assert model.used_token_ids == sorted(expected)
    state = demo_state_dict(model)
    assert state["token_embedding.kept_rows"].shape == (len(expected), 32)
    restored = load_demo_state_dict(build_demo_clip(TINY_RN_CONFIG), state).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            restored.encode_image(x), model.encode_image(x), atol=5e-3, rtol=5e-3
        )


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


@pytest.mark.parametrize("spec", sorted(EVAL_VLPS))
def test_shipped_eval_vlps_retrieve_held_out_scenes(spec):
    recalls = evaluate_demo_clip(build_vlp(spec), num_scenes=20, seed=2025)
    # Chance is 1/20 = 0.05.
    assert recalls["i2t_R@1"] >= 0.6
    assert recalls["t2i_R@1"] >= 0.6


def test_eval_vit_differs_from_the_demo_vit():
    demo, wide = DEMO_VLP_CONFIG["vision_cfg"], VLP_ARCHITECTURES["vit-wide"]
    assert wide["vision_cfg"]["width"] != demo["width"]
    assert wide["vision_cfg"]["layers"] != demo["layers"]
    assert isinstance(VLP_ARCHITECTURES["resnet"]["vision_cfg"]["layers"], list)


def test_unknown_eval_vlp_and_missing_entry(tmp_path, monkeypatch):
    from compressai_psic.demo_vlp import load_eval_vlp

    assert EVAL_VLPS == {
        "eval-rn": ("eval-vlp-rn", "resnet"), "eval-vit": ("eval-vlp-vit", "vit-wide"),
    }  # fmt: skip
    with pytest.raises(ValueError, match="eval-rn"):
        load_eval_vlp("eval-convnext")
    (tmp_path / "manifest.json").write_text(json.dumps({"models": []}))
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(tmp_path / "manifest.json"))
    with pytest.raises(RuntimeError, match="eval-vlp-vit"):
        build_vlp("eval-vit")


def test_train_tool_trains_an_eval_vlp(tmp_path, capsys, monkeypatch):
    tool = _load_tool("train_demo_vlp")
    args = ["--arch", "resnet", "--steps", "2", "--train-scenes", "32",
            "--batch-size", "16", "--eval-scenes", "10", "--out", str(tmp_path),
            "--threads", "1", "--seed-init", "5", "--seed-shuffle", "6",
            "--exclude-test-scenes", "20", "--eval-extra", "12@2025"]  # fmt: skip
    threads = torch.get_num_threads()
    try:
        entry = tool.main(args)
    finally:
        torch.set_num_threads(threads)
    assert entry["name"] == "eval-vlp-rn" and entry["role"] == "evaluation"
    assert entry["recipe"]["init_seed"] == 5 and entry["recipe"]["scene_seed"] == 0
    assert entry["config"]["vision_cfg"]["layers"] == [1, 1, 1, 1]
    assert entry["image_mean"] == [0.485, 0.456, 0.406]
    assert set(entry["metrics"]["extra"]) == {"12@2025"}
    assert entry["exclusion"]["captions"] == 20
    card = (tmp_path / "EVAL_VLPS.md").read_text()
    assert entry["file"] in card and "ModifiedResNet" in card and "eval-rn" in card
    assert not (tmp_path / "DEMO_VLP.md").exists()
    capsys.readouterr()
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(tmp_path / "manifest.json"))
    vlp = build_vlp("eval-rn")
    assert vlp.name == "eval-vlp-rn"
    assert vlp.encode_image(torch.rand(1, 3, 64, 64)).shape == (1, 128)
