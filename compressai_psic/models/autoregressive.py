r"""The autoregressive models' ``y`` decoded without reading past its string.

CompressAI's ``mbt2018`` (Minnen et al., NeurIPS 2018) and ``cheng2020-*``
(Cheng et al., CVPR 2020) decode ``y`` one position at a time: the context
model reads the symbols decoded so far, the entropy parameters give the tables
of the next position's channels, and a ``RansDecoder`` of the model's own,
made inside ``_decompress_ar``, decodes them. That decoder has no end-of-buffer
check, so :mod:`~compressai_psic.models.guard` had to pad ``y``'s string by the
worst case (76 bytes per symbol).

:class:`BoundedAutoregressiveDecoding` runs the same loop with the bounded
decoder of :mod:`~compressai_psic.models.rans` and reports the string's
:class:`~compressai_psic.models.rans.StreamCheck` like the entropy models do
(:mod:`~compressai_psic.models.symbols`)::

    for each position (h, w), in raster order:
        context = masked 5x5 conv of y_hat around (h, w)
        scales, means = entropy_parameters([h_s params at (h, w), context])
        y_hat[h, w] = dequantize(decoder.decode_stream(tables(scales)), means)

Where the C extension was not built it defers to CompressAI's loop (and the
guard pads).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import rans, symbols

__all__ = ["BoundedAutoregressiveDecoding"]


class BoundedAutoregressiveDecoding:
    """Mixin for a CompressAI model with a context model
    (:class:`~compressai.models.JointAutoregressiveHierarchicalPriors` and its
    subclasses): its ``_decompress_ar`` reads ``y``'s string in bounds.

    Put it after :class:`~compressai_psic.models.ShieldedMixin` and before the
    CompressAI class. The loop is CompressAI's, term for term, so the decoded
    latents are identical.
    """

    def _decompress_ar(
        self,
        y_string: bytes,
        y_hat: Tensor,
        params: Tensor,
        height: int,
        width: int,
        kernel_size: int,
        padding: int,
    ) -> None:
        if not rans.available():
            super()._decompress_ar(  # type: ignore[misc]
                y_string, y_hat, params, height, width, kernel_size, padding
            )
            return
        gaussian = self.gaussian_conditional  # type: ignore[attr-defined]
        # The tables once, as arrays: the decoder reads them without conversion.
        cdfs = gaussian.quantized_cdf.cpu().numpy()
        lengths = gaussian.cdf_length.cpu().numpy()
        offsets = gaussian.offset.cpu().numpy()
        context = self.context_prediction  # type: ignore[attr-defined]
        decoder = rans.BoundedRansDecoder()
        decoder.set_stream(y_string)
        for h in range(height):
            for w in range(width):
                window = y_hat[:, :, h : h + kernel_size, w : w + kernel_size]
                context_params = F.conv2d(window, context.weight, bias=context.bias)
                hyper_params = params[:, :, h : h + 1, w : w + 1]
                gaussian_params = self.entropy_parameters(  # type: ignore[attr-defined]
                    torch.cat((hyper_params, context_params), dim=1)
                )
                scales, means = gaussian_params.chunk(2, 1)
                indexes = gaussian.build_indexes(scales).reshape(-1).cpu().numpy()
                values = decoder.decode_stream(indexes, cdfs, lengths, offsets)
                # dequantize makes the integers floats of the means' type; on
                # the means' device (CompressAI's loop leaves them on the CPU,
                # which fails beside a model on a GPU).
                symbols_hat = torch.from_numpy(values).reshape(1, -1, 1, 1)
                decoded = gaussian.dequantize(symbols_hat.to(means.device), means)
                row, column = h + padding, w + padding
                y_hat[:, :, row : row + 1, column : column + 1] = decoded
        symbols.report_stream(decoder.check())
