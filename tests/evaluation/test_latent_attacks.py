"""Attackers who hold the model: latent inversions through it."""

from __future__ import annotations

import pytest
import torch

from compressai_psic.evaluation.latent_attacks import (
    LATENT_MODES,
    LatentInversionAttack,
    latent_attacks_for,
)
from compressai_psic.models.keys import ShieldKey
from compressai_psic.zoo import load_named


def shielded():
    """The shipped demo codec (trained: a random model's fits diverge)."""
    model = load_named("demo-psic", progress=False).eval()
    model.update(force=True)
    return model


def decodes(model, key=None):
    from compressai_psic.datasets import SceneCaptions
    from compressai_psic.io.images import pil_to_tensor

    data = SceneCaptions("test", num_samples=3, image_size=64)
    x = torch.cat([pil_to_tensor(data.load_image(i)) for i in range(3)])
    with torch.no_grad():
        out = model.compress(x)
        extra = {} if key is None else {"key": key}
        protected, full = model.decompress_multi(out["strings"], out["shape"], **extra)[
            "x_hat"
        ]
    return (protected * 255).round() / 255, full


def test_the_public_trigger_inversion_gives_the_full_decode_back():
    model = shielded()
    protected, full = decodes(model)
    attack = LatentInversionAttack(model, "public", steps=60, learning_rate=0.05)
    with torch.inference_mode():  # as in a report: the attack turns autograd on
        restored = attack(protected)
    before = (protected - full).pow(2).mean()
    after = (restored - full).pow(2).mean()
    assert after < 0.25 * before
    info = attack.describe()
    assert info["mode"] == "public" and info["steps"] == 60
    assert info["seconds_per_image"] is not None and info["fit_mse"] < before
    assert all(p.requires_grad for p in model.parameters())  # left as found


def test_a_keyed_decode_fitted_through_the_full_path_stays_protected():
    model = shielded()
    torch.manual_seed(0)
    model.make_keyed(noise_channels=4, hidden=8)
    with torch.no_grad():
        model.key_shift.net[-1].weight.mul_(100)
    key = ShieldKey(bytes(32))
    protected, full = decodes(model, key)
    attack = LatentInversionAttack(model, "full-path", steps=40)
    restored = attack(protected)
    # The fit explains the published image: nothing is left to remove.
    to_published = (restored - protected).pow(2).mean()
    to_full = (restored - full).pow(2).mean()
    assert (protected - full).pow(2).mean() > 1e-4  # the shift changes the image
    assert to_published < 0.2 * to_full
    own = latent_attacks_for(model, steps=2, starts=2)["latent-own-key"](protected)
    assert own.shape == protected.shape


@pytest.mark.parametrize("mode", ["free-trigger", "free-modulation"])
@pytest.mark.parametrize("start", ["zero", "random"])
def test_searches_of_the_modulation_space_fit_the_published_image(mode, start):
    model = shielded()
    protected, _ = decodes(model)
    attack = LatentInversionAttack(model, mode, steps=30, start=start, starts=2)
    restored = attack(protected)
    assert restored.shape == protected.shape
    assert attack.last_fit_mse < 1e-2  # 20 dB; a random start begins far off
    assert attack.name == f"latent-{mode}" + ("-random" if start == "random" else "")


def test_modes_the_model_does_not_have_are_refused():
    model = shielded()
    for bad in ({"mode": "guess"}, {"mode": "public", "start": "middle"}):
        with pytest.raises(ValueError, match="Invalid"):
            LatentInversionAttack(model, **bad)
    with pytest.raises(ValueError, match="keyed model"):
        LatentInversionAttack(model, "own-key")
    with pytest.raises(ValueError, match="at least 1"):
        LatentInversionAttack(model, "public", steps=0)
    model.make_keyed(4, 8)
    with pytest.raises(ValueError, match="no public trigger"):
        LatentInversionAttack(model, "public")
    assert set(LATENT_MODES) == {
        "public",
        "full-path",
        "free-trigger",
        "free-modulation",
        "own-key",
        "free-key",
    }


def test_every_search_a_model_admits_is_in_the_report():
    unkeyed = latent_attacks_for(shielded(), steps=1)
    assert list(unkeyed) == [
        "latent-public",
        "latent-full-path",
        "latent-free-trigger",
        "latent-free-trigger-random",
        "latent-free-modulation",
        "latent-free-modulation-random",
    ]
    model = shielded()
    model.make_keyed(4, 8)
    keyed = latent_attacks_for(model, steps=1, starts=3)
    assert "latent-public" not in keyed
    assert {"latent-own-key", "latent-free-key", "latent-free-key-random"} <= set(keyed)
    assert keyed["latent-free-key-random"].starts == 3
    assert keyed["latent-free-key"].starts == 1
    assert not any(a.on_full for a in keyed.values())
