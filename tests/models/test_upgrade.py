"""``compressai_psic.models.upgrade``: ``shield``, ``unshield``, re-planning a
shielded model, classes built at run time, pickling and copies."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
import torch.nn as nn
from compressai.models import (
    CompressionModel,
    FactorizedPrior,
    ScaleHyperprior,
)

import compressai_psic as psic
from compressai_psic.models import (
    InjectionPoint,
    PSICHyperprior,
    PSICHyperpriorBase,
    ShieldedFactorizedPrior,
    ShieldedMixin,
    unshield,
)
from compressai_psic.models.conditions import (
    FourierConditionEncoder,
)

from .helpers import (
    EXPECTED_PLANS,
    PicklableCodec,
    TinyReluCodec,
    factorized,
    perturb_triggers,
    tiny_base,
)


class _Scaled(TinyReluCodec):
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


class _EncoderWithoutFourier(psic.models.conditions.ConditionEncoder):
    """β itself as the trigger: an encoder with no ``fourier``."""

    trigger_dim = 1

    def condition_values(self, condition, batch_size, device, dtype=torch.float32):
        values = torch.as_tensor(condition, dtype=dtype, device=device)
        return values.reshape(-1).expand(batch_size)

    def forward(self, values):
        return values.reshape(-1, 1)


class _Twice(TinyReluCodec):
    """A codec registered under two architectures."""


class ShieldedTwiceFirst(ShieldedMixin, _Twice):
    pass


class ShieldedTwiceSecond(ShieldedMixin, _Twice):
    pass


def test_unshield_and_shield_refuse_what_they_cannot_do():
    with pytest.raises(ValueError) as info:
        psic.unshield(FactorizedPrior(N=8, M=12))
    assert str(info.value) == "FactorizedPrior is not a shielded model"
    with pytest.raises(ValueError) as info:
        psic.unshield(PSICHyperprior(N=8, M=12, trigger_dim=4))
    assert str(info.value) == (
        "psic-hy2018 has no unconditional base model: its synthesis blocks take "
        "the trigger themselves"
    )
    with pytest.raises(ValueError) as info:
        psic.shield(nn.Linear(2, 2))
    assert str(info.value) == "shield() takes a compressai CompressionModel, got Linear"


def test_unshield_keeps_the_base_state_and_mode():
    net = factorized()
    net.train()
    base = psic.unshield(net)
    assert type(base) is FactorizedPrior and base.training
    assert not any(k.startswith("_psic_") for k in vars(base))
    assert "global_cond" not in base._modules and "trigger_proj" not in base._modules
    assert type(base.g_s) is nn.Sequential
    assert set(base.state_dict()) == {
        k
        for k in net.state_dict()
        if not k.startswith(("global_cond.", "trigger_proj."))
    }
    assert base.g_s[0] is not net.g_s[0]  # a copy
    assert base.entropy_bottleneck is not net.entropy_bottleneck


def test_shield_keeps_mode_device_dtype_and_the_model_itself():
    torch.manual_seed(0)
    base = FactorizedPrior(N=8, M=12).double()
    shielded = psic.shield(base, trigger_dim=6, num_frequencies=2)
    assert shielded.training and base.training
    assert shielded.global_cond.trigger_dim == 6
    assert shielded.global_cond.fourier.num_frequencies == 2
    assert all(p.dtype == torch.float64 for p in shielded.parameters())
    assert not hasattr(base, "global_cond") and type(base.g_s) is nn.Sequential
    assert psic.shield(base.eval()).training is False
    assert psic.shield(base).global_cond.trigger_dim == 512
    assert psic.shield(base).global_cond.fourier.num_frequencies == 10
    official = PSICHyperpriorBase(N=8, M=12, trigger_dim=6)
    assert psic.shield(official).global_cond.trigger_dim == 6
    encoder = FourierConditionEncoder(4, 1)
    assert psic.shield(base, condition_encoder=encoder).global_cond is encoder
    assert psic.shield(base, modulation="affine").modulation == "affine"


def test_replanning_errors_and_conversions():
    net = factorized()
    perturb_triggers(net)
    with pytest.raises(ValueError) as info:
        psic.shield(net, condition_encoder=FourierConditionEncoder(4, 10))
    assert str(info.value) == (
        "This model is already shielded and its condition encoder is trained "
        "weights; to change it, shield the base model: shield(unshield(model), ...)"
    )
    assert psic.shield(net, trigger_dim=4).plan == "every-stage"
    with pytest.raises(ValueError) as info:
        psic.shield(net, num_frequencies=3)
    assert str(info.value) == (
        "This model is already shielded with 10 Fourier frequencies; to change "
        "them, use shield(unshield(model), ...)"
    )
    assert psic.shield(net, num_frequencies=10).plan == "every-stage"
    same = psic.shield(net, modulation="bias")
    assert same is not net and same.plan == "every-stage"
    official = PSICHyperprior(N=8, M=12, trigger_dim=4)
    with pytest.raises(ValueError) as info:
        psic.shield(official, plan="late")
    assert str(info.value) == (
        "psic-hy2018 adds its biases inside its own blocks; it has one plan only "
        "('default')"
    ) or "one plan only" in str(info.value)
    # bias → affine keeps the bias rows, affine → bias gives them back
    affine = psic.shield(net, modulation="affine")
    assert affine.plan == "every-stage"
    for point in net.injection_points:
        weight = affine.trigger_proj[point.key].weight
        assert torch.equal(weight[: point.channels], torch.zeros_like(weight[:8]))
        assert torch.equal(weight[point.channels :], net.trigger_proj[point.key].weight)
    back = psic.shield(affine, modulation="bias")
    for point in net.injection_points:
        assert torch.equal(
            back.trigger_proj[point.key].weight, net.trigger_proj[point.key].weight
        )
    # a new point starts at zero, a kept one keeps its weights
    custom = psic.shield(net, injection_points=["g_s.5", "g_s.6"])
    assert torch.equal(
        custom.trigger_proj["g_s-5"].weight, net.trigger_proj["g_s-5"].weight
    )
    assert torch.equal(custom.trigger_proj["g_s-6"].weight, torch.zeros(3, 4))
    assert custom.global_cond is not net.global_cond
    assert torch.equal(
        custom.global_cond.beta_mlp.fc1.weight, net.global_cond.beta_mlp.fc1.weight
    )


def test_classes_built_at_run_time():
    from compressai_psic.models.upgrade import make_shielded_class, rebuild_dynamic

    class Codec(FactorizedPrior):
        pass

    cls = psic.models.shielded_class(Codec)
    assert psic.models.shielded_class(Codec) is cls
    assert cls.__name__ == "ShieldedCodec"
    assert cls.__module__ == "compressai_psic.models.upgrade"
    assert cls.__bases__ == (psic.models.ShieldedMixin, Codec)
    arch = cls._psic_architecture
    assert arch.name == f"auto:{Codec.__module__}.{Codec.__qualname__}"
    assert arch.shielded_class is cls and arch.default_plan == "auto"
    assert cls._psic_base_class is Codec and cls._psic_dynamic is True
    assert cls.__doc__ == (
        f"Codec with PSIC privacy-shielded decoding (architecture {arch.name!r})."
    )
    assert psic.models.shielded_class(ShieldedFactorizedPrior) is (
        ShieldedFactorizedPrior
    )
    assert psic.models.shielded_class(FactorizedPrior) is ShieldedFactorizedPrior
    with pytest.raises(ValueError) as info:
        psic.models.shielded_class(nn.Linear)
    assert str(info.value) == (
        "Linear is not a compressai CompressionModel; only CompressionModel "
        "subclasses can be shielded"
    )
    rebuilt = rebuild_dynamic(Codec, arch.name)
    assert type(rebuilt) is cls
    registered = rebuild_dynamic(FactorizedPrior, "bmshj2018-factorized")
    assert type(registered) is ShieldedFactorizedPrior
    other = make_shielded_class(Codec, arch)
    assert rebuild_dynamic(Codec, "bmshj2018-factorized").__class__ is cls
    assert other is not cls and other._psic_rebuild is rebuild_dynamic


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

    cls = shielded_class(TinyReluCodec)
    assert _adopt(cls, TinyReluCodec().eval()).training is False
    assert _adopt(cls, TinyReluCodec().train()).training is True


def test_a_model_without_parameters_can_be_shielded():
    shielded = psic.shield(_Empty(), injection_points=[InjectionPoint("g_s.0", 3)])
    assert shielded.injection_points == [InjectionPoint("g_s.0", 3)]
    assert shielded.global_cond.trigger_dim == 512


def test_replanning_a_model_whose_encoder_has_no_fourier_features():
    torch.manual_seed(0)
    net = psic.shield(
        TinyReluCodec(),
        injection_points=["g_s.0"],
        condition_encoder=_EncoderWithoutFourier(),
    )
    replanned = psic.shield(net, injection_points=["g_s.0", "g_s.2"])
    assert [p.target for p in replanned.injection_points] == ["g_s.0", "g_s.2"]
    assert isinstance(replanned.global_cond, _EncoderWithoutFourier)


def test_replanning_without_changes_gives_an_independent_copy():
    net = factorized()
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
    late = factorized(plan="late")
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
    late = factorized(plan="late")
    perturb_triggers(late)
    replanned = psic.shield(late, injection_points=["g_s.3", "g_s.5"])
    assert [p.target for p in replanned.injection_points] == ["g_s.3", "g_s.5"]
    assert torch.equal(replanned.trigger_proj["g_s-3"].weight, torch.zeros(8, 4))
    assert torch.equal(
        replanned.trigger_proj["g_s-5"].weight, late.trigger_proj["g_s-5"].weight
    )


def test_an_automatic_architecture_records_its_model_class():
    from compressai_psic.models.upgrade import shielded_class

    class _Fresh(TinyReluCodec):  # a class no earlier call has shielded (cached)
        pass

    arch = shielded_class(_Fresh)._psic_architecture
    assert arch.model_class is _Fresh
    assert arch.name.endswith("_Fresh") and arch.shielded_class.__name__ == (
        "Shielded_Fresh"
    )


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
    auto = psic.shielded_class(TinyReluCodec)
    assert type(rebuild_dynamic(TinyReluCodec, auto._psic_architecture.name)) is auto


def test_shield_puts_the_new_weights_on_the_model_s_device():
    base = TinyReluCodec().to("meta")
    shielded = psic.shield(base, injection_points=["g_s.0"])
    assert all(p.is_meta for p in shielded.global_cond.parameters())
    assert all(p.is_meta for p in shielded.trigger_proj.parameters())
    assert shielded.g_s[0].weight.is_meta


@pytest.mark.parametrize("name", [n for n in EXPECTED_PLANS if n != "cheng2020-attn"])
def test_pickle_torch_save_and_deepcopy_round_trip(name, image):
    net = psic.shield(tiny_base(name))
    perturb_triggers(net)
    assert type(net).__module__.startswith("compressai_psic.models.")
    with torch.no_grad():
        expected = net(image)["x_hat"]
        buffer = io.BytesIO()
        torch.save(net, buffer)
        buffer.seek(0)
        copies = [
            pickle.loads(pickle.dumps(net)),
            torch.load(buffer, weights_only=False),
            copy.deepcopy(net),
        ]
        for clone in copies:
            assert type(clone) is type(net)
            assert torch.equal(clone(image)["x_hat"], expected)
            assert torch.equal(
                clone(image, "full")["x_hat"], net(image, "full")["x_hat"]
            )


def test_cheng2020_attn_pickles_as_far_as_compressai_allows():
    # CompressAI's AttentionBlock defines a class inside __init__: the base model
    # does not pickle either. deepcopy works.
    base = tiny_base("cheng2020-attn")
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(base)
    net = psic.shield(base)
    perturb_triggers(net)
    clone = copy.deepcopy(net)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(clone(x)["x_hat"], net(x)["x_hat"])


def test_dynamic_class_of_an_unregistered_model_pickles():
    net = psic.shield(PicklableCodec().eval())
    perturb_triggers(net)
    clone = pickle.loads(pickle.dumps(net))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(clone(x)["x_hat"], net(x)["x_hat"])


def test_shield_of_a_shielded_model_replans_a_copy(hyperprior, image):
    late = psic.shield(hyperprior, plan="late")
    assert late is not hyperprior and late.plan == "late"
    assert hyperprior.plan == "every-stage"
    for key in ("g_s-4", "g_s-5"):
        assert torch.equal(
            late.trigger_proj[key].weight, hyperprior.trigger_proj[key].weight
        )
    same = psic.shield(hyperprior)
    assert same is not hyperprior
    with torch.no_grad():
        assert torch.equal(same(image)["x_hat"], hyperprior(image)["x_hat"])
    with pytest.raises(ValueError, match="unshield"):
        psic.shield(hyperprior, trigger_dim=64)


def test_unshield_gives_the_full_decode_back(hyperprior, image):
    base = unshield(hyperprior)
    assert type(base) is ScaleHyperprior
    assert not any(
        k.startswith(("global_cond", "trigger_proj")) for k in base.state_dict()
    )
    with torch.no_grad():
        assert torch.equal(base(image)["x_hat"], hyperprior(image, "full")["x_hat"])
