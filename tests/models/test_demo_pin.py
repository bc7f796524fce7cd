r"""The shipped demo codec (``demo-psic``) decodes what it decoded when pinned.

``tests/data/demo_pin.pt`` holds three fixed 64×64 inputs, the sha256 of every
bitstream string ``model.compress`` makes of them, and their decodes on the
protected path, at β = 0.5 and on the full path (uint8, ``round(255·x̂)``), all
through the public API. Bitstreams must match exactly; every decoded pixel must
round to its pinned value (within 1e-5 of the rounding boundary, for float
differences between CPUs), so a change to the trigger math (the anchor
``t(β) − t(0)``, the Fourier features, the projections) or to the weights fails.

Regenerate after a deliberate change of the decodes (and say so in
CHANGELOG.md)::

    python tools/pin_demo_decodes.py
"""

from __future__ import annotations

import pytest
import torch

from compressai_psic.zoo import DEMO_CODEC, load_named, manifest_entry
from tools import pin_demo_decodes

#: How far a decoded pixel may be from its pinned uint8 value, on [0, 1]: half a
#: level (rounding) plus float noise.
TOLERANCE = 0.5 / 255 + 1e-5


@pytest.fixture(scope="module")
def pin():
    return pin_demo_decodes.load_pin()


@pytest.fixture(scope="module")
def recomputed(pin):
    return pin_demo_decodes.compute_pin(load_named(DEMO_CODEC), pin["inputs"])


def test_the_pin_is_of_the_shipped_codec(pin):
    assert pin["format"] == pin_demo_decodes.FORMAT
    assert pin["model"] == DEMO_CODEC
    assert pin["weights_sha256"] == manifest_entry(name=DEMO_CODEC)["sha256"]
    assert pin["conditions"] == [str(c) for c in pin_demo_decodes.CONDITIONS]
    assert pin["inputs"].dtype == torch.uint8
    assert pin["inputs"].shape == (3, 3, 64, 64)
    assert pin["decodes"].shape == (3, len(pin["conditions"]), 3, 64, 64)


def test_the_inputs_are_regenerated_identically(pin):
    assert torch.equal(pin_demo_decodes.pin_inputs(), pin["inputs"])


def test_bitstreams_are_unchanged(pin, recomputed):
    assert recomputed["shapes"] == pin["shapes"]
    assert recomputed["strings_sha256"] == pin["strings_sha256"]


@pytest.mark.parametrize("index", range(len(pin_demo_decodes.CONDITIONS)))
def test_decodes_are_unchanged(pin, recomputed, index):
    condition = pin_demo_decodes.CONDITIONS[index]
    pinned = pin["decodes"][:, index].to(torch.float32) / 255
    decoded = recomputed["decodes_float"][:, index]
    worst = (decoded - pinned).abs().max().item()
    assert worst <= TOLERANCE, f"{condition}: max |x̂ − pin| = {worst:.6f}"


def test_the_pinned_paths_differ(pin):
    # Otherwise the pin could not tell a broken trigger from a working one.
    decodes = pin["decodes"].to(torch.float32)
    for a in range(decodes.size(1)):
        for b in range(a + 1, decodes.size(1)):
            assert (decodes[:, a] - decodes[:, b]).abs().mean() > 1.0
