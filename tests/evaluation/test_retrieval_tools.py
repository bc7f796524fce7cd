"""Tests of tools/eval_retrieval.py and tools/plot_pareto.py."""

import json

import numpy as np
import pytest
from PIL import Image

from compressai_psic.datasets.scenes import write_split
from tools import eval_retrieval, plot_pareto


def test_pareto_front():
    tool = plot_pareto
    pairs = [(0.1, 20.0), (0.3, 25.0), (0.2, 19.0), (0.9, 28.0), (0.5, 24.0),
             (None, 30.0), (0.9, 28.0)]  # fmt: skip
    # (0.2, 19) is beaten by (0.1, 20); (0.5, 24) by (0.3, 25); ties both kept.
    assert tool.pareto_front(pairs) == [0, 1, 3, 6]


def _sweep_report(psnr, r1_train, r1_eval):
    def recall(value):
        return {"i2t": {"R@1": value}, "t2i": {"R@1": value / 2}}

    def entry(role, name, value):
        return {
            "role": role,
            "name": name,
            "recall": {
                "original": recall(0.9),
                "full": recall(0.9),
                "protected": recall(value),
                "protected_affine_fit": recall(min(1.0, value + 0.4)),
            },
        }

    return {
        "num_images": 50,
        "bpp": 0.8,
        "psnr": {"full": 30.0, "protected": psnr},
        "ms_ssim": {"full": 0.97, "protected": 0.9 + psnr / 1000},
        "image_dependence": {"common_share": 0.4},
        "chance": {"i2t": {"R@1": 0.02}, "t2i": {"R@1": 0.02}},
        "vlps": [entry("train", "demo-vlp", r1_train), entry("eval", "rn", r1_eval)],
    }


@pytest.mark.slow
def test_plot_pareto_tool(tmp_path):
    tool = plot_pareto
    files = []
    sweep = {"a": (18, 0.05, 0.5), "b": (24, 0.2, 0.6), "c": (28, 0.6, 0.7),
             "d": (20, 0.5, 0.4)}  # fmt: skip
    for name, figures in sweep.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(_sweep_report(*figures)))
        files.append(str(path))
    png, summary_file = tmp_path / "p.png", tmp_path / "p.json"
    summary = tool.main(
        files
        + [
            "--shipped",
            "b",
            "--variants",
            "protected",
            "protected_affine_fit",
            "--output",
            str(png),
            "--summary",
            str(summary_file),
        ]  # fmt: skip
    )
    assert png.stat().st_size > 5000
    assert json.loads(summary_file.read_text()) == summary
    assert summary["shipped"] == "b"
    assert [p["label"] for p in summary["points"] if p["shipped"]] == ["b"]
    # Per VLP, labelled by role, never pooled: "d" is dominated for the
    # training VLP (b is better on both axes) but on the front for the
    # evaluation VLP (lowest recall there).
    front = summary["pareto"]
    assert set(front) == {"train:demo-vlp", "eval:rn"}
    assert front["train:demo-vlp"]["protected"]["i2t"]["psnr"] == ["a", "b", "c"]
    assert front["eval:rn"]["protected"]["i2t"]["psnr"] == ["d", "b", "c"]
    point = summary["points"][1]
    assert point["recall"]["eval:rn"]["protected"] == {"i2t": 0.6, "t2i": 0.3}
    assert point["psnr"] == 24 and point["common_share"] == 0.4
    # The shipped point can be named by its file too; unknown names fail.
    assert (
        tool.main(files + ["--shipped", files[2], "-o", str(png), "-f"])["shipped"]
        == "c"
    )
    with pytest.raises(SystemExit):
        tool.main(files + ["--shipped", "zzz", "--output", str(png)])
    with pytest.raises(SystemExit):
        tool.main(files + ["--labels", "x", "--output", str(png)])


def test_eval_retrieval_tool_on_a_flickr8k_style_folder(tmp_path, capsys):
    tool = eval_retrieval
    write_split(tmp_path / "data", "test", 4, image_size=40, captions_per_image=2)
    output, plot = tmp_path / "out" / "r.json", tmp_path / "out" / "r.png"
    args = [
        "--dataset", str(tmp_path / "data"), "--split", "test", "--limit", "3",
        "--image-size", "48", "--model", "bmshj2018-factorized", "--quality", "1",
        "--random-init", "--train-vlp", "tiny", "--eval-vlp", "tiny:1",
        "--ks", "1", "2", "--attacks", "jpeg75", "greyworld", "affine_fit",
        "--output", str(output), "--plot", str(plot), "--no-progress",
    ]  # fmt: skip
    result = tool.main(args)
    saved = json.loads(output.read_text())
    assert saved["num_images"] == 3 and saved["num_captions"] == 6
    # The fit set is the image after the three evaluated ones.
    assert saved["fit"]["num_images"] == 1
    assert saved["fit"]["dataset"].endswith("test[3:]")
    # One entry per VLP, each with its role and spec; never pooled.
    assert [(v["role"], v["name"], v["spec"]) for v in saved["vlps"]] == [
        ("train", "tiny:0", "tiny"),
        ("eval", "tiny:1", "tiny:1"),
    ]
    assert saved["vlp"] == "tiny:0" and saved["vlp_role"] == "train"
    assert saved["recall"] == saved["vlps"][0]["recall"]
    assert saved["vlps"][0]["recall"] != saved["vlps"][1]["recall"]
    assert saved["ks"] == [1, 2] and saved["image_size"] == 48
    assert set(saved["recall"]["protected_affine_fit"]["i2t"]) == {"R@1", "R@2"}
    assert saved["recall"] == result["recall"]
    assert plot.stat().st_size > 1000
    table = capsys.readouterr().out
    assert "protected_affine_fit" in table and "ASR vs original" in table
    assert "tiny:1 (role: eval)" in table and "common share" in table

    with pytest.raises(SystemExit):
        tool.main(["--scenes", "2", "--model", "mbt2018", "--quality", "1"])  # no VLP
    with pytest.raises(SystemExit):
        tool.main(["--scenes", "2", "--model", "mbt2018", "--vlp", "tiny"])  # no -q
    # A fitted attack on a folder needs a fit split or --limit.
    with pytest.raises(SystemExit):
        tool.main(args[:4] + args[6:])
    with pytest.raises(SystemExit):
        tool.main(["--scenes", "2", "--model", "mbt2018", "--quality", "1",
                   "--vlp", "tiny", "--fit-split", "test"])  # fmt: skip
    with pytest.raises(SystemExit):
        tool.main(["--scenes", "2", "--model", "mbt2018", "--quality", "1",
                   "--vlp", "tiny", "--attacks", "sharpen"])  # fmt: skip


