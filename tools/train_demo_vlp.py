r"""Trains the demo VLP (or an evaluation VLP) and ships it into ``zoo/``.

The demo VLP (:mod:`compressai_psic.vlp.zoo_vlps`) is a small ``open_clip.CLIP``
trained contrastively on the training split of the procedural scene benchmark
(:mod:`compressai_psic.datasets.scenes`). ``--arch`` picks another architecture of
:data:`~compressai_psic.vlp.VLP_ARCHITECTURES` (``resnet``: a ResNet image
tower; ``vit-wide``: a wider, shallower ViT) and ``--name`` its manifest name:
the evaluation VLPs ``eval-vlp-rn`` and ``eval-vlp-vit`` are trained this way,
with their own seeds and the held-out test scenes excluded. This tool

1. trains it with :func:`~tools._lib.vlp_training.train_demo_clip`;
2. writes the compact state dict (float16 unless ``--fp32``) as
   ``zoo/<name>-<sha256[:8]>.pth.tar``;
3. reloads that file through :func:`~compressai_psic.vlp.load_zoo_vlp`
   and measures 100-way retrieval on the held-out test split (canonical
   captions, distinct per scene), at 64 pixels and from 128-pixel renders
   (plus ``--eval-extra`` sets);
4. adds or replaces the ``<name>`` entry of ``zoo/manifest.json`` (other
   entries are kept), writes the model card (``zoo/DEMO_VLP.md`` for
   ``demo-vlp``, ``zoo/EVAL_VLPS.md`` for the evaluation VLPs) and prints the
   entry as JSON.

Timing: ``train_seconds`` is the wall time of data preparation plus training;
``cpu_seconds`` is the process CPU time, which a busy shared machine disturbs
less. The tool sets ``OMP_WAIT_POLICY=PASSIVE`` (unless already set) so that
idle OpenMP threads sleep instead of spinning on a shared machine.

Examples (the shipped models)::

    python tools/train_demo_vlp.py --eval-every 200
    python tools/train_demo_vlp.py --arch resnet --seed 11 \
        --exclude-test-scenes 1000 --exclude-test-seeds 0 2025
    python tools/train_demo_vlp.py --arch vit-wide --seed 23 \
        --exclude-test-scenes 1000 --exclude-test-seeds 0 2025

The demo VLP supports demonstrations of PSIC; it is not part of the method.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

# OpenMP threads that spin while they wait take the cores other jobs need: on a
# busy 2-core machine 2 spinning threads made each step 3-10x slower than 1
# thread. Sleeping waiters cost little here. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if not __package__:  # run as a script: the harness lives in tools/_lib
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from compressai_psic.io.files import file_sha256 as sha256_file  # noqa: E402
from compressai_psic.io.files import save_state_dict  # noqa: E402
from compressai_psic.system import machine_description  # noqa: E402
from compressai_psic.vlp import (  # noqa: E402
    DEMO_VLP_NAME,
    EVAL_VLPS,
    TRAIN_VLPS,
    VLP_ARCHITECTURES,
    demo_state_dict,
    load_zoo_vlp,
    model_mean_std,
)
from compressai_psic.zoo import load_manifest, update_manifest  # noqa: E402
from tools._lib.vlp_training import (  # noqa: E402
    DemoTrainConfig,
    evaluate_demo_clip,
    train_demo_clip,
)

#: Test-split retrieval the shipped model must reach (issue: i2t R@1 ≥ 0.80).
TARGET_I2T_R1 = 0.80
DEFAULT_ZOO = Path(__file__).resolve().parent.parent / "zoo"
#: Manifest name of each architecture when ``--name`` is not given.
DEFAULT_NAMES = {
    "vit": DEMO_VLP_NAME,
    **{arch: name for name, arch in EVAL_VLPS.values()},
    **{arch: name for name, arch in TRAIN_VLPS.items()},
}
#: Manifest names of the evaluation VLPs (their card is ``EVAL_VLPS.md``).
EVAL_NAMES = tuple(name for name, _ in EVAL_VLPS.values())


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    defaults = DemoTrainConfig.DEFAULTS
    parser = argparse.ArgumentParser(
        description="Train the demo VLP (small open_clip CLIP) on the scene benchmark."
    )
    parser.add_argument(
        "--arch",
        choices=sorted(VLP_ARCHITECTURES),
        default="vit",
        help="architecture: vit (the demo VLP's), resnet (ResNet image tower), "
        "vit-wide (wider, shallower ViT) (default: %(default)s)",
    )
    parser.add_argument(
        "--name",
        default=None,
        help="manifest name and file prefix (default: demo-vlp for vit, "
        "eval-vlp-rn for resnet, eval-vlp-vit for vit-wide)",
    )
    parser.add_argument("--steps", type=int, default=defaults["steps"])
    parser.add_argument("--batch-size", type=int, default=defaults["batch_size"])
    parser.add_argument("--train-scenes", type=int, default=defaults["train_scenes"])
    parser.add_argument(
        "--captions-per-image", type=int, default=defaults["captions_per_image"]
    )
    parser.add_argument("-lr", "--learning-rate", type=float, default=defaults["lr"])
    parser.add_argument("--warmup-steps", type=int, default=defaults["warmup_steps"])
    parser.add_argument("--weight-decay", type=float, default=defaults["weight_decay"])
    parser.add_argument(
        "--no-augment", action="store_true", help="train without augmentation"
    )
    parser.add_argument(
        "--seed", type=int, default=defaults["seed"], help="default of the seeds below"
    )
    for what, help_text in (
        ("scenes", "benchmark seed of the training scenes"),
        ("init", "seed of the initialisation"),
        ("shuffle", "seed of batch order, caption choice and augmentation"),
    ):
        parser.add_argument(
            f"--seed-{what}", type=int, default=None, help=f"{help_text} (--seed)"
        )
    parser.add_argument(
        "--exclude-test-scenes",
        type=int,
        default=defaults["exclude_test_scenes"],
        help="skip training scenes whose canonical caption is one of the first N "
        "test scenes (distinct captions) of each --exclude-test-seeds seed",
    )
    parser.add_argument(
        "--exclude-test-seeds",
        type=int,
        nargs="+",
        default=list(defaults["exclude_test_seeds"]),
        help="benchmark seeds of the excluded test scenes (default: 0)",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch CPU threads (default 2)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--eval-scenes", type=int, default=100, help="N of the N-way test retrieval"
    )
    parser.add_argument(
        "--eval-extra",
        nargs="*",
        default=[],
        metavar="N@SEED",
        help="more N-way test retrievals (64 px) on benchmark seed SEED, e.g. 500@2025",
    )
    parser.add_argument(
        "--eval-every", type=int, default=0, help="steps between evaluations (0: end)"
    )
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument(
        "--zoo",
        "--out",
        type=Path,
        default=DEFAULT_ZOO,
        help="output folder (default zoo/)",
    )
    parser.add_argument("--fp32", action="store_true", help="store float32 weights")
    parser.add_argument(
        "--no-manifest",
        action="store_true",
        help="write the weights only (no manifest entry, no model card)",
    )
    args = parser.parse_args(argv)
    if args.name is None:
        args.name = DEFAULT_NAMES[args.arch]
    try:
        args.eval_extra = [_eval_set(text) for text in args.eval_extra]
    except ValueError as err:
        parser.error(str(err))
    return args


def _eval_set(text: str) -> Tuple[int, int]:
    """``"500@2025"`` → ``(500, 2025)``."""
    count, at, seed = text.partition("@")
    if not at or not count.isdigit() or not seed.lstrip("-").isdigit():
        raise ValueError(f"--eval-extra: expected N@SEED, got {text!r}")
    return int(count), int(seed)


def _recipe(args: argparse.Namespace) -> Dict[str, Any]:
    config = DemoTrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        train_scenes=args.train_scenes,
        captions_per_image=args.captions_per_image,
        lr=args.learning_rate,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        augment=not args.no_augment,
        seed=args.seed,
        scene_seed=args.seed_scenes,
        init_seed=args.seed_init,
        shuffle_seed=args.seed_shuffle,
        exclude_test_scenes=args.exclude_test_scenes,
        exclude_test_seeds=list(args.exclude_test_seeds),
    )
    # The manifest records the seeds each part used, not their defaults.
    return {**config, **config.seeds()}


def save_weights(
    model: torch.nn.Module, zoo: Path, fp32: bool, name: str = DEMO_VLP_NAME
) -> Path:
    """Writes the compact state dict as ``<name>-<sha256[:8]>.pth.tar``
    (reproducibly: the same weights give the same file)."""
    state = demo_state_dict(model, torch.float32 if fp32 else torch.float16)
    return save_state_dict(state, zoo, name)["path"]


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


_CARD = """# Demo VLP (`{name}`)

