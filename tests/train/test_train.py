import os
import runpy
import socket
import sys
import time
from pathlib import Path
from typing import List

import pytest
import torch
import torch.multiprocessing as mp
from compressai.models import ScaleHyperprior

from compressai_psic import load_checkpoint, zoo
from compressai_psic.datasets.scenes import write_split
from compressai_psic.io.files import file_sha256 as sha256_file
from compressai_psic.losses import PSICLoss
from compressai_psic.models import SHIELDED_CLASSES
from compressai_psic.train import (
    BEST_CHECKPOINT_NAME,
    CHECKPOINT_NAME,
    LOG_FILE_NAME,
    STAGE_DEFAULTS,
    build_model,
    configure_optimizers,
    export_state_dict,
    main,
    parse_args,
    set_trainable,
    split_parameters,
    train_step,
)
from compressai_psic.train.arguments import save_dir_problem
from compressai_psic.vlp import tiny_vlp

from ..helpers import ROOT

COMPRESSAI_KEYS = ("epoch", "state_dict", "loss", "optimizer", "aux_optimizer")
# Tiny hyperprior: 64×64 patches are the smallest its 1/64 hyper-latents allow.
TINY = ["--N", "16", "--M", "24", "--patch-size", "64", "64"]
FAST = [
    "--vlp",
    "tiny",
    "--batch-size",
    "4",
    "--test-batch-size",
    "4",
    "-n",
    "0",
    "--max-steps",
    "2",
    "--seed",
    "0",
    "--log-every",
    "1",
    "--no-cuda",
]


