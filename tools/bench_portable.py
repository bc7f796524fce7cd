r"""What portable bitstreams cost: rate and decode time, portable against default.

For each model, every photo is encoded both ways (``compress(x)`` and
``compress(x, portable=True)``) and the compressed sizes are compared; then each
repeat times, interleaved, the default decode and the portable one of the first
photo (the shielded model's whole ``decompress``: guard, entropy decoding with
the symbol check, synthesis), on the process CPU clock with one thread
(``--device cuda``: wall clock, waiting for the device). Reports the size ratio
over all photos and min/median/max of the per-repeat time ratio.

Models: ``demo-psic`` (the shipped, trained demo codec: real entropy
parameters) and zoo architectures with random weights (``-a``). Photos:
matplotlib's sample photographs, resized to ``--size`` (a random image when
matplotlib is missing).

Example (the BENCHMARKS.md figures)::

    OMP_WAIT_POLICY=PASSIVE python tools/bench_portable.py --repeats 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

if not __package__:  # run as a script: the harness lives in tools/_lib
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["bench", "build_parser", "main", "photos"]

DEFAULT_MODELS = ("demo-psic", "bmshj2018-hyperprior", "mbt2018-mean")


def photos(height: int, width: int) -> List[Any]:
    """matplotlib's sample photos as ``(1, 3, height, width)`` tensors (one
    random image without matplotlib)."""
    import torch

    from tools._lib.photos import resized_photos

    try:
        return resized_photos(height, width)
    except ImportError:
        gen = torch.Generator().manual_seed(0)
        return [torch.rand(1, 3, height, width, generator=gen)]


def _model(name: str, quality: int, device: str):
    import torch

    from compressai_psic import zoo
    from compressai_psic.zoo.image import load_named

    torch.manual_seed(0)
    if name in zoo.image_models:
        model = zoo.image_models[name](quality, pretrained=False)
    else:
        model = load_named(name)
    model = model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    model.update(force=True)
    return model.to(device)


def bench(
    name: str,
    quality: int,
    height: int,
    width: int,
    repeats: int,
    device: str = "cpu",
) -> Dict[str, Any]:
    """Figures of one model (see the module docstring)."""
    import torch

    on_gpu = torch.device(device).type == "cuda"
    clock = time.perf_counter if on_gpu else time.process_time
    model = _model(name, quality, device)
    sizes = {False: 0, True: 0}
    coded = {}
    for index, x in enumerate(photos(height, width)):
        for portable in (False, True):
            with torch.no_grad():
                out = model.compress(x.to(device), portable=portable)
            sizes[portable] += sum(len(s) for latent in out["strings"] for s in latent)
            if index == 0:
                coded[portable] = out

    def decode(portable: bool) -> None:
        out = coded[portable]
        with torch.no_grad():
            model.decompress(
                out["strings"],
                out["shape"],
                portable=portable,
                symbols_digest=out["symbols_digest"],
            )
        if on_gpu:
            torch.cuda.synchronize(device)

    from tools._lib.benchmarks import interleaved

    times = interleaved(lambda: decode(False), lambda: decode(True), repeats, clock)
    return {
        "model": name if name not in _zoo_names() else f"{name} q{quality}",
        "device": device,
        "size": f"{width}x{height}",
        "bytes_default": sizes[False],
        "bytes_portable": sizes[True],
        "rate_ratio": round(sizes[True] / sizes[False], 5),
        "default_s_median": times["first_s_median"],
        "portable_s_median": times["second_s_median"],
        "time_ratio_min": times["ratio_min"],
        "time_ratio_median": times["ratio_median"],
        "time_ratio_max": times["ratio_max"],
        "repeats": repeats,
    }


def _zoo_names():
    from compressai_psic import zoo

    return zoo.image_models


def build_parser() -> argparse.ArgumentParser:
    from tools._lib.benchmarks import ab_parser

    return ab_parser(__doc__.splitlines()[0], DEFAULT_MODELS)


def _row(row: Dict[str, Any]) -> str:
    return (
        f"| {row['model']} | {row['size']} | {row['bytes_default']} / "
        f"{row['bytes_portable']} ({row['rate_ratio']}) | "
        f"{row['default_s_median']} | {row['portable_s_median']} | "
        f"{row['time_ratio_min']} / {row['time_ratio_median']} / "
        f"{row['time_ratio_max']} |"
    )


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    from tools._lib.benchmarks import report

    header = (
        "| model | size | bytes default / portable (ratio) | default s | portable s "
        "| portable/default time min / median / max |"
    )
    args = build_parser().parse_args(argv)
    return report(args, "bench_portable", bench, header, _row)


if __name__ == "__main__":
    main()
