r"""Writes the model card of a keyed codec from the reports that measured it.

Reads the protection report of ``tools/eval_protection.py`` (test scenes), its
per-image bound, the photo check of ``tools/photo_check.py`` and the manifest
entry written by ``python -m compressai_psic.train.keyed --export``, and writes
the card: what each attacker gets back, with the commands that rebuild every
figure. Nothing is typed in by hand.

Example::

    python tools/keyed_card.py --name demo-psic-keyed --protection runs/keyed-test \
        --photos runs/photos-keyed --out zoo/DEMO_PSIC_KEYED.md -f
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Model card of a keyed codec.")
    parser.add_argument("--name", default="demo-psic-keyed")
    parser.add_argument("--protection", type=Path, required=True, help="eval folder")
    parser.add_argument("--photos", type=Path, required=True, help="photo_check folder")
    parser.add_argument("--zoo", type=Path, default=Path("zoo"))
    parser.add_argument(
        "--bound", type=Path, default=None, help="bound.json of the per-image bound"
    )
    parser.add_argument("--bound-command", default=None)
    parser.add_argument(
        "--rebuilt",
        type=Path,
        default=None,
        help="the best checkpoint of a second run of the recorded command; the card "
        "says whether it exports to the shipped file",
    )
    parser.add_argument("--eval-command", required=True)
    parser.add_argument("--photo-command", required=True)
    parser.add_argument(
        "--before",
        action="append",
        default=[],
        help="a command run before the recorded one (earlier training stages)",
    )
    parser.add_argument("--out", type=Path, default=Path("zoo/DEMO_PSIC_KEYED.md"))
    parser.add_argument(
        "-f", "--force", action="store_true", help="replace an existing card"
    )
    return parser


def _f(value: Optional[float], digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pair(row: Dict[str, Any], field: str, digits: int = 3) -> str:
    return f"{_f(row['i2t'].get(field), digits)} / {_f(row['t2i'].get(field), digits)}"


def _latent_rows(latent: Dict[str, Any]) -> List[str]:
    names = ["original", "full", "protected"] + [
        f"protected_{a}" for a in latent["attacks"]
    ]
    header = "| images | " + " | ".join(
        f"{v['name']} ({v['role']})" for v in latent["vlps"]
    )
    lines = [header + " |", "|---" * (len(latent["vlps"]) + 1) + "|"]
    for name in names:
        cells = []
        for vlp in latent["vlps"]:
            r = vlp["recall"].get(name)
            cells.append(
                "–" if r is None else f"{r['i2t']['R@1']:.3f} / {r['t2i']['R@1']:.3f}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _at(points: List[Dict[str, Any]], psnr: float, read) -> Optional[float]:
    """``read(point)`` interpolated linearly in PSNR at ``psnr`` (``None``
    outside the points' range: the bound is not extrapolated)."""
    points = sorted(points, key=lambda p: p["psnr"])
    for low, high in zip(points, points[1:]):
        if low["psnr"] <= psnr <= high["psnr"]:
            share = (psnr - low["psnr"]) / (high["psnr"] - low["psnr"])
            return read(low) + share * (read(high) - read(low))
    return None


def _bound_lines(bound: Dict[str, Any], report: Dict[str, Any]) -> List[str]:
    psnr = report["psnr"]["protected"]
    points = [p for p in bound["points"] if p["norm"] == "l2"]
    lines = [
        "| VLP | dir. | original | codec | bound (L2) | codec worst blind | "
        "bound worst blind |",
        "|---|---|---|---|---|---|---|",
    ]
    summary = {v["name"]: v for v in report["summary"]["vlps"]}
    for name in bound["original"]:
        for d in ("i2t", "t2i"):
            codec = summary.get(name, {}).get(d, {})
            value = _at(
                points, psnr, lambda p, n=name, d=d: p["recall"][n]["perturbed"][d]
            )
            worst = _at(points, psnr, lambda p, n=name, d=d: p["worst"][n][d])
            lines.append(
                f"| {name} | {d} | {_f(bound['original'][name][d])} | "
                f"{_f(codec.get('protected'))} | {_f(value)} | "
                f"{_f(codec.get('worst_blind'))} | {_f(worst)} |"
            )
    return lines


def _rebuilt(args: argparse.Namespace, entry: Dict[str, Any]) -> List[str]:
    """Whether a second run of the recorded command exports to the same file."""
    if args.rebuilt is None:
        return []
    import tempfile

    from compressai_psic.train.keyed import export_keyed

    with tempfile.TemporaryDirectory() as folder:
        zoo = Path(folder)
        (zoo / "manifest.json").write_text('{"models": []}')
        again = export_keyed(args.rebuilt, zoo, args.name, {})
    same = again["sha256"] == entry["sha256"]
    verdict = (
        "the same file, byte for byte (sha256 " + entry["sha256"][:16] + "…)"
        if same
        else "a different file (sha256 " + again["sha256"][:16] + "…)"
    )
    return [
        "- Rebuilt: a second run of that command on the same machine exports to "
        f"{verdict}."
    ]


def _ratio_of(row: Dict[str, Any]) -> Optional[float]:
    """The protected decode's share of the original on the latent pass's images."""
    original, protected = row.get("latent_original"), row.get("latent_protected")
    return protected / original if original and protected is not None else None


def _plainly(report: Dict[str, Any]) -> List[str]:
    """What each attacker gets back, and the issue's targets with verdicts."""
    evaluation = [v for v in report["summary"]["vlps"] if v["role"] == "eval"]
    objects = report["scene_objects"]["objects"]
    cast = report["scene_objects"]["colour_shift"]
    psnr = report["psnr"]
    lines = ["## What it protects against, plainly", ""]
    for vlp in evaluation:
        parts = []
        for d in ("i2t", "t2i"):
            row = vlp[d]
            options = [
                (row.get("worst_adaptive_ratio"), row.get("worst_adaptive_attack")),
                (row.get("worst_latent_ratio"), row.get("worst_latent_attack")),
            ]
            value, name = max(
                (o for o in options if o[0] is not None), default=(0, "-")
            )
            parts.append(f"{value:.2f} ({name})")
        lines.append(
            f"- `{vlp['name']}` (never trained against), Recall@1 as a share of the "
            f"originals' (image→text / text→image): as published "
            f"{_pair(vlp, 'protected_ratio', 2)}; a blind scraper's best "
            f"{_pair(vlp, 'worst_blind_ratio', 2)}; an attacker with the model but "
            f"not the key {parts[0]} / {parts[1]} (`inversion`: a restoration network "
            "trained on pairs it makes with keys of its own; `latent-*`: fits through "
            "the public model, measured on their own 100 scenes, where the protected "
            "decode itself is at "
            f"{_pair({d: {'r': _ratio_of(vlp[d])} for d in ('i2t', 't2i')}, 'r', 2)})."
        )
    lines += [
        "- The key holder, and anyone with the `.psic` file, gets the full decode "
        "(the full path needs no key).",
        "- A leaked key with the bitstreams is the full decode again; a leaked key "
        "without them gives no more than a key of the attacker's own (the noise "
        "is derived from the key *and* each bitstream), which the `latent-own-key` "
        "and `inversion` rows measure.",
        "",
        "Targets of issue 22 (eval VLPs, both directions) and what was measured:",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]

    def worst(field: str) -> float:
        return max(v[d][field] for v in evaluation for d in ("i2t", "t2i"))

    def adaptive_worst() -> float:
        return max(
            max(
                filter(
                    None,
                    [v[d].get("worst_adaptive_ratio"), v[d].get("worst_latent_ratio")],
                )
            )
            for v in evaluation
            for d in ("i2t", "t2i")
        )

    rows = [
        ("worst adaptive ≤ 0.75 × original", adaptive_worst(), 0.75),
        ("as decoded ≤ 0.5 × original", worst("protected_ratio"), 0.5),
        ("worst blind ≤ 0.5 × original", worst("worst_blind_ratio"), 0.5),
    ]
    for name, value, bound in rows:
        verdict = "met" if value <= bound else f"missed by {value - bound:.2f}"
        lines.append(f"| {name} | {value:.2f} (largest) | {verdict} |")
    drop = psnr["full"] - psnr["protected"]
    lines.append(
        f"| protected PSNR ≥ full − 2 dB | −{drop:.2f} dB | "
        f"{'met' if drop <= 2 else 'missed'} |"
    )
    ms = report["ms_ssim"]["full"] - report["ms_ssim"]["protected"]
    lines.append(
        f"| MS-SSIM ≥ full − 0.05 | −{ms:.4f} | "
        f"{'met' if ms <= 0.05 else f'missed by {ms - 0.05:.4f}'} |"
    )
    lines.append(
        f"| per-image cast within 1 level | largest {cast['max_abs']:.2f} levels, "
        f"{100 * cast['within_1_level']:.1f}% of scenes within | "
        f"{'met' if cast['max_abs'] <= 1 else 'missed'} |"
    )
    kept = objects["palette_kept"]
    lines.append(
        f"| ≥ 99.5% of objects keep their palette colour | {100 * kept:.1f}% (full "
        f"decode {100 * objects['palette_kept_full']:.1f}%) | "
        f"{'met' if kept >= 0.995 else 'missed'} |"
    )
    p90 = objects["protected_vs_full"]["p90"]
    lines.append(
        f"| object colour vs full within 10 levels for 90% | 90th percentile "
        f"{p90:.1f} levels | {'met' if p90 <= 10 else 'missed'} |"
    )
    full_gap = max(
        v[d]["original"] - v[d]["full"]
        for v in report["summary"]["vlps"]
        for d in ("i2t", "t2i")
    )
    lines.append(
        f"| full decode within 0.03 R@1 of the originals | largest gap {full_gap:.3f} "
        f"| {'met' if full_gap <= 0.03 else 'missed'} (the full path is demo-psic's) |"
    )
    common = report.get("image_dependence", {}).get("common_share")
    if common is not None:
        lines.append(
            f"| image dependence (common share) ≤ 0.5 | {common:.3f} | "
            f"{'met' if common <= 0.5 else 'missed'} |"
        )
    return lines + [""]


def main(argv: Optional[List[str]] = None) -> str:
    parser = build_parser()
    args = parser.parse_args(argv)
    images = [args.zoo / f"{args.name}-{kind}.png" for kind in ("images", "photos")]
    existing = [p for p in [args.out, *images] if p.exists()]
    if existing and not args.force:
        parser.error(f"{existing[0]} exists; pass -f/--force to replace the card")
    for needed in (args.protection / "protection.json", args.photos / "photos.json"):
        if not needed.is_file():
            parser.error(f"no such file: {needed}")
    report = json.loads((args.protection / "protection.json").read_text())
    photos = json.loads((args.photos / "photos.json").read_text())
    manifest = json.loads((args.zoo / "manifest.json").read_text())
    entry = next(m for m in manifest["models"] if m.get("name") == args.name)
    summary = report["summary"]["vlps"]
    latent = report.get("latent")
    inversion = report.get("inversion") or {}
    objects = report["scene_objects"]["objects"]
    cast = report["scene_objects"]["colour_shift"]
    shutil.copyfile(
        args.protection / "images.png", args.zoo / f"{args.name}-images.png"
    )
    shutil.copyfile(args.photos / "photos.png", args.zoo / f"{args.name}-photos.png")
    training = entry.get("training", {})
    lines = [
        f"# Keyed demo codec (`{args.name}`)",
        "",
        "The shipped demo codec (`demo-psic`, [DEMO_PSIC.md](DEMO_PSIC.md)) with a "
        "keyed shift: its protected decode is `g_s(ŷ + Δ(ŷ, noise), full)`, the noise "
        "drawn from the publisher's key and the bitstream "
        "([docs/ARCHITECTURE.md](../docs/ARCHITECTURE.md#keyed-models-the-protected-"
        "decode-needs-the-publishers-key)). Everything else is `demo-psic`'s, bit "
        "for bit: the same bitstream, the same full decode.",
        "",
        "```python",
        "from compressai_psic.models.keys import read_key_file",
        "from compressai_psic.zoo import load_named",
        "",
        f'net = load_named("{args.name}")',
        "net.update(force=True)",
        'key = read_key_file("publisher.key")  # psic keygen -o publisher.key',
        "out = net.compress(x)  # x: (B, 3, 64, 64) in [0, 1]",
        'protected = net.decompress(out["strings"], out["shape"], key=key)["x_hat"]',
        "```",
        "",
        *_plainly(report),
        "## Training",
        "",
        "- Commands, in order (the last writes the file and its manifest entry):",
        "",
        "```bash",
        *args.before,
        entry["recipe"]["command"],
        "```",
        "",
        f"- Trains the shift only ({entry['keyed']['parameters']:,} parameters, form "
        f"`{entry['keyed']['form']}`, {entry['keyed']['noise_channels']} noise "
        "channels) against the training ensemble (four small CLIPs); the evaluation "
        "VLPs chose nothing.",
        f"- {training.get('steps_run')} steps run, best validation step "
        f"{training.get('best_step')} (200 validation scenes, training VLPs only: "
        f"R@1 {_f(training.get('validation', {}).get('recall'))}, protected PSNR "
        f"{_f(training.get('validation', {}).get('psnr_protected'), 2)} dB); "
        f"{training.get('minutes')} min on {training.get('threads')} CPU threads of a "
        "shared 2-core machine.",
        f"- File: `{entry['file']}` ({entry['size_bytes']:,} bytes, float16 "
        "parameters).",
        *_rebuilt(args, entry),
        "",
        "## Measured",
        "",
        f"`{args.eval_command}`",
        "",
        f"{report['num_images']} test scenes (seed {report['seed']}), "
        f"{report['num_images']}-way retrieval; the publisher's key "
        f"{report['publisher_key']}. Every pair an attacker fits on is made with keys "
        "of its own.",
        "",
        "| | value |",
        "|---|---|",
        f"| rate | {_f(report['bpp'])} bpp (real bytes) |",
        f"| PSNR full / protected | {_f(report['psnr']['full'], 2)} / "
        f"{_f(report['psnr']['protected'], 2)} dB |",
        f"| MS-SSIM full / protected | {_f(report['ms_ssim']['full'], 4)} / "
        f"{_f(report['ms_ssim']['protected'], 4)} |",
        f"| per-image colour cast (protected − full), largest | "
        f"{_f(cast['max_abs'], 2)} levels; {100 * cast['within_1_level']:.1f}% of "
        "images within 1 level |",
        f"| objects keeping their palette colour (protected / full) | "
        f"{100 * objects['palette_kept']:.1f}% / "
        f"{100 * objects['palette_kept_full']:.1f}% of {objects['objects']} |",
        f"| object mean colour, protected vs full (median / 90th pct / max) | "
        f"{_f(objects['protected_vs_full']['median'], 1)} / "
        f"{_f(objects['protected_vs_full']['p90'], 1)} / "
        f"{_f(objects['protected_vs_full']['max'], 1)} levels |",
        "",
        "Recall@1 image→text / text→image. *Worst blind*: the highest over JPEG, "
        "resizing, grey world, blur, median, down-and-up sampling and noisy "
        "upscaling. *Worst adaptive*: over the colour maps, the 5×5 filter and the "
        f"learned inversion ({inversion.get('pairs')} pairs under the attacker's own "
        f"keys, {inversion.get('steps')} steps, {inversion.get('train_seconds')} s "
        "of training).",
        "",
        "| VLP (role) | original | full | protected | worst blind | worst adaptive "
        "(which) |",
        "|---|---|---|---|---|---|",
    ]
    for vlp in summary:
        lines.append(
            f"| {vlp['name']} ({vlp['role']}) | {_pair(vlp, 'original')} | "
            f"{_pair(vlp, 'full')} | {_pair(vlp, 'protected')} | "
            f"{_pair(vlp, 'worst_blind')} | {_pair(vlp, 'worst_adaptive')} "
            f"({vlp['i2t'].get('worst_adaptive_attack')} / "
            f"{vlp['t2i'].get('worst_adaptive_attack')}) |"
        )
    prices = report["summary"].get("psnr", {})
    lines += [
        "",
        "What each attack costs the attacker's image (mean PSNR against the "
        "originals, dB: on the protected decode / on the full decode):",
        "",
        "| attack | protected | full |",
        "|---|---|---|",
    ]
    for name, price in prices.items():
        lines.append(
            f"| {name} | {_f(price.get('protected'), 2)} | {_f(price.get('full'), 2)} |"
        )
    lines += ["", "As a share of the originals' Recall@1 (the issue's targets):", ""]
    lines += [
        "| VLP | protected | worst blind | worst adaptive | worst latent inversion |",
        "|---|---|---|---|---|",
    ]
    for vlp in summary:
        lines.append(
            f"| {vlp['name']} | {_pair(vlp, 'protected_ratio', 2)} | "
            f"{_pair(vlp, 'worst_blind_ratio', 2)} | "
            f"{_pair(vlp, 'worst_adaptive_ratio', 2)} | "
            f"{_pair(vlp, 'worst_latent_ratio', 2)} |"
        )
    if latent:
        params = latent.get("attack_params", {})
        some = next(iter(params.values()), {})
        lines += [
            "",
            f"### Inversions through the public model ({latent['num_images']} test "
            f"scenes, {latent['num_images']}-way)",
            "",
            f"Each fits a latent (and what it searches) for {some.get('steps')} Adam "
            "steps so that a decode of the public model reproduces the published "
            "image, then decodes that latent on the full path; random starts keep "
            "the best fit of "
            f"{max((p.get('starts', 1) for p in params.values()), default=1)}.",
            "",
        ]
        lines += _latent_rows(latent)
        lines += ["", "| attack | seconds per image | threads |", "|---|---|---|"]
        for name, p in params.items():
            lines.append(
                f"| {name} | {p.get('seconds_per_image')} | {p.get('threads')} |"
            )
    if args.bound is not None:
        from compressai_psic.evaluation.bound import plot_bound

        bound = json.loads(args.bound.read_text())
        codec_point = {
            "psnr": report["psnr"]["protected"],
            "recall": {v["name"]: v["i2t"]["protected"] for v in summary},
            "worst": {v["name"]: v["i2t"]["worst_blind"] for v in summary},
        }
        plot_bound(
            bound, str(args.zoo / f"{args.name}-bound.png"), {args.name: codec_point}
        )
        budgets = ", ".join(
            f"{p['norm']} {p['budget']:g} ({p['psnr']:.1f} dB)" for p in bound["points"]
        )
        lines += [
            "",
            "### Against the per-image bound",
            "",
            f"`{args.bound_command}`",
            "",
            f"PGD on each original ({bound['steps']} steps, the surrogates "
            f"{', '.join(bound['surrogate'])} balanced per image, feature weight "
            f"{bound['feature_weight']}, EOT over {', '.join(bound['eot'] or [])}, "
            f"input diversity), budgets {budgets}, {bound['num_images']} test scenes "
            f"evaluated {bound['num_images']}-way as the codec is; R@1 interpolated "
            f"at the codec's protected PSNR ({report['psnr']['protected']:.2f} dB), "
            "'–' where the budgets do not reach it. Lower is better for the "
            "defender.",
            "",
            *_bound_lines(bound, report),
            "",
            f"![the bound and the codec, image→text](./{args.name}-bound.png)",
        ]
    lines += [
        "",
        "## Real photos",
        "",
        f"`{args.photo_command}`",
        "",
        "Centre crops of the `skimage.data` photos (never trained on). Casts are the "
        "per-image mean of protected − full per channel; peaks, the spectral peaks "
        "of |protected − full| at strides 2/4/8/16 px as multiples of the "
        "background (1 = none).",
        "",
        "| photo | PSNR full / protected | cast R / G / B (levels) "
        "| peaks 2 / 4 / 8 / 16 |",
        "|---|---|---|---|",
    ]
    for name, row in photos.items():
        peaks = " / ".join(
            _f(row["periodic_peaks"].get(str(p)), 1) for p in (2, 4, 8, 16)
        )
        lines.append(
            f"| {name} | {row['psnr_full']:.2f} / {row['psnr_protected']:.2f} | "
            f"{' / '.join(f'{v:+.2f}' for v in row['cast_rgb'])} | {peaks} |"
        )
    lines += [
        "",
        f"![full, protected, 8×|difference|; then 3× crops](./{args.name}-photos.png)",
        "",
        "![scenes: original, full, protected, 4×|difference|]"
        f"(./{args.name}-images.png)",
        "",
    ]
    text = "\n".join(lines)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return text


if __name__ == "__main__":
    main()
