r"""Measures what is left of a shielded codec's protection, as a scraper would.

On held-out test scenes of the benchmark it runs
:func:`compressai_psic.evaluation.evaluate_protection` (every blind attack and
purification, on the protected and the full decodes; the informed colour and
pattern fits on ``val`` scenes; a learned inversion trained on ``train`` scenes
of the attacker's own seed) with the codec's training VLPs and the evaluation
VLPs reported separately, optionally the per-image bound
(:func:`compressai_psic.evaluation.bound.per_image_bound`) against the same
training VLPs, and writes into ``--out``:

- ``protection.json``: the report and its summary;
- ``bound.json`` and ``bound.png`` (``--bound-images`` > 0): the bound, one
  panel per VLP, with the codec's point (as decoded and after its worst blind
  attack) on the same axes;
- ``images.png``: original | full | protected | 4×|protected − full| for a few
  scenes, to look at.

Example (the shipped demo codec, its training ensemble)::

    python tools/eval_protection.py --model demo-psic --vlp train-ensemble \
        --out runs/protection
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="What is left of a shielded codec's protection after every "
        "attack, and the per-image bound."
    )
    parser.add_argument(
        "--model",
        default="demo-psic",
        help="manifest name or checkpoint file of the codec (default demo-psic)",
    )
    parser.add_argument(
        "--vlp",
        action="append",
        default=None,
        help="VLP(s) the codec was trained against (build_vlp specs; ensembles are "
        "split into members); default train-ensemble",
    )
    parser.add_argument(
        "--eval-vlp",
        action="append",
        default=None,
        help="VLP(s) it never saw (default eval-rn and eval-vit)",
    )
    parser.add_argument("--images", type=int, default=500, help="scenes (500)")
    parser.add_argument(
        "--split",
        choices=("test", "val"),
        default="test",
        help="scenes evaluated: test (reports) or val (choosing a checkpoint or a "
        "recipe, with --no-eval-vlps and --no-fitted) (default test)",
    )
    parser.add_argument(
        "--no-eval-vlps",
        action="store_true",
        help="training VLPs only: what choosing a checkpoint may look at",
    )
    parser.add_argument(
        "--no-fitted",
        action="store_true",
        help="blind attacks only (no fit set)",
    )
    parser.add_argument("--seed", type=int, default=2025, help="benchmark seed (2025)")
    parser.add_argument(
        "--fit-images", type=int, default=200, help="val scenes of the fitted attacks"
    )
    parser.add_argument(
        "--inversion-pairs",
        type=int,
        default=2000,
        help="train scenes (attacker's seed) of the learned inversion; 0 skips it",
    )
    parser.add_argument("--inversion-steps", type=int, default=3000)
    parser.add_argument(
        "--inversion-seconds",
        type=float,
        default=600.0,
        help="wall-time budget of the inversion's training (600)",
    )
    parser.add_argument(
        "--attacker-seed", type=int, default=777, help="seed of the attacker's scenes"
    )
    parser.add_argument(
        "--bound-images",
        type=int,
        default=0,
        help="test scenes of the per-image bound (0: no bound)",
    )
    parser.add_argument(
        "--bound-steps", type=int, default=100, help="PGD steps per budget (100)"
    )
    parser.add_argument(
        "--bound-feature-weight",
        type=float,
        default=1.0,
        help="weight of the ResNet feature term in the bound's objective (1)",
    )
    parser.add_argument(
        "--bound-eot",
        default="identity,jpeg,resize,greyworld,blur,median,downup,noisyup",
        help="scraper transforms the bound's PGD sees at every step, as the "
        "codec's training did (names of --eot, or none)",
    )
    parser.add_argument(
        "--bound-budgets",
        default="l2:6,12",
        help="budgets as norm:levels[,levels];norm:… (default l2:6,12: about 32.6 "
        "and 26.6 dB, around a protected decode's PSNR)",
    )
    parser.add_argument(
        "--bound-from",
        type=Path,
        default=None,
        help="reuse this bound.json (same VLPs and scenes) instead of computing it",
    )
    parser.add_argument(
        "--bound-only",
        action="store_true",
        help="compute only the per-image bound (bound.json; no codec needed)",
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        default=None,
        help="the publisher's key of a keyed codec (default: a key derived from "
        "--seed, so that the figures can be rebuilt; attackers never get it)",
    )
    parser.add_argument(
        "--latent-steps",
        type=int,
        default=300,
        help="Adam steps of the latent inversions through the public model (300; "
        "0 skips them)",
    )
    parser.add_argument(
        "--latent-images",
        type=int,
        default=200,
        help="test scenes the latent inversions run on, in a pass of their own "
        "(200; their retrieval is N-way over these)",
    )
    parser.add_argument(
        "--latent-starts", type=int, default=2, help="restarts of the random starts"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/protection"))
    parser.add_argument(
        "--force", action="store_true", help="replace the files of an existing --out"
    )
    return parser


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.images < 2 or args.fit_images < 1:
        parser.error("--images must be >= 2 and --fit-images >= 1")
    if args.split == "val" and not args.no_fitted:
        parser.error("--split val evaluates the fit set's scenes: add --no-fitted")
    existing = [p for p in ("protection.json", "bound.json") if (args.out / p).exists()]
    if existing and not args.force:
        parser.error(f"{args.out / existing[0]} exists; pass --force to replace it")
    if args.bound_from is not None and not args.bound_from.is_file():
        parser.error(f"--bound-from: not a file: {args.bound_from}")
    if args.bound_only and args.bound_images < 1:
        parser.error("--bound-only needs --bound-images >= 1")
    if args.model.endswith(".tar") and not Path(args.model).is_file():
        parser.error(f"codec checkpoint not found: {args.model}")
    if args.key_file is not None and not args.key_file.is_file():
        parser.error(f"--key-file: no such key file: {args.key_file}")
    if args.latent_steps < 0 or args.latent_images < 2 or args.latent_starts < 1:
        parser.error(
            "need --latent-steps >= 0, --latent-images >= 2, --latent-starts >= 1"
        )
    return args


def publisher_key(args: argparse.Namespace):
    """The publisher's key: ``--key-file``, or one derived from the benchmark
    seed (evaluation only: the figures can then be rebuilt exactly)."""
    from compressai_psic.evaluation.protection import evaluation_key
    from compressai_psic.models.keys import read_key_file

    if args.key_file is not None:
        return read_key_file(args.key_file)
    return evaluation_key(args.seed)


def _codec(name: str):
    from compressai_psic.models import load_checkpoint
    from compressai_psic.zoo import load_named

    if Path(name).is_file():
        return load_checkpoint(name)
    return load_named(name, progress=False)


def _members(specs: List[str]):
    from compressai_psic.vlp import build_vlp, vlp_members

    return [member for spec in specs for member, _ in vlp_members(build_vlp(spec))]


def _image_sheet(model, dataset, path: Path, rows: int = 8, key=None) -> None:
    import torch
    from PIL import Image

    from compressai_psic.evaluation.codec import codec_roundtrip
    from compressai_psic.io.images import pil_to_tensor

    originals = torch.cat([pil_to_tensor(dataset.load_image(i)) for i in range(rows)])
    with torch.inference_mode():
        decoded = codec_roundtrip(model, originals, key)
    difference = (4 * (decoded["protected"] - decoded["full"]).abs()).clamp(0, 1)
    columns = [originals, decoded["full"], decoded["protected"], difference]
    grid = torch.cat([torch.cat(list(c), dim=-1) for c in zip(*columns)], dim=-2)
    array = grid.mul(255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(array).resize(
        (array.shape[1] * 2, array.shape[0] * 2), Image.NEAREST
    ).save(path)


def _scene_objects(model, dataset, key) -> dict:
    """Object colours and per-image colour casts of the protected decodes
    (:mod:`compressai_psic.evaluation.objects`) over every evaluated scene."""
    import torch

    from compressai_psic.evaluation.codec import codec_batches
    from compressai_psic.evaluation.objects import (
        colour_shift_stats,
        object_colour_stats,
    )

    originals, full, protected = [], [], []
    with torch.inference_mode():
        for _, group, decoded, _ in codec_batches(
            model, dataset, len(dataset), None, 50, "cpu", key
        ):
            originals.append(group)
            full.append(decoded["full"])
            protected.append(decoded["protected"])
    originals_t, full_t = torch.cat(originals), torch.cat(full)
    protected_t = (torch.cat(protected) * 255).round() / 255
    specs = [sample.spec for sample in dataset.samples]
    return {
        "objects": object_colour_stats(specs, originals_t, full_t, protected_t),
        "colour_shift": colour_shift_stats(full_t, protected_t),
    }


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    import torch

    from compressai_psic.datasets import SceneCaptions
    from compressai_psic.evaluation.attacks import BLIND_ATTACKS, PURIFICATION_ATTACKS
    from compressai_psic.evaluation.bound import plot_bound
    from compressai_psic.evaluation.protection import (
        PROTECTION_ATTACKS,
        evaluate_protection,
    )

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    train = _members(args.vlp or ["train-ensemble"])
    evaluation = (
        [] if args.no_eval_vlps else _members(args.eval_vlp or ["eval-rn", "eval-vit"])
    )
    test = SceneCaptions(
        split=args.split, num_samples=args.images, seed=args.seed, image_size=64,
        distinct_captions=True,
    )  # fmt: skip
    if args.bound_only:
        bound = _bound(args, test, train, evaluation)
        print(f"wrote {args.out / 'bound.json'} ({len(bound['points'])} points)")
        return bound
    model = _codec(args.model).eval()
    fit = None
    attacks = BLIND_ATTACKS + PURIFICATION_ATTACKS
    if not args.no_fitted:
        fit = SceneCaptions(
            split="val", num_samples=args.fit_images, seed=args.seed, image_size=64
        )
        attacks = PROTECTION_ATTACKS
    attacker = None
    if args.inversion_pairs > 0:
        attacker = SceneCaptions(
            split="train", num_samples=args.inversion_pairs, seed=args.attacker_seed,
            image_size=64,
        )  # fmt: skip
    key = publisher_key(args) if getattr(model, "is_keyed", False) else None
    report = evaluate_protection(
        model,
        test,
        train,
        evaluation,
        fit,
        inversion_dataset=attacker,
        inversion_kwargs={
            "num_pairs": args.inversion_pairs,
            "steps": args.inversion_steps,
            "max_seconds": args.inversion_seconds,
            "seed": args.attacker_seed,
        },
        attacks=attacks,
        key=key,
        attacker_seed=args.attacker_seed,
        latent_steps=args.latent_steps,
        latent_images=min(args.latent_images, args.images),
        latent_starts=args.latent_starts,
    )
    report["keyed"] = key is not None
    report["publisher_key"] = (
        None
        if key is None
        else ("--key-file" if args.key_file else f"derived from --seed {args.seed}")
    )
    report["scene_objects"] = _scene_objects(model, test, key)
    report["model"] = args.model
    report["seed"] = args.seed
    report["inversion_dataset"] = (
        None
        if attacker is None
        else f"scenes:train:seed{args.attacker_seed}:{args.inversion_pairs}"
    )
    _image_sheet(model, test, args.out / "images.png", key=key)
    with open(args.out / "protection.json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)

    if args.bound_images > 0 or args.bound_from is not None:
        bound = _bound(args, test, train, evaluation)
        summary = {v["name"]: v for v in report["summary"]["vlps"]}
        codec_point = {
            "psnr": report["psnr"]["protected"],
            "recall": {n: summary[n]["i2t"]["protected"] for n in summary},
            "worst": {n: summary[n]["i2t"]["worst_blind"] for n in summary},
        }
        plot_bound(bound, str(args.out / "bound.png"), {"codec": codec_point})
    report["seconds"] = round(time.perf_counter() - start, 1)
    _print_summary(report)
    return report


def _bound(args: argparse.Namespace, test, train, evaluation) -> dict:
    """The per-image bound (computed, or read from ``--bound-from``), also
    written to ``OUT/bound.json``."""
    from compressai_psic.evaluation.bound import per_image_bound

    if args.bound_from is not None:
        with open(args.bound_from, encoding="utf-8") as f:
            bound = json.load(f)
    else:
        from compressai_psic.train.criterion import build_eot

        vlps = {m.name: m for m in train + evaluation}
        budgets = {}
        for part in args.bound_budgets.split(";"):
            norm, _, values = part.partition(":")
            budgets[norm.strip()] = [float(v) for v in values.split(",") if v]
        bound = per_image_bound(
            test,
            train,
            vlps,
            budgets=budgets,
            limit=args.bound_images,
            steps=args.bound_steps,
            feature_weight=args.bound_feature_weight,
            eot=build_eot(args.bound_eot, args.seed),
        )
    if (
        args.bound_from is None
        or args.bound_from.resolve() != (args.out / "bound.json").resolve()
    ):
        with open(args.out / "bound.json", "w", encoding="utf-8") as f:
            json.dump(bound, f, indent=2)
    return bound


def _print_summary(report: dict) -> None:
    print(
        f"{report['num_images']} scenes; PSNR full {report['psnr']['full']:.2f} "
        f"dB, protected {report['psnr']['protected']:.2f} dB; "
        f"{report['seconds']} s"
    )
    for vlp in report["summary"]["vlps"]:
        cells = []
        for d in ("i2t", "t2i"):
            row = vlp[d]
            cells.append(
                f"{d} orig {row['original']:.3f} full {row['full']:.3f} "
                f"prot {row['protected']:.3f} worst-blind {row['worst_blind']:.3f} "
                f"({row['worst_blind_attack']})"
                + (f" inversion {row['inversion']:.3f}" if "inversion" in row else "")
                + (
                    f" worst-adaptive {row['worst_adaptive']:.3f} "
                    f"({row['worst_adaptive_attack']})"
                    if "worst_adaptive" in row
                    else ""
                )
                + (
                    f" worst-latent {row['worst_latent_ratio']:.2f}x of original "
                    f"({row['worst_latent_attack']})"
                    if row.get("worst_latent_ratio") is not None
                    else ""
                )
            )
        print(f"{vlp['name']} ({vlp['role']}): " + " | ".join(cells))


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
