r"""Architectures of the shipped scene CLIPs, as data.

Like open_clip's ``model_configs``, each architecture is a JSON file in
``compressai_psic/vlp/model_configs/``, named after it: the keyword arguments of
``open_clip.CLIP`` (``embed_dim``, ``quick_gelu``, ``vision_cfg``, ``text_cfg``)
and, optionally, ``preprocess_cfg`` (the image normalisation, open_clip's
spelling ``{"mean": […], "std": […]}``; OpenAI CLIP's without it). A list of
``vision_cfg["layers"]`` builds a ResNet image tower, an int a ViT.

- ``vit``: the demo VLP (``demo-vlp``): a ViT at 64×64 pixels (patch 16, three
  layers) and a three-layer text transformer;
- ``resnet``: ``eval-vlp-rn``: open_clip's ``ModifiedResNet`` (one bottleneck
  per stage, base width 16), ImageNet's normalisation;
- ``vit-wide``: ``eval-vlp-vit``: a wider, shallower ViT (width 192, two
  layers), inputs in ``[-1, 1]``;
- ``resnet-wide``: ``train-vlp-rn-wide``: a ResNet tower of base width 24;
- ``resnet-deep``: ``train-vlp-rn-deep``: two bottlenecks in the first two
  stages, base width 12, ImageNet's normalisation;
- ``vit-p8``: ``train-vlp-vit-p8``: a ViT with 8-pixel patches (64 tokens).

A new architecture is a new file; :func:`vlp_config` reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

__all__ = ["CONFIG_DIR", "list_vlp_architectures", "load_vlp_configs", "vlp_config"]

#: Folder of the architecture files (installed with the package).
CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"


def list_vlp_architectures() -> List[str]:
    """Names of the architecture files, sorted."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.json"))


def vlp_config(name: str) -> Dict[str, Any]:
    """The architecture ``name`` (a fresh dict: changing it changes no other).

    Raises:
        ValueError: ``name`` has no file, naming the architectures there are.
    """
    path = CONFIG_DIR / f"{name}.json"
    if "/" in name or not path.is_file():
        raise ValueError(
            f"Unknown VLP architecture {name!r}: use one of "
            f"{list_vlp_architectures()} (files in {CONFIG_DIR})"
        )
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    if not isinstance(config, dict) or not {"vision_cfg", "text_cfg"} <= set(config):
        raise ValueError(f"{path}: a VLP architecture needs vision_cfg and text_cfg")
    return config


def load_vlp_configs() -> Dict[str, Dict[str, Any]]:
    """Every architecture, by name (fresh copies)."""
    return {name: vlp_config(name) for name in list_vlp_architectures()}
