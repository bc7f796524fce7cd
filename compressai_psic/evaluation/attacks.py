r"""What a scraper does to a published image before a VLP reads it: named attacks.

The threat model (SPEC, "Threat model") lets the scraper post-process what it
downloads. Each attack maps ``(B, 3, H, W)`` images in ``[0, 1]`` to images in
``[0, 1]`` quantised to 8 bits, as a saved image is. Names (see
:func:`build_attack`):

=================  ============================================================
``jpeg<q>``        JPEG re-encoding at quality ``q`` (PIL, 4:2:0), e.g.
                   ``jpeg75``, ``jpeg90``
``down<k>``        downscaling by ``1/k`` (PIL bicubic, antialiased), e.g.
                   ``down2``
``blur<s>``        Gaussian blur of standard deviation ``s`` pixels, e.g.
                   ``blur0.5``, ``blur1``, ``blur1.5``
``median<k>``      ``k``×``k`` median filter, e.g. ``median3``
``downup<k>``      area downscaling by ``1/k`` and bicubic upscaling back,
                   e.g. ``downup2``, ``downup4``
``noisyup``        "noisy upscaling": Gaussian noise (σ 0.03, fixed seed),
                   JPEG q75, blur σ 0.5 (the purification that washed Glaze
                   off, Hönig et al. 2024)
``greyworld``      blind colour correction: per-image, per-channel mean/std
                   normalisation to a neutral target (every channel gets the
                   image's mean over channels of the channel means and
                   standard deviations; :func:`~compressai_psic.transforms.
                   grey_world`); needs nothing but the image
``greyworld_fit``  the same normalisation, but to the typical channel
                   statistics of natural images: the per-channel mean of the
                   per-image channel means and standard deviations of the
                   *originals* of a fit set
``offset_fit``     informed: adds the mean RGB difference (original − decode)
                   measured on a fit set (the one-line attack of issue 11)
``pattern_fit``    informed: adds the mean difference *image* (original −
                   decode) of the fit set: undoes any fixed additive pattern
``affine_fit``     informed: the least-squares global affine colour map
                   (3×3 matrix + offset) from decodes to originals, fitted on
                   every pixel of a fit set
``filter_fit``     informed: the least-squares 5×5×3 linear filter (+ offset)
                   from decodes to originals, fitted on every pixel of a fit set
``a+b``            ``a`` then ``b`` (at most one fitted step), e.g.
                   ``affine_fit+jpeg75``
=================  ============================================================

Fitted attacks model an attacker who holds some images both ways (published
decode and original), e.g. from other sources; they are fitted on a fit set that
must be disjoint from the evaluation images
(:func:`compressai_psic.evaluation.evaluate_shield` checks). Fitting streams:
``reset_fit``, ``partial_fit`` per batch, ``finish_fit`` (or ``fit`` for all at
once), so no fit image is kept.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ..transforms import down_up, gaussian_blur, grey_world, median_filter
from .pixels import (
    downscale,
    jpeg_reencode,
    noisy_upscale_8bit,
    quantise_8bit,
)

__all__ = [
    "BLIND_ATTACKS",
    "DEFAULT_ATTACKS",
    "FITTED_ATTACKS",
    "PURIFICATION_ATTACKS",
    "AffineColourAttack",
    "Attack",
    "ChainAttack",
    "FunctionAttack",
    "GreyWorldAttack",
    "LinearFilterAttack",
    "OffsetAttack",
    "PatternAttack",
    "apply_affine_colour",
    "build_attack",
    "build_attacks",
    "downscale",
    "fit_affine_colour",
    "jpeg_reencode",
    "quantise_8bit",
]

#: Attacks that need nothing but the image.
BLIND_ATTACKS = ("jpeg75", "jpeg90", "down2", "greyworld")
#: Blind purifications: filters that smooth fine perturbations away.
PURIFICATION_ATTACKS = (
    "blur0.5",
    "blur1",
    "blur1.5",
    "median3",
    "downup2",
    "downup4",
    "noisyup",
)
#: Attacks fitted on a separate set of (decode, original) pairs.
FITTED_ATTACKS = (
    "greyworld_fit",
    "offset_fit",
    "pattern_fit",
    "affine_fit",
    "filter_fit",
)
#: What the evaluation runs by default.
DEFAULT_ATTACKS = BLIND_ATTACKS + PURIFICATION_ATTACKS + FITTED_ATTACKS

ImageBatch = Union[Tensor, Sequence[Tensor]]


def _pixels(images: ImageBatch) -> Tensor:
    """``(P, 3)`` float64 rows of every pixel of a batch or a list of images."""
    if isinstance(images, Tensor):
        images = [images] if images.dim() == 3 else list(images)
    rows = [image.detach().reshape(3, -1).t().double().cpu() for image in images]
    return torch.cat(rows)


def _pairs(decoded: ImageBatch, originals: ImageBatch) -> Tuple[Tensor, Tensor]:
    source, target = _pixels(decoded), _pixels(originals)
    if source.shape != target.shape:
        raise ValueError(
            f"Decodes and originals differ in size: {tuple(source.shape)} vs "
            f"{tuple(target.shape)} pixels"
        )
    return source, target


# --------------------------------------------------------------- affine colour


def fit_affine_colour(
    decoded: ImageBatch, originals: ImageBatch, ridge: float = 1e-9
) -> Tuple[Tensor, Tensor]:
    r"""Least-squares global affine colour map from ``decoded`` to ``originals``.

    Finds ``M`` (3×3) and ``b`` (3) minimising ``Σ ‖M p + b − o‖²`` over every
    pixel ``p`` of the decodes and ``o`` of the originals (same sizes).

    Returns:
        ``(matrix, offset)``, float32
    """
    attack = AffineColourAttack(ridge=ridge).fit(decoded, originals)
    return attack.matrix, attack.offset


def apply_affine_colour(images: Tensor, matrix: Tensor, offset: Tensor) -> Tensor:
    """``M p + b`` for every pixel ``p`` of ``(B, 3, H, W)`` images (no clamping)."""
    matrix = matrix.to(images.device, images.dtype)
    offset = offset.to(images.device, images.dtype)
    return torch.einsum("ij,bjhw->bihw", matrix, images) + offset.view(1, 3, 1, 1)


# ---------------------------------------------------------------------- attacks


class Attack:
    r"""A named post-processing of published images.

    Subclasses implement :meth:`apply` (``(B, 3, H, W)`` → images in ``[0, 1]``);
    calling the attack applies it and quantises to 8 bits. Fitted attacks set
    ``needs_fit`` and implement :meth:`reset_fit`, :meth:`partial_fit` and
    :meth:`finish_fit`.
    """

    needs_fit = False
    #: Whether a report also applies it to the full decodes (what it costs a
    #: clean image); not for attacks that fit through the model.
    on_full = True

    def __init__(self, name: str):
        self.name = name
        self.fitted = not self.needs_fit
        self.fit_pixels = 0
        self.fit_images = 0

    def apply(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, images: Tensor) -> Tensor:
        if not self.fitted:
            raise RuntimeError(f'Attack "{self.name}" must be fitted first')
        return quantise_8bit(self.apply(images))

    # -- fitting (fitted attacks override the hooks) ------------------------------

    def reset_fit(self) -> Attack:
        self.fit_pixels = 0
        self.fit_images = 0
        self.fitted = not self.needs_fit
        self._reset()
        return self

    def partial_fit(self, decoded: ImageBatch, originals: ImageBatch) -> Attack:
        """Adds (decode, original) pairs of a batch to the fit."""
        if self.needs_fit:
            count = 1 if isinstance(decoded, Tensor) and decoded.dim() == 3 else None
            self.fit_images += count or len(decoded)
            self._accumulate(decoded, originals)
        return self

    def finish_fit(self) -> Attack:
        if self.needs_fit:
            if self.fit_images == 0:
                raise ValueError(f'Attack "{self.name}" got no fit images')
            self._solve()
            self.fitted = True
        return self

    def fit(self, decoded: ImageBatch, originals: ImageBatch) -> Attack:
        """Fits on one set of pairs (a batch or lists of ``(3, H, W)`` images)."""
        return self.reset_fit().partial_fit(decoded, originals).finish_fit()

    def _reset(self) -> None:
        pass

    def _accumulate(self, decoded: ImageBatch, originals: ImageBatch) -> None:
        pass

    def _solve(self) -> None:
        pass

    def describe(self) -> Dict[str, Any]:
        """JSON-serialisable parameters (fitted values included)."""
        out: Dict[str, Any] = {"name": self.name, "fitted_on": None}
        if self.needs_fit:
            out["fitted_on"] = {"images": self.fit_images, "pixels": self.fit_pixels}
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class FunctionAttack(Attack):
    """A fixed function of the images (JPEG, downscaling, any callable)."""

    def __init__(self, name: str, function: Callable[[Tensor], Tensor]):
        super().__init__(name)
        self.function = function

    def apply(self, images: Tensor) -> Tensor:
        return self.function(images)


class GreyWorldAttack(Attack):
    r"""Per-image, per-channel mean/std normalisation.

    ``target="neutral"``: to the image's own mean over channels (blind, see
    :func:`~compressai_psic.transforms.grey_world`). ``target="fit"``: to the mean
    per-image channel statistics of the originals of a fit set (the decodes of
    the fit set are not used).
    """

    def __init__(self, name: str = "greyworld", target: str = "neutral"):
        if target not in ("neutral", "fit"):
            raise ValueError(f'target must be "neutral" or "fit", got "{target}"')
        self.target = target
        self.needs_fit = target == "fit"
        super().__init__(name)
        self.target_mean: Optional[Tensor] = None
        self.target_std: Optional[Tensor] = None
        self._reset()

    def _reset(self) -> None:
        self._sum_mean = torch.zeros(3, dtype=torch.float64)
        self._sum_std = torch.zeros(3, dtype=torch.float64)

    def _accumulate(self, decoded: ImageBatch, originals: ImageBatch) -> None:
        if isinstance(originals, Tensor):
            originals = [originals] if originals.dim() == 3 else list(originals)
        for image in originals:
            flat = image.detach().reshape(3, -1).double().cpu()
            self._sum_mean += flat.mean(1)
            self._sum_std += flat.std(1, unbiased=False)
            self.fit_pixels += flat.size(1)

    def _solve(self) -> None:
        self.target_mean = (self._sum_mean / self.fit_images).float()
        self.target_std = (self._sum_std / self.fit_images).float()

    def apply(self, images: Tensor) -> Tensor:
        return grey_world(images, self.target_mean, self.target_std)

    def describe(self) -> Dict[str, Any]:
        out = super().describe()
        out["target"] = self.target
        if self.target_mean is not None:
            out["target_mean"] = [round(v, 5) for v in self.target_mean.tolist()]
            out["target_std"] = [round(v, 5) for v in self.target_std.tolist()]
        return out


class OffsetAttack(Attack):
    """Adds the mean RGB difference original − decode of a fit set."""

    needs_fit = True

    def __init__(self, name: str = "offset_fit"):
        super().__init__(name)
        self.offset: Optional[Tensor] = None
        self._reset()

    def _reset(self) -> None:
        self._sum = torch.zeros(3, dtype=torch.float64)

    def _accumulate(self, decoded: ImageBatch, originals: ImageBatch) -> None:
        source, target = _pairs(decoded, originals)
        self._sum += (target - source).sum(0)
        self.fit_pixels += source.size(0)

    def _solve(self) -> None:
        self.offset = (self._sum / self.fit_pixels).float()

    def apply(self, images: Tensor) -> Tensor:
        return images + self.offset.to(images.device, images.dtype).view(1, 3, 1, 1)

    def describe(self) -> Dict[str, Any]:
        out = super().describe()
        if self.offset is not None:
            out["offset"] = [round(v, 5) for v in self.offset.tolist()]
        return out


class PatternAttack(Attack):
    r"""Adds the mean *image* original − decode of a fit set, pixel by pixel.

    Undoes any fixed additive pattern (a universal perturbation), colour cast
    included, that the codec adds to every decode of one size; images of another
    size than the fit set are left as they are.
    """

    needs_fit = True

    def __init__(self, name: str = "pattern_fit"):
        super().__init__(name)
        self.pattern: Optional[Tensor] = None
        self._reset()

    def _reset(self) -> None:
        self._sum: Optional[Tensor] = None
        self._count = 0

    def _accumulate(self, decoded: ImageBatch, originals: ImageBatch) -> None:
        decoded = (
            [decoded] if isinstance(decoded, Tensor) and decoded.dim() == 3 else decoded
        )
        originals = (
            [originals]
            if isinstance(originals, Tensor) and originals.dim() == 3
            else originals
        )
        for one, original in zip(decoded, originals):
            difference = (original.detach().double() - one.detach().double()).cpu()
            if self._sum is None:
                self._sum = torch.zeros_like(difference)
            if difference.shape != self._sum.shape:
                raise ValueError(
                    f"{self.name} needs fit images of one size, got "
                    f"{tuple(difference.shape)} and {tuple(self._sum.shape)}"
                )
            self._sum += difference
            self._count += 1
            self.fit_pixels += difference[0].numel()

    def _solve(self) -> None:
        self.pattern = (self._sum / max(self._count, 1)).float()

    def apply(self, images: Tensor) -> Tensor:
        if images.shape[-3:] != self.pattern.shape:
            return images
        return images + self.pattern.to(images.device, images.dtype)

    def describe(self) -> Dict[str, Any]:
        out = super().describe()
        if self.pattern is not None:
            out["pattern_rms"] = round(float(self.pattern.pow(2).mean().sqrt()), 5)
        return out


class AffineColourAttack(Attack):
    r"""The least-squares global affine colour map (3×3 + offset) from decodes
    to originals, accumulated over every pixel of a fit set (normal equations
    in float64, a tiny ridge for degenerate fit sets)."""

    needs_fit = True

    def __init__(self, name: str = "affine_fit", ridge: float = 1e-9):
        super().__init__(name)
        self.ridge = float(ridge)
        self.matrix: Optional[Tensor] = None
        self.offset: Optional[Tensor] = None
        self._reset()

    def _reset(self) -> None:
        self._gram = torch.zeros(4, 4, dtype=torch.float64)
        self._cross = torch.zeros(4, 3, dtype=torch.float64)

    def _accumulate(self, decoded: ImageBatch, originals: ImageBatch) -> None:
        source, target = _pairs(decoded, originals)
        design = torch.cat([source, torch.ones_like(source[:, :1])], 1)
        self._gram += design.t() @ design
        self._cross += design.t() @ target
        self.fit_pixels += source.size(0)

    def _solve(self) -> None:
        gram = self._gram / self.fit_pixels
        gram = gram + self.ridge * torch.eye(4, dtype=torch.float64)
        solution = torch.linalg.solve(gram, self._cross / self.fit_pixels)  # (4, 3)
        self.matrix = solution[:3].t().contiguous().float()
        self.offset = solution[3].float()

    def apply(self, images: Tensor) -> Tensor:
        return apply_affine_colour(images, self.matrix, self.offset)

    def describe(self) -> Dict[str, Any]:
        out = super().describe()
        if self.matrix is not None:
            out["matrix"] = [[round(v, 5) for v in row] for row in self.matrix.tolist()]
            out["offset"] = [round(v, 5) for v in self.offset.tolist()]
        return out


class LinearFilterAttack(AffineColourAttack):
    r"""The least-squares linear filter (``size``×``size``×3 taps per output
    channel, plus an offset) from decodes to originals: a fitted colour map that
    also sees each pixel's neighbours (sharpening, de-ringing, a learned
    de-noiser of the simplest kind). Borders are replicated."""

    def __init__(self, name: str = "filter_fit", size: int = 5, ridge: float = 1e-9):
        if size < 1 or size % 2 == 0:
            raise ValueError(f"The filter size must be odd and positive, got {size}")
        self.size = int(size)
        super().__init__(name, ridge)
        self.weight: Optional[Tensor] = None

    def _taps(self) -> int:
        return 3 * self.size * self.size

    def _reset(self) -> None:
        taps = self._taps() + 1
        self._gram = torch.zeros(taps, taps, dtype=torch.float64)
        self._cross = torch.zeros(taps, 3, dtype=torch.float64)

    def _patches(self, images: Tensor) -> Tensor:
        """``(P, 3·size²)`` neighbourhoods of every pixel."""
        pad = self.size // 2
        padded = F.pad(images.double(), (pad, pad, pad, pad), mode="replicate")
        columns = F.unfold(padded, self.size)  # (B, 3·size², H·W)
        return columns.transpose(1, 2).reshape(-1, self._taps())

    def _accumulate(self, decoded: ImageBatch, originals: ImageBatch) -> None:
        pairs = [decoded] if isinstance(decoded, Tensor) else list(decoded)
        targets = [originals] if isinstance(originals, Tensor) else list(originals)
        for source, target in zip(pairs, targets):
            source = source.detach().cpu()
            target = target.detach().cpu()
            if source.dim() == 3:
                source, target = source[None], target[None]
            if source.shape != target.shape:
                raise ValueError(
                    f"Decodes and originals differ in size: {tuple(source.shape)} "
                    f"vs {tuple(target.shape)}"
                )
            rows = self._patches(source)
            design = torch.cat([rows, torch.ones_like(rows[:, :1])], 1)
            self._gram += design.t() @ design
            self._cross += design.t() @ _pixels(target)
            self.fit_pixels += rows.size(0)

    def _solve(self) -> None:
        taps = self._taps() + 1
        gram = self._gram / self.fit_pixels
        gram = gram + self.ridge * torch.eye(taps, dtype=torch.float64)
        solution = torch.linalg.solve(gram, self._cross / self.fit_pixels)
        self.weight = solution[:-1].t().contiguous().float()  # (3, 3·size²)
        self.offset = solution[-1].float()

    def apply(self, images: Tensor) -> Tensor:
        batch, _, height, width = images.shape
        rows = self._patches(images).float()
        out = rows @ self.weight.t().to(rows) + self.offset.to(rows)
        return (
            out.reshape(batch, height * width, 3)
            .transpose(1, 2)
            .reshape(batch, 3, height, width)
            .to(images.dtype)
        )

    def describe(self) -> Dict[str, Any]:
        out = Attack.describe(self)
        out["size"] = self.size
        if self.offset is not None:
            out["offset"] = [round(v, 5) for v in self.offset.tolist()]
        return out


class ChainAttack(Attack):
    r"""Steps applied in order; at most one of them is fitted.

    The fitted step is fitted on the fit decodes after the steps before it, and
    against originals resized (area) to their size when an earlier step
    changed it.
    """

    def __init__(self, name: str, steps: Sequence[Attack]):
        steps = list(steps)
        fitted = [s for s in steps if s.needs_fit]
        if len(fitted) > 1:
            names = [step.name for step in fitted]
            raise ValueError(
                f'Attack "{name}" has several fitted steps {names}; at most one '
                "is supported"
            )
        self.needs_fit = bool(fitted)
        super().__init__(name)
        self.steps = steps

    def _before_fitted(self, decoded: Tensor) -> Tensor:
        for step in self.steps:
            if step.needs_fit:
                break
            decoded = step(decoded)
        return decoded

    def _reset(self) -> None:
        for step in self.steps:
            step.reset_fit()

    def _accumulate(self, decoded: ImageBatch, originals: ImageBatch) -> None:
        if not isinstance(decoded, Tensor):
            for one, original in zip(decoded, originals):
                self._accumulate(one[None], original[None])
            return
        if decoded.dim() == 3:
            decoded, originals = decoded[None], originals[None]
        moved = self._before_fitted(decoded)
        if moved.shape[-2:] != originals.shape[-2:]:
            originals = F.interpolate(originals, size=moved.shape[-2:], mode="area")
        fitted = next(s for s in self.steps if s.needs_fit)
        fitted.partial_fit(moved, originals)
        self.fit_pixels = fitted.fit_pixels

    def _solve(self) -> None:
        for step in self.steps:
            step.finish_fit()

    def apply(self, images: Tensor) -> Tensor:
        for step in self.steps:
            images = step(images)
        return images

    def describe(self) -> Dict[str, Any]:
        out = super().describe()
        out["steps"] = [step.describe() for step in self.steps]
        return out


# --------------------------------------------------------------------- registry


def _named_factories() -> Dict[str, Callable[[], Attack]]:
    return {
        "greyworld": lambda: GreyWorldAttack("greyworld", "neutral"),
        "greyworld_fit": lambda: GreyWorldAttack("greyworld_fit", "fit"),
        "offset_fit": lambda: OffsetAttack("offset_fit"),
        "pattern_fit": lambda: PatternAttack("pattern_fit"),
        "affine_fit": lambda: AffineColourAttack("affine_fit"),
        "filter_fit": lambda: LinearFilterAttack("filter_fit", 5),
    }


_JPEG = re.compile(r"^jpeg(\d{1,3})$")
_DOWN = re.compile(r"^down(\d+)$")
_BLUR = re.compile(r"^blur(\d+(?:\.\d+)?)$")
_MEDIAN = re.compile(r"^median(\d+)$")
_DOWN_UP = re.compile(r"^downup(\d+)$")


def _purification(name: str) -> Optional[Attack]:
    """The purification attack of a name, or ``None`` when it names none."""
    if name == "noisyup":
        return FunctionAttack(name, noisy_upscale_8bit)
    match = _BLUR.match(name)
    if match:
        sigma = float(match.group(1))
        if not 0 < sigma <= 10:
            raise ValueError(f'Blur sigma of "{name}" must be in (0, 10]')
        return FunctionAttack(name, lambda x: gaussian_blur(x, sigma))
    match = _MEDIAN.match(name)
    if match:
        size = int(match.group(1))
        if size < 3 or size % 2 == 0:
            raise ValueError(f'Median size of "{name}" must be odd and at least 3')
        return FunctionAttack(name, lambda x: median_filter(x, size))
    match = _DOWN_UP.match(name)
    if match:
        factor = int(match.group(1))
        if factor < 2:
            raise ValueError(f'Down-up factor of "{name}" must be at least 2')
        return FunctionAttack(name, lambda x: down_up(x, factor))
    return None


def build_attack(name: str) -> Attack:
    r"""The attack of a name (see the module's table); ``a+b`` chains."""
    name = name.strip()
    if "+" in name:
        parts = [part.strip() for part in name.split("+")]
        if any(not part for part in parts):
            raise ValueError(f'Invalid attack chain "{name}"')
        return ChainAttack(name, [build_attack(part) for part in parts])
    factories = _named_factories()
    if name in factories:
        return factories[name]()
    purification = _purification(name)
    if purification is not None:
        return purification
    match = _JPEG.match(name)
    if match:
        quality = int(match.group(1))
        if not 1 <= quality <= 100:
            raise ValueError(f'JPEG quality of "{name}" must be in 1..100')
        return FunctionAttack(name, lambda x: jpeg_reencode(x, quality))
    match = _DOWN.match(name)
    if match:
        factor = int(match.group(1))
        if factor < 2:
            raise ValueError(f'Downscaling factor of "{name}" must be at least 2')
        return FunctionAttack(name, lambda x: downscale(x, 1.0 / factor))
    raise ValueError(
        f'Unknown attack "{name}": use jpeg<quality>, down<factor>, blur<sigma>, '
        f"median<size>, downup<factor>, noisyup, {', '.join(factories)} or a "
        "chain a+b"
    )


def build_attacks(
    attacks: Union[None, Sequence[Union[str, Attack]], Dict[str, Any]] = None,
) -> Dict[str, Attack]:
    r"""Named attacks, in order, from names, :class:`Attack` objects or a mapping
    ``{name: callable}`` (plain callables become :class:`FunctionAttack`).
    ``None`` gives :data:`DEFAULT_ATTACKS`."""
    if attacks is None:
        attacks = DEFAULT_ATTACKS
    items: List[Tuple[str, Any]]
    if isinstance(attacks, dict):
        items = list(attacks.items())
    else:
        items = [
            (a.name if isinstance(a, Attack) else str(a), a) for a in list(attacks)
        ]
    out: Dict[str, Attack] = {}
    for name, attack in items:
        if name in out:
            raise ValueError(f'Attack "{name}" is given twice')
        if isinstance(attack, Attack):
            out[name] = attack
        elif isinstance(attack, str):
            out[name] = build_attack(attack)
        elif callable(attack):
            out[name] = FunctionAttack(name, attack)
        else:
            raise ValueError(f'Attack "{name}" is neither a name nor a callable')
    return out
