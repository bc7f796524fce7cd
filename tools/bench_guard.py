r"""Cost of :mod:`compressai_psic.models.guard` on a decode: time and padding.

For each architecture (CompressAI's own model, random weights, one synthetic
image) every repeat times, interleaved, ``model.decompress(strings, shape)`` alone
and the guarded decode
(``guard_decode_inputs``, ``decompress``, ``check_finite``), on the process CPU
clock with one thread. Reports min/median/max of the per-repeat ratio
guarded/plain, the zeros appended (``76 S + 132`` bytes per string) and the
compressed size they pad. ``--device cuda`` runs the model on the GPU and times
on the wall clock, waiting for the device around each decode (the entropy
decoding and the guard stay on the CPU).

Example (the BENCHMARKS.md figures)::

    OMP_WAIT_POLICY=PASSIVE python tools/bench_guard.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

__all__ = ["bench", "build_parser", "main"]

DEFAULT_ARCHITECTURES = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean")


def bench(
    architecture: str,
    quality: int,
    height: int,
    width: int,
    repeats: int,
    device: str = "cpu",
):
    """Figures of one architecture (see the module docstring)."""
    import torch

    on_gpu = torch.device(device).type == "cuda"
    clock = time.perf_counter if on_gpu else time.process_time

    # CompressAI's own model: its decompress runs no guard (a shielded model's
    # does, so the plain decode would be guarded too, and the guarded one twice).
    from compressai.zoo import image_models

    from compressai_psic.models import guard as decode_guard

    torch.manual_seed(0)
    model = image_models[architecture](quality, pretrained=False).eval().to(device)
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64, device=device))
    model.update(force=True)
    x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(1))
    x = x.to(device)
    with torch.no_grad():
        out = model.compress(x)
    strings, shape = out["strings"], out["shape"]
    decode_guard.latent_layout(model)  # probed once per model, not timed

    def wait():
        if on_gpu:
            torch.cuda.synchronize(device)

    def plain():
        with torch.no_grad():
            model.decompress(strings, shape)
        wait()

    def guarded():
        padded = decode_guard.guard_decode_inputs(model, strings, shape)
        with torch.no_grad():
            x_hat = model.decompress(padded, shape)["x_hat"]
        decode_guard.check_finite(x_hat)
        wait()

    ratios, plain_s, guarded_s = [], [], []
    plain()  # warm-up
    for _ in range(repeats):
        began = clock()
        plain()
        middle = clock()
        guarded()
        end = clock()
        plain_s.append(middle - began)
        guarded_s.append(end - middle)
        ratios.append((end - middle) / (middle - began))
    padded = decode_guard.guard_decode_inputs(model, strings, shape)
    data = sum(len(s) for latent in strings for s in latent)
    total = sum(len(s) for latent in padded for s in latent)
    return {
        "architecture": architecture,
        "quality": quality,
        "device": device,
        "size": f"{width}x{height}",
        "plain_s_median": round(statistics.median(plain_s), 3),
        "guarded_s_median": round(statistics.median(guarded_s), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "repeats": repeats,
        "string_bytes": data,
        "padding_mib": round((total - data) / 2**20, 1),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-a", "--architectures", nargs="+", default=list(DEFAULT_ARCHITECTURES)
    )
    parser.add_argument("-q", "--quality", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=(512, 768))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu (process CPU clock, one thread) or cuda (wall clock)",
    )
    parser.add_argument("--json", type=Path, default=None)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.repeats < 3:
        raise SystemExit("bench_guard: --repeats must be >= 3 (min/median/max)")
    import torch

    torch.set_num_threads(1)
    rows = [
        bench(name, args.quality, args.size[0], args.size[1], args.repeats, args.device)
        for name in args.architectures
    ]
    print(
        "| architecture | size | plain s | guarded s | guarded/plain min / median / "
        "max | padding |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['architecture']} q{row['quality']} | {row['size']} | "
            f"{row['plain_s_median']} | {row['guarded_s_median']} | "
            f"{row['ratio_min']} / {row['ratio_median']} / {row['ratio_max']} | "
            f"{row['padding_mib']} MiB for {row['string_bytes']} B |"
        )
    report = {"rows": rows}
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
