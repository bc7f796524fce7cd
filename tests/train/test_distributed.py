"""Tests of compressai_psic.train.distributed: the process context, and two gloo
processes that train as one."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import List

import pytest
import torch
import torch.multiprocessing as mp

from compressai_psic import load_checkpoint
from compressai_psic.train import (
    CHECKPOINT_NAME,
    LOG_FILE_NAME,
    main,
)

from .helpers import FAST, TINY, changed


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


def test_a_single_process_runs_on_the_cpu_without_a_group(monkeypatch):
    from compressai_psic.train.distributed import setup_distributed

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = setup_distributed(use_cuda=False)
    assert (ctx.rank, ctx.local_rank, ctx.world_size) == (0, 0, 1)
    assert ctx.device == torch.device("cpu")
    assert ctx.is_main and not ctx.distributed


def test_the_context_says_which_rank_is_main():
    from compressai_psic.train.distributed import DistributedContext

    second = DistributedContext(rank=1, local_rank=1, world_size=2)
    assert not second.is_main and second.distributed
    assert DistributedContext().is_main


def test_unwrap_returns_a_plain_model_as_it_is():
    from compressai_psic.train.distributed import unwrap

    net = torch.nn.Linear(2, 2)
    assert unwrap(net) is net
