r"""Frozen vision-language models (VLPs) as differentiable image/text encoders.

PSIC trains the protected decode *against* a VLP: the protected reconstruction
goes through the VLP image encoder and the loss pushes its embedding away from
its caption. This module wraps VLPs behind one small interface:

- :meth:`VLPAdapter.encode_image` takes RGB tensors in ``[0, 1]`` of any size;
  resizing, centre cropping and mean/std normalisation happen inside, with
  differentiable tensor ops, so gradients reach the codec's decoder;
- :meth:`VLPAdapter.encode_text` takes a list of strings;
- :attr:`VLPAdapter.embed_dim`, :attr:`VLPAdapter.device`, ``.to(...)``.

VLP parameters never require gradients and the wrapped model stays in eval mode
whatever ``.train()`` is called with. On CUDA the encoders run under
``torch.autocast`` (bfloat16 by default); embeddings are returned as float32.

Backends:

- :class:`OpenCLIPAdapter`: any `open_clip <https://github.com/mlfoundations/open_clip>`_
  architecture, with weights from a local checkpoint file, an OpenAI CLIP ``.pt``
  (TorchScript) file, a directory holding one, or a pretrained tag (downloaded or
  found in ``cache_dir``);
- :class:`OpenAIClipAdapter`: OpenAI's ``clip`` package, imported lazily;
- :class:`VLPEnsemble`: several VLPs whose losses are averaged, so the protection
  does not overfit one model.

:func:`build_vlp` builds any of them from command-line strings such as
``"open_clip:ViT-B-32:/path/ViT-B-32.pt"``.

The attacked models follow `"Privacy-Shielded Image Compression: Defending Against
Exploitation from Vision-Language Pretrained Models"
<https://arxiv.org/abs/2506.15201>`_, ICML 2025 (CLIP ViT-B/32 in the paper).
"""

from __future__ import annotations

import os
import warnings
import zipfile
from typing import Callable, Dict, Iterator, List, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "VLP_BACKENDS",
    "OpenAIClipAdapter",
    "OpenCLIPAdapter",
    "VLPAdapter",
    "VLPEnsemble",
    "build_vlp",
    "load_clip_state_dict",
    "vlp_members",
]

#: Image normalisation of OpenAI CLIP (also used by most open_clip weights).
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: Backends understood by :func:`build_vlp`.
VLP_BACKENDS = ("open_clip", "clip", "demo", "eval_rn", "eval_vit", "tiny")

_RESIZE_MODES = ("shortest", "squash")
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".tar", ".npz")
# Names open_clip and OpenAI use for weight files inside a directory, best first.
_DIR_CHECKPOINT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
)

DeviceLike = Union[str, torch.device, None]


