"""``compressai_psic.models.weights``: loading and saving state dicts
(strictness, renames of older layouts), ``from_state_dict`` and the modulation
the weights record."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch

import compressai_psic as psic
from compressai_psic.models import (
    InjectionPoint,
    PSICHyperprior,
    ShieldedFactorizedPrior,
    unshield,
)
from compressai_psic.models.conditions import (
    FourierConditionEncoder,
)
from compressai_psic.models.weights import _modulation_from_shapes

from .helpers import (
    TinyReluCodec,
    factorized,
    perturb_triggers,
    tiny_base,
)


def test_loading_weights_of_another_plan_or_modulation_says_how_to_load_them():
    late = factorized(plan="late")
    every = factorized()
    with pytest.raises(ValueError) as info:
        late.load_state_dict(every.state_dict())
    assert str(info.value) == (
        "The weights carry triggers at ['g_s.0', 'g_s.1', 'g_s.2', 'g_s.3', "
        "'g_s.4', 'g_s.5'], this model at ['g_s.4', 'g_s.5'] (plan \"late\"); "
        "build the model from the weights with from_state_dict() or "
        "load_checkpoint()"
    )
    affine = factorized(plan="late", modulation="affine")
    with pytest.raises(ValueError) as info:
        late.load_state_dict(affine.state_dict())
    assert str(info.value) == (
        "The weights' triggers are affine, this model's bias; build the model from "
        "the weights with from_state_dict() or load_checkpoint()"
    )
    # weights without triggers load into any plan (non-strict)
    base = {k: v for k, v in every.state_dict().items() if "trigger_proj" not in k}
    late.load_state_dict(base, strict=False)


def test_affine_weights_without_their_mark_load_into_an_affine_model():
    affine = factorized(plan="late", modulation="affine")
    perturb_triggers(affine)
    legacy = {
        k: v for k, v in affine.state_dict().items() if not k.endswith("_extra_state")
    }
    again = factorized(plan="late", modulation="affine")
    again.load_state_dict(legacy)
    for key in ("g_s-4", "g_s-5"):
        assert torch.equal(
            again.trigger_proj[key].weight, affine.trigger_proj[key].weight
        )
    assert again.state_dict()["trigger_proj.g_s-4._extra_state"] == {
        "modulation": "affine"
    }
    restored = ShieldedFactorizedPrior.from_state_dict(legacy)
    assert restored.modulation == "affine"
    assert restored.injection_points == [
        InjectionPoint("g_s.4", 8),
        InjectionPoint("g_s.5", 8),
    ]


def test_from_state_dict_reads_the_trigger_width_and_frequencies():
    torch.manual_seed(0)
    net = ShieldedFactorizedPrior(N=8, M=12, trigger_dim=6, num_frequencies=3)
    restored = ShieldedFactorizedPrior.from_state_dict(net.state_dict())
    assert restored.global_cond.trigger_dim == 6
    assert restored.global_cond.fourier.num_frequencies == 3
    assert restored.plan == "every-stage" and restored.modulation == "bias"
    # arguments win over what the weights say
    torch.manual_seed(0)
    late_net = ShieldedFactorizedPrior(N=8, M=12, trigger_dim=6, plan="late")
    late = ShieldedFactorizedPrior.from_state_dict(late_net.state_dict(), plan="late")
    assert late.plan == "late" and late.global_cond.trigger_dim == 6
    encoder = FourierConditionEncoder(6, 3)
    own = ShieldedFactorizedPrior.from_state_dict(
        net.state_dict(), condition_encoder=encoder
    )
    assert own.global_cond is encoder
    # The official model's blocks project the trigger too: they keep the
    # written weights when an encoder of one's own replaces theirs.
    official = PSICHyperprior(N=8, M=12, trigger_dim=4, num_frequencies=3)
    mine = FourierConditionEncoder(4, 3)
    rebuilt = PSICHyperprior.from_state_dict(
        official.state_dict(), condition_encoder=mine
    )
    assert rebuilt.global_cond is mine
    for key, value in official.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key


def test_the_official_layout_renames_its_keys_with_any_prefix():
    net = PSICHyperprior(N=8, M=12, trigger_dim=4)
    keys = list(net.state_dict())
    assert any(k.startswith("g_s_cond.synthesis_transform.") for k in keys)
    assert not any(k.startswith("g_s.") for k in keys)
    prefixed = net.state_dict(prefix="net.")
    assert list(prefixed) == ["net." + k for k in keys]
    positional = net.state_dict(None, "net.")
    assert list(positional) == list(prefixed)


def test_modulation_from_shapes_of_files_without_the_mark():
    from compressai_psic.models.weights import _modulation_from_shapes

    config = {"N": 8, "M": 12, "trigger_dim": 4}
    assert _modulation_from_shapes(ShieldedFactorizedPrior, config, {"g_s.4": 16})
    assert (
        _modulation_from_shapes(ShieldedFactorizedPrior, config, {"g_s.4": 16})
        == "affine"
    )
    assert (
        _modulation_from_shapes(ShieldedFactorizedPrior, config, {"g_s.4": 8}) == "bias"
    )
    both = {"g_s.4": 16, "g_s.5": 8}
    assert _modulation_from_shapes(ShieldedFactorizedPrior, config, both) == "bias"
    assert (
        _modulation_from_shapes(ShieldedFactorizedPrior, config, {"g_s.4": 7}) == "bias"
    )
    bad = {"N": 8}  # no model can be built: the constructor's own error
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        _modulation_from_shapes(ShieldedFactorizedPrior, bad, {"g_s.4": 16})


def test_load_state_dict_is_strict_unless_told_otherwise():
    net = factorized()
    partial = {k: v for k, v in net.state_dict().items() if "g_a.0" not in k}
    with pytest.raises(RuntimeError, match="Missing key"):
        net.load_state_dict(partial)
    with pytest.raises(RuntimeError, match="Missing key"):
        net.load_state_dict(partial, strict=True)
    result = net.load_state_dict(partial, strict=False)
    assert "g_a.0.weight" in result.missing_keys


def test_only_entropy_bottlenecks_are_renamed_on_load():
    torch.manual_seed(0)
    net = psic.shield(TinyReluCodec(), injection_points=["g_s.0"])
    with torch.no_grad():
        net.odd._bias0.fill_(3.0)
    state = net.state_dict()
    assert "odd._bias0" in state
    again = psic.shield(TinyReluCodec(), injection_points=["g_s.0"])
    again.load_state_dict(state)  # strict: odd._bias0 is kept as it is
    assert torch.equal(again.odd._bias0, torch.full((2,), 3.0))


def test_state_dict_with_a_positional_destination_keeps_the_official_names():
    net = PSICHyperprior(N=8, M=12, trigger_dim=4)
    destination = OrderedDict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates positional arguments
        state = net.state_dict(destination)
    assert list(state) == list(net.state_dict())
    assert any(k.startswith("g_s_cond.synthesis_transform.") for k in state)


def test_from_state_dict_gives_integer_frequencies():
    torch.manual_seed(0)
    net = ShieldedFactorizedPrior(N=8, M=12, trigger_dim=6, num_frequencies=3)
    restored = ShieldedFactorizedPrior.from_state_dict(net.state_dict())
    frequencies = restored.global_cond.fourier.num_frequencies
    assert type(frequencies) is int and frequencies == 3


def test_from_state_dict_without_encoder_weights_names_what_is_missing():
    net = factorized()
    state = {k: v for k, v in net.state_dict().items() if "global_cond" not in k}
    with pytest.raises(RuntimeError, match="global_cond.beta_mlp.fc1.weight"):
        ShieldedFactorizedPrior.from_state_dict(state)


def test_from_state_dict_of_the_official_layout_adds_biases_only():
    torch.manual_seed(0)
    net = PSICHyperprior(N=8, M=12, trigger_dim=4)
    restored = PSICHyperprior.from_state_dict(net.state_dict())
    assert restored.modulation == "bias"
    assert restored.global_cond.trigger_dim == 4
    for key, value in net.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value)


def test_from_state_dict_of_affine_weights_told_they_are_affine():
    net = factorized(plan="late", modulation="affine")
    perturb_triggers(net)
    restored = ShieldedFactorizedPrior.from_state_dict(
        net.state_dict(), modulation="affine"
    ).eval()
    assert restored.modulation == "affine"
    assert restored.injection_points == net.injection_points
    assert restored.injection_points == [
        InjectionPoint("g_s.4", 8),
        InjectionPoint("g_s.5", 8),
    ]
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(restored(x)["x_hat"], net(x)["x_hat"])


@pytest.mark.parametrize("modulation", ["bias", "affine"])
def test_from_state_dict_keeps_the_channels_the_weights_give(modulation):
    # g_s.1 is a ReLU: its channels come from the projection's rows only
    torch.manual_seed(0)
    net = psic.shield(
        TinyReluCodec(),
        injection_points=[InjectionPoint("g_s.1", 4)],
        modulation=modulation,
    ).eval()
    perturb_triggers(net)
    restored = type(net).from_state_dict(net.state_dict()).eval()
    assert restored.modulation == modulation
    assert restored.injection_points == [InjectionPoint("g_s.1", 4)]
    # only entropy bottlenecks are renamed: odd._bias0 keeps its name
    assert torch.equal(restored.odd._bias0, net.odd._bias0)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(restored.g_s(net.g_a(x)), net.g_s(net.g_a(x)))


def test_modulation_from_shapes_of_a_point_the_model_lacks():
    config = {"N": 8, "M": 12, "trigger_dim": 4}
    rows = {"g_s.99": 16}  # the model's own refusal, not a guess
    with pytest.raises(ValueError, match='Injection point "g_s.99" does not exist'):
        _modulation_from_shapes(ShieldedFactorizedPrior, config, rows)


def test_the_modulation_argument_reads_unmarked_weights_the_shapes_cannot():
    # affine weights written before the mark (compressai_psic 0.2) at a ReLU: the
    # shapes cannot tell bias from affine, modulation="affine" does
    torch.manual_seed(0)
    net = psic.shield(
        TinyReluCodec(),
        injection_points=[InjectionPoint("g_s.1", 4)],
        modulation="affine",
    ).eval()
    perturb_triggers(net)
    legacy = {
        k: v for k, v in net.state_dict().items() if not k.endswith("_extra_state")
    }
    assert legacy["trigger_proj.g_s-1.weight"].shape[0] == 8
    restored = type(net).from_state_dict(legacy, modulation="affine").eval()
    assert restored.modulation == "affine"
    assert restored.injection_points == [InjectionPoint("g_s.1", 4)]
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(restored.g_s(net.g_a(x)), net.g_s(net.g_a(x)))


def test_modulation_is_restored_from_the_weights_and_converted(hyperprior, image):
    affine = psic.shield(hyperprior, modulation="affine")
    with torch.no_grad():
        # bias weights carried over, scales zero: the same decode
        assert torch.equal(affine(image)["x_hat"], hyperprior(image)["x_hat"])
    perturb_triggers(affine, seed=4)
    restored = type(affine).from_state_dict(affine.state_dict()).eval()
    assert restored.modulation == "affine" and restored.plan == "every-stage"
    with torch.no_grad():
        assert torch.equal(restored(image)["x_hat"], affine(image)["x_hat"])
        assert torch.equal(
            restored(image, "full")["x_hat"], unshield(affine)(image)["x_hat"]
        )
    with pytest.raises(ValueError, match="'bias', 'affine'"):
        psic.shield(tiny_base("mbt2018-mean"), modulation="gain")
