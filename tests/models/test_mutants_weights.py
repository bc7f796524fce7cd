"""Tests written for mutants of ``compressai_psic.models.weights`` and
``compressai_psic.models.upgrade`` that the other tests let survive (mutation
testing with mutmut, see tools/mutation.sh): each asserts a behaviour the mutated
code would break."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
from compressai.models import CompressionModel

import compressai_psic as psic
from compressai_psic.models import (
    InjectionPoint,
    PSICHyperprior,
    ShieldedFactorizedPrior,
    ShieldedMixin,
)
from compressai_psic.models.weights import _modulation_from_shapes

from .helpers import perturb_triggers


def _factorized(**kwargs):
    torch.manual_seed(0)
    return ShieldedFactorizedPrior(N=8, M=12, trigger_dim=4, **kwargs).eval()


class _Odd(nn.Module):
    """A module (not an EntropyBottleneck) whose parameter is named like the
    CompressAI 1.2.6 entropy-bottleneck weights (``_bias0``)."""

    def __init__(self):
        super().__init__()
        self._bias0 = nn.Parameter(torch.zeros(2))


class _Tiny(CompressionModel):
    """A Ballé-style codec (``g_a.0``/``g_a.6`` give N and M) whose ``g_s`` has a
    ReLU, a layer whose channels cannot be inferred."""

    def __init__(self, N: int = 4, M: int = 6):
        super().__init__()
        self.g_a = nn.Sequential(
            nn.Conv2d(3, N, 1), *[nn.Identity() for _ in range(5)], nn.Conv2d(N, M, 1)
        )
        self.g_s = nn.Sequential(nn.Conv2d(M, N, 1), nn.ReLU(), nn.Conv2d(N, 3, 1))
        self.odd = _Odd()


# -------------------------------------------------------------------- weights
def test_load_state_dict_is_strict_unless_told_otherwise():
    net = _factorized()
    partial = {k: v for k, v in net.state_dict().items() if "g_a.0" not in k}
    with pytest.raises(RuntimeError, match="Missing key"):
        net.load_state_dict(partial)
    with pytest.raises(RuntimeError, match="Missing key"):
        net.load_state_dict(partial, strict=True)
    result = net.load_state_dict(partial, strict=False)
    assert "g_a.0.weight" in result.missing_keys


def test_only_entropy_bottlenecks_are_renamed_on_load():
    torch.manual_seed(0)
    net = psic.shield(_Tiny(), injection_points=["g_s.0"])
    with torch.no_grad():
        net.odd._bias0.fill_(3.0)
    state = net.state_dict()
    assert "odd._bias0" in state
    again = psic.shield(_Tiny(), injection_points=["g_s.0"])
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
    net = _factorized()
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
    net = _factorized(plan="late", modulation="affine")
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
        _Tiny(), injection_points=[InjectionPoint("g_s.1", 4)], modulation=modulation
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
        _Tiny(), injection_points=[InjectionPoint("g_s.1", 4)], modulation="affine"
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


# -------------------------------------------------------------------- upgrade
class _Scaled(_Tiny):
    """A codec with a parameter and buffers of its own (not in a submodule)."""

    def __init__(self, N: int = 4, M: int = 6):
        super().__init__(N, M)
        self.gain = nn.Parameter(torch.full((1,), 2.0))
        self.register_buffer("offset", torch.full((1,), 0.5))


class _Empty(CompressionModel):
    """A codec without parameters."""

    def __init__(self):
        super().__init__()
        self.g_s = nn.Sequential(nn.Identity(), nn.Identity())


class _ParameterFreeEncoder(psic.models.conditions.ConditionEncoder):
    """β itself as the trigger: an encoder with no ``fourier``."""

    trigger_dim = 1

    def condition_values(self, condition, batch_size, device, dtype=torch.float32):
        values = torch.as_tensor(condition, dtype=dtype, device=device)
        return values.reshape(-1).expand(batch_size)

    def forward(self, values):
        return values.reshape(-1, 1)


def test_shield_and_unshield_keep_the_model_s_own_parameters_and_buffers():
    base = _Scaled()
    shielded = psic.shield(base, injection_points=["g_s.0"])
    assert torch.equal(shielded.gain, base.gain) and shielded.gain is not base.gain
    assert torch.equal(shielded.offset, base.offset)
    assert {"gain", "offset"} <= set(shielded.state_dict())
    again = psic.unshield(shielded)
    assert type(again) is _Scaled
    assert torch.equal(again.gain, base.gain) and torch.equal(again.offset, base.offset)
    assert set(again.state_dict()) == set(base.state_dict())


def test_adopt_copies_the_mode():
    from compressai_psic.models.upgrade import _adopt, shielded_class

    cls = shielded_class(_Tiny)
    assert _adopt(cls, _Tiny().eval()).training is False
    assert _adopt(cls, _Tiny().train()).training is True


def test_a_model_without_parameters_can_be_shielded():
    shielded = psic.shield(_Empty(), injection_points=[InjectionPoint("g_s.0", 3)])
    assert shielded.injection_points == [InjectionPoint("g_s.0", 3)]
    assert shielded.global_cond.trigger_dim == 512


def test_replanning_a_model_whose_encoder_has_no_fourier_features():
    torch.manual_seed(0)
    net = psic.shield(
        _Tiny(), injection_points=["g_s.0"], condition_encoder=_ParameterFreeEncoder()
    )
    replanned = psic.shield(net, injection_points=["g_s.0", "g_s.2"])
    assert [p.target for p in replanned.injection_points] == ["g_s.0", "g_s.2"]
    assert isinstance(replanned.global_cond, _ParameterFreeEncoder)


def test_replanning_without_changes_gives_an_independent_copy():
    net = _factorized()
    perturb_triggers(net)
    same = psic.shield(net)
    for point in net.injection_points:
        ours, theirs = (
            same.trigger_proj[point.key].weight,
            net.trigger_proj[point.key].weight,
        )
        assert ours is not theirs and torch.equal(ours, theirs)
    assert same.g_s is not net.g_s and same.global_cond is not net.global_cond
    with torch.no_grad():
        same.trigger_proj["g_s-0"].weight.add_(1.0)
    assert not torch.equal(
        same.trigger_proj["g_s-0"].weight, net.trigger_proj["g_s-0"].weight
    )


def test_changing_the_modulation_keeps_the_plan_and_copies_the_encoder():
    late = _factorized(plan="late")
    perturb_triggers(late)
    affine = psic.shield(late, modulation="affine")
    assert affine.plan == "late"
    assert affine.injection_points == [
        InjectionPoint("g_s.4", 8),
        InjectionPoint("g_s.5", 8),
    ]
    new = dict(affine.global_cond.named_parameters())
    for name, param in late.global_cond.named_parameters():
        assert new[name] is not param and torch.equal(new[name], param)
    with torch.no_grad():
        affine.global_cond.beta_mlp.fc1.weight.add_(1.0)
    assert not torch.equal(
        affine.global_cond.beta_mlp.fc1.weight, late.global_cond.beta_mlp.fc1.weight
    )


def test_replanning_keeps_the_points_after_a_new_one():
    late = _factorized(plan="late")
    perturb_triggers(late)
    replanned = psic.shield(late, injection_points=["g_s.3", "g_s.5"])
    assert [p.target for p in replanned.injection_points] == ["g_s.3", "g_s.5"]
    assert torch.equal(replanned.trigger_proj["g_s-3"].weight, torch.zeros(8, 4))
    assert torch.equal(
        replanned.trigger_proj["g_s-5"].weight, late.trigger_proj["g_s-5"].weight
    )


def test_an_automatic_architecture_records_its_model_class():
    from compressai_psic.models.upgrade import shielded_class

    class _Fresh(_Tiny):  # a class no earlier call has shielded (cached)
        pass

    arch = shielded_class(_Fresh)._psic_architecture
    assert arch.model_class is _Fresh
    assert arch.name.endswith("_Fresh") and arch.shielded_class.__name__ == (
        "Shielded_Fresh"
    )


class _Twice(_Tiny):
    """A codec registered under two architectures."""


class ShieldedTwiceFirst(ShieldedMixin, _Twice):
    pass


class ShieldedTwiceSecond(ShieldedMixin, _Twice):
    pass


def test_unpickling_rebuilds_the_class_of_the_model_s_own_architecture(registries):
    import pickle

    from compressai_psic.models.upgrade import rebuild_dynamic

    register = psic.models.register_architecture
    first = register("twice-first", plans={"a": ["g_s.0"]})(ShieldedTwiceFirst)
    second = register("twice-second", plans={"a": ["g_s.2"]})(ShieldedTwiceSecond)
    torch.manual_seed(0)
    for cls in (first, second):
        net = cls()
        again = pickle.loads(pickle.dumps(net))
        assert type(again) is cls and again.injection_points == net.injection_points
    # A class built at run time (a model shielded without registration) is
    # rebuilt from its base class.
    auto = psic.shielded_class(_Tiny)
    assert type(rebuild_dynamic(_Tiny, auto._psic_architecture.name)) is auto


def test_shield_puts_the_new_weights_on_the_model_s_device():
    base = _Tiny().to("meta")
    shielded = psic.shield(base, injection_points=["g_s.0"])
    assert all(p.is_meta for p in shielded.global_cond.parameters())
    assert all(p.is_meta for p in shielded.trigger_proj.parameters())
    assert shielded.g_s[0].weight.is_meta
