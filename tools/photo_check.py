r"""Looks at a codec's protected decodes of real photos (``skimage.data``).

The demo codecs are trained on generated scenes; the photos of
``skimage.data`` (astronaut, chelsea, coffee, motorcycle, rocket, camera) are
never trained on and show what a protected decode does to a real image: a colour
cast (per-image mean of protected − full per channel, in 8-bit levels), a
repeating pattern (spectral peaks of the mean |protected − full| at strides 2, 4,
8 and 16 px, as multiples of the background; 1 = none) and what the eye sees:
``--out`` gets a sheet of full | protected | 8×|protected − full| per photo at 1×
and a 3× crop of its centre.

Example (the keyed demo codec, its key derived from a seed as in the reports)::

    python tools/photo_check.py --model demo-psic-keyed --out runs/photos
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional

PHOTOS = ("astronaut", "chelsea", "coffee", "stereo_motorcycle", "rocket", "camera")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Colour casts, patterns and crops of protected decodes of "
        "skimage.data photos."
    )
    parser.add_argument("--model", default="demo-psic-keyed", help="codec name or file")
    parser.add_argument("--key-file", type=Path, default=None, help="publisher key")
    parser.add_argument("--seed", type=int, default=2025, help="seed of a derived key")
    parser.add_argument("--size", type=int, default=256, help="centre crop side (256)")
    parser.add_argument("--out", type=Path, default=Path("runs/photos"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "-f", "--force", action="store_true", help="replace the files of an earlier run"
    )
    return parser


def _photo(name: str, size: int):
    import numpy as np
    import skimage.data
    import torch

    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):
        image = image[0]
    if image.ndim == 2:
        image = np.stack([image] * 3, -1)
    height, width = image.shape[:2]
    side = min(size, height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = image[top : top + side, left : left + side, :3]
    return (
        torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float()[None]
        / 255
    )


def _zoom(images):
    """The centre sixth of ``images`` (at least 16 px), three times larger."""
    import torch.nn.functional as F

    side = images.size(-1)
    half = max(16, side // 6) // 2
    centre = side // 2
    crop = images[..., centre - half : centre + half, centre - half : centre + half]
    return F.interpolate(crop, scale_factor=3, mode="nearest")


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Refusals before any model loads.
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file")
    for name in ("photos.png", "photos.json"):
        if (args.out / name).exists() and not args.force:
            parser.error(f"{args.out / name} exists; pass -f/--force to replace it")
    if args.key_file is not None and not args.key_file.is_file():
        parser.error(f"--key-file: no such key file: {args.key_file}")
    try:
        import skimage.data  # noqa: F401
    except ImportError:
        parser.error("photo_check needs scikit-image: pip install scikit-image")
    import torch
    from PIL import Image

    from compressai_psic.evaluation.codec import codec_roundtrip
    from compressai_psic.evaluation.image_dependence import periodic_peaks
    from compressai_psic.evaluation.protection import evaluation_key
    from compressai_psic.models import load_checkpoint
    from compressai_psic.models.keys import read_key_file
    from compressai_psic.zoo import load_named

    torch.set_num_threads(args.threads)
    model = (
        load_checkpoint(args.model)
        if Path(args.model).is_file()
        else load_named(args.model)
    ).eval()
    model.update(force=True)
    key = None
    if getattr(model, "is_keyed", False):
        key = (
            read_key_file(args.key_file) if args.key_file else evaluation_key(args.seed)
        )
    args.out.mkdir(parents=True, exist_ok=True)
    rows, report = [], {}
    with torch.inference_mode():
        for name in PHOTOS:
            x = _photo(name, args.size)
            out = codec_roundtrip(model, x, key)
            full = out["full"]
            protected = (out["protected"] * 255).round() / 255
            difference = (protected - full).abs()
            cast = ((protected - full).mean((2, 3)) * 255)[0]
            peaks = periodic_peaks(difference[0].mean(0))
            mse = (protected - x).pow(2).mean()
            mse_full = (full - x).pow(2).mean()
            report[name] = {
                "cast_rgb": [round(float(v), 2) for v in cast],
                "periodic_peaks": peaks,
                "psnr_protected": round(float(-10 * torch.log10(mse)), 2),
                "psnr_full": round(float(-10 * torch.log10(mse_full)), 2),
                "bpp": round(out["bpp"][0], 3),
            }
            side = full.size(-1)
            big = [full, protected, (8 * difference).clamp(0, 1)]
            small = [_zoom(t) for t in big]
            pad = side - small[0].size(-2)
            small = [
                torch.nn.functional.pad(s, (0, side - s.size(-1), 0, pad))
                for s in small
            ]
            rows.append(torch.cat(big + small, -1))
    sheet = torch.cat(rows, -2)[0]
    array = sheet.mul(255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(array).save(args.out / "photos.png")
    (args.out / "photos.json").write_text(json.dumps(report, indent=2))
    for name, row in report.items():
        print(
            f"{name:16} PSNR full {row['psnr_full']:.2f} protected "
            f"{row['psnr_protected']:.2f}; cast R/G/B {row['cast_rgb']}; peaks "
            f"{row['periodic_peaks']}"
        )
    print(f"wrote {args.out / 'photos.png'} and {args.out / 'photos.json'}")
    return report


if __name__ == "__main__":
    main()
