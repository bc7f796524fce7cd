r"""`open_clip <https://github.com/mlfoundations/open_clip>`_ models as frozen VLPs.

:class:`OpenCLIPAdapter` builds any open_clip architecture with weights from a
local checkpoint file, an OpenAI CLIP ``.pt`` (TorchScript) file, a directory
holding one, or a pretrained tag (downloaded or found in ``cache_dir``), and
wraps models already built (:meth:`OpenCLIPAdapter.from_model`). open_clip is
imported when an adapter is made.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import warnings
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union
from urllib.parse import urlparse

import torch.nn as nn
from torch import Tensor

from .adapters import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, DeviceLike, VLPAdapter
from .files import (
    find_checkpoint_in_dir,
    is_torchscript_archive,
    load_clip_state_dict,
    looks_like_path,
)

__all__ = ["OpenCLIPAdapter"]


def _import_open_clip():
    try:
        import open_clip
    except ImportError as err:
        raise ImportError(
            f"open_clip could not be imported ({err}); install it with "
            "`pip install open_clip_torch` or `pip install compressai-psic[vlp]`"
        ) from err
    return open_clip


class OpenCLIPAdapter(VLPAdapter):
    r"""An open_clip model as a frozen VLP.

    Args:
        model_name: any open_clip architecture (``"ViT-B-32"``, ``"RN50"``, the
            OpenAI spelling ``"ViT-B/32"``, ``"hf-hub:org/repo"``, …)
        pretrained: where the weights come from:

            - ``None``: random initialisation (a warning is emitted; fine for
              timing and tests, useless for protection);
            - a file: an open_clip checkpoint (``.bin``/``.pt``/``.safetensors``,
              read with ``weights_only=True``) or an OpenAI CLIP ``.pt`` file
              (TorchScript; the architecture is read from the file, with
              QuickGELU as OpenAI trained it);
            - a directory holding one such file (open_clip or OpenAI file names);
            - a pretrained tag such as ``"openai"`` or ``"laion2b_s34b_b79k"``,
              looked up in ``cache_dir`` and downloaded when a hub is reachable
        cache_dir: download/cache directory for pretrained tags
        device: where the model lives
        precision: open_clip precision (``"fp32"``, ``"bf16"``, …); keep
            ``"fp32"`` and let autocast handle CUDA
        autocast: run under ``torch.autocast`` on CUDA
        resize_mode: see :class:`VLPAdapter`

    Raises:
        FileNotFoundError: a weights file or directory is missing, or a tag's
            weights are neither cached nor downloadable (the message names the
            file expected)
        ValueError: ``pretrained`` is neither a path nor a known tag
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | None = None,
        cache_dir: str | None = None,
        device: DeviceLike = "cpu",
        precision: str = "fp32",
        autocast: bool = True,
        resize_mode: str = "shortest",
    ):
        open_clip = _import_open_clip()
        model = _create_open_clip_model(
            open_clip, model_name, pretrained, cache_dir, precision
        )
        preprocess_cfg = open_clip.get_model_preprocess_cfg(model)
        tokenizer = _open_clip_tokenizer(open_clip, model_name, model, cache_dir)
        image_size = preprocess_cfg.get("size", model.visual.image_size)
        super().__init__(
            model,
            tokenizer,
            image_size=image_size,
            mean=preprocess_cfg.get("mean", OPENAI_CLIP_MEAN),
            std=preprocess_cfg.get("std", OPENAI_CLIP_STD),
            resize_mode=resize_mode,
            autocast=autocast,
            name=f"open_clip:{model_name}",
        )
        self.model_name = model_name
        self.pretrained = pretrained
        if device is not None:
            self.to(device)

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        tokenizer: Callable[[List[str]], Tensor] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        image_size: Union[int, Sequence[int], None] = None,
        autocast: bool = True,
        resize_mode: str = "shortest",
        name: str = "open_clip:custom",
    ) -> OpenCLIPAdapter:
        r"""Wraps an already built open_clip model (e.g. a tiny random one).

        Missing preprocessing values are read from the model's
        ``preprocess_cfg``/``image_mean``/``image_std``/``image_size`` attributes,
        then default to OpenAI's. The default tokenizer is open_clip's BPE
        tokenizer at the model's context length.
        """
        open_clip = _import_open_clip()
        cfg = open_clip.get_model_preprocess_cfg(model)
        if tokenizer is None:
            tokenizer = open_clip.SimpleTokenizer(
                context_length=int(getattr(model, "context_length", 77))
            )
        adapter = cls.__new__(cls)
        VLPAdapter.__init__(
            adapter,
            model,
            tokenizer,
            image_size=image_size if image_size is not None else cfg["size"],
            mean=mean if mean is not None else cfg.get("mean", OPENAI_CLIP_MEAN),
            std=std if std is not None else cfg.get("std", OPENAI_CLIP_STD),
            resize_mode=resize_mode,
            autocast=autocast,
            name=name,
        )
        adapter.model_name = name
        adapter.pretrained = None
        return adapter


def _open_clip_tokenizer(open_clip, model_name: str, model: nn.Module, cache_dir):
    context_length = getattr(model, "context_length", None)
    try:
        return open_clip.get_tokenizer(
            model_name, context_length=context_length, cache_dir=cache_dir
        )
    except Exception:  # noqa: BLE001 - models built from OpenAI files have no config
        return open_clip.SimpleTokenizer(context_length=context_length or 77)


