"""Tests of ``python -m compressai_psic.utils.eval_model`` (CompressAI's
eval_model for both paths) with tiny random models and generated images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from compressai_psic import zoo
from compressai_psic.evaluation import rd
from compressai_psic.io import container
from compressai_psic.padding import pad_to_multiple
from compressai_psic.utils import eval_model
from compressai_psic.utils.results import load_results

TINY = {"N": 16, "M": 24}
SIZES = {"a.png": (64, 96), "sub/b.png": (80, 72)}
NAME = "psic-bmshj2018-hyperprior-mse"


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


def _argv(dataset: Path, *extra: str) -> list:
    return [
        "pretrained",
        str(dataset),
        "-a",
        "bmshj2018-hyperprior",
        "--random-init",
        "--N",
        "16",
        "--M",
        "24",
        "--no-progress",
        *extra,
    ]


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    argv = _argv(dataset, "-q", "2,1", "--seed", "5", "--per-image", "-d", str(out))
    return eval_model.main(argv + ["--plot"]), out


def test_writes_compressai_json_per_path(run):
    outputs, out = run
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            f"{NAME}-full.json",
            f"{NAME}-protected.json",
            f"{NAME}-bd.json",
            f"{NAME}-rd.png",
        ]
    )
    for label in ("full", "protected"):
        text = (out / f"{NAME}-{label}.json").read_text()
        assert "NaN" not in text  # strict JSON: MS-SSIM of small images is null
        data = json.loads(text)
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
        # Both images are under 161 px: no MS-SSIM, written as null.
        assert data["ms_ssim_images"] == [0, 0]
        assert data["results"]["ms-ssim-rgb"] == [None, None]
        assert all(t > 0 for t in data["results"]["decoding_time"])
        assert data["results"]["bpp"] == outputs[label]["results"]["bpp"]
    assert (out / f"{NAME}-rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bd_rate_of_protected_against_full(run):
    _, out = run
    (row,) = json.loads((out / f"{NAME}-bd.json").read_text())
    assert row["anchor"] == f"{NAME}-full" and row["test"] == f"{NAME}-protected"
    # --N/--M random models of q1 and q2 are the same model: one point twice,
    # which no curve can be fitted through; the row says so instead of failing.
    assert row["bd_rate"] is None and "equal quality" in row["note"]


def test_bd_metrics_known_values():
    from compressai_psic.utils.bd import bd_metrics

    def result(name, bpp, psnr):
        return {"name": name, "results": {"bpp": bpp, "psnr-rgb": psnr}}

    full = result("full", [0.2, 0.4, 0.8, 1.6], [28.0, 31.0, 34.0, 37.0])
    same = result("protected", [0.2, 0.4, 0.8, 1.6], [28.0, 31.0, 34.0, 37.0])
    dearer = result("dearer", [0.25, 0.5, 1.0, 2.0], [28.0, 31.0, 34.0, 37.0])
    for method in ("akima", "pchip", "cubic"):
        assert bd_metrics(full, same, method=method)["bd_rate"] == pytest.approx(0)
        row = bd_metrics(full, dearer, method=method)
        assert row["bd_rate"] == pytest.approx(25.0)
        assert row["bd_metric"] < 0
    short = result("short", [0.2, 0.4], [28.0, 31.0])
    assert bd_metrics(full, short, method="cubic")["bd_rate"] is None
    with pytest.raises(ValueError, match="akima, pchip, cubic"):
        bd_metrics(full, same, method="linear")


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
    model = eval_model.prepare_model(model, "cpu")
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
            symbols_digest=out["symbols_digest"],  # 4 bytes: format version 2
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
    png = tmp_path / "plot.png"
    plot_main(["-f", *map(str, files), "-m", "psnr", "-o", str(png)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_tool_and_bd_against_an_anchor(run, tmp_path, capsys):
    from compressai_psic.utils import plot

    _, out = run
    full = out / f"{NAME}-full.json"
    # Two synthetic curves: the anchor needs 10 % more rate for the same
    # quality, so the test curve saves 1/1.1 - 1 = -9.09 % against it.
    data = json.loads(full.read_text())
    data["results"]["bpp"] = [0.2, 0.4, 0.8]
    data["results"]["psnr-rgb"] = [28.0, 31.0, 34.0]
    test_file = tmp_path / "test.json"
    test_file.write_text(json.dumps(data))
    data["name"] = "base"
    data["results"]["bpp"] = [b * 1.1 for b in data["results"]["bpp"]]
    anchor_file = tmp_path / "base.json"
    anchor_file.write_text(json.dumps(data))
    png = tmp_path / "rd.png"
    rows = plot.main(
        [str(anchor_file), "-r", str(test_file), "--anchor", "base", "-o", str(png)]
    )
    assert rows[0]["test"] == f"{NAME}-full"
    assert rows[0]["bd_rate"] == pytest.approx(100 * (1 / 1.1 - 1), abs=1e-6)
    assert "BD-rate of" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Existing output: refused without --force, in one line.
    with pytest.raises(SystemExit) as exc:
        plot.main([str(full), "-o", str(png)])
    assert exc.value.code == 2
    assert "--force" in capsys.readouterr().err
    plot.main([str(full), "-o", str(png), "-f"])  # -f is --force, as everywhere


def test_checkpoint_runs_with_conditions(dataset, tmp_path, capsys):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        model = zoo.bmshj2018_hyperprior(1, **TINY)
    checkpoint = tmp_path / "tiny.pth.tar"
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, checkpoint)
    argv = ["checkpoint", str(dataset), "-p", str(checkpoint), "--no-progress"]
    outputs = eval_model.main(argv + ["--condition", "protected", "0.5"])
    assert sorted(outputs) == ["beta0.5", "protected"]
    data = outputs["beta0.5"]
    assert data["name"] == "psic-tiny-beta0.5"
    assert data["runs"] == ["tiny.pth.tar"]
    assert data["bpp_source"] == "psic-file"
    printed = json.loads(capsys.readouterr().out)
    assert printed["protected"]["results"]["bpp"] == data["results"]["bpp"]
    assert printed["protected"]["results"]["ms-ssim-rgb"] == [None]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["pretrained", "{d}", "-q", "1"], "needs -a/--architecture"),
        (["pretrained", "{d}", "-a", "cheng2020-anchor", "-q", "7"], "out of range"),
        (["pretrained", "{d}", "-a", "mbt2018", "-q", "x"], "invalid -q"),
        (["pretrained", "{d}", "-a", "mbt2018", "--condition", "open"], "beta in"),
        (["pretrained", "{d}/missing", "-a", "mbt2018"], "dataset folder not found"),
        (["checkpoint", "{d}", "-p", "{d}/none.pth.tar"], "checkpoint not found"),
        (["pretrained", "{d}", "-a", "nope", "--random-init"], "unknown architecture"),
        (
            ["pretrained", "{d}", "-a", "mbt2018", "--entropy-coder", "zip"],
            "invalid --entropy-coder",
        ),
    ],
)
def test_argument_errors_are_one_line(dataset, capsys, argv, message):
    argv = [a.format(d=dataset) for a in argv]
    with pytest.raises(SystemExit) as exc:
        eval_model.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_existing_outputs_are_refused_before_the_evaluation(dataset, tmp_path, capsys):
    existing = tmp_path / f"{NAME}-protected.json"
    existing.write_text("keep me")
    argv = _argv(dataset, "-q", "1", "-d", str(tmp_path), "--condition", "protected")
    with pytest.raises(SystemExit):
        eval_model.main(argv)
    assert "exists; pass -f/--force" in capsys.readouterr().err
    assert existing.read_text() == "keep me"
    eval_model.main(argv + ["--force"])
    assert load_results(existing)["name"] == f"{NAME}-protected"
    assert math.isnan(load_results(existing)["results"]["ms-ssim-rgb"][0])


def test_tools_build_their_parsers_without_torch():
    from ..helpers import modules_loaded_by

    code = (
        "from compressai_psic.utils import eval_model, pareto, plot, update_model\n"
        "for tool in (eval_model, pareto, plot, update_model):\n"
        "    tool.build_parser().format_help()\n"
        "from compressai_psic.utils import machine_description, rss_mib\n"
        "rss_mib()"
    )
    assert modules_loaded_by(code, ("torch", "compressai", "matplotlib")) == []


def test_rgba_images_warn_in_the_package_style(tmp_path, capsys):
    Image.fromarray(_pattern(64, 64, 0)).convert("RGBA").save(tmp_path / "a.png")
    eval_model.main(_argv(tmp_path, "-q", "1", "--condition", "protected"))
    err = capsys.readouterr().err.strip().splitlines()
    (line,) = [x for x in err if "alpha" in x]
    assert line.startswith("eval_model: warning: ")
    assert "alpha channel dropped" in line
    assert not [x for x in err if "UserWarning" in x or "warnings.warn" in x]
