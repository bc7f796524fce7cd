r"""Retrains the demo PSIC codec and ships it into ``zoo/``.

The demo codec (manifest name ``demo-psic``, used by ``psic demo``) is a shielded
``bmshj2018-hyperprior`` with small channel counts, trained on the procedural
scene benchmark (:mod:`compressai_psic.datasets`) against the shipped demo VLP
(``--vlp demo``). This one command

1. runs stage 1 of the real training tool (:mod:`compressai_psic.train`): every
   parameter, fixed UAEO weighting, from random weights, and stores its result
   (the base codec, no triggers) as ``zoo/demo-psic-stage1-<sha256[:8]>.pth.tar``;
   ``--stage1-from FILE`` starts from such a file instead;
2. runs stage 2 from it: the synthesis and affine triggers at every synthesis
   stage train (condition MLP frozen), both paths per sample, with the terms
   that make the protection hold (full-path semantic term, low-frequency and
   common-difference terms on the protected path, scraper transforms before
   the VLP), and exports the best weights (``--export demo-psic``);
3. stores those weights with float16 parameters as
   ``zoo/demo-psic-<sha256[:8]>.pth.tar`` (:func:`save_compact`), loads that
   file back and measures it as ``psic demo`` does
   (:func:`compressai_psic.demo.run_demo`, every attack, the demo VLP and the
   two evaluation VLPs), on ``--eval-images`` held-out test scenes;
4. adds or replaces the ``demo-psic`` (and ``demo-psic-stage1``) entries of
   ``zoo/manifest.json``, writes the model card ``zoo/DEMO_PSIC.md`` and prints
   the entry as JSON. Every target of the issue is checked and each miss is
   printed with its margin.

Both stages run in this process with ``torch.set_num_threads(--threads)`` and no
data workers. ``train_seconds`` is the wall time of the stages run,
``cpu_seconds`` their process CPU time. The tool sets ``OMP_WAIT_POLICY=PASSIVE``
(unless already set) so that idle OpenMP threads sleep on a shared machine.

Example (the shipped model)::

    python tools/train_demo_psic.py

``--smoke`` runs a few steps of each stage and writes into ``WORK_DIR/zoo``
(unless ``--zoo`` says otherwise): it checks the pipeline, not the model.

The stages train into ``WORK_DIR/stage1`` .. ``stage3``; an earlier run's folder
there is refused before any work, and replaced with ``--force``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

# Spinning OpenMP waiters take the cores other jobs need on a shared 2-core
# machine. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from compressai_psic import train as train_tool  # noqa: E402
from compressai_psic.io.files import file_sha256 as sha256_file  # noqa: E402
from compressai_psic.io.files import float16_state_dict, save_state_dict  # noqa: E402
from compressai_psic.system import machine_description  # noqa: E402
from compressai_psic.zoo import update_manifest  # noqa: E402

__all__ = [
    "DEMO_PSIC_NAME",
    "RECIPE",
    "check_targets",
    "main",
    "model_card",
    "rewrite_card",
    "save_compact",
    "stage_argv",
    "stage_dirs_to_train",
    "update_manifest",
]

DEMO_PSIC_NAME = "demo-psic"
ARCHITECTURE = "bmshj2018-hyperprior"
IMAGE_SIZE = 64
DEFAULT_ZOO = Path(__file__).resolve().parent.parent / "zoo"
#: The Pareto plot's summary of the sweep the recipe was chosen from.
PARETO_SUMMARY = "demo-psic-pareto.json"
#: Targets of issue 15, on held-out test scenes (retrieval is N-way).
FULL_TOLERANCE = 0.03  # full R@1 at least the originals' − this, every VLP
FULL_PSNR_TOLERANCE = 0.3  # full PSNR at least stage 1's − this (dB)
PROTECTED_PSNR_GAP = 3.0  # protected PSNR at least full − this (dB)
PROTECTED_MS_SSIM_GAP = 0.05  # protected MS-SSIM at least full − this
PERIODIC_AMPLITUDE_LIMIT = 1.0  # repeating part of mean |protected − full| (levels)
ATTACKED_MARGIN = 0.10  # training VLPs: R@1 after every blind attack ≤ chance + this
TRANSFER_DROP = 0.5  # eval VLPs: R@1 ≤ (1 − this) × original, decoded and attacked
INVERSION_DROP = 0.25  # eval VLPs after the learned inversion: ≤ (1 − this) × original
COMMON_SHARE_LIMIT = 0.5  # share of (protected − full) common to all images
#: Test scenes of the per-image bound the codec is compared with.
BOUND_IMAGES = 200
EVAL_SEED = 2025

#: The shipped recipe. Stage lengths are set through the data size and epochs so
#: that every epoch ends with a validation pass and a checkpoint.
RECIPE: Dict[str, Dict[str, Any]] = {
    "common": {
        "N": 64,
        "M": 96,
        "scene_val_samples": 200,
        "seed": 0,
        "aux_learning_rate": 1e-2,
    },
    "stage1": {
        "scene_samples": 16000,
        "batch_size": 16,
        "epochs": 4,
        "milestones": [3],
        "learning_rate": 1e-3,
        "lambda_full": 0.05,
        "lambda_prot": 0.05,
        "lambda_vlp": 0.01,
        "paths": "sample",
    },
    "stage2": {
        "scene_samples": 8000,
        "batch_size": 16,
        "epochs": 5,
        "milestones": [4],
        "learning_rate": 1e-4,
        "trigger_learning_rate": 1e-3,
        "lambda_full": 0.3,
        "lambda_prot": 0.03,
        "lambda_vlp": 20.0,
        "lambda_semantic": 100.0,
        "lambda_lowfreq": 0.3,
        "lambda_common": 0.5,
        "eot": "identity,jpeg,resize,greyworld",
        "paths": "both",
        "plan": "every-stage",
        "modulation": "affine",
        "stage2_params": "synthesis",
    },
    # Hardening (issue 15): from the stage-2 codec, only the synthesis and the
    # triggers train against the training ensemble (two ViT, two ResNet
    # towers, balanced), with feature disruption on the ResNet towers, EOT over
    # the purifications, and the activity-masked change that keeps the
    # protection off flat areas.
    "stage3": {
        "scene_samples": 6000,
        "batch_size": 16,
        "epochs": 2,
        "milestones": [1],
        "learning_rate": 5e-5,
        "trigger_learning_rate": 2e-4,
        "lambda_full": 0.3,
        "lambda_prot": 0.05,
        "lambda_vlp": 35.0,
        "lambda_semantic": 100.0,
        "lambda_lowfreq": 0.3,
        "lambda_common": 0.5,
        "lambda_masked": 0.05,
        "lambda_periodic": 1.0,
        "lambda_feature": 10.0,
        "ensemble": "balanced",
        "eot": "identity,jpeg,resize,greyworld,blur,median,downup,noisyup",
        "vlp": "train-ensemble",
        "paths": "both",
        "stage2_params": "synthesis",
    },
}


#: Options of stage 2 passed as ``--flag value`` when the recipe has them.
_STAGE2_FLAGS = (
    "trigger_learning_rate",
    "lambda_semantic",
    "lambda_lowfreq",
    "lambda_common",
    "lambda_masked",
    "lambda_periodic",
    "lambda_feature",
    "ensemble",
    "eot",
    "plan",
    "modulation",
    "stage2_params",
)


#: Flags that shape a new shielded model; stage 3 starts from the shielded
#: stage-2 codec and keeps its plan and modulation.
_NEW_MODEL_FLAGS = ("plan", "modulation")


def stage_argv(
    stage: int,
    save_dir: Path,
    recipe: Dict[str, Dict[str, Any]],
    init: Optional[Path] = None,
    max_steps: Optional[int] = None,
) -> List[str]:
    """Arguments of ``python -m compressai_psic.train`` for one stage (stage 3,
    the hardening, is the training tool's stage 2 from the stage-2 codec)."""
    common, own = recipe["common"], recipe[f"stage{stage}"]
    argv = []
    if init is None:
        argv += ["-m", ARCHITECTURE, "--N", str(common["N"]), "--M", str(common["M"])]
    else:
        argv += ["--init", str(init)]
    argv += [
        "--dataset-format", "scenes",
        "--scene-samples", str(own["scene_samples"]),
        "--scene-val-samples", str(common["scene_val_samples"]),
        "--patch-size", str(IMAGE_SIZE), str(IMAGE_SIZE),
        "--vlp", own.get("vlp", "demo"),
        "--stage", str(min(stage, 2)),
        "--paths", own["paths"],
        "--batch-size", str(own["batch_size"]),
        "-e", str(own["epochs"]),
        "--milestones", *[str(m) for m in own["milestones"]],
        "-lr", f"{own['learning_rate']:g}",
        "--aux-learning-rate", f"{common['aux_learning_rate']:g}",
        "--lambda-full", f"{own['lambda_full']:g}",
        "--lambda-prot", f"{own['lambda_prot']:g}",
        "--lambda-vlp", f"{own['lambda_vlp']:g}",
        "-n", "0",
        "--seed", str(common["seed"]),
        "--no-cuda",
        "--log-every", "100",
        "--save-dir", str(save_dir),
    ]  # fmt: skip
    if stage >= 2:
        for key in _STAGE2_FLAGS:
            if key in own and not (stage == 3 and key in _NEW_MODEL_FLAGS):
                value = own[key]
                text = f"{value:g}" if isinstance(value, float) else str(value)
                argv += ["--" + key.replace("_", "-"), text]
        name = DEMO_PSIC_NAME if stage == 3 else f"{DEMO_PSIC_NAME}-stage2"
        argv += ["--export", name]
    if max_steps is not None:
        argv += ["--max-steps", str(max_steps)]
    return argv


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Retrain the demo PSIC codec (both stages) and ship it in zoo/."
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path("runs") / DEMO_PSIC_NAME,
        help="checkpoints and training logs (default runs/demo-psic)",
    )
    parser.add_argument(
        "--zoo",
        type=Path,
        default=None,
        help="output folder (default zoo/; with --smoke WORK_DIR/zoo)",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch CPU threads (default 2)"
    )
    parser.add_argument(
        "--eval-images",
        type=int,
        default=500,
        help=f"held-out test scenes of the evaluation (seed {EVAL_SEED}; default 500)",
    )
    parser.add_argument(
        "--stage1-from",
        type=Path,
        default=None,
        help="skip stage 1 and start stage 2 from this stage-1 codec (e.g. the "
        "shipped zoo/demo-psic-stage1-*.pth.tar)",
    )
    parser.add_argument(
        "--stage2-from",
        type=Path,
        default=None,
        help="skip stage 2 and harden (stage 3) this stage-2 codec (e.g. the "
        "shipped zoo/demo-psic-stage2-*.pth.tar)",
    )
    parser.add_argument(
        "--stage3-from",
        type=Path,
        default=None,
        help="no training: measure and ship this stage-3 export (the stage-3 "
        "command recorded is the recipe's, with --stage3-set applied)",
    )
    parser.add_argument(
        "--bound-from",
        type=Path,
        default=None,
        help="the per-image bound of the training ensemble, already computed by "
        "`tools/eval_protection.py --bound-only` (it does not depend on the codec)",
    )
    parser.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="LABEL=REPORT",
        help="a point of the sweep the shipped recipe was chosen from: a "
        "`tools/eval_protection.py --split val --no-eval-vlps` report (repeatable; "
        "with --card-only too); its figures go into the manifest and the card",
    )
    parser.add_argument(
        "--stage3-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of the stage-3 recipe (repeatable), e.g. "
        "lambda_vlp=35: the points of a sweep",
    )
    parser.add_argument(
        "--no-manifest",
        action="store_true",
        help="train and export only (no manifest entry, no model card)",
    )
    parser.add_argument(
        "--card-only",
        action="store_true",
        help="no training: recompute the targets of the manifest's demo-psic entry "
        "from its measured figures and rewrite DEMO_PSIC.md",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the stage folders of an earlier run in --work-dir (refused "
        "otherwise)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few steps per stage and a 10-image evaluation, to check the pipeline",
    )
    args = parser.parse_args(argv)
    for path in (args.stage1_from, args.stage2_from, args.stage3_from, args.bound_from):
        if path is not None and not path.is_file():
            parser.error(f"not a file: {path}")
    for item in args.sweep:
        label, sep, report = item.partition("=")
        if not sep or not label or not Path(report).is_file():
            parser.error(f"--sweep {item!r}: use LABEL=REPORT with an existing file")
    if args.stage3_from is not None and args.stage2_from is None:
        parser.error("--stage3-from needs --stage2-from (the codec it hardened)")
    try:
        _with_overrides(RECIPE, args.stage3_set)
    except ValueError as err:
        parser.error(str(err))
    if not args.card_only:
        problem = _work_dir_problem(args)
        if problem:
            parser.error(problem)
    return args


def stage_dirs_to_train(args: argparse.Namespace) -> List[Path]:
    """The stage folders of ``--work-dir`` this run trains into (a stage given
    by ``--stageN-from`` is not trained)."""
    given = (args.stage1_from, args.stage2_from, args.stage3_from)
    return [
        args.work_dir / f"stage{stage}"
        for stage, path in enumerate(given, start=1)
        if path is None
    ]


def _work_dir_problem(args: argparse.Namespace) -> Optional[str]:
    """Why the stage folders cannot be trained into (``None`` when they can): an
    earlier run's results are replaced only with ``--force``, and never when a
    file this run reads lies in one of them."""
    inputs = {
        "--stage1-from": args.stage1_from,
        "--stage2-from": args.stage2_from,
        "--stage3-from": args.stage3_from,
        "--bound-from": args.bound_from,
    }
    for folder in stage_dirs_to_train(args):
        if not folder.exists():
            continue
        if not args.force:
            return (
                f"{folder} holds an earlier run; pass --force to replace it or "
                "choose another --work-dir"
            )
        for flag, path in inputs.items():
            if path is not None and folder.resolve() in path.resolve().parents:
                return f"{flag} {path} lies in {folder}, which --force would remove"
    return None


def _with_overrides(
    recipe: Dict[str, Dict[str, Any]], settings: List[str]
) -> Dict[str, Dict[str, Any]]:
    """A copy of ``recipe`` with ``KEY=VALUE`` settings applied to stage 3
    (values parsed as the recipe's own type)."""
    out = {stage: dict(values) for stage, values in recipe.items()}
    for setting in settings:
        key, sep, text = setting.partition("=")
        if not sep or key not in out["stage3"]:
            raise ValueError(
                f"--stage3-set {setting!r}: use KEY=VALUE with KEY one of "
                f"{sorted(out['stage3'])}"
            )
        kind = type(out["stage3"][key])
        try:
            out["stage3"][key] = kind(text) if kind is not list else text.split(",")
        except ValueError as err:
            raise ValueError(f"--stage3-set {setting!r}: {err}") from None
    return out


def _target(value: float, limit: float, met: bool) -> Dict[str, Any]:
    return {"value": round(value, 4), "limit": round(limit, 4), "met": bool(met)}


def check_targets(metrics: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Every target of the issue, each with its measured value, its bound and
    whether it is met (all are required)."""
    chance = metrics["chance"]
    out: Dict[str, Dict[str, Any]] = {}
    psnr, ms_ssim = metrics["psnr"], metrics["ms_ssim"]
    limit = metrics["stage1_psnr"] - FULL_PSNR_TOLERANCE
    out["full_psnr"] = _target(psnr["full"], limit, psnr["full"] >= limit)
    limit = psnr["full"] - PROTECTED_PSNR_GAP
    out["protected_psnr"] = _target(
        psnr["protected"], limit, psnr["protected"] >= limit
    )
    limit = ms_ssim["full"] - PROTECTED_MS_SSIM_GAP
    out["protected_ms_ssim"] = _target(
        ms_ssim["protected"], limit, ms_ssim["protected"] >= limit
    )
    share = metrics["common_share"]
    out["common_share"] = _target(
        share, COMMON_SHARE_LIMIT, share <= COMMON_SHARE_LIMIT
    )
    # A grid the eye sees on flat areas: its amplitude, not its share, matters.
    for period, level in (metrics.get("periodic_amplitude") or {}).items():
        if level is not None:
            out[f"periodic_amplitude/{period}px"] = _target(
                level, PERIODIC_AMPLITUDE_LIMIT, level <= PERIODIC_AMPLITUDE_LIMIT
            )
    for vlp in metrics["vlps"]:
        recall, name = vlp["recall"], vlp["name"]
        for direction in ("i2t", "t2i"):
            original = recall["original"][direction]
            full = recall["full"][direction]
            limit = original - FULL_TOLERANCE
            out[f"{name}/full/{direction}"] = _target(full, limit, full >= limit - 1e-9)
            worst = vlp.get("worst_blind", {}).get(direction)
            if vlp["role"] == "train":
                checks = [("protected", recall["protected"][direction])]
                if worst is not None:
                    checks.append(("worst_blind", worst))
                limit = chance + ATTACKED_MARGIN
            else:
                checks = [("protected", recall["protected"][direction])]
                if worst is not None:
                    checks.append(("worst_blind", worst))
                limit = (1 - TRANSFER_DROP) * original
            for variant, value in checks:
                out[f"{name}/{variant}/{direction}"] = _target(
                    value, limit, value <= limit + 1e-9
                )
            inversion = vlp.get("inversion", {}).get(direction)
            if inversion is not None and vlp["role"] != "train":
                limit = (1 - INVERSION_DROP) * original
                out[f"{name}/inversion/{direction}"] = _target(
                    inversion, limit, inversion <= limit + 1e-9
                )
    return out


def _rnd(value: Optional[float], digits: int = 4) -> Optional[float]:
    return None if value is None else round(float(value), digits)


def _summarise(report: Dict[str, Any], stage1_psnr: float) -> Dict[str, Any]:
    """The figures of a protection report
    (:func:`compressai_psic.evaluation.evaluate_protection`, as written by
    ``tools/eval_protection.py``) that go into the manifest."""
    rnd = _rnd
    summaries = {v["name"]: v for v in report["summary"]["vlps"]}
    vlps = []
    for entry in report["vlps"]:
        own = summaries[entry["name"]]
        item = {
            "name": entry["name"],
            "role": entry["role"],
            "recall": {
                variant: {d: rnd(values[d]["R@1"]) for d in ("i2t", "t2i")}
                for variant, values in entry["recall"].items()
            },
            "worst_blind": {d: rnd(own[d].get("worst_blind")) for d in ("i2t", "t2i")},
            "worst_blind_attack": {
                d: own[d].get("worst_blind_attack") for d in ("i2t", "t2i")
            },
        }
        if "inversion" in own["i2t"]:
            item["inversion"] = {d: rnd(own[d]["inversion"]) for d in ("i2t", "t2i")}
            item["inversion_recovered"] = {
                d: rnd(own[d]["inversion_recovered"]) for d in ("i2t", "t2i")
            }
        vlps.append(item)
    dependence = report["image_dependence"]
    return {
        "num_images": report["num_images"],
        "split": "test",
        "seed": report["seed"],
        "chance": rnd(1.0 / report["num_images"], 6),
        "bpp": rnd(report["bpp"]),
        "psnr": {k: rnd(v, 2) for k, v in report["psnr"].items()},
        "ms_ssim": {k: rnd(v) for k, v in report["ms_ssim"].items()},
        "ms_ssim_window": report.get("ms_ssim_window"),
        "stage1_psnr": rnd(stage1_psnr, 2),
        "common_share": rnd(dependence["common_share"]),
        "periodic_amplitude": {
            k: rnd(v, 3)
            for k, v in (dependence.get("periodic_amplitude") or {}).items()
        },
        "periodic_peaks": {
            k: rnd(v, 2) for k, v in (dependence.get("periodic_peaks") or {}).items()
        },
        "attacks": list(report.get("attacks", [])),
        "attack_psnr": {
            name: {k: rnd(v, 2) for k, v in prices.items()}
            for name, prices in report["summary"]["psnr"].items()
        },
        "inversion": report.get("inversion"),
        "inversion_dataset": report.get("inversion_dataset"),
        "vlps": vlps,
        "seconds": report.get("seconds"),
    }


def stage1_psnr(path: Path, num_images: int, seed: int) -> float:
    """Mean PSNR of the stage-1 codec (no triggers) on the evaluation scenes."""
    from compressai_psic.datasets import SceneCaptions
    from compressai_psic.io.images import pil_to_tensor
    from compressai_psic.models import load_checkpoint

    model = load_checkpoint(path).eval()
    model.update(force=True)
    scenes = SceneCaptions(
        split="test",
        num_samples=num_images,
        seed=seed,
        image_size=IMAGE_SIZE,
        distinct_captions=True,
    )
    values = []
    with torch.inference_mode():
        for start in range(0, len(scenes), 50):
            x = torch.cat(
                [
                    pil_to_tensor(scenes.load_image(i))
                    for i in range(start, min(start + 50, len(scenes)))
                ]
            )
            out = model.compress(x)
            x_hat = model.decompress(out["strings"], out["shape"], "full")["x_hat"]
            x_hat = (x_hat * 255).round() / 255
            mse = (x_hat - x).pow(2).flatten(1).mean(1)
            values += (10 * torch.log10(1 / mse)).tolist()
    return sum(values) / len(values)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


_CARD = """# Demo PSIC codec (`{name}`)

A small privacy-shielded codec for demonstrations and tests of
[Privacy-Shielded Image Compression](https://arxiv.org/abs/2506.15201) (ICML 2025):
one bitstream decodes by default to a *protected* image that VLPs cannot match
to its caption, and with the unlock condition to the *full* image. Trained with
the package's training tool on the procedural scene benchmark against a
training ensemble of four small CLIPs (`train-ensemble`: `demo-vlp` and the
three `train-vlp-*`, two ViT and two ResNet image towers; `TRAIN_VLPS.md`) and
measured, in addition, with two VLPs it never saw (`eval-vlp-rn`,
`eval-vlp-vit`; `EVAL_VLPS.md`), which chose nothing. `psic demo` runs it.

```python
from compressai_psic.zoo import load_named

net = load_named("demo-psic")  # sha256-checked against the manifest
net.update(force=True)
out = net.compress(x)  # x: (B, 3, 64, 64) in [0, 1]
protected = net.decompress(out["strings"], out["shape"])["x_hat"]
full = net.decompress(out["strings"], out["shape"], condition="full")["x_hat"]
```

## What it protects against, plainly

{plain}

## Architecture

{architecture_rows}

## Training recipe

Every stage uses `python -m compressai_psic.train` on {image_size}×{image_size}
scenes rendered on the fly (`--dataset-format scenes`, seed {seed}; {val}
validation scenes), Adam with gradient clipping at 1.0; the best validation
checkpoint of each stage is kept. Stage 1 trains the base codec, stage 2 the
synthesis and affine triggers against `demo-vlp` (the previous release), stage
3 hardens it against the training ensemble. The stage-1 and stage-2 codecs are
shipped too (`{stage1_file}`, `{stage2_file}`; manifest entries
`demo-psic-stage1`, `demo-psic-stage2`).

{recipe_rows}

Stage-3 terms: `--ensemble balanced` (each member's gradient divided by its own
loss, so every member falls), `--lambda-feature` (1 + cos of the ResNet
towers' `layer3` features of the protected decode and the original: feature
disruption), `--lambda-masked` (the change protected − full weighted by the
inverse local activity of the original: it has to hide in texture), and EOT
over the purifications before the VLPs see the protected decode.

Training time: {stage_times}; {threads} threads on {machine}, shared with
other jobs.

The exact stage commands:

```bash
{stage_commands}
```

Retrain (replaces the manifest entries, the weights files and this card):

```bash
{command}
```

## Measured figures

Measured on the shipped file, loaded back, by `tools/eval_protection.py`
(`compressai_psic.evaluation.evaluate_protection`): {n} held-out `test` scenes
(seed {eval_seed}) with distinct captions, each compressed to a real bitstream
and decoded on both paths; {n}-way retrieval (chance Recall@1 {chance}).
Informed attacks are fitted on 200 `val` scenes; the learned inversion is
trained on the attacker's own scenes ({inversion_text}). MS-SSIM uses a
{window}-pixel window (64-pixel images).

| | value |
|---|---|
| rate | {bpp:.3f} bpp (real bytes) |
| PSNR full / protected / stage 1 | {psnr_f:.2f} / {psnr_p:.2f} / {psnr_s1:.2f} dB |
| MS-SSIM full / protected | {ms_full:.4f} / {ms_prot:.4f} |
| common share of (protected − full) | {common:.3f} |
| periodic peaks of mean \\|protected − full\\| (2/4/8/16 px; 1 = none) | {peaks} |
| amplitude of that repeating part (2/4/8/16 px, 8-bit levels) | {amplitude} |

Recall@1, image→text / text→image; *worst blind attack* is the highest R@1
over every blind attack (JPEG, resizing, grey world, blur σ 0.5–1.5, 3×3
median, down-and-up ×2/×4, noisy upscaling), *inversion* the learned inversion:

{summary_table}

What each attack costs (mean PSNR against the originals, dB): on the protected
decode / on the full decode.

{price_table}

All variants, Recall@1 image→text / text→image:

{recall_table}

### Against the per-image bound

{bound_text}

![per-image bound](demo-psic-bound.png)

Original | full | protected | 4×\\|protected − full\\| for eight test scenes:

![decodes](demo-psic-images.png)

### The sweep it was chosen from

{sweep_text}

![Pareto plot of the sweep](demo-psic-pareto.png)

### Targets

{target_rows}

{notes}

## Limitations

- Trained and measured on synthetic 64×64 scenes and small VLPs trained on them:
  it says nothing about photographs or real CLIP models. Use
  `tools/eval_retrieval.py` with real weights for that.
- The triggers are *affine* (per-channel scale and bias, `--modulation affine`),
  an extension of the paper's biases: with the Ballé synthesis (transposed
  convolutions and GDN, no gating nonlinearity) per-channel biases could only
  add a nearly fixed pattern to every image, which the `pattern_fit` attack
  removes.
- Protection is defined against VLP retrieval; a person can still read the
  protected image, and anyone with the model can decode the full one (β is
  public, as in the paper).
"""


def _table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


_RECIPE_ROWS = (
    ("paths per sample", "paths"),
    (
        "λ_masked / λ_periodic / λ_feature",
        ("lambda_masked", "lambda_periodic", "lambda_feature"),
    ),
    ("λ_full / λ_prot", ("lambda_full", "lambda_prot")),
    ("λ_vlp", "lambda_vlp"),
    ("λ_semantic (full path)", "lambda_semantic"),
    ("λ_lowfreq / λ_common (protected path)", ("lambda_lowfreq", "lambda_common")),
    ("scraper transforms before the VLP", "eot"),
    (
        "learning rate (synthesis / triggers)",
        ("learning_rate", "trigger_learning_rate"),
    ),
    ("epochs × scenes, batch", ("epochs", "scene_samples", "batch_size")),
)


def _recipe_cell(own: Dict[str, Any], keys: Any) -> str:
    keys = (keys,) if isinstance(keys, str) else keys
    values = [own.get(key, "–") for key in keys]
    return " / ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _pair(row: Dict[str, Any], key: str) -> str:
    values = [row.get(d, {}).get(key) if key else row.get(d) for d in ("i2t", "t2i")]
    return " / ".join("–" if v is None else f"{v:.3f}" for v in values)


def _summary_table(metrics: Dict[str, Any]) -> str:
    rows = []
    for vlp in metrics["vlps"]:
        recall = vlp["recall"]
        cells = [f"{vlp['name']} ({vlp['role']})"]
        for variant in ("original", "full", "protected"):
            cells.append(_pair(recall[variant], ""))
        worst = vlp.get("worst_blind", {})
        which = vlp.get("worst_blind_attack", {})
        cells.append(
            f"{_pair({'i2t': worst.get('i2t'), 't2i': worst.get('t2i')}, '')} "
            f"({which.get('i2t')} / {which.get('t2i')})"
        )
        inversion = vlp.get("inversion")
        cells.append(_pair(inversion, "") if inversion else "–")
        recovered = vlp.get("inversion_recovered")
        cells.append(
            " / ".join(
                "–"
                if recovered is None or recovered.get(d) is None
                else f"{100 * recovered[d]:.0f}%"
                for d in ("i2t", "t2i")
            )
        )
        rows.append(cells)
    header = ["VLP (role)", "original", "full", "protected", "worst blind attack",
              "inversion", "lost recall the inversion recovers"]  # fmt: skip
    return _table(header, rows)


def _bound_text(bound: Optional[Dict[str, Any]]) -> str:
    if not bound:
        return "No per-image bound was measured for this file."
    rows = []
    for name, by_direction in bound["vlps"].items():
        for d, row in by_direction.items():
            rows.append(
                [name, d]
                + [
                    "–" if row.get(k) is None else f"{row[k]:.3f}"
                    for k in (
                        "codec",
                        "bound_linf",
                        "bound_l2",
                        "codec_worst_blind",
                        "bound_linf_worst_blind",
                        "bound_l2_worst_blind",
                    )
                ]  # fmt: skip
            )
    text = (
        f"Per-image PGD ({bound['steps']} steps, balanced over "
        f"{' + '.join(bound['surrogate'])}, input diversity) on the originals of "
        f"the first {bound['num_images']} test scenes, L∞ and L2 budgets from "
        "about 25 to 48 dB, evaluated the same way; R@1 of the bound interpolated "
        f"at the codec's protected PSNR ({bound['psnr']:.2f} dB). Lower is better "
        "for the defender; *worst* is after the best blind purification.\n\n"
    )
    header = ["VLP", "dir.", "codec", "bound L∞", "bound L2", "codec worst",
              "bound L∞ worst", "bound L2 worst"]  # fmt: skip
    return text + _table(header, rows)


def _price_table(metrics: Dict[str, Any]) -> str:
    rows = [
        [
            name,
            "–" if v.get("protected") is None else f"{v['protected']:.2f}",
            "–" if v.get("full") is None else f"{v['full']:.2f}",
        ]  # fmt: skip
        for name, v in (metrics.get("attack_psnr") or {}).items()
    ]
    return _table(["attack", "protected decode", "full decode"], rows)


def model_card(entry: Dict[str, Any]) -> str:
    """The text of ``zoo/DEMO_PSIC.md``."""
    recipe = entry["recipe"]
    common = recipe["common"]
    metrics = entry["metrics"]
    architecture_rows = _table(
        ["part", "configuration"],
        [
            [
                "codec",
                f"CompressAI `{entry['architecture']}` (scale hyperprior, GDN), "
                f"N = {common['N']}, M = {common['M']}",
            ],
            [
                "condition",
                "β = 1 protected (default), β = 0 full; Fourier features (21) → "
                "MLP 21→512→512",
            ],
            [
                "triggers",
                f"plan `{entry['plan']}`, modulation `{entry['modulation']}`: "
                f"`{'`, `'.join(entry['injection_points'])}`; anchored at β = 0, "
                "so the full path is the synthesis without triggers",
            ],
            ["parameters", f"{entry['parameters']:,}"],
            [
                "file",
                f"`{entry['file']}`, {entry['size_bytes'] / 2**20:.2f} MiB: state dict "
                "with float16 parameters (loaded into float32) and exact buffers",
            ],
        ],
    )
    stages = ("stage1", "stage2", "stage3")
    rows = [["trains", "every parameter", "`g_s` and the trigger projections",
             "`g_s` and the trigger projections"]]  # fmt: skip
    rows.append(["VLPs", "demo", "demo"] + [recipe["stage3"].get("vlp", "demo")])
    rows += [
        [label] + [_recipe_cell(recipe[stage], keys) for stage in stages]
        for label, keys in _RECIPE_ROWS
    ]
    recall_rows = []
    variants = list(metrics["vlps"][0]["recall"])
    for variant in variants:
        cells = [variant]
        for vlp in metrics["vlps"]:
            r = vlp["recall"].get(variant)
            cells.append("–" if r is None else f"{r['i2t']:.3f} / {r['t2i']:.3f}")
        recall_rows.append(cells)
    header = ["images"] + [f"{v['name']} ({v['role']})" for v in metrics["vlps"]]
    target_rows = _table(
        ["target", "measured", "limit", ""],
        [
            [
                key,
                f"{t['value']:.4g}",
                f"{t['limit']:.4g}",
                "met" if t["met"] else "**missed**",
            ]
            for key, t in entry["targets"].items()
        ],
    )
    inversion = metrics.get("inversion") or {}
    inversion_text = (
        "no inversion was trained"
        if not inversion
        else f"{inversion['pairs']} pairs of `{metrics.get('inversion_dataset')}`, "
        f"a {inversion['layers']}-layer CNN of width {inversion['channels']} "
        f"({inversion['parameters']:,} parameters), {inversion['steps']} steps of "
        f"{inversion['batch_size']} crops of {inversion['crop_size']} px, "
        f"{inversion['train_seconds'] / 60:.1f} min of training on "
        f"{inversion['threads']} CPU thread(s) after "
        f"{inversion['pair_seconds']:.0f} s making pairs"
    )
    stage_times = (
        ", ".join(
            f"{stage} {value / 60:.1f} min"
            for stage, value in entry["stage_seconds"].items()
            if value is not None
        )
        or "no stage was trained by this command (files given)"
    )
    peaks = metrics.get("periodic_peaks") or {}
    amplitude = metrics.get("periodic_amplitude") or {}
    return _CARD.format(
        name=entry["name"],
        plain=entry.get("plain", ""),
        architecture_rows=architecture_rows,
        recipe_rows=_table(["", "stage 1", "stage 2", "stage 3"], rows),
        image_size=entry["image_size"],
        seed=common["seed"],
        val=common["scene_val_samples"],
        stage1_file=entry["stage1_file"],
        stage2_file=entry.get("stage2_file", "–"),
        stage_times=stage_times,
        threads=entry["threads"],
        machine=entry["machine"],
        stage_commands="\n".join(entry["stage_commands"]),
        command=entry["command"],
        n=metrics["num_images"],
        eval_seed=metrics["seed"],
        chance=f"{metrics['chance']:.3f}",
        inversion_text=inversion_text,
        window=metrics.get("ms_ssim_window") or "–",
        bpp=metrics["bpp"],
        psnr_f=metrics["psnr"]["full"],
        psnr_p=metrics["psnr"]["protected"],
        psnr_s1=metrics["stage1_psnr"],
        ms_full=metrics["ms_ssim"]["full"],
        ms_prot=metrics["ms_ssim"]["protected"],
        common=metrics["common_share"],
        peaks=" / ".join(
            "–" if peaks.get(k) is None else f"{peaks[k]:.2f}"
            for k in ("2", "4", "8", "16")
        ),
        amplitude=" / ".join(
            "–" if amplitude.get(k) is None else f"{amplitude[k]:.2f}"
            for k in ("2", "4", "8", "16")
        ),
        summary_table=_summary_table(metrics),
        price_table=_price_table(metrics),
        recall_table=_table(header, recall_rows),
        bound_text=_bound_text(metrics.get("bound")),
        sweep_text=_sweep_text(entry.get("sweep") or []),
        target_rows=target_rows,
        notes=entry.get("notes", ""),
    )


def _load(path: Path) -> torch.nn.Module:
    from compressai_psic.models import load_checkpoint

    return load_checkpoint(path, architecture=ARCHITECTURE)


def save_compact(exported: Path, zoo: Path, name: str = DEMO_PSIC_NAME) -> Path:
    """Writes the exported weights with float16 parameters as
    ``zoo/<name>-<sha256[:8]>.pth.tar``.

    Parameters are rounded to float16 and the CDF tables recomputed from them
    (:func:`compressai_psic.io.files.float16_state_dict`).
    """
    model = _load(exported)
    if name.endswith("-stage1"):
        from compressai_psic.models import unshield

        model = unshield(model)  # a stage-1 codec: the base model, no triggers
    state = float16_state_dict(model)
    return save_state_dict(state, zoo, name)["path"]


def _record_stage1(zoo: Path, stage1: Path, argv1: Optional[List[str]]) -> None:
    """The ``demo-psic-stage1`` manifest entry (the base codec stage 2 starts
    from), with its file in ``zoo``."""
    target = zoo / stage1.name
    if stage1.resolve() != target.resolve():
        shutil.copyfile(stage1, target)
    entry = {
        "name": f"{DEMO_PSIC_NAME}-stage1",
        "kind": "codec-base",
        "architecture": ARCHITECTURE,
        "image_size": IMAGE_SIZE,
        "file": target.name,
        "sha256": sha256_file(target),
        "size_bytes": target.stat().st_size,
        "config": {"N": RECIPE["common"]["N"], "M": RECIPE["common"]["M"]},
        "recipe": RECIPE["stage1"],
        "command": None
        if argv1 is None
        else "python -m compressai_psic.train " + shlex.join(argv1),
    }
    replaced = update_manifest(zoo, entry)
    if replaced and replaced != target.name and (zoo / replaced).is_file():
        (zoo / replaced).unlink()


def _known_command(zoo: Path, path: Path) -> Optional[str]:
    """The stage-2 command of a manifest entry whose file has ``path``'s sha256
    (a stage-2 codec shipped before, as ``demo-psic`` or ``demo-psic-stage2``)."""
    manifest = zoo / "manifest.json"
    if not manifest.is_file():
        return None
    digest = sha256_file(path)
    with open(manifest, encoding="utf-8") as f:
        for entry in json.load(f)["models"]:
            if entry.get("sha256") != digest:
                continue
            if entry.get("command", "").startswith("python -m compressai_psic.train"):
                return entry["command"]
            for command in entry.get("stage_commands", []):
                if "--stage 2" in command and "train-ensemble" not in command:
                    return command
    return None


def _record_stage2(
    zoo: Path, stage2: Path, stage1: Path, argv2: Optional[List[str]]
) -> None:
    """The ``demo-psic-stage2`` manifest entry (the shielded codec stage 3
    hardens), with its file in ``zoo``; the command that made it is the given
    one, or the one the manifest recorded for the same file."""
    known = _known_command(zoo, stage2) if argv2 is None else None
    target = zoo / stage2.name
    if stage2.resolve() != target.resolve():
        shutil.copyfile(stage2, target)
    entry = {
        "name": f"{DEMO_PSIC_NAME}-stage2",
        "kind": "codec",
        "architecture": ARCHITECTURE,
        "includes_base": True,
        "image_size": IMAGE_SIZE,
        "file": target.name,
        "sha256": sha256_file(target),
        "size_bytes": target.stat().st_size,
        "config": {"N": RECIPE["common"]["N"], "M": RECIPE["common"]["M"]},
        "stage1_file": stage1.name,
        "recipe": RECIPE["stage2"],
        "command": known
        if argv2 is None
        else "python -m compressai_psic.train " + shlex.join(argv2),
    }
    replaced = update_manifest(zoo, entry)
    if replaced and replaced != target.name and (zoo / replaced).is_file():
        (zoo / replaced).unlink()


def plain_statement(metrics: Dict[str, Any]) -> str:
    """What the codec protects against, in sentences, from its figures."""
    lines = []
    for vlp in metrics["vlps"]:
        recall = vlp["recall"]
        worst = vlp.get("worst_blind", {})
        which = vlp.get("worst_blind_attack", {})
        role = "trained against" if vlp["role"] == "train" else "never seen"
        text = (
            f"- `{vlp['name']}` ({role}): "
            f"image→text R@1 {recall['original']['i2t']:.2f} on the originals, "
            f"{recall['protected']['i2t']:.2f} on the published protected decode, "
            f"{worst.get('i2t', float('nan')):.2f} after the blind attack that helps "
            f"a scraper most ({which.get('i2t')})"
        )
        inversion = vlp.get("inversion")
        if inversion:
            share = (vlp.get("inversion_recovered") or {}).get("i2t")
            text += f", {inversion['i2t']:.2f} after the learned inversion" + (
                ""
                if share is None
                else f" ({100 * share:.0f}% of the lost recall back)"
            )
        lines.append(text + ".")
    chance = metrics["chance"]
    return (
        f"Chance is {chance:.3f}. A blind scraper (one that post-processes the "
        "published image without the codec) is measured by the worst blind attack; "
        "an attacker who runs the public codec on images of its own and trains a "
        "restoration network gets the inversion figure. β is public, so anyone "
        "holding the bitstream and the model decodes the full image.\n\n"
        + "\n".join(lines)
    )


def sweep_points(items: List[str]) -> List[Dict[str, Any]]:
    """The figures of ``LABEL=REPORT`` validation reports: protected PSNR and,
    per training VLP, R@1 image→text as decoded and after the worst blind
    attack, plus the periodic amplitude at 8 and 16 px."""
    points = []
    for item in items:
        label, _, path = item.partition("=")
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
        dependence = report["image_dependence"]
        amplitude = dependence.get("periodic_amplitude") or {}
        points.append(
            {
                "label": label,
                "split": "val",
                "num_images": report["num_images"],
                "psnr": {k: _rnd(report["psnr"][k], 2) for k in ("full", "protected")},
                "periodic_amplitude": {
                    k: _rnd(amplitude.get(k), 2) for k in ("8", "16")
                },
                "vlps": {
                    v["name"]: {
                        "protected": _rnd(v["i2t"]["protected"], 3),
                        "worst_blind": _rnd(v["i2t"].get("worst_blind"), 3),
                    }
                    for v in report["summary"]["vlps"]
                    if v["role"] == "train"
                },
            }
        )
    return points


def sweep_from_pareto(path: Path) -> List[Dict[str, Any]]:
    """The sweep's figures from the summary that
    ``python -m compressai_psic.utils.plot pareto ... --summary`` wrote for the
    Pareto plot: protected PSNR and, per training VLP, R@1 image→text as decoded
    and after the worst of the plotted blind attacks."""
    with open(path, encoding="utf-8") as f:
        summary = json.load(f)
    points = []
    for point in summary["points"]:
        vlps = {}
        for key, recall in point["recall"].items():
            role, _, name = key.partition(":")
            if role != "train":
                continue
            attacked = [
                v["i2t"] for k, v in recall.items() if k.startswith("protected_")
            ]
            vlps[name] = {
                "protected": _rnd(recall["protected"]["i2t"], 3),
                "worst_blind": _rnd(max(attacked), 3) if attacked else None,
            }
        points.append(
            {
                "label": point["label"],
                "split": "val",
                "num_images": point["num_images"],
                "psnr": {
                    "full": _rnd(point["psnr_full"], 2),
                    "protected": _rnd(point["psnr"], 2),
                },
                "periodic_amplitude": {"8": None, "16": None},
                "vlps": vlps,
            }
        )
    return points


def _sweep_text(points: List[Dict[str, Any]]) -> str:
    if not points:
        return "No sweep was recorded for this file."
    names = list(points[0]["vlps"])
    header = ["point", "PSNR full / protected", "grid 8 / 16 px"] + names
    rows = []
    for point in points:
        amplitude = point["periodic_amplitude"]
        cells = [
            point["label"],
            f"{point['psnr']['full']:.2f} / {point['psnr']['protected']:.2f}",
            " / ".join(
                "–" if amplitude.get(k) is None else f"{amplitude[k]:.2f}"
                for k in ("8", "16")
            ),
        ]
        for name in names:
            v = point["vlps"].get(name, {})
            if not v:
                cells.append("–")
            elif v.get("worst_blind") is None:
                cells.append(f"{v['protected']:.3f}")
            else:
                cells.append(f"{v['protected']:.3f} ({v['worst_blind']:.3f})")
        rows.append(cells)
    return (
        f"Each point measured on {points[0]['num_images']} `val` scenes with the "
        "training VLPs only (the evaluation VLPs choose nothing): image→text R@1 as "
        "decoded (after the worst of the blind attacks measured for the sweep); "
        "grid = periodic amplitude of mean \\|protected − full\\| in 8-bit levels "
        "(– where the sweep did not measure it). `stage2` is the stage-2 codec every "
        "point starts from; the others are stage-3 runs with lighter (higher PSNR) "
        "or heavier weights on the protection terms; the shipped point is the one "
        "whose every training VLP lost most at no more than 3 dB below the full "
        "decode.\n\n" + _table(header, rows)
    )


def _interpolate(points: List[Tuple[float, float]], x: float) -> Optional[float]:
    """Linear interpolation of ``(x, y)`` points at ``x`` (``None`` outside)."""
    points = sorted(points)
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


def _bound_comparison(folder: Path, metrics: Dict[str, Any]) -> Optional[Dict]:
    """Per VLP and direction: the codec's R@1 (as decoded and after its worst
    blind attack) next to the per-image bound's at the codec's protected PSNR
    (interpolated along each norm's curve), from ``folder/bound.json``."""
    path = folder / "bound.json"
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        bound = json.load(f)
    psnr = metrics["psnr"]["protected"]
    out: Dict[str, Any] = {
        "num_images": bound["num_images"],
        "surrogate": bound["surrogate"],
        "steps": bound["steps"],
        "psnr": psnr,
        "vlps": {},
    }
    for vlp in metrics["vlps"]:
        name = vlp["name"]
        if name not in bound["original"]:
            continue
        rows = {}
        for d in ("i2t", "t2i"):
            row = {
                "codec": vlp["recall"]["protected"][d],
                "codec_worst_blind": vlp["worst_blind"][d],
            }
            for norm in ("linf", "l2"):
                points = [p for p in bound["points"] if p["norm"] == norm]
                row[f"bound_{norm}"] = _rnd(_interpolate(
                    [(p["psnr"], p["recall"][name]["perturbed"][d]) for p in points],
                    psnr,
                ))  # fmt: skip
                row[f"bound_{norm}_worst_blind"] = _rnd(_interpolate(
                    [(p["psnr"], p["worst"][name][d]) for p in points], psnr
                ))  # fmt: skip
            rows[d] = row
        out["vlps"][name] = rows
    return out


def rewrite_card(
    zoo: Path, sweep: Optional[List[Dict[str, Any]]] = None
) -> Dict[str, Any]:
    """Recomputes the targets of the manifest's ``demo-psic`` entry from its
    measured figures (and its sweep, when given) and rewrites the entry and the
    model card (no training)."""
    with open(zoo / "manifest.json", encoding="utf-8") as f:
        entries = json.load(f)["models"]
    entry = next((e for e in entries if e.get("name") == DEMO_PSIC_NAME), None)
    if entry is None:
        raise RuntimeError(f"No {DEMO_PSIC_NAME} entry in {zoo / 'manifest.json'}")
    entry["targets"] = check_targets(entry["metrics"])
    entry["plain"] = plain_statement(entry["metrics"])
    if sweep is not None:
        entry["sweep"] = sweep
    update_manifest(zoo, entry)
    (zoo / "DEMO_PSIC.md").write_text(model_card(entry), encoding="utf-8")
    return entry


def _run_stage(argv: List[str]) -> Dict[str, Any]:
    print("+ python -m compressai_psic.train " + shlex.join(argv), flush=True)
    return train_tool.main(argv)


def _retrain(argv: List[str]) -> List[str]:
    """The command line without the options that skip work (``--stage3-from``,
    ``--bound-from``): what retrains the shipped file from its stage-2 codec."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--stage3-from", "--bound-from"):
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def _measure(
    path: Path,
    work: Path,
    eval_images: int,
    threads: int,
    smoke: bool,
    bound_from: Optional[Path] = None,
) -> Dict[str, Any]:
    """The protection report of the shipped file, read back as users will
    (``tools/eval_protection.py``: every attack, the learned inversion and the
    per-image bound against the training ensemble)."""
    import eval_protection

    argv = [
        "--model", str(path),
        "--images", str(eval_images),
        "--seed", str(EVAL_SEED),
        "--threads", str(threads),
        "--out", str(work / "protection"),
        "--force",
    ]  # fmt: skip
    if smoke:
        argv += ["--fit-images", "5", "--inversion-pairs", "20"]
        argv += ["--inversion-steps", "2", "--bound-images", "4", "--bound-steps", "1"]
    elif bound_from is not None:
        argv += ["--bound-from", str(bound_from)]
    else:
        argv += ["--bound-images", str(BOUND_IMAGES)]
    return eval_protection.main(argv)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    max_steps = 4 if args.smoke else None
    eval_images = 10 if args.smoke else args.eval_images
    work = args.work_dir
    zoo = args.zoo
    if zoo is None:
        zoo = work / "zoo" if args.smoke else DEFAULT_ZOO
    if args.card_only:
        sweep = None
        if args.sweep:
            sweep = sweep_points(args.sweep)
        elif (zoo / PARETO_SUMMARY).is_file():
            sweep = sweep_from_pareto(zoo / PARETO_SUMMARY)
        return rewrite_card(zoo, sweep)
    recipe = _with_overrides(RECIPE, args.stage3_set)
    for stage_dir in stage_dirs_to_train(args):
        # A stale result must never seed a new stage; parse_args let an earlier
        # run's folder through only with --force.
        if stage_dir.is_dir():
            shutil.rmtree(stage_dir)

    wall_start, cpu_start = time.perf_counter(), time.process_time()
    argvs: Dict[str, Optional[List[str]]] = {"stage1": None, "stage2": None}
    argvs["stage3"] = None
    steps: Dict[str, Any] = {}
    seconds: Dict[str, Optional[float]] = {}
    if args.stage1_from is None:
        argvs["stage1"] = stage_argv(1, work / "stage1", recipe, max_steps=max_steps)
        result1 = _run_stage(argvs["stage1"])
        if result1["best"] is None:
            raise RuntimeError("Stage 1 wrote no checkpoint_best_loss.pth.tar")
        steps["stage1"] = result1["step"]
        stage1 = save_compact(Path(result1["best"]), zoo, f"{DEMO_PSIC_NAME}-stage1")
    else:
        stage1 = args.stage1_from
    seconds["stage1"] = time.perf_counter() - wall_start
    if args.stage2_from is None:
        argvs["stage2"] = stage_argv(2, work / "stage2", recipe, stage1, max_steps)
        result2 = _run_stage(argvs["stage2"])
        steps["stage2"] = result2["step"]
        if result2["export"] is None:
            raise RuntimeError("Stage 2 exported nothing")
        stage2 = save_compact(Path(result2["export"]), zoo, f"{DEMO_PSIC_NAME}-stage2")
    else:
        stage2 = args.stage2_from
    seconds["stage2"] = time.perf_counter() - wall_start - seconds["stage1"]
    argvs["stage3"] = stage_argv(3, work / "stage3", recipe, stage2, max_steps)
    if args.stage3_from is None:
        result3 = _run_stage(argvs["stage3"])
        steps["stage3"] = result3["step"]
        if result3["export"] is None:
            raise RuntimeError("Stage 3 exported nothing")
        exported = Path(result3["export"])
    else:
        exported = args.stage3_from
    seconds["stage3"] = (
        time.perf_counter() - wall_start - seconds["stage1"] - seconds["stage2"]
    )
    train_seconds = time.perf_counter() - wall_start
    cpu_seconds = time.process_time() - cpu_start

    path = save_compact(exported, zoo)
    model = _load(path)
    report = _measure(
        path, work, eval_images, args.threads, args.smoke, args.bound_from
    )
    metrics = _summarise(report, stage1_psnr(stage1, eval_images, EVAL_SEED))
    metrics["bound"] = _bound_comparison(work / "protection", metrics)
    targets = check_targets(metrics)
    if not args.no_manifest:
        for source, target in (("bound.png", "bound"), ("images.png", "images")):
            if (work / "protection" / source).is_file():
                shutil.copyfile(
                    work / "protection" / source,
                    zoo / f"{DEMO_PSIC_NAME}-{target}.png",
                )
    script = "python tools/train_demo_psic.py"
    extra = sys.argv[1:] if argv is None else argv
    entry: Dict[str, Any] = {
        "name": DEMO_PSIC_NAME,
        "kind": "codec",
        "architecture": ARCHITECTURE,
        "includes_base": True,
        "image_size": IMAGE_SIZE,
        "file": path.name,
        "sha256": sha256_file(path),
        "size_bytes": path.stat().st_size,
        "config": {"N": RECIPE["common"]["N"], "M": RECIPE["common"]["M"]},
        "plan": model.plan,
        "modulation": model.modulation,
        "injection_points": [p.target for p in model.injection_points],
        "stage1_file": stage1.name,
        "stage2_file": stage2.name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "recipe": recipe,
        "steps": steps,
        "stage_commands": [
            "python -m compressai_psic.train " + shlex.join(a)
            for a in argvs.values()
            if a is not None
        ],
        "metrics": metrics,
        "targets": targets,
        "plain": plain_statement(metrics),
        "sweep": sweep_points(args.sweep),
        "train_seconds": round(train_seconds, 1),
        "stage_seconds": {
            k: round(v, 1) if argvs[k] is not None and v is not None else None
            for k, v in seconds.items()
        },
        "cpu_seconds": round(cpu_seconds, 1),
        "threads": args.threads,
        "machine": machine_description(),
        "command": " ".join([script] + [shlex.quote(a) for a in _retrain(extra)]),
        "measured_from": {
            "stage3_export": None
            if args.stage3_from is None
            else str(args.stage3_from),
            "bound": None if args.bound_from is None else str(args.bound_from),
        },
    }
    if not args.no_manifest:
        if argvs["stage1"] is not None or not (zoo / stage1.name).is_file():
            _record_stage1(zoo, stage1, argvs["stage1"])
        if argvs["stage2"] is not None or not (zoo / stage2.name).is_file():
            _record_stage2(zoo, stage2, stage1, argvs["stage2"])
        replaced = update_manifest(zoo, entry)
        if replaced and replaced != path.name:
            old = zoo / replaced
            # Only files this tool wrote are removed.
            if old.name.startswith(f"{DEMO_PSIC_NAME}-") and old.is_file():
                old.unlink()
        (zoo / "DEMO_PSIC.md").write_text(model_card(entry), encoding="utf-8")
    print(json.dumps(entry, indent=2))
    for key, target in targets.items():
        if not target["met"]:
            print(
                f"warning: target missed: {key} = {target['value']} "
                f"(limit {target['limit']})",
                file=sys.stderr,
            )
    if not math.isfinite(metrics["psnr"]["full"] or math.nan):
        print("warning: the full decode's PSNR is not finite", file=sys.stderr)
    return entry


if __name__ == "__main__":
    main()
