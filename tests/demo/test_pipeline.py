"""Tests of the demo's pipeline (compressai_psic.demo.pipeline) and of the
shipped demo models it runs: the manifest's files match their sha256 and load,
and a fast demo (few scenes) runs and the protected decode hides the scenes
from the demo VLP."""

from __future__ import annotations

import json

import pytest
import torch

from compressai_psic import zoo
from compressai_psic.demo import (
    DEMO_MODEL_NAME,
    format_table,
    run_demo,
    shipped_eval_vlps,
)
from compressai_psic.io.files import file_sha256 as sha256_file
from compressai_psic.models import ShieldedMixin
from compressai_psic.vlp import DEMO_VLP_NAME, EVAL_VLPS, TRAIN_ENSEMBLE

from ..helpers import torch_threads


@pytest.fixture(autouse=True, scope="module")
def two_threads():
    # The demo's batches are small enough that two threads help on CI too.
    with torch_threads(2):
        yield


@pytest.fixture(scope="module")
def demo_entry():
    entry = zoo.manifest_entry(name=DEMO_MODEL_NAME)
    if entry is None:
        pytest.fail(
            "zoo/manifest.json has no demo-psic entry; run tools/train_demo_psic.py"
        )
    return entry


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    report = run_demo(num_images=20, output_dir=out, robustness=False, progress=False)
    return out, report


@pytest.mark.parametrize(
    "name", [DEMO_MODEL_NAME, f"{DEMO_MODEL_NAME}-stage1", DEMO_VLP_NAME]
)
def test_shipped_files_match_their_sha256(name):
    entry = zoo.manifest_entry(name=name)
    assert entry is not None, f"no {name} entry in the manifest"
    path = zoo.zoo_dir() / entry["file"]
    assert path.is_file()
    digest = sha256_file(path)
    assert digest == entry["sha256"]
    # CompressAI's naming: <name>-<sha256[:8]>.pth.tar
    assert entry["file"] == f"{name}-{digest[:8]}.pth.tar"
    assert path.stat().st_size < 8 * 2**20  # a few MB
    state = torch.load(path, map_location="cpu", weights_only=True)
    # Tensors, and the modulation an affine projection records (issue 16).
    assert all(
        isinstance(v, torch.Tensor)
        or (k.endswith("._extra_state") and v == {"modulation": "affine"})
        for k, v in state.items()
    )


def test_demo_psic_entry_describes_the_model(demo_entry):
    assert demo_entry["architecture"] == "bmshj2018-hyperprior"
    assert demo_entry["includes_base"] is True
    assert demo_entry["image_size"] == 64
    assert (demo_entry["plan"], demo_entry["modulation"]) == ("every-stage", "affine")
    assert demo_entry["command"].startswith("python tools/train_demo_psic.py")
    assert (zoo.zoo_dir() / demo_entry["stage1_file"]).is_file()
    assert all("/tmp" not in c for c in demo_entry["stage_commands"])
    assert {"stage1", "stage2", "stage3"} <= set(demo_entry["recipe"])
    metrics = demo_entry["metrics"]
    assert metrics["num_images"] >= 500 and metrics["seed"] == 2025
    roles = {v["name"]: v["role"] for v in metrics["vlps"]}
    # The training ensemble and the evaluation-only VLPs, each in its role.
    assert roles == {
        **{name: "train" for name in TRAIN_ENSEMBLE},
        **{name: "eval" for name, _ in EVAL_VLPS.values()},
    }
    # Every target is recorded with its bound and verdict: quality (4), the
    # periodic amplitude at 4 strides, per training VLP full/protected/worst blind
    # and per evaluation VLP also the learned inversion, both directions.
    assert len(demo_entry["targets"]) == (
        4 + 4 + len(TRAIN_ENSEMBLE) * 3 * 2 + len(EVAL_VLPS) * 4 * 2
    )
    assert all(
        {"value", "limit", "met"} == set(t) for t in demo_entry["targets"].values()
    )


def test_load_named_builds_the_shipped_codec(demo_entry):
    net = zoo.load_named(DEMO_MODEL_NAME, progress=False)
    assert isinstance(net, ShieldedMixin)
    assert net.architecture == demo_entry["architecture"]
    assert not net.training
    config = demo_entry["config"]
    assert net.g_a[0].out_channels == config["N"]
    assert net.g_a[6].out_channels == config["M"]
    assert [p.target for p in net.injection_points] == demo_entry["injection_points"]
    # A real round trip: one bitstream, two different decodes.
    x = torch.rand(1, 3, 64, 64)
    net.update(force=True)
    with torch.no_grad():
        encoded = net.compress(x)
        decoded = net.decompress_multi(
            encoded["strings"], encoded["shape"], conditions=("full", "protected")
        )
    full, protected = decoded["x_hat"]
    assert full.shape == protected.shape == x.shape
    assert not torch.equal(full, protected)


