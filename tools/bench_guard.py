r"""Cost of :mod:`compressai_psic.models.guard` on a decode: time and memory.

For each architecture (CompressAI's own model, random weights, one synthetic
image) every repeat times, interleaved, ``model.decompress(strings, shape)`` of
CompressAI's model alone (its native rANS decoder, no guard) and the guarded
decode (``guard_decode_inputs``, ``decompress``, ``check_finite``), on the
process CPU clock with one thread. The guarded decode runs on a copy of the
model whose entropy models decode in bounds
(:func:`compressai_psic.models.symbols.install_symbol_taps`, the package's C
decoder: no padding; for the autoregressive ``mbt2018``, its ``y`` loop too,
:mod:`compressai_psic.models.autoregressive`); ``--route padded`` guards
CompressAI's own model instead, which pads every string with ``76 S + 132``
zeros (the route taken where the extension is not built, and for models that
are not shielded).

Reports min/median/max of the per-repeat ratio guarded/plain, the zeros
appended, the compressed size, the peak of the memory that
``guard_decode_inputs`` allocates and that of one whole decode, plain and
guarded (``tracemalloc``: Python's and NumPy's allocations, not torch's).
``--device cuda`` runs the model on the GPU and times on the wall clock,
waiting for the device around each decode (the entropy decoding and the guard
stay on the CPU).

Example (the BENCHMARKS.md figures; ``--route padded`` for those measured before
the bounded decoder)::

    OMP_WAIT_POLICY=PASSIVE python tools/bench_guard.py --repeats 5
    OMP_WAIT_POLICY=PASSIVE python tools/bench_guard.py --repeats 5 --size 128 192
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

if not __package__:  # run as a script: the harness lives in tools/_lib
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["bench", "build_parser", "main"]

#: How the guarded decode keeps the rANS decoder in its strings.
ROUTES = ("bounded", "padded")

DEFAULT_ARCHITECTURES = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean")


def bench(
    architecture: str,
    quality: int,
    height: int,
    width: int,
    repeats: int,
    device: str = "cpu",
    route: str = "bounded",
):
    """Figures of one architecture (see the module docstring)."""
    import copy
    import tracemalloc

    import torch

    if route not in ROUTES:
        raise ValueError(f'Invalid route "{route}": use one of {list(ROUTES)}')

    on_gpu = torch.device(device).type == "cuda"
    clock = time.perf_counter if on_gpu else time.process_time

    # CompressAI's own model: its decompress runs no guard (a shielded model's
    # does, so the plain decode would be guarded too, and the guarded one twice).
    from compressai.zoo import image_models

    from compressai_psic.models import guard as decode_guard
    from compressai_psic.models import rans, symbols
    from compressai_psic.models.autoregressive import BoundedAutoregressiveDecoding

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
    guarded_model = model
    if route == "bounded":
        if not rans.available():
            raise RuntimeError("the bounded decoder was not built")
        guarded_model = copy.deepcopy(model)
        symbols.install_symbol_taps(guarded_model)
        if hasattr(guarded_model, "context_prediction"):
            # y too: the package's loop (its shielded classes have it).
            guarded_model.__class__ = type(
                f"Bounded{type(model).__name__}",
                (BoundedAutoregressiveDecoding, type(model)),
                {},
            )
    decode_guard.latent_layout(guarded_model)  # probed once per model, not timed

    def wait():
        if on_gpu:
            torch.cuda.synchronize(device)

    def plain():
        with torch.no_grad():
            model.decompress(strings, shape)
        wait()

    def guarded():
        padded = decode_guard.guard_decode_inputs(guarded_model, strings, shape)
        with torch.no_grad():
            x_hat = guarded_model.decompress(padded, shape)["x_hat"]
        decode_guard.check_finite(x_hat)
        wait()

    from tools._lib.benchmarks import interleaved

    times = interleaved(plain, guarded, repeats, clock)
    tracemalloc.start()
    padded = decode_guard.guard_decode_inputs(guarded_model, strings, shape)
    guard_peak = tracemalloc.get_traced_memory()[1]
    peaks = {}
    for name, decode in (("plain", plain), ("guarded", guarded)):
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        decode()
        peaks[name] = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    data = sum(len(s) for latent in strings for s in latent)
    total = sum(len(s) for latent in padded for s in latent)
    return {
        "architecture": architecture,
        "route": route,
        "quality": quality,
        "device": device,
        "size": f"{width}x{height}",
        "plain_s_median": times["first_s_median"],
        "guarded_s_median": times["second_s_median"],
        "ratio_min": times["ratio_min"],
        "ratio_median": times["ratio_median"],
        "ratio_max": times["ratio_max"],
        "repeats": repeats,
        "string_bytes": data,
        "padding_mib": round((total - data) / 2**20, 1),
        "guard_peak_kib": round(guard_peak / 2**10, 1),
        # Python's allocations during one whole decode (NumPy's arrays count;
        # tensors allocated by torch's own allocator do not).
        "plain_peak_mib": round(peaks["plain"] / 2**20, 1),
        "guarded_peak_mib": round(peaks["guarded"] / 2**20, 1),
    }


def build_parser() -> argparse.ArgumentParser:
    from tools._lib.benchmarks import ab_parser

    parser = ab_parser(__doc__.splitlines()[0], DEFAULT_ARCHITECTURES)
    parser.add_argument(
        "--route",
        choices=ROUTES,
        default="bounded",
        help="bounded: the package's decoder, no padding (default); padded: "
        "CompressAI's decoder on padded strings",
    )
    return parser


def _row(row: Dict[str, Any]) -> str:
    return (
        f"| {row['architecture']} q{row['quality']} | {row['route']} | "
        f"{row['size']} | {row['plain_s_median']} | {row['guarded_s_median']} | "
        f"{row['ratio_min']} / {row['ratio_median']} / {row['ratio_max']} | "
        f"{row['padding_mib']} MiB for {row['string_bytes']} B | "
        f"{row['guard_peak_kib']} KiB | {row['plain_peak_mib']} / "
        f"{row['guarded_peak_mib']} MiB |"
    )


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    from tools._lib.benchmarks import report

    header = (
        "| architecture | route | size | plain s | guarded s | guarded/plain min / "
        "median / max | padding | guard's peak allocation | decode's peak "
        "allocation, plain / guarded |"
    )
    import functools

    parser = build_parser()
    args = parser.parse_args(argv)
    from compressai_psic.models import rans

    if args.route == "bounded" and not rans.available():
        # Before any model is built.
        parser.error("the bounded decoder was not built; use --route padded")
    measure = functools.partial(bench, route=args.route)
    return report(args, "bench_guard", measure, header, _row)


if __name__ == "__main__":
    main()
