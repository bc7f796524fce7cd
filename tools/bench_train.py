r"""Training throughput (images/s) and peak memory of the PSIC trainer.

Times :func:`compressai_psic.train.train_step`, the step the training command
runs, on a model, loss and optimisers built exactly as
``python -m compressai_psic.train`` builds them (same flags, same functions).
Batches are procedural captioned scenes rendered once before timing, so data
loading is not measured. Each batch size runs in its own subprocess, so peak
memory is its own: ``torch.cuda.max_memory_allocated`` on CUDA, peak resident
set size (``ru_maxrss``, imports included) on CPU, shown with the RSS before the
first step.

Examples::

    python tools/bench_train.py --device cpu --vlp tiny --batch-size 4 \
        --patch-size 256 --steps 3
    python tools/bench_train.py --device cuda --vlp ViT-B-32 --batch-size 16 64 \
        --patch-size 256 --steps 20

``--vlp ViT-B-32`` is the open_clip ViT-B-32 architecture with random weights
(nothing is downloaded; the cost is that of the real model).

See `"Privacy-Shielded Image Compression: Defending Against Exploitation from
Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_, ICML 2025.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List

from compressai_psic.system import peak_rss_mib, rss_mib

VLP_SPECS = {"tiny": "tiny", "ViT-B-32": "open_clip:ViT-B-32:random"}


def trainer_argv(args: argparse.Namespace, batch_size: int) -> List[str]:
    """The training command's flags for this configuration."""
    argv = [
        "--dataset-format",
        "scenes",
        "-m",
        args.model,
        "-q",
        str(args.quality),
        "--stage",
        str(args.stage),
        "--paths",
        args.paths,
        "--vlp",
        VLP_SPECS[args.vlp],
        "--batch-size",
        str(batch_size),
        "--patch-size",
        str(args.patch_size),
        str(args.patch_size),
        "--cuda" if args.device == "cuda" else "--no-cuda",
    ]
    if args.N:
        argv += ["--N", str(args.N)]
    if args.M:
        argv += ["--M", str(args.M)]
    return argv


def run_worker(args: argparse.Namespace, batch_size: int) -> Dict[str, object]:
    import torch

    from compressai_psic.datasets import SceneCaptions, collate_captions
    from compressai_psic.train import (
        build_criterion,
        build_model,
        configure_optimizers,
        parse_args,
        set_trainable,
        train_step,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    train_args = parse_args(trainer_argv(args, batch_size))
    device = torch.device(args.device)
    net = build_model(train_args).to(device).train()
    set_trainable(net, train_args.stage, train_args.stage2_params)
    optimizer, aux_optimizer = configure_optimizers(
        net, train_args.learning_rate, train_args.aux_learning_rate
    )
    criterion = build_criterion(train_args, device)

    scenes = SceneCaptions(
        "train", 2 * batch_size, image_size=args.patch_size, caption_mode="first"
    )
    samples = [scenes[i] for i in range(len(scenes))]
    batches = [
        collate_captions(samples[k * batch_size : (k + 1) * batch_size])
        for k in range(2)
    ]
    batches = [(images.to(device), captions) for images, captions in batches]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rss_before = rss_mib()
    for step in range(args.warmup):
        images, captions = batches[step % 2]
        train_step(
            net,
            criterion,
            images,
            captions,
            optimizer,
            aux_optimizer,
            train_args.paths,
            train_args.clip_max_norm,
        )
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(args.steps):
        images, captions = batches[step % 2]
        sync()
        started = time.perf_counter()
        train_step(
            net,
            criterion,
            images,
            captions,
            optimizer,
            aux_optimizer,
            train_args.paths,
            train_args.clip_max_norm,
        )
        sync()
        times.append(time.perf_counter() - started)
    total = sum(times)
    result: Dict[str, object] = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "model": net.architecture,
        "N": int(net.N) if hasattr(net, "N") else None,
        "vlp": args.vlp,
        "stage": args.stage,
        "paths": args.paths,
        "batch_size": batch_size,
        "patch_size": args.patch_size,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "step_s": total / len(times),
        "images_per_s": batch_size * len(times) / total,
    }
    if device.type == "cuda":
        result["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        result["rss_before_mib"] = rss_before
        result["peak_rss_mib"] = peak_rss_mib()
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--vlp", choices=sorted(VLP_SPECS), default="tiny")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[4])
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps")
    parser.add_argument("-m", "--model", default="bmshj2018-hyperprior")
    parser.add_argument("-q", "--quality", type=int, default=3)
    parser.add_argument("--N", type=int, default=None)
    parser.add_argument("--M", type=int, default=None)
    parser.add_argument("--stage", type=int, choices=(1, 2), default=1)
    parser.add_argument("--paths", choices=("sample", "both"), default="sample")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def _row(result: Dict[str, object]) -> str:
    memory = (
        f"{result['peak_memory_mib']:.0f} MiB (GPU)"
        if "peak_memory_mib" in result
        else f"{result['peak_rss_mib']:.0f} MiB RSS ({result['rss_before_mib']:.0f} "
        "before the first step)"
    )
    threads = result["threads"]
    where = result["gpu"] or f"cpu, {threads} thread{'s' if threads != 1 else ''}"
    return (
        f"| {result['model']} N={result['N']} | {result['vlp']} | {where} | "
        f"{result['patch_size']}² | {result['batch_size']} | "
        f"{result['images_per_s']:.2f} | {result['step_s']:.3f} | {memory} |"
    )


def main(argv: List[str] | None = None) -> List[Dict[str, object]]:
    args = build_parser().parse_args(argv)
    if args.worker is not None:
        print(json.dumps(run_worker(args, args.worker)))
        return []
    results = []
    base = list(argv if argv is not None else sys.argv[1:])
    for batch_size in args.batch_size:
        command = [sys.executable, os.path.abspath(__file__), *base]
        command += ["--worker", str(batch_size)]
        process = subprocess.run(command, capture_output=True, text=True)
        if process.returncode != 0:
            sys.stderr.write(process.stderr)
            raise SystemExit(f"batch size {batch_size} failed")
        result = json.loads(process.stdout.strip().splitlines()[-1])
        results.append(result)
        print(json.dumps(result))
    print(
        "| model | VLP | device | patch | batch | images/s | s/step | peak memory |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    for result in results:
        print(_row(result))
    return results


if __name__ == "__main__":
    main()
