r"""Decode-time benchmark: base CompressAI model vs its shielded version.

For each architecture, on one image (512×768 by default) it times

- ``base``: the CompressAI model's ``decompress``;
- ``shielded``: the shielded model's ``decompress`` (one path, protected);
- ``both``: ``decompress_multi`` (protected and full from one entropy decode);

interleaving the three so that machine load affects them alike, and prints the
medians, the ratios shielded/base and both/one-path, and the bitstream overhead
(the shielded strings are compared byte for byte with the base model's).

Weights are random (no pretrained weights can be downloaded here), so the
absolute times differ from CompressAI's published ones; the ratios are what the
targets are about. Usage::

    python tools/bench_decode.py --quality 3 --repeats 5 --json bench_decode.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from typing import TYPE_CHECKING, Dict, List

if TYPE_CHECKING:
    import torch

# torch, CompressAI and the package load after the arguments are parsed, so
# that --help is instant (see _load).
torch = compressai_models = psic = None

#: CompressAI's zoo architectures (compressai_psic.ZOO_ARCHITECTURES).
ARCHS = [
    "bmshj2018-factorized",
    "bmshj2018-hyperprior",
    "mbt2018-mean",
    "mbt2018",
    "cheng2020-anchor",
    "cheng2020-attn",
]


def _load() -> None:
    global torch, compressai_models, psic
    import torch
    from compressai.zoo import image_models as compressai_models

    import compressai_psic as psic

    assert sorted(psic.ZOO_ARCHITECTURES) == sorted(ARCHS)


def synthetic_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Smooth gradients, edges and a little noise: closer to a photo than noise."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(
        torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij"
    )
    channels = [
        0.5 + 0.4 * torch.sin(6.0 * xx + 2.0 * yy),
        0.5 + 0.4 * torch.cos(4.0 * yy - 3.0 * xx),
        (xx * yy + (xx > 0.5).float() * 0.3) % 1.0,
    ]
    image = torch.stack(channels)[None]
    image = image + 0.03 * torch.randn(image.shape, generator=gen)
    return image.clamp(0, 1)


#: ``wall``: elapsed time; ``process``: CPU time of this process, which other
#: jobs on a shared machine disturb much less (use it with ``--threads 1``).
CLOCKS = {"wall": time.perf_counter, "process": time.process_time}
_clock = CLOCKS["wall"]
#: Waits for the device's queued work (CUDA runs kernels asynchronously): set by
#: main for a CUDA device, so that each timing covers the work it launched.
_synchronize = None


def _time(fn) -> float:
    if _synchronize is not None:
        _synchronize()
    start = _clock()
    fn()
    if _synchronize is not None:
        _synchronize()
    return _clock() - start


def _spread(values: List[float]) -> Dict[str, float]:
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
    }


def bench_architecture(
    name: str,
    quality: int,
    image: torch.Tensor,
    repeats: int,
    device: str,
    plan: str = "every-stage",
) -> Dict[str, float]:
    torch.manual_seed(0)
    base = compressai_models[name](quality, pretrained=False).eval().to(device)
    with torch.no_grad():
        base(image[..., :64, :64].to(device))  # masks context convolutions
    base.update(force=True)
    shielded = psic.shield(base, plan=plan).eval()
    x = image.to(device)
    with torch.no_grad():
        enc = base.compress(x)
        enc_shielded = shielded.compress(x)
    same = enc["strings"] == enc_shielded["strings"]
    base_bytes = sum(len(s) for group in enc["strings"] for s in group)
    shielded_bytes = sum(len(s) for group in enc_shielded["strings"] for s in group)
    strings, shape = enc["strings"], enc["shape"]

    timings: Dict[str, List[float]] = {"base": [], "shielded": [], "both": []}
    with torch.no_grad():
        # One warm-up round, then interleaved measurements.
        base.decompress(strings, shape)
        shielded.decompress(strings, shape)
        shielded.decompress_multi(strings, shape)
        for _ in range(repeats):
            timings["base"].append(_time(lambda: base.decompress(strings, shape)))
            timings["shielded"].append(
                _time(lambda: shielded.decompress(strings, shape))
            )
            timings["both"].append(
                _time(lambda: shielded.decompress_multi(strings, shape))
            )
    med = {k: statistics.median(v) for k, v in timings.items()}
    # Ratios of each interleaved round: the spread shows the machine's noise.
    shielded_ratio = [s / b for s, b in zip(timings["shielded"], timings["base"])]
    both_ratio = [m / s for m, s in zip(timings["both"], timings["shielded"])]
    return {
        "timings_s": timings,
        "shielded_over_base_spread": _spread(shielded_ratio),
        "both_over_one_spread": _spread(both_ratio),
        "architecture": name,
        "plan": plan,
        "quality": quality,
        "base_s": med["base"],
        "shielded_s": med["shielded"],
        "both_s": med["both"],
        "shielded_over_base": statistics.median(shielded_ratio),
        "both_over_one": statistics.median(both_ratio),
        "strings_identical": bool(same),
        "overhead_bytes": shielded_bytes - base_bytes,
        "bytes": base_bytes,
    }


def bench_synthesis(
    name: str,
    quality: int,
    image: torch.Tensor,
    repeats: int,
    plan: str,
    device: str = "cpu",
) -> Dict[str, float]:
    """``g_s`` alone, base vs shielded (protected), on one quantised latent.

    Without the entropy coder's time in both numerators, the ratio shows what the
    triggers themselves cost: the condition MLP once per call and one in-place
    bias (or scale and bias) per injection point.
    """
    torch.manual_seed(0)
    base = compressai_models[name](quality, pretrained=False).eval().to(device)
    shielded = psic.shield(base, plan=plan).eval()
    with torch.no_grad():
        y_hat = torch.round(base.g_a(image.to(device)))
        base.g_s(y_hat)
        shielded.g_s(y_hat)
        rounds = []
        for _ in range(repeats):
            base_s = _time(lambda: base.g_s(y_hat))
            shielded_s = _time(lambda: shielded.g_s(y_hat))
            rounds.append(shielded_s / base_s)
    return {"architecture": name, "plan": plan, "ratio": _spread(rounds)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-a", "--architectures", nargs="+", default=ARCHS, choices=ARCHS
    )
    parser.add_argument(
        "-p",
        "--plans",
        nargs="+",
        default=["every-stage", "late"],
        help="injection plans to measure (default: every-stage late)",
    )
    parser.add_argument("-q", "--quality", type=int, default=3)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall time, or CPU time of this process (steadier on a busy machine)",
    )
    parser.add_argument(
        "--synthesis",
        action="store_true",
        help="time g_s alone (base vs shielded protected path), --repeats rounds",
    )
    parser.add_argument("--json", help="also write the results to this file")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _load()
    global _clock, _synchronize
    _clock = CLOCKS[args.clock]
    if torch.device(args.device).type == "cuda":
        _synchronize = torch.cuda.synchronize
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    image = synthetic_image(args.height, args.width)
    results = []
    if args.synthesis:
        print(f"{'architecture':22} {'plan':12} g_s shielded/base min / med / max")
        for name in args.architectures:
            quality = (
                min(args.quality, 6) if name.startswith("cheng2020") else args.quality
            )
            for plan in args.plans:
                row = bench_synthesis(
                    name, quality, image, args.repeats, plan, args.device
                )
                results.append(row)
                r = row["ratio"]
                print(
                    f"{name:22} {plan:12} {r['min']:.3f} / {r['median']:.3f} / "
                    f"{r['max']:.3f}",
                    flush=True,
                )
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump({"args": vars(args), "results": results}, f, indent=2)
        return 0
    header = (
        f"{'architecture':22} {'plan':12} {'base s':>7} "
        f"{'shielded/base min/med/max':>26} {'both/one min/med/max':>21} "
        f"{'overhead B':>10}"
    )
    print(
        f"# {args.height}x{args.width}, quality {args.quality}, {args.device}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {args.repeats} rounds, "
        f"{args.clock} clock"
    )
    print(header)
    for name in args.architectures:
        quality = min(args.quality, 6) if name.startswith("cheng2020") else args.quality
        for plan in args.plans:
            row = bench_architecture(
                name, quality, image, args.repeats, args.device, plan
            )
            results.append(row)
            one, both = row["shielded_over_base_spread"], row["both_over_one_spread"]
            print(
                f"{name:22} {plan:12} {row['base_s']:7.3f} "
                f"{one['min']:8.3f} {one['median']:8.3f} {one['max']:8.3f} "
                f"{both['min']:6.3f} {both['median']:6.3f} {both['max']:6.3f} "
                f"{row['overhead_bytes']:10d}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
