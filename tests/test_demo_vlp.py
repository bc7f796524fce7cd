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
    DemoTrainConfig,
    build_demo_clip,
    demo_state_dict,
    evaluate_demo_clip,
    load_demo_state_dict,
    load_demo_vlp,
    train_demo_clip,
)
from compressai_psic.scenes import split_samples
from compressai_psic.utils import sha256_file
from compressai_psic.vlp import VLPAdapter
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