def _pair(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


class VLPAdapter(nn.Module):
    r"""A frozen image/text encoder pair with differentiable preprocessing.

    Wraps any model that has ``encode_image(pixels)`` and ``encode_text(tokens)``
    (open_clip models, OpenAI ``clip`` models). Use the backend subclasses or
    :meth:`OpenCLIPAdapter.from_model` rather than this constructor directly.

    Args:
        model: the VLP; its parameters are frozen and it is put in eval mode
        tokenizer: maps a list of strings to a ``LongTensor`` of token ids
        image_size: input resolution of the image encoder (int or (H, W))
        mean: per-channel normalisation mean (RGB)
        std: per-channel normalisation std (RGB)
        resize_mode: ``"shortest"`` resizes the shorter side to the input size and
            centre-crops (the CLIP preprocessing); ``"squash"`` resizes both sides
        autocast: run the encoders under ``torch.autocast`` on CUDA
        autocast_dtype: the autocast compute type on CUDA
        name: label used in logs and loss dictionaries
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Callable[[List[str]], Tensor],
        image_size: Union[int, Sequence[int]],
        mean: Sequence[float] = OPENAI_CLIP_MEAN,
        std: Sequence[float] = OPENAI_CLIP_STD,
        resize_mode: str = "shortest",
        autocast: bool = True,
        autocast_dtype: torch.dtype = torch.bfloat16,
        name: str = "vlp",
    ):
        super().__init__()
        if resize_mode not in _RESIZE_MODES:
            raise ValueError(
                f'Invalid resize_mode "{resize_mode}": use one of {list(_RESIZE_MODES)}'
            )
        if len(mean) != 3 or len(std) != 3:
            raise ValueError("mean and std must have 3 values (RGB)")
        self.model = model
        self.tokenizer = tokenizer
        self.image_size = _pair(image_size)
        self.resize_mode = resize_mode
        self.autocast = bool(autocast)
        self.autocast_dtype = autocast_dtype
        self.name = name
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), False
        )
        self.model.requires_grad_(False)
        self.train(False)

    # -- module state -------------------------------------------------------------

    def train(self, mode: bool = True) -> VLPAdapter:
        """Keeps the VLP in eval mode whatever ``mode`` is.

        The VLP is a fixed adversary: dropout or batch-norm updates would make the
        loss noisy and change the model being defended against.
        """
        return super().train(False)

    def requires_grad_(self, requires_grad: bool = True) -> VLPAdapter:
        """VLP parameters never receive gradients; ``requires_grad=True`` is refused."""
        if requires_grad:
            raise ValueError("VLP parameters are frozen and cannot require gradients")
        return super().requires_grad_(False)

    @property
    def device(self) -> torch.device:
        for tensor in self.model.parameters():
            return tensor.device
        return self.mean.device

    @property
    def dtype(self) -> torch.dtype:
        for tensor in self.model.parameters():
            return tensor.dtype
        return torch.float32

    @property
    def embed_dim(self) -> int:
        """Size of the (shared) image/text embedding space."""
        output_dim = getattr(getattr(self.model, "visual", None), "output_dim", None)
        if isinstance(output_dim, int):
            return output_dim
        projection = getattr(self.model, "text_projection", None)
        if isinstance(projection, Tensor):
            return int(projection.shape[-1])
        if isinstance(projection, nn.Linear):
            return int(projection.out_features)
        raise AttributeError(f"Cannot tell the embedding size of {self.name}")

    # -- encoders -----------------------------------------------------------------

    def _refreeze(self) -> None:
        # A parent's requires_grad_(True) reaches these parameters without going
        # through requires_grad_ above; re-freeze before every use.
        for param in self.model.parameters():
            if param.requires_grad:
                param.requires_grad_(False)

    def _autocast(self):
        self._refreeze()
        device = self.device
        return torch.autocast(
            device_type=device.type,
            dtype=self.autocast_dtype,
            enabled=self.autocast and device.type == "cuda",
        )

    def preprocess(self, images: Tensor) -> Tensor:
        r"""Resizes, crops and normalises RGB images in ``[0, 1]`` (differentiable).

        Args:
            images: ``(B, 3, H, W)`` tensor in ``[0, 1]``

        Returns:
            ``(B, 3, h, w)`` tensor at the encoder's input size, normalised
        """
        if images.dim() != 4 or images.size(1) != 3:
            raise ValueError(
                f"Expected RGB images of shape (B, 3, H, W), got {tuple(images.shape)}"
            )
        images = images.to(device=self.mean.device, dtype=torch.float32)
        target_h, target_w = self.image_size
        height, width = images.shape[-2:]
        if (height, width) != (target_h, target_w):
            if self.resize_mode == "shortest":
                scale = max(target_h / height, target_w / width)
                size = (
                    max(target_h, round(height * scale)),
                    max(target_w, round(width * scale)),
                )
            else:
                size = (target_h, target_w)
            # Antialiasing matches the PIL resize CLIP was trained with when the
            # image shrinks; bicubic as in CLIP's own preprocessing.
            images = F.interpolate(
                images, size=size, mode="bicubic", align_corners=False, antialias=True
            )
            top = (images.size(-2) - target_h) // 2
            left = (images.size(-1) - target_w) // 2
            images = images[..., top : top + target_h, left : left + target_w]
        return (images - self.mean) / self.std

    def encode_image(self, images: Tensor, normalize: bool = True) -> Tensor:
        r"""Image embeddings of RGB tensors in ``[0, 1]``.

        Gradients flow to ``images``; none reach the VLP.

        Args:
            images: ``(B, 3, H, W)`` in ``[0, 1]``, any size
            normalize: L2-normalise the embeddings

        Returns:
            ``(B, embed_dim)`` float32 tensor
        """
        pixels = self.preprocess(images)
        with self._autocast():
            if not (self.autocast and self.device.type == "cuda"):
                pixels = pixels.to(self.dtype)
            features = self.model.encode_image(pixels)
        features = features.float()
        return F.normalize(features, dim=-1) if normalize else features

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], normalize: bool = True) -> Tensor:
        r"""Text embeddings of a list of strings (no gradients: text is data).

        Returns:
            ``(len(texts), embed_dim)`` float32 tensor
        """
        if isinstance(texts, str):
            texts = [texts]
        tokens = self.tokenizer(list(texts)).to(self.device)
        with self._autocast():
            features = self.model.encode_text(tokens)
        features = features.float()
        return F.normalize(features, dim=-1) if normalize else features

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, image_size={self.image_size}, "
            f"resize_mode={self.resize_mode!r}, autocast={self.autocast}"
        )


# -- weight files --


def _is_torchscript_archive(path: str) -> bool:
    """TorchScript archives (OpenAI CLIP ``.pt`` files) hold ``code/`` and constants."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(name.endswith("constants.pkl") for name in names) and any(
        "/code/" in name for name in names
    )


