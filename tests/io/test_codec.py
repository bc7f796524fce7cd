"""Tests of compressai_psic.io.codec: an image through a model to a ``.psic``
header, and the header of a ``compress`` output."""

from __future__ import annotations

import pytest
import torch

from compressai_psic.errors import DesyncError
from compressai_psic.io import container
from compressai_psic.io.codec import (
    ModelSpec,
    compress_tensor,
    decompress_header,
    header_from_compressed,
)
from compressai_psic.io.container import CHECKSUM_SIZE, PSICFile
from tools._lib.photos import photo_crops

from ..models.helpers import calibrated_zoo_model, tiny_zoo_model


def test_compress_tensor_builds_a_valid_header():
    model = tiny_zoo_model("bmshj2018-factorized")
    spec = ModelSpec("bmshj2018-factorized", 1, "mse", seed=0)
    header = compress_tensor(model, torch.rand(1, 3, 17, 33), spec)
    assert isinstance(header, PSICFile)
    assert header.shape == (2, 3)  # 32x48 after padding, /16
    assert (header.quality, header.metric, header.seed) == (1, "mse", 0)
    data = container.dumps(header)
    assert container.loads(data) == header
    assert len(data) > CHECKSUM_SIZE + header.payload_size()


def test_checkpoints_are_named_by_their_sha256_only():
    model = tiny_zoo_model("bmshj2018-factorized")
    spec = ModelSpec(None, checkpoint="weights.pth.tar")
    header = compress_tensor(model, torch.rand(1, 3, 16, 16), spec, "ab" * 32)
    assert header.architecture == "bmshj2018-factorized"  # from the model
    assert (header.quality, header.metric, header.seed) == (None, None, None)
    assert header.checkpoint_sha256 == "ab" * 32


def test_header_from_compressed_keeps_the_bytes():
    out = {"strings": [[b"y"], [b"zz"]], "shape": torch.Size([2, 3])}
    header = header_from_compressed(out, 20, 30, "mbt2018", 2, "mse")
    assert header.strings == [[b"y"], [b"zz"]] and header.shape == (2, 3)
    assert (header.height, header.width) == (20, 30)


def test_decompress_header_checks_the_symbols():
    """Library users of the container get the check: a drifting hyper-synthesis
    raises DesyncError from decompress_header, a portable file does not drift."""
    x = photo_crops(1, 128)[0]
    model = calibrated_zoo_model("bmshj2018-hyperprior", x)
    spec = ModelSpec("bmshj2018-hyperprior", 1, "mse", seed=0)
    for portable in (False, True):
        header = container.loads(
            container.dumps(compress_tensor(model, x, spec, portable=portable))
        )
        assert header.portable == portable and header.symbols_digest is not None
        (image,) = decompress_header(model, header, ["protected"])
        assert image.shape[-2:] == (128, 128)
        handle = model.h_s.register_forward_hook(lambda m, i, out: out * 1.5)
        try:
            if portable:  # a hook on h_s changes portable outputs too
                with pytest.raises(DesyncError, match="the file is portable"):
                    decompress_header(model, header, ["protected", "full"])
            else:
                with pytest.raises(DesyncError, match="^the decoded latents"):
                    decompress_header(model, header, ["protected"])
        finally:
            handle.remove()
    header = compress_tensor(model, x, spec)
    header.symbols_digest = None
    decompress_header(model, header, ["full"])
