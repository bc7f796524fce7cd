r"""Time and peak memory of one PSIC training step, with and without the UAEO term.

One step is what a stage-1 training loop does per batch: per-sample Bernoulli(½)
paths (or both paths with ``--paths both``), forward, stage-1 loss, backward,
gradient clipping, optimiser step, plus the entropy-bottleneck auxiliary step.
"Without UAEO" uses :class:`~compressai_psic.losses.DualPathRateDistortionLoss`
only; "with UAEO" uses :class:`~compressai_psic.losses.PSICLoss`, which adds two
VLP image passes (original and protected images) and one text pass.

Each configuration runs in its own subprocess so that peak memory is its own:
``torch.cuda.max_memory_allocated`` on CUDA, peak resident set size
(``ru_maxrss``) on CPU, shown together with the RSS before the first step. Wall
time is reported with the process CPU time, which is less disturbed by other
jobs on a shared machine (use ``--threads 1`` there).

Examples::

    python tools/bench_train_step.py --device cpu --vlp tiny --repeats 3
    python tools/bench_train_step.py --device cuda --vlp ViT-B-32 --repeats 10

See `"Privacy-Shielded Image Compression: Defending Against Exploitation from
Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_, ICML 2025.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List

from compressai_psic.system import peak_rss_mib, rss_mib

VLP_CHOICES = ("tiny", "ViT-B-32")
CAPTION_WORDS = ("a", "photo", "of", "red", "dog", "car", "street", "sunny", "two")


def _captions(batch_size: int, step: int) -> List[str]:
    words = CAPTION_WORDS
    return [
        " ".join(words[(i + step + k) % len(words)] for k in range(6))
        for i in range(batch_size)
    ]


def run_worker(args: argparse.Namespace) -> Dict[str, object]:
    import torch

    from compressai_psic import zoo
    from compressai_psic.losses import DualPathRateDistortionLoss, PSICLoss
    from compressai_psic.vlp import OpenCLIPAdapter, tiny_vlp

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    kwargs = {}
    if args.N:
        kwargs["N"] = args.N
    if args.M:
        kwargs["M"] = args.M
    model = zoo.image_models[args.model](args.quality, **kwargs).to(device).train()

    if args.uaeo:
        if args.vlp == "tiny":
            vlp = tiny_vlp()
        else:
            vlp = OpenCLIPAdapter(args.vlp, pretrained="random", device=device)
        criterion = PSICLoss(vlp, stage=1).to(device)
    else:
        criterion = DualPathRateDistortionLoss().to(device)

    aux_names = {n for n, p in model.named_parameters() if n.endswith(".quantiles")}
    params = [p for n, p in model.named_parameters() if n not in aux_names]
    aux_params = [p for n, p in model.named_parameters() if n in aux_names]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    aux_optimizer = torch.optim.Adam(aux_params, lr=1e-3)

    generator = torch.Generator(device="cpu").manual_seed(1)
    shape = (args.batch_size, 3, args.patch_size, args.patch_size)

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step(index: int) -> Dict[str, float]:
        x = torch.rand(shape, generator=generator).to(device)
        texts = _captions(args.batch_size, index)
        optimizer.zero_grad(set_to_none=True)
        aux_optimizer.zero_grad(set_to_none=True)
        if args.paths == "both":
            output, beta = model.forward_multi(x), None
        else:
            beta = torch.bernoulli(
                torch.full((args.batch_size,), 0.5), generator=generator
            )
            beta = beta.to(device)
            output = model(x, condition=beta)
        if args.uaeo:
            out = criterion(output, x, texts, beta=beta)
        else:
            out = criterion(output, x, beta=beta)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        aux_loss = model.aux_loss()
        aux_loss.backward()
        aux_optimizer.step()
        return {"loss": float(out["loss"])}

    for index in range(args.warmup):
        step(index)
    synchronize()
    rss_before = rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    cpu_times = []
    losses = []
    for index in range(args.repeats):
        synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        losses.append(step(args.warmup + index)["loss"])
        synchronize()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    result: Dict[str, object] = {
        "uaeo": bool(args.uaeo),
        "step_ms_median": 1e3 * statistics.median(times),
        "step_ms_min": 1e3 * min(times),
        "cpu_ms_median": 1e3 * statistics.median(cpu_times),
        "finite": all(math.isfinite(value) for value in losses),
        "threads": torch.get_num_threads(),
        "device_name": (
            torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        ),
    }
    if device.type == "cuda":
        result["peak_mem_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        result["mem_kind"] = "cuda max_memory_allocated"
    else:
        result["peak_mem_mib"] = peak_rss_mib()
        result["rss_before_mib"] = rss_before
        result["mem_kind"] = "peak RSS (process)"
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--vlp", default="tiny", choices=VLP_CHOICES)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps")
    parser.add_argument("--model", default="bmshj2018-hyperprior")
    parser.add_argument("--quality", type=int, default=1)
    parser.add_argument("--N", type=int, default=None, help="override N channels")
    parser.add_argument("--M", type=int, default=None, help="override M channels")
    parser.add_argument(
        "--paths",
        default="sample",
        choices=("sample", "both"),
        help="one Bernoulli(1/2) path per sample, or both paths for all",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads")
    parser.add_argument("--json", default=None, help="also write results here")
    parser.add_argument("--worker", choices=("rd", "uaeo"), help=argparse.SUPPRESS)
    return parser


def _forwarded_args(args: argparse.Namespace) -> List[str]:
    flags = []
    for name in ("device", "vlp", "batch_size", "patch_size", "repeats", "warmup"):
        flags += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    flags += ["--model", args.model, "--quality", str(args.quality)]
    flags += ["--paths", args.paths, "--threads", str(args.threads)]
    for name in ("N", "M"):
        if getattr(args, name):
            flags += [f"--{name}", str(getattr(args, name))]
    return flags


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        args.uaeo = args.worker == "uaeo"
        print(json.dumps(run_worker(args)))
        return 0

    results = []
    for worker in ("rd", "uaeo"):
        command = [sys.executable, os.path.abspath(__file__), "--worker", worker]
        proc = subprocess.run(
            command + _forwarded_args(args), capture_output=True, text=True
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            return proc.returncode
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    device_name = results[0]["device_name"]
    print(
        f"# one stage-1 training step: {args.model} q={args.quality}"
        f"{f' N={args.N}' if args.N else ''}{f' M={args.M}' if args.M else ''}, "
        f"batch {args.batch_size}, {args.patch_size}x{args.patch_size}, "
        f"paths={args.paths}, VLP={args.vlp}, device={args.device} ({device_name}), "
        f"threads={results[0]['threads']}, median of {args.repeats} "
        f"(+{args.warmup} warm-up)"
    )
    print(
        "| UAEO | step ms (median) | step ms (min) | process CPU ms (median) "
        "| peak MiB | memory measure |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        memory = f"{r['peak_mem_mib']:.0f}"
        if "rss_before_mib" in r:
            memory += f" (RSS before steps {r['rss_before_mib']:.0f})"
        print(
            f"| {'with' if r['uaeo'] else 'without'} | {r['step_ms_median']:.0f} | "
            f"{r['step_ms_min']:.0f} | {r['cpu_ms_median']:.0f} | {memory} | "
            f"{r['mem_kind']} |"
        )
    for key, label in (("step_ms_median", "wall"), ("cpu_ms_median", "CPU")):
        overhead = results[1][key] / results[0][key] - 1
        print(f"UAEO {label} time overhead: {100 * overhead:+.0f}%")
    if not all(r["finite"] for r in results):
        print("WARNING: non-finite loss encountered", file=sys.stderr)
        return 1
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
