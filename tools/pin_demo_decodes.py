r"""Pins what the shipped demo codec (``demo-psic``) decodes, bit for bit.

Three fixed 64×64 inputs (two procedural scenes, one smooth seeded-noise image)
go through the public API only: ``model.compress(x)``, then
``model.decompress(strings, shape, condition=c)`` for each pinned condition
(:data:`CONDITIONS`: the protected path, β = 0.5, the full path). The pin file
holds the inputs, the sha256 of every bitstream string and the decodes as uint8
(``round(255·x̂)``); ``tests/models/test_demo_pin.py`` recomputes them, so any
change to the trigger math or to the weights fails it.

Regenerate (only after a deliberate change of the decodes, and say so in
CHANGELOG.md)::

    python tools/pin_demo_decodes.py
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

__all__ = [
    "CONDITIONS",
    "DEFAULT_OUTPUT",
    "FORMAT",
    "build_parser",
    "compute_pin",
    "load_pin",
    "main",
    "pin_inputs",
]

#: The pin file's layout version.
FORMAT = 1
#: The conditions decoded from each bitstream: protected (β = 1), β = 0.5, full.
CONDITIONS = ("protected", 0.5, "full")
#: Where the pin lives (the test reads it from there).
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "tests/data/demo_pin.pt"
#: Side of the square inputs (the demo codec's training size).
SIZE = 64


def pin_inputs() -> Any:
    """The fixed inputs, ``(3, 3, 64, 64)`` uint8: two scenes of the procedural
    benchmark (seeds 0 and 1) and smooth noise from a seeded torch generator."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from compressai_psic.datasets.scenes import render_scene, sample_scene
    from compressai_psic.io.images import pil_to_tensor

    images = [
        pil_to_tensor(render_scene(sample_scene(np.random.default_rng(seed)), SIZE))
        for seed in (0, 1)
    ]
    noise = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2025))
    images.append(F.interpolate(noise, size=(SIZE, SIZE), mode="bilinear"))
    batch = torch.cat([image.reshape(1, 3, SIZE, SIZE) for image in images])
    return (batch * 255).round().clamp(0, 255).to(torch.uint8)


def _digest(string: bytes) -> str:
    return hashlib.sha256(string).hexdigest()


def compute_pin(model: Any, inputs: Any) -> Dict[str, Any]:
    """Bitstream digests and uint8 decodes of ``inputs`` through ``model``.

    Returns ``{"strings_sha256": [[hex, ...] per image], "shapes": [[h, w] per
    image], "decodes": uint8 (images, conditions, 3, H, W), "decodes_float":
    the same decodes in float32 (not stored: for the test's tolerance)}``.
    """
    import torch

    digests: List[List[str]] = []
    shapes: List[List[int]] = []
    decodes = []
    with torch.no_grad():
        for image in inputs:
            x = image.to(torch.float32).div(255).unsqueeze(0)
            out = model.compress(x)
            digests.append([_digest(s[0]) for s in out["strings"]])
            shapes.append([int(v) for v in out["shape"]])
            decodes.append(
                torch.cat(
                    [
                        model.decompress(out["strings"], out["shape"], condition=c)[
                            "x_hat"
                        ].clamp(0, 1)
                        for c in CONDITIONS
                    ]
                )
            )
    floats = torch.stack(decodes)
    return {
        "strings_sha256": digests,
        "shapes": shapes,
        "decodes": floats.mul(255).round().to(torch.uint8),
        "decodes_float": floats,
    }


def load_pin(path: Path = DEFAULT_OUTPUT) -> Dict[str, Any]:
    """The pin file, read with ``weights_only=True``."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Pin the demo codec's bitstreams and decodes (a test fixture)."
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="pin file to write (default: tests/data/demo_pin.pt)",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from compressai_psic.zoo import DEMO_CODEC, load_named, manifest_entry

    model = load_named(DEMO_CODEC)
    inputs = pin_inputs()
    pin = compute_pin(model, inputs)
    del pin["decodes_float"]
    pin.update(
        format=FORMAT,
        model=DEMO_CODEC,
        weights_sha256=manifest_entry(name=DEMO_CODEC)["sha256"],
        conditions=[str(c) for c in CONDITIONS],
        inputs=inputs,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(pin, args.output)
    size = args.output.stat().st_size
    print(f"wrote {args.output} ({size} bytes, {len(inputs)} images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
