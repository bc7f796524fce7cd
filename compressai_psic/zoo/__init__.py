r"""Shielded versions of CompressAI's image zoo, with the same entry points.

.. code-block:: python

    from compressai_psic.zoo import bmshj2018_hyperprior

    net = bmshj2018_hyperprior(quality=3, metric="mse", pretrained=False)

``pretrained=True`` loads the base CompressAI weights through ``compressai.zoo``
(they download into torch hub's cache), then the PSIC trigger and synthesis
weights listed in the manifest ``zoo/manifest.json``: a local file shipped with
the package, or a URL downloaded into ``$COMPRESSAI_PSIC_CACHE`` (default
``~/.cache/compressai_psic``). Every file is checked against its sha256.

- :mod:`~compressai_psic.zoo.image`: the entry points (``image_models``,
  ``bmshj2018_factorized`` …) and :func:`load_named` for named codecs;
- :mod:`~compressai_psic.zoo.manifest`: the manifest, where its files are, and
  their download and sha256 check. It needs neither torch nor CompressAI, so
  the command line can check which weights exist before it loads them.
"""

from .image import (
    MAX_QUALITY,
    METRICS,
    bmshj2018_factorized,
    bmshj2018_hyperprior,
    build_zoo_model,
    cheng2020_anchor,
    cheng2020_attn,
    image_models,
    load_named,
    mbt2018,
    mbt2018_mean,
)
from .manifest import (
    DEMO_CODEC,
    NoPublishedWeightsError,
    add_manifest_entry,
    cache_dir,
    codec_names,
    is_codec,
    load_manifest,
    manifest_entry,
    manifest_path,
    manifest_paths,
    named_codec_file,
    published_weights_error,
    update_manifest,
    weights_file,
    zoo_dir,
)

__all__ = [
    "DEMO_CODEC",
    "MAX_QUALITY",
    "METRICS",
    "NoPublishedWeightsError",
    "add_manifest_entry",
    "bmshj2018_factorized",
    "bmshj2018_hyperprior",
    "build_zoo_model",
    "cache_dir",
    "cheng2020_anchor",
    "cheng2020_attn",
    "codec_names",
    "image_models",
    "is_codec",
    "load_manifest",
    "load_named",
    "manifest_entry",
    "manifest_path",
    "manifest_paths",
    "mbt2018",
    "mbt2018_mean",
    "named_codec_file",
    "published_weights_error",
    "update_manifest",
    "weights_file",
    "zoo_dir",
]
