r"""Where a shielded decode spends its time beyond CompressAI's: one part at a time.

On one device, one image (512×768 by default, random weights), it times
(medians of ``--repeats`` calls each, wall clock, waiting for the device after
every call):

- ``base``: CompressAI's own ``decompress`` (no guard);
- ``shielded``: the shielded model's ``decompress`` (guard, trigger, entropy
  decoding with the symbol check, ``g_s``, finite check);
- its parts: ``validate`` (the guard's checks), ``pad`` (the zeros appended
  for CompressAI's rANS decoder, :func:`compressai_psic.models.guard.
  pad_strings`: none where the package's bounded decoder reads the strings,
  :func:`~compressai_psic.models.guard.read_in_bounds`), ``base_padded``
  (CompressAI's ``decompress`` of the padded strings: what the padding costs
  the native decoder and the allocator),
  ``trigger``, ``g_s_base`` and ``g_s_shielded`` (on the decoded latent),
  ``check_finite``;
- ``first_pad``: the first ``pad`` call of the process (fresh pages).

``shielded − base`` is what the package adds; the parts say where it goes. It
was written for the 25–35 ms per CUDA decode outside ``g_s`` that
BENCHMARKS.md's GPU section leaves unexplained (tools/gpu_issue23.sh runs it).

Example::

    python tools/decode_breakdown.py --device cuda --json breakdown.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

__all__ = ["breakdown", "build_parser", "main"]


def breakdown(
    architecture: str, quality: int, height: int, width: int, repeats: int, device: str
) -> Dict[str, Any]:
    """Median milliseconds of each part (see the module docstring)."""
    import torch
    from compressai.zoo import image_models as base_models

    from compressai_psic import zoo
    from compressai_psic.models import guard

    def ready(model):
        model = model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, 64, 64))
        model.update(force=True)
        return model.to(device)

    torch.manual_seed(0)
    base = ready(base_models[architecture](quality, pretrained=False))
    shielded = ready(zoo.image_models[architecture](quality, pretrained=False))
    shielded.load_state_dict(base.state_dict(), strict=False)
    x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = shielded.compress(x.to(device))
        y_hat = shielded.g_a(x.to(device)).round()
    strings, shape = out["strings"], out["shape"]
    guard.latent_layout(shielded)

    def sync() -> None:
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)

    def timed(call: Callable[[], Any]) -> float:
        sync()
        began = time.perf_counter()
        call()
        sync()
        return 1000 * (time.perf_counter() - began)

    first_pad = timed(lambda: guard.pad_strings(shielded, strings, shape))
    padded = guard.pad_strings(shielded, strings, shape)
    x_hat = torch.zeros(1, 3, height, width, device=device)
    parts: Dict[str, Callable[[], Any]] = {
        "base": lambda: base.decompress(strings, shape),
        "shielded": lambda: shielded.decompress(
            strings, shape, symbols_digest=out["symbols_digest"]
        ),
        "validate": lambda: guard.validate_decode_inputs(shielded, strings, shape),
        "pad": lambda: guard.pad_strings(shielded, strings, shape),
        "base_padded": lambda: base.decompress(padded, shape),
        "trigger": lambda: shielded.trigger("protected"),
        "g_s_base": lambda: base.g_s(y_hat),
        "g_s_shielded": lambda: shielded.g_s(y_hat),
        "check_finite": lambda: guard.check_finite(x_hat),
    }
    times: Dict[str, list] = {name: [] for name in parts}
    with torch.no_grad():
        for call in parts.values():
            call()  # warm-up
        for _ in range(repeats):
            for name, call in parts.items():
                times[name].append(timed(call))
    row = {name: round(statistics.median(t), 2) for name, t in times.items()}
    row["first_pad"] = round(first_pad, 2)
    row["extra"] = round(row["shielded"] - row["base"], 2)
    row["padding_mib"] = round(
        (sum(len(s[0]) for s in padded) - sum(len(s[0]) for s in strings)) / 2**20, 1
    )
    return {"architecture": f"{architecture} q{quality}", "device": device, **row}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-a",
        "--architectures",
        nargs="+",
        default=["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean"],
    )
    parser.add_argument("-q", "--quality", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=(512, 768))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    rows = [
        breakdown(name, args.quality, *args.size, args.repeats, args.device)
        for name in args.architectures
    ]
    keys = [k for k in rows[0] if k not in ("architecture", "device")]
    print("| architecture | device | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 2) + "|")
    for row in rows:
        values = " | ".join(str(row[k]) for k in keys)
        print(f"| {row['architecture']} | {row['device']} | {values} |")
    report = {"unit": "ms", "rows": rows}
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