A small CLIP-architecture vision-language model for demonstrations and tests of
[Privacy-Shielded Image Compression](https://arxiv.org/abs/2506.15201) (ICML 2025)
where real CLIP weights are unavailable or too slow. It is `open_clip.CLIP` with a
small configuration, trained from scratch on the procedural scene benchmark of
`compressai_psic.datasets.scenes` (shapes on textured backgrounds with exact
captions). It knows nothing about natural images: use it only with scene images.

```python
from compressai_psic.vlp import load_demo_vlp

vlp = load_demo_vlp()  # frozen VLPAdapter, sha256-checked against the manifest
vlp.encode_image(images)  # (B, 3, H, W) in [0, 1] -> (B, {embed_dim}), L2-normalised
vlp.encode_text(["a large red circle at the top left on a plain grey background"])
```

## Architecture

| part | configuration |
|---|---|
| image tower | {vision} |
| text tower | {text} |
| joint embedding | {embed_dim} dimensions, learnable logit scale |
| parameters | {parameters:,} ({parameters_stored:,} stored) |
| file | `{file}`, {mib:.2f} MiB, {dtype} |

Images are normalised with {normalisation}; other sizes are resized
(shorter side, bicubic, antialiased) and centre-cropped by the adapter. Only the
{stored_token_rows} token-embedding rows that the benchmark's captions use are
stored; the others load as zeros (training never updates them).

## Training recipe

{recipe_text}

Retrain it (replaces the manifest entry and this card):

```bash
{command}
```

## Measured retrieval (held-out `test` split)

{n}-way retrieval over the first {n} test scenes with distinct canonical captions
(one correct caption per image; chance Recall@1 is {chance}), measured on the
stored weights after loading them back:

| test images | image→text R@1 | R@5 | text→image R@1 | R@5 |
|---|---|---|---|---|
{rows}

Target of the project: image→text R@1 ≥ {target} on 100-way retrieval.

## Limitations

- Trained on synthetic scenes only: no meaning on photographs.
- Small: it is an adversary for demonstrations, not a stand-in for CLIP when
  measuring real-world privacy. Use `tools/eval_retrieval.py --vlp ...` with real
  CLIP weights for that.
"""

_RECIPE = """\
- data: the first {train_scenes:,} scenes of the `train` split (benchmark seed
  {scene_seed}){exclusion}, rendered once at {image_size} px (supersampling
  {supersample}), each with {captions_per_image} captions (the canonical one and
  rewordings), one drawn per step;
- seeds: scenes {scene_seed}, initialisation {init_seed}, batches/captions/
  augmentation {shuffle_seed};
- augmentation: {augment};
- loss: symmetric InfoNCE (CLIP's), learnable logit scale (initial 1/0.07,
  clamped at 100);
- optimiser: AdamW (betas 0.9, 0.98; weight decay {weight_decay} on weight
  matrices only), batch {batch_size}, {steps} steps, learning rate {lr:g} after
  {warmup_steps} warm-up steps, cosine decay to {min_lr:g};
- training time: {minutes:.1f} min wall clock ({cpu_minutes:.1f} min of CPU time)
  with {threads} threads on {machine}, data preparation included; the machine
  was shared with other jobs, so an idle one is faster."""

_AUGMENTATION = (
    "shifts of up to 2 px, a 3×3 blur on a third of the images, Gaussian noise "
    "(σ ≤ 0.03)"
)


def _vision_text(vision: Dict[str, Any]) -> str:
    size = vision["image_size"]
    if isinstance(vision["layers"], (list, tuple)):
        width = vision["width"]
        return (
            f"ResNet (open_clip ModifiedResNet: 3-conv stem, anti-aliased "
            f"bottlenecks {list(vision['layers'])} per stage, base width {width}, "
            f"attention pooling over {width * 32} channels with heads of "
            f"{vision['head_width']}), {size}×{size} input"
        )
    return (
        f"ViT, {size}×{size} input, patch {vision['patch_size']}, width "
        f"{vision['width']}, {vision['layers']} layers, heads of "
        f"{vision['head_width']} channels"
    )


def _normalisation_text(config: Dict[str, Any]) -> str:
    preprocess = config.get("preprocess_cfg")
    if not preprocess:
        return "OpenAI CLIP's mean and std"
    mean = ", ".join(f"{v:g}" for v in preprocess["mean"])
    std = ", ".join(f"{v:g}" for v in preprocess["std"])
    return f"mean ({mean}) and std ({std})"


def _recipe_text(entry: Dict[str, Any]) -> str:
    recipe = dict(entry["recipe"])
    for key in ("scene_seed", "init_seed", "shuffle_seed"):
        if recipe.get(key) is None:
            recipe[key] = recipe["seed"]
    recipe["augment"] = _AUGMENTATION if recipe["augment"] else "none"
    excluded = int(recipe.get("exclude_test_scenes") or 0)
    skipped = entry.get("exclusion", {}).get("skipped_training_scenes")
    recipe["exclusion"] = (
        f", skipping scenes whose canonical caption is one of the first "
        f"{excluded:,} test scenes of benchmark seeds "
        f"{', '.join(str(s) for s in recipe.get('exclude_test_seeds', [0]))}"
        f" ({skipped} scenes skipped)"
        if excluded
        else ""
    )
    return _RECIPE.format(
        minutes=entry["train_seconds"] / 60,
        cpu_minutes=entry["cpu_seconds"] / 60,
        threads=entry["threads"],
        machine=entry["machine"],
        **recipe,
    )


def _retrieval_rows(entry: Dict[str, Any]) -> str:
    metrics = entry["metrics"]
    n = metrics["num_scenes"]
    sets = [
        ("test_64px", f"{n}-way, seed 0, rendered at 64 px"),
        ("test_128px", f"{n}-way, seed 0, rendered at 128 px, resized by the adapter"),
    ]
    sets += [
        (f"extra.{key}", "{}-way, seed {}, rendered at 64 px".format(*key.split("@")))
        for key in metrics.get("extra", {})
    ]
    rows = []
    for key, label in sets:
        figures = metrics
        for part in key.split(".", 1) if key.startswith("extra.") else [key]:
            figures = figures[part]
        values = [figures[m] for m in ("i2t_R@1", "i2t_R@5", "t2i_R@1", "t2i_R@5")]
        rows.append("| " + " | ".join([label] + [_pct(v) for v in values]) + " |")
    return "\n".join(rows)


def _card_fields(entry: Dict[str, Any]) -> Dict[str, Any]:
    config = entry["config"]
    text = config["text_cfg"]
    return {
        "name": entry["name"],
        "embed_dim": config["embed_dim"],
        "vision": _vision_text(config["vision_cfg"]),
        "text": (
            f"causal transformer, context {text['context_length']} tokens, width "
            f"{text['width']}, {text['layers']} layers, {text['heads']} heads, "
            f"open_clip's BPE tokenizer (vocabulary {text['vocab_size']})"
        ),
        "normalisation": _normalisation_text(config),
        "parameters": entry["parameters"],
        "parameters_stored": entry["parameters_stored"],
        "file": entry["file"],
        "mib": entry["size_bytes"] / 2**20,
        "dtype": entry["dtype"],
        "stored_token_rows": entry["stored_token_rows"],
        "command": entry["command"],
        "recipe_text": _recipe_text(entry),
        "n": entry["metrics"]["num_scenes"],
        "chance": _pct(1 / entry["metrics"]["num_scenes"]),
        "rows": _retrieval_rows(entry),
        "target": _pct(TARGET_I2T_R1),
    }


def model_card(entry: Dict[str, Any]) -> str:
    """The text of ``zoo/DEMO_VLP.md``."""
    return _CARD.format(**_card_fields(entry))


_EVAL_CARD = """# Evaluation VLPs ({names})

Vision-language models that measure the protection of
[Privacy-Shielded Image Compression](https://arxiv.org/abs/2506.15201) codecs on
the procedural scene benchmark (`compressai_psic.datasets.scenes`) **without**
having been used to train them: no shipped codec is trained against these models
(the demo codec is trained against `demo-vlp`, see [DEMO_VLP.md](DEMO_VLP.md)).
They belong to other architecture families than the demo VLP, have their own seeds
(scenes, initialisation, batches) and image normalisation, and were trained on the
benchmark's `train` split with the held-out `test` scenes that evaluation uses
excluded. Report their figures apart from those of the VLPs a codec was trained
against.

```python
from compressai_psic.vlp import build_vlp

vlps = [build_vlp("eval-rn"), build_vlp("eval-vit")]  # frozen, sha256-checked
# or: python tools/eval_retrieval.py ... --vlp eval-rn --vlp eval-vit
```

Like the demo VLP they know only synthetic scenes: they stand in for "a VLP the
codec never saw" on this benchmark, not for real CLIP models.

{sections}
"""

_EVAL_SECTION = """## `{name}` (spec `{spec}`)

| part | configuration |
|---|---|
| image tower | {vision} |
| text tower | {text} |
| joint embedding | {embed_dim} dimensions, learnable logit scale |
| image normalisation | {normalisation} |
| parameters | {parameters:,} ({parameters_stored:,} stored) |
| file | `{file}`, {mib:.2f} MiB, {dtype}, {stored_token_rows} token rows kept |

{recipe_text}

Retrain it (replaces its manifest entry and this card's section):

```bash
{command}
```

Retrieval on held-out `test` scenes with distinct canonical captions (chance
Recall@1 is 1/N), measured on the stored weights after loading them back:

| test images | image→text R@1 | R@5 | text→image R@1 | R@5 |
|---|---|---|---|---|
{rows}
"""


_TRAIN_CARD = """# Training-ensemble VLPs ({names})

Vision-language models that shielded codecs are trained **against**, together
with `demo-vlp` ([DEMO_VLP.md](DEMO_VLP.md)): the spec `train-ensemble` of
`compressai_psic.vlp.build_vlp` (and `--vlp train-ensemble` of the training
tool) is `demo-vlp` plus these, two ViT and two ResNet image towers of other
widths, depths, patch sizes and seeds, so that what a codec learns is not the
quirk of one network
([Privacy-Shielded Image Compression](https://arxiv.org/abs/2506.15201), ICML
2025, trains against one CLIP). The evaluation VLPs (`EVAL_VLPS.md`) are never
members: the training tool refuses them.

```python
from compressai_psic.vlp import build_vlp

ensemble = build_vlp("train-ensemble")  # VLPEnsemble of 4, sha256-checked
one = build_vlp("zoo:train-vlp-rn-wide")  # any shipped VLP by manifest name
```

They know only synthetic scenes, like every VLP of the zoo.

{sections}
"""


def train_card(entries: List[Dict[str, Any]]) -> str:
    """The text of ``zoo/TRAIN_VLPS.md`` (one section per training VLP)."""
    sections = [
        _EVAL_SECTION.format(spec="zoo:" + e["name"], **_card_fields(e))
        for e in entries
    ]
    names = ", ".join(f"`{e['name']}`" for e in entries)
    return _TRAIN_CARD.format(names=names, sections="\n".join(sections).rstrip())


def eval_card(entries: List[Dict[str, Any]]) -> str:
    """The text of ``zoo/EVAL_VLPS.md`` (one section per evaluation VLP)."""
    specs = {name: spec for spec, (name, _) in EVAL_VLPS.items()}
    sections = [
        _EVAL_SECTION.format(spec=specs.get(e["name"], e["name"]), **_card_fields(e))
        for e in entries
    ]
    names = ", ".join(f"`{e['name']}`" for e in entries)
    return _EVAL_CARD.format(names=names, sections="\n".join(sections).rstrip())


def _role(name: str) -> str:
    """``demo`` (the demo VLP), ``train`` (a training-ensemble member) or
    ``evaluation`` (never trained against)."""
    if name == DEMO_VLP_NAME:
        return "demo"
    return "train" if name in TRAIN_VLPS else "evaluation"


def _write_card(zoo: Path, entry: Dict[str, Any]) -> Path:
    if entry["name"] == DEMO_VLP_NAME:
        path = zoo / "DEMO_VLP.md"
        path.write_text(model_card(entry), encoding="utf-8")
        return path
    role = entry["role"]
    manifest = [
        {k: v for k, v in e.items() if not k.startswith("_")}
        for e in load_manifest(zoo / "manifest.json")
        if e.get("kind") == "vlp" and e.get("role") == role
    ]
    if role == "train":
        path = zoo / "TRAIN_VLPS.md"
        path.write_text(train_card(manifest), encoding="utf-8")
    else:
        path = zoo / "EVAL_VLPS.md"
        path.write_text(eval_card(manifest), encoding="utf-8")
    return path


def _measure(vlp: torch.nn.Module, args: argparse.Namespace) -> Dict[str, Any]:
    metrics: Dict[str, Any] = {
        "num_scenes": args.eval_scenes,
        "split": "test",
        "test_64px": evaluate_demo_clip(vlp, args.eval_scenes, image_size=64),
        "test_128px": evaluate_demo_clip(vlp, args.eval_scenes, image_size=128),
    }
    if args.eval_extra:
        metrics["extra"] = {
            f"{n}@{seed}": evaluate_demo_clip(vlp, n, seed=seed, image_size=64)
            for n, seed in args.eval_extra
        }
    return metrics


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = _recipe(args)
    config = VLP_ARCHITECTURES[args.arch]
    cpu_start = time.process_time()

    def evaluate(model: torch.nn.Module) -> Dict[str, float]:
        return evaluate_demo_clip(model, args.eval_scenes)

    model, info = train_demo_clip(
        recipe,
        config,
        device=args.device,
        log_every=args.log_every,
        eval_fn=evaluate if args.eval_every else None,
        eval_every=args.eval_every,
    )
    cpu_seconds = time.process_time() - cpu_start
    model = model.cpu()
    path = save_weights(model, args.zoo, args.fp32, args.name)

    # Figures of the stored (possibly float16) weights, read back as users will.
    shipped = load_zoo_vlp(args.name, path, config=config)
    metrics = _measure(shipped, args)
    state = torch.load(path, map_location="cpu", weights_only=True)
    command = "python tools/train_demo_vlp.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    mean, std = model_mean_std(model)
    entry: Dict[str, Any] = {
        "name": args.name,
        "kind": "vlp",
        "role": _role(args.name),
        "architecture": args.arch,
        "file": path.name,
        "sha256": sha256_file(path),
        "size_bytes": path.stat().st_size,
        "dtype": "float32" if args.fp32 else "float16",
        "config": config,
        "image_mean": list(mean),
        "image_std": list(std),
        "parameters": sum(p.numel() for p in model.parameters()),
        "parameters_stored": sum(
            t.numel() for t in state.values() if t.is_floating_point()
        ),
        "stored_token_rows": len(model.used_token_ids),
        "recipe": recipe,
        "exclusion": {
            "captions": info["excluded"],
            "skipped_training_scenes": info["skipped_scenes"],
        },
        "metrics": metrics,
        "train_seconds": round(info["train_seconds"], 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "threads": args.threads,
        "machine": machine_description(),
        "command": command.strip(),
        "final_loss": round(info["final_loss"], 4),
    }
    if not args.no_manifest:
        replaced = update_manifest(args.zoo, entry)
        if replaced and replaced != path.name:
            old = args.zoo / replaced
            # Only files this tool wrote are removed.
            if old.name.startswith(f"{args.name}-") and old.is_file():
                old.unlink()
        _write_card(args.zoo, entry)
    print(json.dumps(entry, indent=2))
    at64 = metrics["test_64px"]
    for direction in ("i2t", "t2i"):
        if at64[f"{direction}_R@1"] < TARGET_I2T_R1:
            print(
                f"warning: {direction} R@1 {at64[f'{direction}_R@1']:.3f} is below "
                f"the target {TARGET_I2T_R1}",
                file=sys.stderr,
            )
    return entry


if __name__ == "__main__":
    main()
