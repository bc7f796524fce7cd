r"""Encode on one device, decode on another: how many decodes go wrong, and
whether the symbol digest catches every one.

For each architecture and mode (default; portable where the model has it),
every photo is encoded on ``--encode-device`` (``compress``), decoded there
(the encoder's own image), then decoded from the same strings on
``--decode-device`` by a copy of the model (same weights, CDF tables computed
once on the CPU, as ``psic`` does) with the header's symbol digest. Each decode
is one of:

- ``same``: decoded, 8-bit pixels within 1 level of the encoder's image;
- ``detected``: refused with :class:`~compressai_psic.errors.DesyncError`
  (other symbols than the encoder's) or another ``BitstreamError``;
- ``wrong``: decoded without an error, pixels off by more than 1 level
  (**undetected**: the target is 0 in every mode);

and ``portable`` decodes have a target of 0 ``detected`` too (the entropy
parameters are the same everywhere).

Models: ``demo-psic`` (trained) and the zoo architectures with random weights,
rescaled so that their latents and entropy parameters spread like a trained
model's (:mod:`tools._lib.calibration`). Photos: crops of matplotlib's sample
photographs (:mod:`tools._lib.photos`), ``--size`` square, ``--ar-size`` for
the autoregressive models (their entropy coding runs position by position).

Example (tools/gpu_issue23.sh)::

    python tools/cross_device.py --encode-device cuda --decode-device cpu \
        --photos 50 --json cross_device.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

if not __package__:  # run as a script: the harness lives in tools/_lib
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compressai_psic.models import ZOO_ARCHITECTURES  # noqa: E402

__all__ = ["build_parser", "check", "main"]

#: The shipped demo codec, then CompressAI's zoo architectures.
DEFAULT_MODELS = ("demo-psic",) + ZOO_ARCHITECTURES
OUTCOMES = ("same", "detected", "wrong")


@contextlib.contextmanager
def _threads(count: Optional[int]):
    import torch

    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _model(name: str, quality: int, photo: Any):
    import torch

    from compressai_psic import zoo
    from compressai_psic.zoo.image import load_named
    from tools._lib.calibration import calibrate

    torch.manual_seed(0)
    if name not in zoo.image_models:
        model = load_named(name).eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, 64, 64))
        model.update(force=True)
        return model
    model = zoo.image_models[name](quality, pretrained=False).eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))  # masks the context model's weights
    return calibrate(model, photo)


def _to_8bit(x: Any) -> Any:
    import torch

    return (x.detach().cpu().clamp(0, 1) * 255).round().to(torch.int16)


def check(
    name: str,
    photos: Sequence[Any],
    quality: int = 3,
    encode_device: str = "cuda",
    decode_device: str = "cpu",
    encode_threads: Optional[int] = None,
    decode_threads: Optional[int] = None,
) -> List[Dict[str, Any]]:
    """One row per mode for the architecture ``name`` (see the docstring)."""
    import torch

    from compressai_psic.errors import BitstreamError

    encoder = _model(name, quality, photos[0])
    decoder = copy.deepcopy(encoder).to(decode_device)
    encoder = encoder.to(encode_device)
    modes = [False, True] if encoder.supports_portable else [False]
    rows = []
    for portable in modes:
        counts = {outcome: 0 for outcome in OUTCOMES}
        worst = 0
        for x in photos:
            with torch.no_grad(), _threads(encode_threads):
                out = encoder.compress(x.to(encode_device), portable=portable)
                reference = _to_8bit(
                    encoder.decompress(out["strings"], out["shape"], portable=portable)[
                        "x_hat"
                    ]
                )
            try:
                with torch.no_grad(), _threads(decode_threads):
                    decoded = decoder.decompress(
                        out["strings"],
                        out["shape"],
                        portable=portable,
                        symbols_digest=out["symbols_digest"],
                    )["x_hat"]
            except BitstreamError:
                counts["detected"] += 1
                continue
            error = int((_to_8bit(decoded) - reference).abs().max())
            counts["same" if error <= 1 else "wrong"] += 1
            worst = max(worst, error)
        rows.append(
            {
                "architecture": name,
                "mode": "portable" if portable else "default",
                "photos": len(photos),
                **counts,
                "max_level_error_decoded": worst,
                "encode": encode_device,
                "decode": decode_device,
            }
        )
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-a", "--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("-q", "--quality", type=int, default=3)
    parser.add_argument("--photos", type=int, default=50)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--ar-size", type=int, default=128)
    parser.add_argument("--encode-device", default="cuda")
    parser.add_argument("--decode-device", default="cpu")
    parser.add_argument("--encode-threads", type=int, default=None)
    parser.add_argument("--decode-threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    from tools._lib.photos import photo_crops

    crops = {size: photo_crops(args.photos, size) for size in {args.size, args.ar_size}}
    rows = []
    print(
        "| architecture | mode | photos | same (≤1 level) | detected | undetected "
        "wrong | worst decoded error |"
    )
    print("|---|---|---|---|---|---|---|")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the autoregressive models on a GPU
        for name in args.models:
            autoregressive = name.startswith(("mbt2018", "cheng2020")) and (
                name != "mbt2018-mean"
            )
            photos = crops[args.ar_size if autoregressive else args.size]
            for row in check(
                name,
                photos,
                args.quality,
                args.encode_device,
                args.decode_device,
                args.encode_threads,
                args.decode_threads,
            ):
                rows.append(row)
                print(
                    f"| {name} | {row['mode']} | {row['photos']} | {row['same']} | "
                    f"{row['detected']} | {row['wrong']} | "
                    f"{row['max_level_error_decoded']} |",
                    flush=True,
                )
    report = {"rows": rows, "args": {k: str(v) for k, v in vars(args).items()}}
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
