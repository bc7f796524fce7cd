r"""Models of OpenAI's ``clip`` package as frozen VLPs.

``clip`` is imported when an adapter is made; the open_clip backend
(:class:`~compressai_psic.vlp.open_clip.OpenCLIPAdapter`) reads the same OpenAI
``.pt`` files without it.
"""

from __future__ import annotations

import os
from typing import Callable, List

from torch import Tensor

from .adapters import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, DeviceLike, VLPAdapter
from .files import WEIGHT_SUFFIXES, load_clip_state_dict

__all__ = ["OpenAIClipAdapter"]


def _import_openai_clip():
    try:
        import clip
    except Exception as err:  # ImportError, or pkg_resources missing inside clip
        raise ImportError(
            f"OpenAI's `clip` package could not be imported ({type(err).__name__}: "
            f"{err}). Install it with `pip install git+https://github.com/openai/CLIP`"
            " (it needs setuptools' pkg_resources), or use the open_clip backend "
            "(OpenCLIPAdapter / 'open_clip:ViT-B-32:/path/ViT-B-32.pt'), which reads "
            "the same OpenAI .pt files."
        ) from err
    return clip


class OpenAIClipAdapter(VLPAdapter):
    r"""A model of OpenAI's ``clip`` package as a frozen VLP.

    The weights are read safely (see :func:`load_clip_state_dict`) and the model
    is rebuilt with ``clip.model.build_model`` in float32; ``clip.load`` is not
    used because it falls back to unrestricted unpickling.

    Args:
        name: a model name known to ``clip`` (``"ViT-B/32"``, ``"RN50"``, …) or the
            path of a ``.pt`` file
        download_root: where ``clip`` keeps its files (default ``~/.cache/clip``)
        device: where the model lives
        autocast: run under ``torch.autocast`` on CUDA

    Raises:
        ImportError: ``clip`` cannot be imported
        FileNotFoundError: the weights file is missing and cannot be downloaded
            (the message names the file expected)
    """

    def __init__(
        self,
        name: str = "ViT-B/32",
        download_root: str | None = None,
        device: DeviceLike = "cpu",
        autocast: bool = True,
        resize_mode: str = "shortest",
    ):
        clip = _import_openai_clip()
        path = _resolve_openai_clip_file(clip, name, download_root)
        model = clip.model.build_model(load_clip_state_dict(path)).float()
        super().__init__(
            model,
            _openai_clip_tokenizer(clip),
            image_size=int(model.visual.input_resolution),
            mean=OPENAI_CLIP_MEAN,
            std=OPENAI_CLIP_STD,
            resize_mode=resize_mode,
            autocast=autocast,
            name=f"clip:{name}",
        )
        self.model_name = name
        if device is not None:
            self.to(device)


def _openai_clip_tokenizer(clip) -> Callable[[List[str]], Tensor]:
    def tokenize(texts: List[str]) -> Tensor:
        # Long captions are truncated rather than rejected, as open_clip does.
        return clip.tokenize(texts, truncate=True)

    return tokenize


def _resolve_openai_clip_file(clip, name: str, download_root: str | None) -> str:
    if os.path.isfile(name):
        return name
    urls = getattr(getattr(clip, "clip", clip), "_MODELS", {})
    if name not in urls:
        # OpenAI model names contain "/" ("ViT-B/32"): only a suffix marks a file.
        if name.endswith(WEIGHT_SUFFIXES):
            raise FileNotFoundError(f"CLIP weights file not found: '{name}'")
        raise ValueError(
            f'Unknown OpenAI CLIP model "{name}": use one of {sorted(urls)} or the '
            "path of a .pt file"
        )
    root = download_root or os.path.join(os.path.expanduser("~"), ".cache", "clip")
    expected = os.path.join(root, os.path.basename(urls[name]))
    if os.path.isfile(expected):
        return expected
    download = getattr(getattr(clip, "clip", clip), "_download", None)
    try:
        if download is None:
            raise RuntimeError("this clip version has no downloader")
        return download(urls[name], root)
    except Exception as err:  # noqa: BLE001 - network errors come in many types
        raise FileNotFoundError(
            f"OpenAI CLIP weights for '{name}' not found: expected '{expected}' "
            f"(download {urls[name]} there); download failed with "
            f"{type(err).__name__}: {err}"
        ) from err
