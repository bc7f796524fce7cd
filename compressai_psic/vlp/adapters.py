r"""Frozen vision-language models (VLPs) as differentiable image/text encoders.

PSIC trains the protected decode *against* a VLP: the protected reconstruction
goes through the VLP image encoder and the loss pushes its embedding away from
its caption. :class:`VLPAdapter` wraps any VLP behind one small interface:

- :meth:`VLPAdapter.encode_image` takes RGB tensors in ``[0, 1]`` of any size;
  resizing, centre cropping and mean/std normalisation happen inside, with
  differentiable tensor ops, so gradients reach the codec's decoder;
- :meth:`VLPAdapter.encode_text` takes a list of strings;
- :attr:`VLPAdapter.embed_dim`, :attr:`VLPAdapter.device`, ``.to(...)``.

VLP parameters never require gradients and the wrapped model stays in eval mode
whatever ``.train()`` is called with. On CUDA the encoders run under
``torch.autocast`` (bfloat16 by default); embeddings are returned as float32.

:class:`VLPEnsemble` holds several VLPs whose losses are averaged, so the
protection does not overfit one model; :func:`vlp_members` lists the members of
either. The backends (:mod:`~compressai_psic.vlp.open_clip`,
:mod:`~compressai_psic.vlp.openai`) subclass :class:`VLPAdapter`.
"""

from __future__ import annotations

from typing import Callable, Iterator, List, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "DeviceLike",
    "VLPAdapter",
    "VLPEnsemble",
    "VLPLike",
    "vlp_members",
]

#: Image normalisation of OpenAI CLIP (also used by most open_clip weights).
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_RESIZE_MODES = ("shortest", "squash")

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
