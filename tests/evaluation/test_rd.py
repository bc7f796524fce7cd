"""Tests of the rate–distortion evaluation (compressai_psic.evaluation.rd and
tools/eval_rd.py) with tiny randomly initialised models and generated images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_msssim import ms_ssim

from compressai_psic import zoo
from compressai_psic.evaluation import rd
from compressai_psic.io import container
from compressai_psic.utils import crop_padding, pad_to_multiple

from ..helpers import load_tool

TINY = {"N": 16, "M": 24}
SIZES = {"a.png": (64, 96), "sub/b.png": (80, 72)}

eval_rd = load_tool("eval_rd")


def _pattern(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 3, yy * 5, (xx + yy) * 2], axis=-1) % 256
    noisy = base + rng.normal(0.0, 12.0, base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for seed, (name, (height, width)) in enumerate(SIZES.items()):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_pattern(height, width, seed)).save(path)
    (root / "notes.txt").write_text("not an image")
    return root


def _tiny_model(seed: int = 0, perturb: bool = False):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = zoo.bmshj2018_hyperprior(1, **TINY)
        if perturb:
            # Fresh projections are zero (both paths equal): give them weights so
            # the protected decode differs from the full one.
            for param in model.trigger_proj.parameters():
                param.data.normal_(0.0, 0.5)
    return eval_rd.prepare_model(model, "cpu")


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    argv = [
        str(dataset),
        "-a",
        "bmshj2018-hyperprior",
        "-q",
        "2",
        "1",
        "--random-init",
        "--seed",
        "5",
        "--N",
        "16",
        "--M",
        "24",
        "--per-image",
        "--no-progress",
        "-o",
        str(out),
    ]
    return eval_rd.main(argv), out


NAME = "psic-bmshj2018-hyperprior-mse"


def test_writes_compressai_json_per_path(run, capsys):
    outputs, out = run
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{NAME}-full.json", f"{NAME}-protected.json", "rd.png"]
    )
    for label in ("full", "protected"):
        data = json.loads((out / f"{NAME}-{label}.json").read_text())
        assert data["name"] == f"{NAME}-{label}"
        assert data["description"] == (
            f"Inference (ans, bpp from .psic file bytes, {label} decode, "
            "random-init weights, seed 5)"
        )
        assert list(data["results"]) == list(rd.RESULT_KEYS)
        for values in data["results"].values():
            assert len(values) == 2  # one value per rate point
        assert data["runs"] == ["q1", "q2"]  # sorted qualities
        assert data["num_images"] == [2, 2]
        # Both images are under 161 px: no MS-SSIM, and it says so.
        assert data["ms_ssim_images"] == [0, 0]
        assert all(math.isnan(v) for v in data["results"]["ms-ssim-rgb"])
        assert all(t > 0 for t in data["results"]["decoding_time"])
        assert data == json.loads(json.dumps(outputs[label]))


def test_per_image_results_average_to_results(run):
    outputs, _ = run
    data = outputs["protected"]
    for index, images in enumerate(data["per_image"]):
        assert sorted(i["source"] for i in images) == sorted(SIZES)
        for key in ("psnr-rgb", "bpp", "encoding_time", "decoding_time"):
            mean = sum(i["results"][key] for i in images) / len(images)
            assert data["results"][key][index] == pytest.approx(mean)


def test_bpp_is_the_psic_file_size(run, dataset):
    outputs, _ = run
    # Same weights as --random-init --seed 5 (forked RNG), so the same bitstream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model = zoo.bmshj2018_hyperprior(1, **TINY)
    model = eval_rd.prepare_model(model, "cpu")
    bpps = []
    for name, (height, width) in SIZES.items():
        x = torch.from_numpy(np.asarray(Image.open(dataset / name), np.float32) / 255)
        x = x.permute(2, 0, 1).unsqueeze(0)
        with torch.no_grad():
            out = model.compress(pad_to_multiple(x, 64)[0])
        header = container.PSICFile(
            architecture="bmshj2018-hyperprior",
            quality=1,
            metric="mse",
            checkpoint_sha256=None,
            height=height,
            width=width,
            shape=tuple(out["shape"]),
            strings=out["strings"],
            seed=5,
        )
        bpps.append(len(container.dumps(header)) * 8 / (height * width))
    expected = sum(bpps) / len(bpps)
    assert outputs["full"]["results"]["bpp"][0] == pytest.approx(expected)
    assert outputs["protected"]["results"]["bpp"][0] == pytest.approx(expected)


def test_compressai_plot_reads_the_files(run, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from compressai.utils.plot.__main__ import main as plot_main
    from compressai.utils.plot.__main__ import parse_json_file

    outputs, out = run
    files = [out / f"{NAME}-full.json", out / f"{NAME}-protected.json"]
    for path, label in zip(files, ("full", "protected")):
        curve = parse_json_file(path, "psnr")
        assert curve["name"] == f"{NAME}-{label}"
        assert curve["xs"] == outputs[label]["results"]["bpp"]
        assert curve["ys"] == outputs[label]["results"]["psnr-rgb"]
        assert len(parse_json_file(path, "ms-ssim")["ys"]) == 2
    png = tmp_path / "plot.png"
    plot_main(["-f", *map(str, files), "-o", str(png)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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


def test_checkpoint_runs_and_argument_errors(dataset, tmp_path, capsys):
    model = _tiny_model(seed=4)
    checkpoint = tmp_path / "tiny.pth.tar"
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, checkpoint)
    outputs = eval_rd.main(
        [str(dataset), "-p", str(checkpoint), "--conditions", "protected", "0.5"]
        + ["--no-progress"]
    )
    assert sorted(outputs) == ["beta0.5", "protected"]
    data = outputs["beta0.5"]
    assert data["name"] == "psic-bmshj2018-hyperprior-beta0.5"
    assert data["runs"] == ["tiny.pth.tar"]
    assert data["bpp_source"] == "psic-file"
    # Printed JSON is the returned object (compared through JSON: NaN != NaN).
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(outputs))

    for argv in (
        [str(dataset), "-q", "1"],  # no architecture
        [str(dataset), "-a", "cheng2020-anchor", "-q", "7"],
        [str(dataset), "-p", str(checkpoint), "--random-init"],
        [str(dataset), "-a", "mbt2018", "-q", "1", "--conditions", "open"],
        [str(tmp_path / "missing"), "-a", "mbt2018", "-q", "1"],
    ):
        with pytest.raises(SystemExit):
            eval_rd.main(argv)