def load_clip_state_dict(path: str) -> Dict[str, Tensor]:
    r"""Reads a CLIP state dict from a file without unpickling arbitrary objects.

    OpenAI's ``.pt`` files are TorchScript archives, which ``torch.load`` refuses
    with ``weights_only=True``; they are opened with ``torch.jit.load`` (which
    rebuilds TorchScript modules, not arbitrary Python objects) and only their
    tensors are kept. Any other file goes through
    ``torch.load(..., weights_only=True)``; a ``"state_dict"`` entry and a
    ``"module."`` prefix (DataParallel) are unwrapped.

    Raises:
        FileNotFoundError: naming ``path`` when it does not exist
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CLIP weights file not found: '{path}'")
    if _is_torchscript_archive(path):
        archive = torch.jit.load(path, map_location="cpu")
        state_dict = {k: v.detach().clone() for k, v in archive.state_dict().items()}
        # TorchScript CLIP archives keep these metadata scalars as tensors.
        for key in ("input_resolution", "context_length", "vocab_size"):
            state_dict.pop(key, None)
        return state_dict
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return dict(load_file(path, device="cpu"))
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise ValueError(f"'{path}' does not hold a state dict")
    if all(key.startswith("module.") for key in checkpoint):
        checkpoint = {key[len("module.") :]: v for key, v in checkpoint.items()}
    return checkpoint


def _find_checkpoint_in_dir(directory: str, model_name: str) -> str:
    candidates = list(_DIR_CHECKPOINT_NAMES)
    # OpenAI's downloader names files after the model ("ViT-B-32.pt", "RN50.pt").
    candidates += [f"{model_name.replace('/', '-')}.pt", f"{model_name}.pt"]
    for name in candidates:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    files = sorted(
        name for name in os.listdir(directory) if name.endswith(_WEIGHT_SUFFIXES)
    )
    if len(files) == 1:
        return os.path.join(directory, files[0])
    found = f"; found several: {files}" if files else ""
    raise FileNotFoundError(
        f"No weights for VLP '{model_name}' in directory '{directory}': expected one "
        f"of {candidates}{found}"
    )


def _looks_like_path(value: str) -> bool:
    return (
        os.sep in value
        or "/" in value
        or (os.altsep is not None and os.altsep in value)
        or value.endswith(_WEIGHT_SUFFIXES)
    )


# -- open_clip --


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
        pretrained = _find_checkpoint_in_dir(pretrained, model_name)
    if os.path.isfile(pretrained):
        if _is_torchscript_archive(pretrained):
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
    if _looks_like_path(pretrained):
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
    try:
        return open_clip.create_model(
            model_name,
            pretrained=pretrained,
            cache_dir=cache_dir,
            precision=precision,
            # Weights trained with QuickGELU (all OpenAI ones) need it at inference.
            force_quick_gelu=bool(cfg.get("quick_gelu", False)),
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
        raise FileNotFoundError(
            f"Weights for open_clip '{model_name}' tag '{pretrained}' are not in "
            f"{where} and could not be downloaded ({type(err).__name__}: {err}). "
            f"Expected {' or '.join(sources) or 'a checkpoint file'}; download it "
            "where a network is available and pass its path as `pretrained`."
        ) from err


# -- OpenAI clip --


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
        if name.endswith(_WEIGHT_SUFFIXES):
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


# -- ensembles --


class VLPEnsemble(nn.Module):
    r"""Several frozen VLPs attacked together.

    The paper defends against one VLP; protection that should transfer to models
    the attacker may use is trained against several. Losses built on an ensemble
    (:class:`compressai_psic.losses.UAEOLoss`) compute their terms for each member
    and average them with ``weights``.

    Args:
        members: the VLP adapters (embedding sizes may differ)
        weights: relative weights (normalised to sum 1); uniform by default
    """

    def __init__(
        self, members: Sequence[VLPAdapter], weights: Sequence[float] | None = None
    ):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("A VLPEnsemble needs at least one member")
        for member in members:
            if not isinstance(member, VLPAdapter):
                raise ValueError(
                    f"Ensemble members must be VLPAdapter instances, got "
                    f"{type(member).__name__}"
                )
        if weights is None:
            weights = [1.0] * len(members)
        weights = [float(w) for w in weights]
        if len(weights) != len(members) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(
                "weights must be one non-negative number per member with a positive sum"
            )
        total = sum(weights)
        self.members = nn.ModuleList(members)
        self.weights = tuple(w / total for w in weights)
        self.name = "+".join(member.name for member in members)

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[VLPAdapter]:
        return iter(self.members)

    def train(self, mode: bool = True) -> VLPEnsemble:
        """Members stay in eval mode (see :meth:`VLPAdapter.train`)."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    def encode_image(self, images: Tensor, normalize: bool = True) -> List[Tensor]:
        """One ``(B, D_k)`` embedding tensor per member."""
        return [member.encode_image(images, normalize) for member in self.members]

    def encode_text(self, texts: Sequence[str], normalize: bool = True) -> List[Tensor]:
        """One ``(len(texts), D_k)`` embedding tensor per member."""
        return [member.encode_text(texts, normalize) for member in self.members]


