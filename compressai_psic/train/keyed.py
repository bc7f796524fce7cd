r"""Trains the keyed shift of a shielded codec (:mod:`compressai_psic.models.keyed`).

Starts from a trained shielded (or plain shielded) codec, adds a fresh
:class:`~compressai_psic.models.keyed.KeyedLatentShift` (or continues one), and
trains only the shift, everything else frozen: the rate path and the full decode
stay bit for bit those of ``--init``. Each step draws two keys' noises per image
(:class:`~compressai_psic.losses.keyed.KeyedShieldLoss`). Every
``--val-every`` steps the protected decodes of ``--val-scenes`` validation scenes
are matched by the *training* VLPs (never an evaluation VLP) and the step with the
lowest mean Recall@1 (the higher of the protected decodes' and of the first step
of an own-key inversion of them) whose PSNR stays within ``--max-psnr-drop`` dB of
the full decode is kept: the choice is frozen before any test figure exists.

Example (the demo codec's keyed release; ``zoo/DEMO_PSIC.md``)::

    python -m compressai_psic.train.keyed --init zoo/demo-psic-d4a9e740.pth.tar \
        --steps 600 --save-dir runs/keyed
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["build_parser", "keyed_decodes", "main", "validate"]

BEST_FILE = "keyed_best.pth.tar"
LAST_FILE = "keyed_last.pth.tar"
LOG_FILE = "keyed_log.jsonl"
DEFAULT_EOT = "identity,jpeg,resize,greyworld,blur,median,downup,noisyup"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m compressai_psic.train.keyed",
        description="Train the keyed shift of a shielded codec (everything else "
        "frozen) against the training VLPs; keep the best validation step.",
    )
    parser.add_argument(
        "--init", required=True, help="codec checkpoint or manifest name"
    )
    parser.add_argument("--vlp", default="train-ensemble", help="training VLP spec")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("-lr", "--learning-rate", type=float, default=3e-4)
    parser.add_argument("--noise-channels", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=192)
    parser.add_argument(
        "--form",
        choices=("mix", "concat"),
        default="mix",
        help="how the key noise enters the shift (compressai_psic.models.keyed)",
    )
    parser.add_argument("--lambda-vlp", type=float, default=1.0)
    parser.add_argument("--lambda-feature", type=float, default=1.0)
    parser.add_argument("--lambda-mse", type=float, default=300.0)
    parser.add_argument("--lambda-colour", type=float, default=3000.0)
    parser.add_argument("--lambda-diversity", type=float, default=300.0)
    parser.add_argument(
        "--lambda-attacked",
        type=float,
        default=0.0,
        help="weight of the VLP term on the own-key inversion's first step (0: a "
        "'mix' shift has no key-free part to subtract)",
    )
    parser.add_argument("--margin", type=float, default=2.0)
    parser.add_argument("--eot", default=DEFAULT_EOT, help="scraper transforms or none")
    parser.add_argument("--train-scenes", type=int, default=4000)
    parser.add_argument("--val-scenes", type=int, default=200)
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument(
        "--max-psnr-drop",
        type=float,
        default=2.0,
        help="a validation step counts only if protected PSNR >= full - this (dB)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--save-dir", type=Path, default=Path("runs/keyed"))
    parser.add_argument(
        "-f", "--force", action="store_true", help="replace an earlier run's files"
    )
    parser.add_argument(
        "--export",
        metavar="NAME",
        default=None,
        help="write the best step as ZOO/NAME-<sha256[:8]>.pth.tar (float16 "
        "parameters) and add its entry to ZOO/manifest.json (replacing NAME's)",
    )
    parser.add_argument("--zoo", type=Path, default=Path("zoo"), help="zoo folder")
    return parser


def export_keyed(
    checkpoint: Path, zoo: Path, name: str, record: Dict[str, Any]
) -> Dict[str, Any]:
    """Writes ``checkpoint``'s model with float16 parameters (CDF tables
    recomputed from the rounded weights) as ``zoo/<name>-<sha256[:8]>.pth.tar``
    and puts its entry, with ``record`` (how it was made), in
    ``zoo/manifest.json``. Returns the entry."""
    from .. import load_checkpoint
    from ..io.files import float16_state_dict, save_state_dict, write_bytes

    model = load_checkpoint(checkpoint)
    state = float16_state_dict(model)
    written = save_state_dict(state, zoo, name)
    path = Path(written["path"])
    shift = model.key_shift
    entry = {
        "name": name,
        "kind": "codec",
        "architecture": model.architecture,
        "includes_base": True,
        "image_size": 64,
        "file": path.name,
        "sha256": written["sha256"],
        "size_bytes": path.stat().st_size,
        "dtype": "float16",
        "keyed": {
            "form": shift.form,
            "noise_channels": shift.noise_channels,
            "parameters": sum(p.numel() for p in shift.parameters()),
        },
        "parameters": sum(p.numel() for p in model.parameters()),
        **record,
    }
    manifest_file = zoo / "manifest.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    models = [m for m in manifest["models"] if m.get("name") != name]
    models.append(entry)
    manifest["models"] = models
    write_bytes(manifest_file, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    return entry


def _check(args: argparse.Namespace) -> None:
    """Refusals before any slow work."""
    from ..vlp.specs import evaluation_only_spec

    for name in ("steps", "batch_size", "noise_channels", "hidden", "val_every"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if args.batch_size < 2:
        raise ValueError("--batch-size must be at least 2 (captions compete)")
    if evaluation_only_spec(args.vlp):
        raise ValueError(
            f"--vlp {args.vlp} is an evaluation VLP: codecs are never trained or "
            "chosen against it"
        )
    if args.export and not (args.zoo / "manifest.json").is_file():
        raise ValueError(f"--export: {args.zoo / 'manifest.json'} does not exist")
    init = Path(args.init)
    if init.suffix and not init.is_file():
        raise ValueError(f"--init {args.init}: no such file")
    if args.save_dir.exists() and not args.save_dir.is_dir():
        raise ValueError(f"--save-dir {args.save_dir} is a file")
    existing = [
        args.save_dir / n
        for n in (BEST_FILE, LAST_FILE)
        if (args.save_dir / n).exists()
    ]
    if existing and not args.force:
        raise ValueError(
            f"{existing[0]} exists; pass -f/--force to replace it or another --save-dir"
        )


def keyed_decodes(
    model: Any, x: Any, noise_generator: Any, keys: int = 2, attacked: bool = False
) -> Dict:
    r"""``{"full", "protected": [one per key], "attacked": [...]}``: the model's
    eval-mode forward (its own quantisation, every architecture) with a fresh
    noise per key and image; gradients reach the keyed shift only.

    With ``attacked``, also the first step of the attacker's own-key inversion
    of the first key's decode: ``ŷ₁ = ŷ + Δ(ŷ, n₁)`` minus the shift of another
    key at that latent, ``ŷ₁ − Δ(ŷ₁, n₂)``: what an attacker who holds the model
    but not the key gets back, which the shift must keep protected too.
    """
    import torch

    from ..models.synthesis import call_triggers

    shift = model.key_shift
    noises: List[Any] = []

    def noise(index: int, y_hat: Any) -> Any:
        while len(noises) <= index:
            shape = (y_hat.size(0), shift.noise_channels, *y_hat.shape[-2:])
            noises.append(torch.randn(shape, generator=noise_generator).to(y_hat))
        return noises[index]

    def keyed(index: int):
        return lambda y_hat: y_hat + shift(y_hat, noise(index, y_hat))

    def own_key_inversion(y_hat: Any) -> Any:
        published = y_hat + shift(y_hat, noise(0, y_hat))
        return published - shift(published, noise(1, y_hat))

    shifts = [None] + [keyed(k) for k in range(keys)]
    if attacked:
        shifts.append(own_key_inversion)
    full_trigger = model.trigger("full", x.size(0))
    with call_triggers(model.g_s, [full_trigger] * len(shifts), shifts):
        out = model._psic_base_class.forward(model, x)  # CompressAI's own forward
    decodes = out["x_hat"].clamp(0, 1).chunk(len(shifts))
    return {
        "full": decodes[0].detach(),
        "protected": list(decodes[1 : keys + 1]),
        "attacked": list(decodes[keys + 1 :]),
    }


def validate(model: Any, vlp: Any, images: Any, captions: Sequence[str], seed: int):
    """Training-VLP Recall@1 (mean of both directions, per member and mean) of
    the protected decodes under one fixed validation noise and of the first
    step of an own-key inversion of them, and the protected PSNR. ``score`` is
    the higher of the two recalls: what the choice of a step minimises."""
    import torch

    from ..vlp import vlp_members

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        fulls, prots, attacked = [], [], []
        for begin in range(0, images.size(0), 50):
            batch = images[begin : begin + 50].to(next(model.parameters()).device)
            out = keyed_decodes(model, batch, generator, keys=1, attacked=True)
            fulls.append(out["full"])
            prots.append(out["protected"][0])
            attacked.append(out["attacked"][0])
        full = torch.cat(fulls)
        variants = {
            "protected": (torch.cat(prots) * 255).round() / 255,
            "attacked": (torch.cat(attacked) * 255).round() / 255,
        }
        recalls: Dict[str, Dict[str, float]] = {v: {} for v in variants}
        index = torch.arange(len(captions), device=full.device)
        for number, (member, _) in enumerate(vlp_members(vlp)):
            texts = member.encode_text(list(captions))
            for variant, decoded in variants.items():
                s = member.encode_image(decoded) @ texts.t()
                hits = (s.argmax(1) == index).float().mean()
                hits = hits + (s.argmax(0) == index).float().mean()
                name = getattr(member, "name", f"member{number}")
                recalls[variant][name] = float(hits / 2)

        def psnr(a, b):
            mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-10)
            return float((-10 * torch.log10(mse)).mean())

    mean = {v: sum(r.values()) / len(r) for v, r in recalls.items()}
    return {
        "recall": mean["protected"],
        "recall_attacked": mean["attacked"],
        "score": max(mean.values()),
        "recall_members": recalls,
        "psnr_protected": psnr(variants["protected"].cpu(), images),
        "psnr_full": psnr(full.cpu(), images),
    }


def _save(state: Dict[str, Any], path: Path) -> None:
    """Written next to its name and renamed: an interruption never leaves a
    truncated checkpoint."""
    import torch

    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def _scenes(split: str, count: int, seed: int):
    import torch
    from torchvision.transforms.functional import to_tensor

    from ..datasets.scenes import SceneCaptions

    data = SceneCaptions(split, count, seed, 64, distinct_captions=split != "train")
    images = torch.stack([to_tensor(data.load_image(i)) for i in range(len(data))])
    return images, [data.image_captions_at(i)[0] for i in range(len(data))]


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    _check(args)
    import torch
    from tqdm import tqdm

    from .. import load_checkpoint
    from ..losses.keyed import KeyedShieldLoss
    from ..vlp import build_vlp
    from ..zoo import load_named
    from .criterion import build_eot

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    init = Path(args.init)
    model = load_checkpoint(init) if init.suffix else load_named(args.init)
    model = model.to(args.device)
    if not model.is_keyed:
        model.make_keyed(args.noise_channels, args.hidden, args.form)
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    for param in model.key_shift.parameters():
        param.requires_grad_(True)
    vlp = build_vlp(args.vlp, device=args.device)
    eot = build_eot(args.eot, args.seed)
    criterion = KeyedShieldLoss(
        vlp,
        args.lambda_vlp,
        args.lambda_feature,
        args.lambda_mse,
        args.lambda_colour,
        args.lambda_diversity,
        args.margin,
        transform=eot,
        lambda_attacked=args.lambda_attacked,
    )
    train_x, train_c = _scenes("train", args.train_scenes, args.seed)
    val_x, val_c = _scenes("val", args.val_scenes, args.seed)
    args.save_dir.mkdir(parents=True, exist_ok=True)
    log_path = args.save_dir / LOG_FILE
    optimiser = torch.optim.Adam(model.key_shift.parameters(), lr=args.learning_rate)
    batches = torch.Generator().manual_seed(args.seed)
    noise = torch.Generator().manual_seed(args.seed + 1)
    best: Optional[Dict[str, Any]] = None
    bar = tqdm(total=args.steps, desc="keyed shift", disable=not sys.stderr.isatty())
    with open(log_path, "a", encoding="utf-8") as log:
        for step in range(1, args.steps + 1):
            index = torch.randint(len(train_x), (args.batch_size,), generator=batches)
            x = train_x[index].to(args.device)
            captions = [train_c[i] for i in index]
            out = keyed_decodes(model, x, noise, attacked=args.lambda_attacked > 0)
            terms = criterion(
                out["protected"], out["full"], x, captions, out["attacked"]
            )
            optimiser.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimiser.step()
            bar.update(1)
            if step % args.val_every == 0 or step == args.steps:
                row = {"step": step, **{k: float(v.detach()) for k, v in terms.items()}}
                row.update(validate(model, vlp, val_x, val_c, args.seed + 2))
                row["seconds"] = round(time.perf_counter() - start, 1)
                ok = row["psnr_protected"] >= row["psnr_full"] - args.max_psnr_drop
                row["eligible"] = ok
                if ok and (best is None or row["score"] < best["score"]):
                    best = row
                    _save(
                        {
                            "state_dict": model.state_dict(),
                            "step": step,
                            "validation": row,
                        },
                        args.save_dir / BEST_FILE,
                    )
                log.write(json.dumps(row) + "\n")
                log.flush()
                bar.write(
                    f"step {step}: val recall {row['recall']:.3f} (own-key inversion "
                    f"{row['recall_attacked']:.3f}), PSNR "
                    f"{row['psnr_protected']:.2f} (full {row['psnr_full']:.2f})"
                    f"{'' if ok else ' (too far from full)'}"
                )
    bar.close()
    _save(
        {"state_dict": model.state_dict(), "step": args.steps},
        args.save_dir / LAST_FILE,
    )
    summary = {
        "best": best,
        "steps": args.steps,
        "minutes": round((time.perf_counter() - start) / 60, 1),
        "threads": torch.get_num_threads(),
        "command": "python -m compressai_psic.train.keyed "
        + " ".join(sys.argv[1:] if argv is None else list(argv)),
    }
    (args.save_dir / "keyed_summary.json").write_text(json.dumps(summary, indent=2))
    if best is None:
        print(
            "No validation step kept the protected PSNR within "
            f"{args.max_psnr_drop} dB of the full decode; nothing saved as best",
            file=sys.stderr,
        )
    elif args.export:
        summary["export"] = export_keyed(
            args.save_dir / BEST_FILE,
            args.zoo,
            args.export,
            {
                "recipe": {"command": summary["command"]},
                "training": {
                    "steps_run": args.steps,
                    "best_step": best["step"],
                    "minutes": summary["minutes"],
                    "threads": summary["threads"],
                    "validation": {
                        k: best[k]
                        for k in ("recall", "recall_attacked", "psnr_protected")
                    },
                },
            },
        )
        (args.save_dir / "keyed_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def cli(argv: Optional[Sequence[str]] = None) -> int:
    try:
        main(argv)
    except (ValueError, OSError, ImportError) as err:
        print(f"compressai_psic.train.keyed: error: {' '.join(str(err).split())}",
              file=sys.stderr)  # fmt: skip
        return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.exit(cli())