def test_load_named_refuses_a_tampered_file(demo_entry, tmp_path, monkeypatch):
    source = zoo.zoo_dir() / demo_entry["file"]
    tampered = tmp_path / demo_entry["file"]
    data = bytearray(source.read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))
    manifest = {"models": [{k: v for k, v in demo_entry.items() if k != "_root"}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(tmp_path / "manifest.json"))
    monkeypatch.setenv("COMPRESSAI_PSIC_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="sha256"):
        zoo.load_named(DEMO_MODEL_NAME, progress=False)


def test_fast_demo_protects_the_scenes(demo_report):
    out, report = demo_report
    assert report["num_images"] == 20  # 20-way retrieval: chance R@1 0.05
    recall = report["recall"]
    # The originals and the full decode are readable, the protected decode of the
    # same bitstream is not, by a change that differs from image to image, at a
    # quality a codec without the shield would not need to give up.
    assert recall["original"]["i2t"]["R@1"] >= 0.9
    assert recall["full"]["i2t"]["R@1"] >= 0.85
    # 20-way retrieval is easy (chance 0.05); the shipped codec trades strength on
    # its training VLP for transfer and invisibility (zoo/DEMO_PSIC.md: 0.146 in
    # the 500-way benchmark), so here the protected decode loses over half.
    assert recall["protected"]["i2t"]["R@1"] <= 0.5
    assert recall["protected"]["t2i"]["R@1"] < recall["full"]["t2i"]["R@1"]
    assert report["image_dependence"]["common_share"] <= 0.3
    psnr = report["psnr"]
    assert psnr["full"] >= 28 and 22 <= psnr["protected"] < psnr["full"]
    assert 0 < report["bpp"] < 2


def test_fast_demo_writes_grid_and_report(demo_report):
    out, report = demo_report
    grid = out / "grid.png"
    assert grid.is_file() and grid.stat().st_size > 0
    from PIL import Image

    with Image.open(grid) as image:
        # Three columns (original, full, protected) of 160-pixel cells.
        assert image.size[0] == 3 * 160
    saved = json.loads((out / "report.json").read_text())
    assert saved["recall"] == report["recall"]
    assert saved["model"] == DEMO_MODEL_NAME


def test_demo_report_has_attacks_and_image_dependence(tmp_path):
    assert set(shipped_eval_vlps()) <= set(EVAL_VLPS)
    report = run_demo(
        num_images=8, output_dir=tmp_path, grid_rows=2, progress=False,
        attacks=["jpeg75", "greyworld", "affine_fit"], fit_images=3,
        eval_vlps=["tiny:5"], latent_steps=2,
    )  # fmt: skip
    # The latent inversion through the public model is always one of them.
    assert report["attacks"] == ["jpeg75", "greyworld", "affine_fit", "latent-public"]
    recall = report["vlps"][0]["recall"]
    assert "protected_latent-public" in recall and "full_latent-public" not in recall
    assert "worst_adaptive" in report["summary"]["vlps"][0]["i2t"]
    assert report["fit"] == {
        "num_images": 3,
        "attacks": ["affine_fit"],
        "dataset": "scenes:val:seed0:3",
    }
    # The shipped codec is trained against the training ensemble: every
    # member is reported on its own, then the evaluation VLP.
    assert [(e["role"], e["name"]) for e in report["vlps"]] == [
        ("train", name) for name in TRAIN_ENSEMBLE
    ] + [("eval", "tiny:5")]
    summary = {entry["name"]: entry for entry in report["summary"]["vlps"]}
    for entry in report["vlps"]:
        recall = entry["recall"]
        worst = max(
            recall[f"protected_{a}"]["i2t"]["R@1"] for a in ("jpeg75", "greyworld")
        )
        assert summary[entry["name"]]["i2t"]["worst_blind"] == max(
            worst, recall["protected"]["i2t"]["R@1"]
        )
    assert report["recall"] == report["vlps"][0]["recall"]
    dependence = report["image_dependence"]
    assert dependence["num_images"] == 8 and 0 <= dependence["common_share"] <= 1
    assert report["ms_ssim_window"] == 3 and 0 < report["ms_ssim"]["protected"] <= 1
    table = format_table(report)
    assert "protected_affine_fit" in table and "demo-vlp (train)" in table
    assert "tiny:5 (eval)" in table
    assert "common to all images" in table
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["image_dependence"] == dependence


def test_the_keyed_demo_decodes_with_a_key_from_the_seed(tmp_path):
    from compressai_psic.demo.pipeline import demo_key

    assert demo_key(0) == demo_key(0) and demo_key(0) != demo_key(1)
    report = run_demo(
        num_images=4, output_dir=tmp_path, grid_rows=1, progress=False,
        attacks=["jpeg75"], eval_vlps=[], latent_steps=1,
        model_name="demo-psic-keyed",
    )  # fmt: skip
    assert report["model"] == "demo-psic-keyed" and report["keyed"]
    assert report["attacks"] == ["jpeg75", "latent-own-key"]
    assert report["psnr"]["protected"] < report["psnr"]["full"]