VLPLike = Union[VLPAdapter, VLPEnsemble, Sequence[VLPAdapter]]


def vlp_members(vlp: VLPLike) -> List[Tuple[VLPAdapter, float]]:
    """``(adapter, weight)`` pairs of a VLP, an ensemble or a list of VLPs."""
    if isinstance(vlp, VLPEnsemble):
        return list(zip(vlp.members, vlp.weights))
    if isinstance(vlp, VLPAdapter):
        return [(vlp, 1.0)]
    if isinstance(vlp, (list, tuple)):
        return vlp_members(VLPEnsemble(vlp))
    raise ValueError(
        f"Expected a VLPAdapter, a VLPEnsemble or a list of VLPAdapters, got "
        f"{type(vlp).__name__}"
    )


# -- factory --


def _split_spec(spec: str) -> Tuple[str, str, str | None]:
    backend, sep, rest = spec.partition(":")
    backend = backend.strip().lower().replace("-", "_")
    if backend == "openclip":
        backend = "open_clip"
    if backend not in VLP_BACKENDS:
        raise ValueError(
            f'Invalid VLP spec "{spec}": the backend must be one of '
            f"{list(VLP_BACKENDS)} (e.g. 'open_clip:ViT-B-32:/path/weights.pt', "
            "'clip:ViT-B/32', 'tiny')"
        )
    if not sep or not rest:
        return backend, "", None
    for schema in ("hf-hub:", "local-dir:"):
        if rest.startswith(schema):
            name, _, weights = rest[len(schema) :].partition(":")
            return backend, schema + name, weights or None
    name, _, weights = rest.partition(":")
    return backend, name, weights or None


