r"""Frozen vision-language models (VLPs): the adversary a PSIC codec is trained
against, as differentiable image/text encoders.

- :mod:`~compressai_psic.vlp.adapters`: :class:`VLPAdapter`, the one interface
  (``encode_image`` on RGB tensors in ``[0, 1]`` with differentiable
  preprocessing, ``encode_text``, ``embed_dim``), and :class:`VLPEnsemble`;
- :mod:`~compressai_psic.vlp.open_clip`: :class:`OpenCLIPAdapter`, any
  `open_clip <https://github.com/mlfoundations/open_clip>`_ architecture with
  weights from a file, a directory or a pretrained tag;
- :mod:`~compressai_psic.vlp.openai`: :class:`OpenAIClipAdapter`, OpenAI's
  ``clip`` package;
- :mod:`~compressai_psic.vlp.files`: reading CLIP weight files safely;
- :mod:`~compressai_psic.vlp.zoo_vlps`: the small scene CLIPs shipped under
  ``zoo/`` (the demo VLP and the evaluation VLPs);
- :mod:`~compressai_psic.vlp.tiny`: the ``tiny`` VLP for tests and timing;
- :mod:`~compressai_psic.vlp.specs`: :func:`build_vlp`, any of them from
  command-line strings such as ``"open_clip:ViT-B-32:/path/ViT-B-32.pt"``.

open_clip and ``clip`` are imported when a model is built, not here.
"""

from .adapters import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    DeviceLike,
    VLPAdapter,
    VLPEnsemble,
    VLPLike,
    vlp_members,
)
from .files import load_clip_state_dict, save_torchscript_state_dict
from .open_clip import OpenCLIPAdapter
from .openai import OpenAIClipAdapter
from .specs import VLP_BACKENDS, build_vlp, split_spec
from .tiny import tiny_clip, tiny_vlp
from .zoo_vlps import (
    DEMO_VLP_CONFIG,
    DEMO_VLP_NAME,
    EVAL_RN_CONFIG,
    EVAL_VIT_CONFIG,
    EVAL_VLPS,
    TRAIN_ENSEMBLE,
    TRAIN_VLPS,
    VLP_ARCHITECTURES,
    build_demo_clip,
    demo_state_dict,
    load_demo_state_dict,
    load_demo_vlp,
    load_eval_vlp,
    load_zoo_vlp,
    model_mean_std,
    wrap_demo_clip,
)

__all__ = [
    "DEMO_VLP_CONFIG",
    "DEMO_VLP_NAME",
    "EVAL_RN_CONFIG",
    "EVAL_VIT_CONFIG",
    "EVAL_VLPS",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "TRAIN_ENSEMBLE",
    "TRAIN_VLPS",
    "VLP_ARCHITECTURES",
    "VLP_BACKENDS",
    "DeviceLike",
    "OpenAIClipAdapter",
    "OpenCLIPAdapter",
    "VLPAdapter",
    "VLPEnsemble",
    "VLPLike",
    "build_demo_clip",
    "build_vlp",
    "demo_state_dict",
    "load_clip_state_dict",
    "load_demo_state_dict",
    "load_demo_vlp",
    "load_eval_vlp",
    "load_zoo_vlp",
    "model_mean_std",
    "save_torchscript_state_dict",
    "split_spec",
    "tiny_clip",
    "tiny_vlp",
    "vlp_members",
    "wrap_demo_clip",
]
