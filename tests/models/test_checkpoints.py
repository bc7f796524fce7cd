"""``compressai_psic.models.checkpoints``: ``guess_architecture`` and
``load_checkpoint`` for the built-in architectures and registered ones."""

from __future__ import annotations

import pytest
import torch
from compressai.models import (
    FactorizedPrior,
)

import compressai_psic as psic
from compressai_psic.models import (
    ShieldedMixin,
    guess_architecture,
    register_architecture,
    unshield,
)
from compressai_psic.models.registry import (
    ARCHITECTURES,
)

from .helpers import (
    EXPECTED_PLANS,
    WideCodec,
    factorized_state,
    perturb_triggers,
    register_toy,
    tiny_base,
    tiny_config,
)


def test_guess_architecture_error_message():
    with pytest.raises(ValueError) as info:
        psic.guess_architecture({"g_a.0.weight": torch.zeros(4, 3, 5, 5)})
    assert str(info.value) == (
        "No registered architecture has these weights; pass architecture=, one "
        f"of {sorted(ARCHITECTURES)}, or register yours with "
        "compressai_psic.register_architecture"
    )


def test_load_checkpoint_reads_the_file_with_map_location(tmp_path):
    path = tmp_path / "base.pth.tar"
    torch.save(factorized_state(), path)
    locations = []

    def map_location(storage, location):
        locations.append(location)
        return storage

    net = psic.load_checkpoint(path, map_location=map_location)
    assert locations and set(locations) == {"cpu"}
    assert isinstance(net, ShieldedMixin)


def test_load_checkpoint_passes_its_keywords_on_for_a_shielded_file(tmp_path):
    from compressai_psic.models.conditions import FourierConditionEncoder

    torch.manual_seed(0)
    net = psic.shield(FactorizedPrior(N=8, M=12), trigger_dim=16, num_frequencies=3)
    path = tmp_path / "shielded.pth.tar"
    torch.save({"state_dict": net.state_dict()}, path)
    encoder = FourierConditionEncoder(16, 3)
    loaded = psic.load_checkpoint(path, condition_encoder=encoder)
    assert loaded.global_cond is encoder
    for name, value in net.global_cond.state_dict().items():
        assert torch.equal(encoder.state_dict()[name], value)


def test_registered_architecture_checkpoint_loads_with_its_config(
    tmp_path, image, registries
):
    @register_architecture(
        "wide-codec",
        plans={"every-stage": ["g_s.0", "g_s.1"], "late": ["g_s.1"]},
        config_from_state_dict=tiny_config,
    )
    class ShieldedWideCodec(psic.ShieldedMixin, WideCodec):
        pass

    net = ShieldedWideCodec(N=6, M=10).eval()
    perturb_triggers(net)
    state = net.state_dict()
    assert guess_architecture(state) == "wide-codec"
    path = tmp_path / "wide.pth.tar"
    torch.save({"state_dict": state}, path)
    loaded = psic.load_checkpoint(path)
    assert type(loaded) is ShieldedWideCodec and loaded.plan == "every-stage"
    with torch.no_grad():
        assert torch.equal(loaded(image)["x_hat"], net(image)["x_hat"])
    base_path = tmp_path / "plain.pth.tar"
    torch.save(unshield(net).state_dict(), base_path)
    upgraded = psic.load_checkpoint(base_path, plan="late")
    assert type(upgraded) is ShieldedWideCodec and upgraded.plan == "late"


@pytest.mark.parametrize("name", list(EXPECTED_PLANS) + ["psic-hy2018"])
def test_guess_architecture_tells_every_builtin_apart(name):
    net = tiny_base(name)
    assert guess_architecture(net.state_dict()) == name
    if name != "psic-hy2018":
        assert guess_architecture(psic.shield(net).state_dict()) == name


def test_guess_architecture_refuses_unknown_weights():
    with pytest.raises(ValueError, match="register"):
        guess_architecture({"g_a.0.weight": torch.zeros(4, 3, 5, 5)})


def test_guess_architecture_chains_the_error_of_a_constructor(registries):
    register_toy(
        "toy-unbuildable",
        FactorizedPrior,
        {"default": ["g_s.0"]},
        config_from_state_dict=lambda sd: {"N": 8, "Q": 1},
    )
    with pytest.raises(ValueError) as info:
        psic.guess_architecture({"g_a.0.weight": torch.zeros(4, 3, 5, 5)})
    message = str(info.value)
    assert message.startswith("No registered architecture has these weights")
    assert "toy-unbuildable could not be built with {'N': 8, 'Q': 1}" in message
    assert "TypeError" in message and "argument: 'M'" in message
    assert isinstance(info.value.__cause__, TypeError)


@pytest.mark.parametrize(
    "error, shown",
    [
        (RuntimeError(), "RuntimeError"),
        (RuntimeError("N too\n  small"), "RuntimeError: N too small"),
    ],
)
def test_guess_architecture_shows_the_error_of_a_constructor_on_one_line(
    registries, error, shown
):
    class Unbuildable(FactorizedPrior):
        def __init__(self, **kwargs):
            raise error

    register_toy(
        "toy-silent",
        Unbuildable,
        {"default": ["g_s.0"]},
        config_from_state_dict=lambda sd: {"N": 8},
    )
    with pytest.raises(ValueError) as info:
        psic.guess_architecture({"g_a.0.weight": torch.zeros(4, 3, 5, 5)})
    assert str(info.value).endswith(
        f". toy-silent could not be built with {{'N': 8}} read from them: {shown}"
    )
    assert info.value.__cause__ is error
