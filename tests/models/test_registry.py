"""``compressai_psic.models.registry``: injection points, the plans of every
architecture (where its biases go), configs read from weights, channel
inference, lookups, model probes and matching weights to architectures."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from compressai.layers import GDN, subpel_conv3x3
from compressai.models import FactorizedPrior

import compressai_psic as psic
from compressai_psic.models import (
    InjectionPoint,
    ShieldedFactorizedPrior,
    get_architecture,
)
from compressai_psic.models.registry import (
    ARCHITECTURES,
    Architecture,
    architectures_matching,
    auto_injection_points,
    infer_channels,
)

from .helpers import (
    EXPECTED_PLANS,
    factorized,
    factorized_state,
    perturb_triggers,
    raises_exactly,
    register_toy,
    tiny_base,
)


def test_injection_point_keys():
    point = InjectionPoint("g_s.1.conv1")
    assert point.key == "g_s-1-conv1" and point.channels is None
    assert InjectionPoint.target_of("g_s-1-conv1") == "g_s.1.conv1"


def test_architecture_plans():
    from compressai_psic.models.registry import Architecture

    calls = []

    def points(model):
        calls.append(model)
        return ["g_s.2", InjectionPoint("g_s.0", 5)]

    def broken(model):
        raise ValueError("not for this model")

    arch = Architecture(
        "toy",
        FactorizedPrior,
        plans={"a": ["g_s.0"], "b": points, "c": broken},
        default_plan="b",
    )
    model = object()
    assert arch.points_for(model) == [
        InjectionPoint("g_s.2"),
        InjectionPoint("g_s.0", 5),
    ]
    assert calls == [model]
    assert arch.points_for(model, "a") == [InjectionPoint("g_s.0")]
    with pytest.raises(ValueError) as info:
        arch.points_for(model, "z")
    assert str(info.value) == (
        "Unknown injection plan \"z\" for toy; use one of ['a', 'b', 'c']"
    )
    assert arch.plan_of(model, ["g_s.0"]) == "a"
    assert arch.plan_of(model, ("g_s.2", "g_s.0")) == "b"
    assert arch.plan_of(model, ["g_s.0", "g_s.2"]) == "custom"
    # defaults of an entry
    plain = Architecture("plain", FactorizedPrior)
    assert plain.default_plan == "every-stage" and plain.anchor_full
    assert not plain.trigger_argument and plain.plans == {}
    assert plain.key_aliases == {} and plain.description == ""
    assert plain.shielded_class is None and plain.config_from_state_dict is None


def test_architecture_config_and_renames():
    from compressai_psic.models.registry import Architecture

    state = {"g_a.0.weight": torch.zeros(7, 3), "g_a.6.weight": torch.zeros(9, 7)}
    arch = Architecture("toy", FactorizedPrior)
    assert arch.config(state) == {"N": 7, "M": 9}
    custom = Architecture(
        "toy",
        FactorizedPrior,
        config_from_state_dict=lambda sd: {"N": len(sd)},
        key_aliases={"g_s.": "dec.", "g_a.": "enc."},
    )
    assert custom.config(state) == {"N": 2}
    assert list(custom.to_internal({"dec.0.w": 1, "enc.0.w": 2, "x": 3})) == [
        "g_s.0.w",
        "g_a.0.w",
        "x",
    ]


def test_rename_prefixes_replaces_the_first_matching_prefix_only():
    from compressai_psic.models.registry import rename_prefixes

    renamed = rename_prefixes(
        {"a.b.c": 1, "b.a": 2, "a.x": 3}, {"a.b.": "z.", "a.": "y.", "b.": "a."}
    )
    assert renamed == {"z.c": 1, "a.a": 2, "y.x": 3}
    assert list(renamed) == ["z.c", "a.a", "y.x"]
    assert rename_prefixes({"ab": 1}, {"b": "c"}) == {"ab": 1}


def test_default_config_needs_both_keys():
    from compressai_psic.models.registry import default_config_from_state_dict

    raises_exactly(
        "Cannot infer N/M: the state dict has no 'g_a.6.weight' key",
        default_config_from_state_dict,
        {"g_a.0.weight": torch.zeros(4, 3)},
    )


def test_infer_channels_of_every_kind_of_layer():
    from compressai.layers import subpel_conv3x3

    from compressai_psic.models.registry import infer_channels

    assert infer_channels(nn.Conv2d(3, 5, 1)) == 5
    assert infer_channels(nn.ConvTranspose2d(3, 6, 1)) == 6
    assert infer_channels(nn.Linear(3, 7)) == 7
    assert infer_channels(GDN(9)) == 9
    assert infer_channels(GDN(9, inverse=True)) == 9
    assert infer_channels(subpel_conv3x3(4, 5, 2)) == 5
    assert infer_channels(nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU())) == 8
    assert infer_channels(nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 2, 1))) == 2
    assert infer_channels(nn.Sequential(nn.ReLU(), nn.PixelShuffle(2))) is None
    assert infer_channels(nn.Sequential()) is None
    assert infer_channels(nn.ReLU()) is None

    class Odd(nn.Module):
        out_channels = "many"
        beta = nn.Parameter(torch.zeros(2, 2))

    assert infer_channels(Odd()) is None

    class Gdnish(nn.Module):
        def __init__(self):
            super().__init__()
            self.beta = nn.Parameter(torch.zeros(4))

    assert infer_channels(Gdnish()) == 4

    class Tensorish(nn.Module):
        beta = torch.zeros(4)

    assert infer_channels(Tensorish()) is None


def test_auto_injection_points():
    from compressai_psic.models.registry import auto_injection_points

    class Model(nn.Module):
        pass

    model = Model()
    model.g_s = nn.Sequential(
        nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 5, 1), nn.Conv2d(5, 3, 1)
    )
    assert auto_injection_points(model) == [
        InjectionPoint("g_s.0", 4),
        InjectionPoint("g_s.2", 5),
    ]
    message = (
        "Model cannot be shielded automatically: its g_s is not an nn.Sequential "
        "of at least two layers; register a shielded class of it with "
        "@compressai_psic.register_architecture(name, plans={...})"
    )
    model.g_s = nn.Sequential(nn.Conv2d(3, 4, 1))
    raises_exactly(message, auto_injection_points, model)
    model.g_s = nn.Conv2d(3, 4, 1)
    raises_exactly(message, auto_injection_points, model)
    raises_exactly(message, auto_injection_points, Model())
    model.g_s = nn.Sequential(nn.ReLU(), nn.Conv2d(3, 4, 1))
    raises_exactly(
        "Model: no layer of g_s has inferable output channels; register it with "
        "explicit InjectionPoint(target, channels)",
        auto_injection_points,
        model,
    )
    model.g_s = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())
    assert auto_injection_points(model) == [InjectionPoint("g_s.0", 4)]


def test_registry_lookups(registries):
    from compressai_psic.models.registry import (
        ARCHITECTURES,
        find_architecture,
    )

    with pytest.raises(ValueError) as info:
        get_architecture("nope")
    assert str(info.value) == (
        f'Unknown architecture "nope"; registered: {sorted(ARCHITECTURES)}'
    )
    factorized = get_architecture("bmshj2018-factorized")
    assert find_architecture(FactorizedPrior) is factorized
    assert find_architecture(ShieldedFactorizedPrior) is factorized
    assert find_architecture(nn.Linear) is None
    newer = register_toy("factorized-again", FactorizedPrior, {"late": ["g_s.4"]})
    assert find_architecture(FactorizedPrior).shielded_class is newer


def test_build_probe():
    from compressai_psic.models.registry import build_probe

    probe = build_probe(
        nn.Conv2d, {"in_channels": 3, "out_channels": 4, "kernel_size": 1}
    )
    assert probe.weight.is_meta
    probe = build_probe(FactorizedPrior, {"N": 8, "M": 12})
    assert probe.g_a[0].weight.shape == (8, 3, 5, 5)
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        build_probe(FactorizedPrior, {"N": 8, "Q": 1})  # the constructor's error

    class NeedsRealTensors(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(2))
            self.weight.data.tolist()  # fails on the meta device

    probe = build_probe(NeedsRealTensors, {})
    assert probe is not None and not probe.weight.is_meta


def test_architectures_matching_compares_names_and_shapes():
    from compressai_psic.models.registry import architectures_matching

    net = factorized()
    state = net.state_dict()
    names = [name for name, _ in architectures_matching(state)]
    assert names[0] == "bmshj2018-factorized"
    assert dict(architectures_matching(state))["bmshj2018-factorized"] == {
        "N": 8,
        "M": 12,
    }
    wrong = dict(state)
    wrong["g_s.0.weight"] = torch.zeros(1)
    assert "bmshj2018-factorized" not in dict(architectures_matching(wrong))
    extra = dict(state, **{"g_s.99.weight": torch.zeros(1)})
    assert "bmshj2018-factorized" not in dict(architectures_matching(extra))
    assert architectures_matching({"x": torch.zeros(1)}) == []


def test_plan_of_skips_a_plan_that_cannot_be_computed_for_the_model():
    class NoSequential(nn.Module):
        def __init__(self):
            super().__init__()
            self.g_s = nn.Conv2d(3, 3, 1)  # auto_injection_points refuses it

    arch = Architecture(
        name="mixed",
        model_class=FactorizedPrior,
        plans={"auto": auto_injection_points, "fixed": ["g_s"]},
    )
    model = NoSequential()
    with pytest.raises(ValueError):
        arch.points_for(model, "auto")
    assert arch.plan_of(model, ["g_s"]) == "fixed"
    assert arch.plan_of(model, ["g_s.0"]) == "custom"


def test_infer_channels_of_a_one_layer_sequential():
    assert infer_channels(nn.Sequential(nn.Conv2d(3, 8, 1))) == 8
    assert infer_channels(nn.Sequential(nn.Linear(2, 6))) == 6


def test_infer_channels_after_pixel_shuffle_is_an_integer():
    channels = infer_channels(subpel_conv3x3(4, 5, 2))
    assert channels == 5 and type(channels) is int
    # Channels are counted in whole numbers (6 // 4), never 1.5.
    odd = nn.Sequential(nn.Conv2d(3, 6, 1), nn.PixelShuffle(2))
    assert infer_channels(odd) == 1 and type(infer_channels(odd)) is int
    # What it is for: a projection layer of that many channels.
    model = nn.Module()
    model.g_s = nn.Sequential(subpel_conv3x3(4, 5, 2), nn.ReLU())
    point = auto_injection_points(model)[0]
    assert point == InjectionPoint("g_s.0", 5) and type(point.channels) is int


def test_architectures_matching_goes_on_after_a_model_it_cannot_build(registries):
    state = factorized_state()
    assert "bmshj2018-factorized" in dict(architectures_matching(state))

    # The newest registration reads a config its model class cannot be built
    # from (its constructor raises): the older architectures are still asked.
    register_toy(
        "toy-unbuildable",
        FactorizedPrior,
        {"default": ["g_s.0"]},
        config_from_state_dict=lambda sd: {"N": 8, "Q": 1},
    )
    assert list(ARCHITECTURES)[-1] == "toy-unbuildable"
    matches = dict(architectures_matching(state))
    assert "toy-unbuildable" not in matches
    assert matches["bmshj2018-factorized"] == {"N": 8, "M": 12}
    assert psic.guess_architecture(state) == "bmshj2018-factorized"


@pytest.mark.parametrize("name", list(EXPECTED_PLANS))
def test_plans_put_biases_where_documented(name, image):
    base = tiny_base(name)
    for plan, targets in EXPECTED_PLANS[name].items():
        net = psic.shield(base, plan=plan)
        assert net.plan == plan
        assert [p.target for p in net.injection_points] == targets
        assert list(net.trigger_proj) == [t.replace(".", "-") for t in targets]
        with torch.no_grad():
            enc = base.compress(image)
            ref = base.decompress(enc["strings"], enc["shape"])["x_hat"]
            for condition in ("protected", "full"):
                out = net.decompress(enc["strings"], enc["shape"], condition)
                assert torch.equal(out["x_hat"], ref)  # exact at creation


@pytest.mark.parametrize("name", ["bmshj2018-hyperprior", "cheng2020-anchor"])
def test_every_point_of_the_default_plan_acts(name, image):
    # Each point's projection alone changes the protected decode: a plan that
    # lost a point would leave its projection without effect.
    base = tiny_base(name)
    net = psic.shield(base)
    assert net.plan == "every-stage"
    torch.manual_seed(0)
    with torch.no_grad():
        for param in net.global_cond.parameters():
            param.normal_(0, 0.5)
        reference = net(image)["x_hat"]
        for point in net.injection_points:
            weight = net.trigger_proj[point.key].weight
            weight.normal_(0, 0.5)
            assert not torch.equal(net(image)["x_hat"], reference), point.target
            assert torch.equal(net(image, "full")["x_hat"], base(image)["x_hat"])
            weight.zero_()


def test_unknown_plan_lists_the_plans():
    with pytest.raises(ValueError, match="every-stage.*late"):
        psic.shield(tiny_base("mbt2018-mean"), plan="early")


def test_plan_is_restored_from_the_weights(image, tmp_path):
    net = psic.shield(tiny_base("mbt2018-mean"), plan="late")
    perturb_triggers(net)
    path = tmp_path / "late.pth.tar"
    torch.save({"state_dict": net.state_dict()}, path)
    loaded = psic.load_checkpoint(path)
    assert loaded.plan == "late" and loaded.architecture == "mbt2018-mean"
    with torch.no_grad():
        assert torch.equal(loaded(image)["x_hat"], net(image)["x_hat"])
    every = psic.shield(tiny_base("mbt2018-mean"))
    with pytest.raises(ValueError, match='plan "every-stage"'):
        every.load_state_dict(net.state_dict())


def test_shipped_demo_checkpoint_loads_with_its_plan():
    from compressai_psic.zoo import load_named

    net = load_named("demo-psic")
    assert net.architecture == "bmshj2018-hyperprior"
    assert [p.target for p in net.injection_points] in (
        EXPECTED_PLANS["bmshj2018-hyperprior"]["late"],
        EXPECTED_PLANS["bmshj2018-hyperprior"]["every-stage"],
    )
