"""Tests of the scene-CLIP training recipe (tools/_lib/vlp_training.py)
and of tools/train_demo_vlp.py, with tiny models and a few steps."""

import json
import math

import pytest
import torch

from compressai_psic.datasets.scenes import split_samples
from compressai_psic.io.files import file_sha256 as sha256_file
from compressai_psic.vlp import (
    DEMO_VLP_CONFIG,
    EVAL_VLPS,
    build_demo_clip,
    build_vlp,
    demo_state_dict,
    load_demo_state_dict,
    load_demo_vlp,
    wrap_demo_clip,
)
from tools import train_demo_vlp
from tools._lib.vlp_training import (
    DemoTrainConfig,
    _normalise,
    evaluate_demo_clip,
    held_out_captions,
    train_demo_clip,
    training_samples,
)

from ..helpers import torch_threads
from ..vlp.helpers import TINY_CONFIG, TINY_RN_CONFIG, model_tokens

TINY_TRAIN = dict(
    train_scenes=16, steps=0, batch_size=8, warmup_steps=1, image_size=32,
    captions_per_image=1,
)  # fmt: skip


def test_shipped_model_retrieves_held_out_scenes():
    vlp = load_demo_vlp()
    recalls = evaluate_demo_clip(vlp, num_scenes=20)
    # Chance is 1/20 = 0.05.
    assert recalls["i2t_R@1"] >= 0.5
    assert recalls["t2i_R@1"] >= 0.5


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


def test_train_tool_writes_weights_manifest_and_card(tmp_path, capsys):
    tool = train_demo_vlp
    other = {"name": "demo-psic", "architecture": "bmshj2018-hyperprior"}
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [other]}))
    common = ["--steps", "2", "--train-scenes", "32", "--batch-size", "16",
              "--eval-scenes", "10", "--zoo", str(tmp_path)]  # fmt: skip
    with torch_threads():  # the tool sets its own thread count
        first = tool.main(common + ["--threads", "1", "--seed", "1"])
        second = tool.main(common + ["--threads", "1", "--seed", "2"])
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


def test_training_normalises_like_the_adapter():
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


@pytest.mark.parametrize("spec", sorted(EVAL_VLPS))
def test_shipped_eval_vlps_retrieve_held_out_scenes(spec):
    recalls = evaluate_demo_clip(build_vlp(spec), num_scenes=20, seed=2025)
    # Chance is 1/20 = 0.05.
    assert recalls["i2t_R@1"] >= 0.6
    assert recalls["t2i_R@1"] >= 0.6


def test_train_tool_trains_an_eval_vlp(tmp_path, capsys, monkeypatch):
    tool = train_demo_vlp
    args = ["--arch", "resnet", "--steps", "2", "--train-scenes", "32",
            "--batch-size", "16", "--eval-scenes", "10", "--out", str(tmp_path),
            "--threads", "1", "--seed-init", "5", "--seed-shuffle", "6",
            "--exclude-test-scenes", "20", "--eval-extra", "12@2025"]  # fmt: skip
    with torch_threads():  # the tool sets its own thread count
        entry = tool.main(args)
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