def params(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def changed(before, after):
    return {name for name in before if not torch.equal(before[name], after[name])}


@pytest.fixture(scope="module")
def flickr_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("flickr")
    write_split(root, "train", 8, image_size=64)
    write_split(root, "val", 4, image_size=64)
    return root


@pytest.fixture(scope="module")
def stage1(flickr_root, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("stage1")
    argv = ["-d", str(flickr_root), "--save-dir", str(save_dir), *TINY, *FAST]
    result = main(argv)
    return save_dir, result


# ------------------------------------------------------------------ arguments


def test_stage_defaults_follow_the_paper():
    one = parse_args(["--dataset-format", "scenes", "--no-cuda"])
    two = parse_args(["--dataset-format", "scenes", "--stage", "2", "--no-cuda"])
    for args, stage in ((one, 1), (two, 2)):
        for key, value in STAGE_DEFAULTS[stage].items():
            assert getattr(args, key) == value
    assert (one.learning_rate, one.lambda_vlp) == (1e-4, 9e-4)
    assert one.milestones == [80, 100]
    assert (two.learning_rate, two.lambda_vlp, two.batch_size) == (1e-5, 0.07, 64)
    assert one.lambda_full == one.lambda_prot == 0.0011
    assert one.vlp == ["open_clip:ViT-B-32:openai"]
    assert one.val_split == "val" and one.paths == "sample"


def test_lambda_flags_and_validation():
    args = parse_args(
        ["--dataset-format", "scenes", "--lambda", "0.01", "--lambda-prot", "0.02"]
        + ["--no-cuda", "--vlp", "tiny", "--vlp", "tiny:1"]
    )
    assert (args.lambda_full, args.lambda_prot) == (0.01, 0.02)
    assert args.vlp == ["tiny", "tiny:1"]
    with pytest.raises(SystemExit):  # no captions: UAEO impossible
        parse_args(["-d", "x", "--dataset-format", "imagefolder", "--no-cuda"])
    with pytest.raises(SystemExit):
        parse_args(["--dataset-format", "flickr8k", "--no-cuda"])  # no -d
    with pytest.raises(SystemExit):
        parse_args(["--dataset-format", "scenes", "--init", "a", "--checkpoint", "b"])
    rd = parse_args(["-d", "x", "--dataset-format", "imagefolder", "--lambda-vlp", "0"])
    assert rd.vlp == [] and rd.val_split == "test"


# ------------------------------------------------------------ parameter split


def test_parameter_split_handles_frozen_parameters():
    net = zoo.bmshj2018_hyperprior(1, N=16, M=24)
    for name, param in net.named_parameters():
        if name.startswith("g_a.") or name == "entropy_bottleneck.quantiles":
            param.requires_grad_(False)
    main_params, aux_params = split_parameters(net)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert set(main_params) | set(aux_params) == trainable
    assert not set(main_params) & set(aux_params)
    assert not any(n.startswith("g_a.") for n in main_params)
    assert aux_params == {}
    optimizer, aux_optimizer = configure_optimizers(net, 1e-4, 1e-3)
    assert aux_optimizer is None
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(main_params)

    net.entropy_bottleneck.quantiles.requires_grad_(True)
    _, aux_optimizer = configure_optimizers(net, 1e-4, 1e-3)
    (aux,) = aux_optimizer.param_groups[0]["params"]
    assert aux is net.entropy_bottleneck.quantiles


def test_set_trainable_groups():
    net = zoo.bmshj2018_hyperprior(1, N=16, M=24)
    groups = net.parameter_groups()
    assert set(set_trainable(net, 1)) == {n for n, _ in net.named_parameters()}
    names = set(set_trainable(net, 2, "synthesis"))
    assert names == set(groups["synthesis"]) | set(groups["trigger_projections"])
    assert not any(n.startswith("global_cond.") for n in names)
    names = set(set_trainable(net, 2, "triggers"))
    assert names == set(groups["trigger_projections"])
    assert {n for n, p in net.named_parameters() if p.requires_grad} == names
    # The official layout keeps its projections inside g_s.
    psic = SHIELDED_CLASSES["psic-hy2018"](N=16, M=24, trigger_dim=32)
    names = set(set_trainable(psic, 2, "triggers"))
    assert names and all(n.startswith("g_s.") and "_proj" in n for n in names)
    with pytest.raises(ValueError, match="synthesis"):
        set_trainable(net, 2, "decoder")


# ------------------------------------------------------------------ end to end


def test_stage1_writes_loadable_checkpoints(stage1):
    save_dir, result = stage1
    assert result["step"] == 2 and result["epoch"] == 0
    for name in (CHECKPOINT_NAME, BEST_CHECKPOINT_NAME, LOG_FILE_NAME):
        assert (save_dir / name).is_file()
    checkpoint = torch.load(save_dir / CHECKPOINT_NAME, weights_only=True)
    for key in COMPRESSAI_KEYS + ("lr_scheduler", "step", "args", "stage"):
        assert key in checkpoint
    assert checkpoint["architecture"] == "bmshj2018-hyperprior"
    assert checkpoint["stage"] == 1 and checkpoint["step"] == 2
    assert checkpoint["args"]["patch_size"] == [64, 64]
    # update(force=True) ran before saving: the CDF tables are filled.
    assert checkpoint["state_dict"]["entropy_bottleneck._quantized_cdf"].numel() > 0
    net = load_checkpoint(save_dir / BEST_CHECKPOINT_NAME)
    x = torch.rand(1, 3, 64, 64)
    strings = net.compress(x)
    out = net.decompress_multi(strings["strings"], strings["shape"])
    assert [t.shape for t in out["x_hat"]] == [x.shape, x.shape]
    log = (save_dir / LOG_FILE_NAME).read_text()
    for term in ("bpp_loss=", "vlp_loss=", "clean/uncertain=", "epoch 0 val:"):
        assert term in log


def test_stage2_changes_only_synthesis(stage1, flickr_root, tmp_path):
    init = stage1[0] / BEST_CHECKPOINT_NAME
    before = params(load_checkpoint(init))
    result = main(
        ["-d", str(flickr_root), "--save-dir", str(tmp_path), "--init", str(init)]
        + ["--stage", "2", "--paths", "both", "-lr", "1e-3", *FAST]
        + ["--patch-size", "64", "64"]
    )
    assert result["step"] == 2
    after_net = load_checkpoint(result["checkpoint"])
    moved = changed(before, params(after_net))
    groups = after_net.parameter_groups()
    allowed = set(groups["synthesis"]) | set(groups["trigger_projections"])
    assert moved and moved <= allowed
    assert moved & set(groups["synthesis"])
    assert moved & set(groups["trigger_projections"])
    checkpoint = torch.load(result["checkpoint"], weights_only=True)
    assert checkpoint["stage"] == 2 and checkpoint["aux_optimizer"] is None


def test_stage2_triggers_keeps_the_full_decode(flickr_root, tmp_path):
    torch.manual_seed(0)
    base = ScaleHyperprior(N=16, M=24).eval()
    init = tmp_path / "compressai.pth.tar"
    torch.save({"epoch": 3, "state_dict": base.state_dict()}, init)
    result = main(
        ["-d", str(flickr_root), "--save-dir", str(tmp_path / "run")]
        + ["--init", str(init), "--stage", "2", "--stage2-params", "triggers"]
        + ["-lr", "1e-2", "--patch-size", "64", "64", *FAST]
    )
    net = load_checkpoint(result["checkpoint"])
    moved = changed(params(base), params(net))
    projections = set(net.parameter_groups()["trigger_projections"])
    assert not moved  # every base parameter is untouched...
    assert {n for n, p in net.named_parameters() if p.abs().sum() > 0} >= projections
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = base(x)["x_hat"]
        full, protected = net(x, condition=["full", "protected"])["x_hat"]
    assert torch.equal(full, expected)  # ...so the full decode is the base one
    assert not torch.equal(protected, expected)


def test_resume_continues_the_step_count(stage1, flickr_root, tmp_path):
    save_dir, _ = stage1
    resumed = main(
        ["-d", str(flickr_root), "--save-dir", str(tmp_path), *TINY]
        + ["--checkpoint", str(save_dir / CHECKPOINT_NAME), *FAST[:-5]]
        + ["--max-steps", "4", "--no-cuda"]
    )
    assert resumed["step"] == 4 and resumed["epoch"] == 1
    checkpoint = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert (checkpoint["step"], checkpoint["epoch"]) == (4, 1)
    adam_steps = {int(s["step"]) for s in checkpoint["optimizer"]["state"].values()}
    # Trigger weights skip the steps whose batch drew only full-path samples
    # (their bias is exactly zero there), so they may lag behind.
    assert max(adam_steps) == 4
    assert checkpoint["lr_scheduler"]["last_epoch"] == 2
    assert "Resumed" in (tmp_path / LOG_FILE_NAME).read_text()


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    net = zoo.bmshj2018_factorized(1, N=16, M=24).train()
    criterion = PSICLoss(tiny_vlp(), lmbda_full=0.01, lmbda_protected=0.01)
    optimizer, aux_optimizer = configure_optimizers(net, 1e-3, 1e-3)
    images = torch.rand(4, 3, 32, 32)
    captions = ["a red circle", "two blue stars", "a green cross", "a white ring"]
    losses = [
        train_step(net, criterion, images, captions, optimizer, aux_optimizer, "both")
        for _ in range(30)
    ]
    assert {"loss", "bpp_loss", "vlp_loss", "aux_loss", "num_clean"} <= set(losses[0])
    first = losses[0]["loss"]
    last = sum(step["loss"] for step in losses[-3:]) / 3
    assert last < 0.7 * first


# ------------------------------------------------------------- other features


class RecordingWriter:
    def __init__(self):
        self.scalars, self.images, self.closed = {}, {}, False

    def add_scalar(self, tag, value, step):
        self.scalars[tag] = value

    def add_image(self, tag, image, step):
        self.images[tag] = image

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_rate_distortion_only_with_tensorboard(tmp_path, monkeypatch):
    from PIL import Image

    for split, count in (("train", 4), ("test", 2)):
        (tmp_path / "data" / split).mkdir(parents=True)
        for i in range(count):
            pixels = torch.randint(0, 256, (40, 40, 3), dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(tmp_path / "data" / split / f"{i}.png")
    writer = RecordingWriter()
    monkeypatch.setattr("compressai_psic.train.loop._summary_writer", lambda d: writer)
    result = main(
        ["-d", str(tmp_path / "data"), "--dataset-format", "imagefolder"]
        + ["-m", "bmshj2018-factorized", "--N", "16", "--M", "24"]
        + ["--patch-size", "32", "32", "--lambda-vlp", "0", "--batch-size", "2"]
        + ["--test-batch-size", "2", "-n", "0", "--max-steps", "2", "--no-cuda"]
        + ["--save-dir", str(tmp_path / "run"), "--export", "mine"]
    )
    assert "vlp_loss" not in result["train"]
    assert {"train/loss", "train/bpp_loss", "val/loss", "val/psnr_protected"} <= set(
        writer.scalars
    )
    (grid,) = writer.images.values()
    assert grid.shape[0] == 3 and grid.shape[1] > 3 * 32  # three rows of images
    assert writer.closed
    export = result["export"]
    assert export.name == f"mine-{sha256_file(export)[:8]}.pth.tar"
    state = torch.load(export, weights_only=True)
    assert "optimizer" not in state and "g_s.0.weight" in state


def test_export_state_dict(tmp_path):
    net = zoo.bmshj2018_factorized(1, N=16, M=24)
    projection = net.trigger_proj["g_s-4"].weight
    with torch.no_grad():
        projection.normal_()
    path = export_state_dict(net, tmp_path, "demo")
    assert path.parent == tmp_path
    assert path.name == f"demo-{sha256_file(path)[:8]}.pth.tar"
    assert not list(tmp_path.glob("*.partial"))
    loaded = load_checkpoint(path)
    assert torch.equal(loaded.trigger_proj["g_s-4"].weight, projection)
    x = torch.rand(1, 3, 32, 32)
    strings = loaded.compress(x)  # the exported CDFs are ready to use
    decoded = loaded.decompress(strings["strings"], strings["shape"])["x_hat"]
    assert decoded.shape == x.shape
    with pytest.raises(ValueError, match="file stem"):
        export_state_dict(net, tmp_path, "a/b")


def test_start_point_errors(stage1, tmp_path):
    scenes = ["--dataset-format", "scenes", "--no-cuda", "--save-dir", str(tmp_path)]
    with pytest.raises(ValueError, match="zoo:NAME:QUALITY"):
        main([*scenes, "--init", "zoo:bmshj2018-hyperprior"])
    with pytest.raises(ValueError, match="bmshj2018-factorized"):
        main([*scenes, "--init", "zoo:nope:3"])
    with pytest.raises(ValueError, match="multiples of 64"):
        main([*scenes, "--patch-size", "32", "32", *TINY[:4]])
    checkpoint = str(stage1[0] / CHECKPOINT_NAME)
    with pytest.raises(ValueError, match="does not match"):
        main([*scenes, "--init", checkpoint, "-m", "mbt2018"])
    with pytest.raises(ValueError, match="--init"):  # resuming across stages
        main([*scenes, "--checkpoint", checkpoint, "--stage", "2"])


def test_init_from_compressai_zoo(monkeypatch):
    import compressai.zoo

    calls = []
    base = ScaleHyperprior(N=16, M=24)

    def fake_entry(quality, metric="mse", pretrained=False, progress=True):
        calls.append((quality, metric, pretrained))
        return base

    monkeypatch.setitem(compressai.zoo.image_models, "bmshj2018-hyperprior", fake_entry)
    args = parse_args(
        ["--dataset-format", "scenes", "--no-cuda", "--metric", "ms-ssim"]
        + ["--init", "zoo:bmshj2018-hyperprior:5"]
    )
    net = build_model(args)
    assert calls == [(5, "ms-ssim", True)]  # CompressAI's pretrained weights
    assert net.architecture == "bmshj2018-hyperprior"
    assert not changed(params(base), params(net))
    assert "global_cond.beta_mlp.fc1.weight" in net.state_dict()


# ------------------------------------------------------------------ broken files


@pytest.fixture
def broken_root(tmp_path):
    root = tmp_path / "broken"
    write_split(root, "train", 4, image_size=64)
    write_split(root, "val", 2, image_size=64)
    victim = sorted((root / "Images").glob("train_*.png"))[1]
    victim.write_bytes(victim.read_bytes()[:40])  # truncated PNG
    return root, victim


def test_broken_image_stops_with_its_name(broken_root, tmp_path):
    root, victim = broken_root
    argv = ["-d", str(root), "--save-dir", str(tmp_path), *TINY, *FAST]
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--batch-size", "4"])
    assert exit_info.value.code == 1
    log = (tmp_path / LOG_FILE_NAME).read_text()
    assert victim.name in log and "--on-error skip" in log
    assert not (tmp_path / CHECKPOINT_NAME).exists()


def test_broken_image_skipped_on_request(broken_root, tmp_path):
    root, victim = broken_root
    result = main(
        ["-d", str(root), "--save-dir", str(tmp_path), "--on-error", "skip"]
        + [*TINY, *FAST]
    )
    assert (result["step"], result["epoch"]) == (2, 1)  # one batch of 4 per epoch
    log = (tmp_path / LOG_FILE_NAME).read_text()
    assert "Skipping unreadable sample" in log and victim.name in log
    assert "1 unreadable training sample(s) skipped so far" in log


# ------------------------------------------------------------------ entry points


def test_tools_wrapper_is_the_same_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        sys_argv = sys.argv
        try:
            sys.argv = ["tools/train.py", "--help"]
            runpy.run_path(str(ROOT / "tools" / "train.py"), run_name="__main__")
        finally:
            sys.argv = sys_argv
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--stage2-params" in out and "--clip_max_norm" in out


def test_python_m_runs_the_package(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["compressai_psic.train", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("compressai_psic.train", run_name="__main__")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "python -m compressai_psic.train" in out and "--stage2-params" in out


def _ddp_worker(rank: int, argv: List[str], port: int, out_dir: str) -> None:
    """One of two gloo ranks running the training entry point, with spies on the
    checkpoints it saves and on the weights it ends with."""
    import compressai_psic.train.loop as loop

    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
    )
    save_checkpoint, train_epochs = loop.save_checkpoint, loop._train_epochs

    def recording_save(*args, **kwargs):
        Path(out_dir, f"saved_by_rank{rank}").touch()
        return save_checkpoint(*args, **kwargs)

    def recording_epochs(args, ctx, save_dir, session, *rest):
        result = train_epochs(args, ctx, save_dir, session, *rest)
        weights = {n: p.detach() for n, p in session.net.named_parameters()}
        torch.save(weights, Path(out_dir, f"weights_rank{rank}.pt"))
        return result

    loop.save_checkpoint, loop._train_epochs = recording_save, recording_epochs
    main(argv)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ddp_two_processes_gloo(flickr_root, tmp_path):
    # Two ranks started fresh (spawn: a fork would inherit autograd's threads
    # from whatever ran before in this worker), in a gloo group: the same code
    # path as torchrun on CPU.
    save_dir, out_dir = tmp_path / "run", tmp_path / "spies"
    out_dir.mkdir()
    argv = ["-d", str(flickr_root), "--save-dir", str(save_dir), *TINY, *FAST]
    argv[argv.index("--batch-size") + 1] = "2"
    context = mp.start_processes(
        _ddp_worker,
        args=(argv, _free_port(), str(out_dir)),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two training processes did not finish in 120 s")
    log = (save_dir / LOG_FILE_NAME).read_text()
    assert "2 process(es)" in log
    assert log.count("epoch 0 train") == 1  # rank 0 logs alone...
    assert sorted(p.name for p in out_dir.glob("saved_by_*")) == ["saved_by_rank0"]
    checkpoint = torch.load(save_dir / CHECKPOINT_NAME, weights_only=True)
    assert checkpoint["step"] == 2
    assert not any(k.startswith("module.") for k in checkpoint["state_dict"])
    # 2 processes × batch 2 per step: the summary counts images of both ranks.
    assert "images=8 " in log
    load_checkpoint(save_dir / CHECKPOINT_NAME)
    # Different shards and paths per rank, yet DDP's averaged gradients keep
    # the replicas identical (without DDP they differ after one step).
    weights = [torch.load(out_dir / f"weights_rank{r}.pt") for r in (0, 1)]
    assert weights[0] and weights[0].keys() == weights[1].keys()
    assert not changed(weights[0], weights[1])


def test_missing_tensorboard_is_said_once_in_the_log(monkeypatch, caplog):
    import builtins

    from compressai_psic.train.logs import _summary_writer

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with caplog.at_level("WARNING", logger="compressai_psic.train"):
        assert _summary_writer(Path("unused")) is None
    assert [r.message for r in caplog.records if "tensorboard" in r.message]


def test_export_state_dict_keeps_the_affine_modulation(tmp_path):
    net = zoo.bmshj2018_factorized(1, N=16, M=24, modulation="affine")
    with torch.no_grad():
        net.trigger_proj["g_s-4"].weight.normal_()
    path = export_state_dict(net, tmp_path, "affine")
    state = torch.load(path, weights_only=True)
    assert state["trigger_proj.g_s-4._extra_state"] == {"modulation": "affine"}
    assert load_checkpoint(path).modulation == "affine"


# ------------------------------------------------------------- the save folder


def _scenes(*extra: str) -> List[str]:
    return ["--dataset-format", "scenes", "--no-cuda", *extra]


@pytest.mark.parametrize("name", [CHECKPOINT_NAME, BEST_CHECKPOINT_NAME])
def test_an_earlier_runs_checkpoints_are_kept_unless_asked(tmp_path, capsys, name):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "train.log").write_text("a log is appended to, never replaced")
    assert parse_args(_scenes("--save-dir", str(run_dir))).save_dir == str(run_dir)
    (run_dir / name).write_bytes(b"an earlier run")
    with pytest.raises(SystemExit) as refused:
        parse_args(_scenes("--save-dir", str(run_dir)))
    assert refused.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert (
        f"error: --save-dir {run_dir} holds an earlier run's {name}: resume it "
        f"with --checkpoint {run_dir / CHECKPOINT_NAME}, replace it with "
        "-f/--force, or choose another --save-dir"
    ) in line
    # Asked to: replacing, resuming that run, or not saving at all.
    assert parse_args(_scenes("--save-dir", str(run_dir), "-f")).force
    resume = str(run_dir / CHECKPOINT_NAME)
    assert parse_args(_scenes("--save-dir", str(run_dir), "--checkpoint", resume))
    assert not parse_args(_scenes("--save-dir", str(run_dir), "--no-save")).save
    assert (run_dir / name).read_bytes() == b"an earlier run"


def test_save_dir_problem(tmp_path):
    elsewhere = tmp_path / "other" / CHECKPOINT_NAME
    assert save_dir_problem(str(tmp_path / "new"), None, False) is None
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"")
    assert "holds an earlier run's" in save_dir_problem(str(tmp_path), None, False)
    # Resuming another run into this folder would still replace its files.
    assert "holds" in save_dir_problem(str(tmp_path), str(elsewhere), False)
    same = str(tmp_path / "." / CHECKPOINT_NAME)
    assert save_dir_problem(str(tmp_path), same, False) is None
    assert save_dir_problem(str(tmp_path), None, True) is None
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    for force in (False, True):
        assert save_dir_problem(str(a_file), None, force) == (
            f"--save-dir {a_file}: exists and is not a folder"
        )