def _create_open_clip_model(
    open_clip, model_name: str, pretrained, cache_dir, precision: str
) -> nn.Module:
    model_name = model_name.replace("/", "-") if ":" not in model_name else model_name
    if pretrained is None or str(pretrained).lower() in ("", "none", "random"):
        if pretrained is None:
            warnings.warn(
                f"open_clip model '{model_name}' has random weights (pretrained=None): "
                "fine for tests and timing, useless for protection",
                stacklevel=3,
            )
        return open_clip.create_model(model_name, pretrained=None, precision=precision)

    pretrained = os.fspath(pretrained)
    if os.path.isdir(pretrained):
        pretrained = find_checkpoint_in_dir(pretrained, model_name)
    if os.path.isfile(pretrained):
        if is_torchscript_archive(pretrained):
            from open_clip.model import build_model_from_openai_state_dict

            state_dict = load_clip_state_dict(pretrained)
            model = build_model_from_openai_state_dict(state_dict, cast_dtype=None)
            model.float()
            if precision != "fp32":
                warnings.warn(
                    "OpenAI CLIP files are loaded in fp32; use autocast for lower "
                    f"precision (precision={precision!r} ignored)",
                    stacklevel=3,
                )
            model.visual.image_mean = OPENAI_CLIP_MEAN
            model.visual.image_std = OPENAI_CLIP_STD
            return model
        # open_clip reads checkpoints with weights_only=True.
        return open_clip.create_model(
            model_name, pretrained=pretrained, precision=precision
        )
    if looks_like_path(pretrained):
        raise FileNotFoundError(
            f"VLP weights file not found: '{pretrained}' (expected an open_clip "
            f"checkpoint or an OpenAI CLIP .pt file for '{model_name}')"
        )

    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained not in tags:
        raise ValueError(
            f'Unknown pretrained value "{pretrained}" for open_clip model '
            f"'{model_name}': give a weights file, a directory, or one of {tags}"
        )
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name, pretrained)
    # Weights trained with QuickGELU (all OpenAI ones) need it at inference.
    quick_gelu = bool(cfg.get("quick_gelu", False))
    # Not cached and no way to the host: fail at once, not after the hub
    # client's retries (cached weights load as open_clip loads them).
    unreachable = None if _cached_hub_file(cfg, cache_dir) else _unreachable(cfg)
    try:
        if unreachable is not None:
            raise ConnectionError(unreachable)
        with _quiet_downloads():
            return open_clip.create_model(
                model_name,
                pretrained=pretrained,
                cache_dir=cache_dir,
                precision=precision,
                force_quick_gelu=quick_gelu,
            )
    except Exception as err:  # noqa: BLE001 - download errors come in many types
        sources = []
        if cfg.get("hf_hub"):
            repo, filename = os.path.split(cfg["hf_hub"])
            sources.append(
                f"{filename or 'open_clip_pytorch_model.bin'} from the Hugging Face "
                f"repo '{repo.rstrip('/')}'"
            )
        if cfg.get("url"):
            sources.append(f"'{os.path.basename(cfg['url'])}' from {cfg['url']}")
        where = cache_dir or "the default cache (~/.cache/huggingface, ~/.cache/clip)"
        reason = " ".join(str(err).split()) or type(err).__name__
        raise FileNotFoundError(
            f"Weights for open_clip '{model_name}' tag '{pretrained}' are not in "
            f"{where} and could not be downloaded ({reason}). "
            f"Expected {' or '.join(sources) or 'a checkpoint file'}; download it "
            "where a network is available and pass its path as `pretrained`."
        ) from err


def _hub_file(cfg: Dict) -> Optional[tuple]:
    """``(repo, filename)`` of a pretrained tag on the Hugging Face hub."""
    if not cfg.get("hf_hub"):
        return None
    repo, filename = os.path.split(cfg["hf_hub"])
    return repo.rstrip("/"), filename or "open_clip_pytorch_model.bin"


def _cached_hub_file(cfg: Dict, cache_dir: Optional[str]) -> Optional[str]:
    """The tag's weights file in the Hugging Face cache, or ``None`` (found
    without a network request)."""
    hub = _hub_file(cfg)
    if hub is None:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    repo, filename = hub
    stem = os.path.splitext(filename)[0]
    names = [stem.replace("pytorch_model", "model") + ".safetensors", filename]
    for name in names:
        found = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _unreachable(cfg: Dict, timeout: float = 5.0) -> Optional[str]:
    """Why the host the tag downloads from cannot be reached (``None`` when it
    can, or when a proxy is configured and only the download itself can tell):
    one connection attempt, instead of the hub client's retries."""
    proxies = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
    if any(os.environ.get(name) for name in proxies):
        return None
    if cfg.get("hf_hub"):
        host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    elif cfg.get("url"):
        host = urlparse(cfg["url"])
    else:
        return None
    name, port = host.hostname or "", host.port or 443
    try:
        socket.create_connection((name, port), timeout=timeout).close()
    except OSError as err:
        reason = err.strerror or " ".join(str(err).split()) or type(err).__name__
        return f"{name} cannot be reached: {reason}"
    return None


@contextlib.contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No retry warnings of the hub client, no ``logging.basicConfig`` side
    effect of open_clip's ``logging.error`` while a download is tried: a
    failure is reported once, by the error raised."""
    hub = logging.getLogger("huggingface_hub")
    level, root = hub.level, logging.getLogger()
    guard = logging.NullHandler() if not root.handlers else None
    hub.setLevel(logging.CRITICAL)
    if guard is not None:
        root.addHandler(guard)
    previous = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(previous)
        hub.setLevel(level)
        if guard is not None:
            root.removeHandler(guard)