def test_eval_retrieval_tool_fits_on_val_scenes():
    tool = eval_retrieval
    args = tool.build_parser().parse_args(
        [
            "--scenes",
            "3",
            "--model",
            "mbt2018",
            "--quality",
            "1",
            "--vlp",
            "tiny",
            "--fit-limit",
            "2",
            "--image-size",
            "32",
        ]  # fmt: skip
    )
    dataset, fit, label = tool.load_datasets(args, fitted=True)
    assert label == "scenes:val:seed0:2" and len(fit) == 2 and len(dataset) == 3
    # Another stream of the generator: no fit scene is an evaluated scene.
    evaluated = [np.asarray(dataset.load_image(i)) for i in range(len(dataset))]
    for j in range(len(fit)):
        image = np.asarray(fit.load_image(j))
        assert image.shape == (32, 32, 3)
        assert not any(np.array_equal(image, e) for e in evaluated)
    assert fit.image_captions_at(0) != dataset.image_captions_at(0)
    assert tool.load_datasets(args, fitted=False)[1] is None


def test_plot_pareto_refuses_to_replace_a_file(tmp_path, capsys):
    tool = plot_pareto
    path = tmp_path / "a.json"
    path.write_text(json.dumps(_sweep_report(18, 0.05, 0.5)))
    png = tmp_path / "p.png"
    png.write_bytes(b"keep")
    with pytest.raises(SystemExit):
        tool.main([str(path), "-o", str(png)])
    assert "--force" in capsys.readouterr().err
    assert png.read_bytes() == b"keep"


def _write_list_split(root, split, count, offset=0):
    rng = np.random.default_rng(offset)
    root.mkdir(parents=True, exist_ok=True)
    stems = []
    for i in range(offset, offset + count):
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"img{i}.png")
        (root / f"img{i}.txt").write_text(f"a picture number {i}\n")
        stems.append(f"img{i}")
    (root / f"{split}.txt").write_text("\n".join(stems) + "\n")


def test_eval_retrieval_reads_the_training_list_layout(tmp_path, capsys):
    tool = eval_retrieval
    data = tmp_path / "data"
    _write_list_split(data, "test", 3)
    _write_list_split(data, "val", 2, offset=3)
    args = [
        "--dataset", str(data), "--dataset-format", "list", "--split", "test",
        "--fit-split", "val", "--image-size", "32", "--model",
        "bmshj2018-factorized", "--quality", "1", "--random-init",
        "--train-vlp", "tiny", "--ks", "1", "5", "--attacks", "offset_fit",
        "--no-progress",
    ]  # fmt: skip
    result = tool.main(args)
    assert result["num_images"] == 3 and result["num_captions"] == 3
    assert result["fit"]["num_images"] == 2
    assert result["fit"]["dataset"] == f"{data}:val"
    # R@5 of 3 images is 1 by construction: said, not silently reported.
    err = capsys.readouterr().err
    assert "R@5 with 3 images is 1 by construction" in err
    assert "R@1 with" not in err
    # A list split missing, or no --split at all, fails before any model loads.
    for bad in (["--split", "train"], ["--fit-split", "nope"]):
        with pytest.raises(SystemExit):
            tool.main(args + bad)
        assert "no list file" in capsys.readouterr().err
    no_split = [a for a in args if a not in ("--split", "test")]
    with pytest.raises(SystemExit):
        tool.main(no_split)
    assert "needs --split" in capsys.readouterr().err


def test_eval_retrieval_names_the_codecs_for_an_unknown_named_model(capsys):
    tool = eval_retrieval
    with pytest.raises(SystemExit) as err:
        tool.main(["--scenes", "2", "--named", "demo", "--train-vlp", "tiny"])
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert "--named demo" in message and "demo-psic" in message
    assert "Traceback" not in message


def test_warn_trivial_ks(capsys):
    tool = eval_retrieval
    assert tool.warn_trivial_ks([1, 5, 10], 10) == [10]
    assert "R@10 with 10 images" in capsys.readouterr().err
    assert tool.warn_trivial_ks([1, 5], 100) == []
    assert capsys.readouterr().err == ""