def build_vlp(
    spec: Union[str, Sequence[str], VLPAdapter, VLPEnsemble],
    device: DeviceLike = "cpu",
    cache_dir: str | None = None,
    autocast: bool = True,
) -> Union[VLPAdapter, VLPEnsemble]:
    r"""Builds a VLP (or an ensemble, from several specs) from strings.

    Spec strings, one per ``--vlp`` flag:

    - ``open_clip:<model>[:<weights>]``: ``<weights>`` is a file, a directory, a
      pretrained tag or ``random``; e.g. ``open_clip:ViT-B-32:/w/ViT-B-32.pt``,
      ``open_clip:ViT-B-32:openai``, ``open_clip:ViT-B-32:random``;
    - ``clip:<name or file>[:<download_root>]``: OpenAI's ``clip`` package;
    - ``demo[:<weights file>]``: the small CLIP trained on the package's scene
      benchmark and shipped under ``zoo/`` (the demo's attacker);
    - ``eval-rn[:<weights file>]``, ``eval-vit[:<weights file>]``: the
      evaluation VLPs shipped under ``zoo/`` (a ResNet-tower CLIP and a wider,
      shallower ViT CLIP trained on the same benchmark); codecs are measured on
      them, never trained against them;
    - ``tiny[:<seed>]``: a tiny randomly initialised open_clip model (tests,
      smoke runs and timing only).

    Args:
        spec: a spec string, a list of them (an ensemble when longer than one), or
            an already built VLP (returned as is)
        device: where the models live
        cache_dir: download/cache directory for open_clip tags
        autocast: run under ``torch.autocast`` on CUDA
    """
    if isinstance(spec, (VLPAdapter, VLPEnsemble)):
        return spec
    if not isinstance(spec, str):
        specs = list(spec)
        if not specs:
            raise ValueError("build_vlp needs at least one spec")
        members = [build_vlp(s, device, cache_dir, autocast) for s in specs]
        if len(members) == 1:
            return members[0]
        flat = []
        for member in members:
            flat.extend(member if isinstance(member, VLPEnsemble) else [member])
        return VLPEnsemble(flat)

    backend, name, weights = _split_spec(spec)
    if backend == "demo":
        from .demo_vlp import load_demo_vlp

        # "demo" or "demo:<weights file>": the small CLIP shipped under zoo/.
        path = ":".join(p for p in (name, weights) if p) or None
        return load_demo_vlp(path, device=device or "cpu", autocast=autocast)
    if backend in ("eval_rn", "eval_vit"):
        from .demo_vlp import load_eval_vlp

        path = ":".join(p for p in (name, weights) if p) or None
        return load_eval_vlp(backend, path, device=device or "cpu", autocast=autocast)
    if backend == "tiny":
        from .testing import tiny_vlp

        seed = int(name) if name else 0
        vlp = tiny_vlp(seed=seed, autocast=autocast)
        return vlp.to(device) if device is not None else vlp
    if not name:
        raise ValueError(f'Invalid VLP spec "{spec}": the model name is missing')
    if backend == "open_clip":
        return OpenCLIPAdapter(
            name,
            pretrained=weights,
            cache_dir=cache_dir,
            device=device,
            autocast=autocast,
        )
    return OpenAIClipAdapter(
        name, download_root=weights, device=device, autocast=autocast
    )
