"""Tests written for mutants of ``compressai_psic.models`` that the other tests let
survive (mutation testing with mutmut, see BENCHMARKS.md): each asserts a
behaviour the mutated code would break."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from compressai.models import FactorizedPrior

import compressai_psic as psic
from compressai_psic.models import (
    InjectionPoint,
    PSICHyperprior,
    PSICHyperpriorBase,
    ShieldedFactorizedPrior,
    get_architecture,
)
from compressai_psic.models.conditions import (
    ConditionEncoder,
    FourierConditionEncoder,
    FourierFeatures,
    as_condition_list,
    condition_label,
    trigger_of,
)
from compressai_psic.models.shielded import (
    AffineTriggerProjection,
    FixedConditionSynthesis,
    TriggerProjection,
)
from compressai_psic.models.synthesis import (
    BLOCK_RUNNERS,
    BlockRunner,
    ShieldedSynthesis,
    TriggeredSynthesis,
    TriggerSource,
    register_block_runner,
)

from .helpers import perturb_triggers, register_toy, tiny_base


def _projections(points, channels, trigger_dim=4, scale=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    projections = nn.ModuleDict()
    for point in points:
        proj = nn.Linear(trigger_dim, scale * channels, bias=False)
        with torch.no_grad():
            proj.weight.copy_(torch.randn(proj.weight.shape, generator=gen))
        projections[point.replace(".", "-")] = proj
    return projections


def _synthesis(points=("g_s.0", "g_s.2"), affine=False) -> ShieldedSynthesis:
    torch.manual_seed(0)
    layers = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.Conv2d(3, 3, 1))
    projections = _projections(points, 3, scale=2 if affine else 1)
    return ShieldedSynthesis(layers, points, projections, affine=affine)


# ------------------------------------------------------------------ synthesis
class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return x + torch.relu(self.conv1(x))


def test_register_block_runner_records_its_sites_and_function():
    def run(block, x, at):
        return x + torch.relu(at("conv1", block.conv1(x)))

    try:
        decorated = register_block_runner(_Block, sites=["conv1"])(run)
        assert decorated is run
        assert BLOCK_RUNNERS[_Block] == BlockRunner(("conv1",), run)
        torch.manual_seed(0)
        layers = nn.Sequential(_Block())
        synthesis = ShieldedSynthesis(
            layers, ["g_s.0.conv1"], _projections(["g_s.0.conv1"], 3)
        )
        x = torch.randn(1, 3, 2, 2)
        trigger = torch.ones(1, 4)
        expected = x + torch.relu(
            layers[0].conv1(x) + synthesis.projections[0][1](trigger).view(1, 3, 1, 1)
        )
        torch.testing.assert_close(synthesis(x, trigger), expected)
        assert torch.equal(synthesis(x, None), layers[0](x))
    finally:
        BLOCK_RUNNERS.pop(_Block, None)


def test_trigger_source_encodes_the_condition_it_is_given():
    torch.manual_seed(0)
    encoder = FourierConditionEncoder(trigger_dim=16, num_frequencies=2)
    source = TriggerSource(encoder, True, "protected")
    like = torch.zeros(1)
    assert torch.equal(source.trigger("full", 1, like), torch.zeros(1, 16))
    assert source.trigger("protected", 1, like).abs().sum() > 0
    # one β per sample: one row per sample
    betas = torch.tensor([0.0, 1.0, 0.5])
    rows = source.trigger(betas, 3, like)
    assert rows.shape == (3, 16)
    assert torch.equal(rows[0], torch.zeros(16))
    torch.testing.assert_close(rows[1:2], source.trigger("protected", 1, like))
    unanchored = TriggerSource(encoder, False, "protected")
    assert unanchored.trigger("full", 1, like).abs().sum() > 0


def test_trigger_source_follows_the_device_and_dtype_of_the_features():
    torch.manual_seed(0)
    source = TriggerSource(FourierConditionEncoder(4, 2), True, "protected")
    double = source.trigger("protected", 1, torch.zeros(1, dtype=torch.float64))
    assert double.dtype == torch.float64
    meta = source.trigger("protected", 1, torch.empty(1, device="meta"))
    assert meta.device.type == "meta"
    assert meta.dtype == torch.float32


@pytest.mark.parametrize("affine", [False, True])
def test_a_slice_keeps_the_points_and_the_modulation(affine):
    synthesis = _synthesis(affine=affine)
    tail = synthesis[1:]
    assert isinstance(tail, ShieldedSynthesis)
    assert tail.affine is affine
    assert tail.points == ("g_s.2",)
    x = torch.randn(2, 3, 2, 2)
    trigger = torch.randn(1, 4)
    h = synthesis[:1](x, trigger)
    torch.testing.assert_close(tail(h, trigger), synthesis(x, trigger))


def test_extra_repr_names_the_points_and_the_modulation():
    bias = _synthesis(points=("g_s.0",))
    assert bias.extra_repr() == "points=['g_s.0'], modulation=bias"
    affine = _synthesis(points=("g_s.2",), affine=True)
    assert affine.extra_repr() == "points=['g_s.2'], modulation=affine"


def test_points_outside_g_s_or_missing_are_refused():
    layers = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.Conv2d(3, 3, 1))
    for path in ("g_a.0", "g_s"):
        _raises(
            f'Injection point "{path}" is not inside g_s',
            ShieldedSynthesis,
            layers,
            [path],
            _projections([path], 3),
        )
    _raises(
        "Injection point \"g_s.7\" does not exist: g_s has layers ['0', '1', '2']",
        ShieldedSynthesis,
        layers,
        ["g_s.7"],
        _projections(["g_s.7"], 3),
    )
    _raises(
        'Injection point "g_s.0.weight" is inside a Conv2d, whose forward runs its '
        "layers itself; points inside it: none registered. Use a layer of g_s "
        '("g_s.0") or register the block with '
        "compressai_psic.models.register_block_runner",
        ShieldedSynthesis,
        layers,
        ["g_s.0.weight"],
        _projections(["g_s.0.weight"], 3),
    )


class _Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Conv2d(3, 3, 1))

    def forward(self, x):
        return torch.relu(self.inner(x))


def test_sites_with_dots_inside_a_block():
    def run(block, x, at):
        return torch.relu(at("inner.0", block.inner(x)))

    try:
        register_block_runner(_Nested, sites=("inner.0",))(run)
        torch.manual_seed(0)
        layers = nn.Sequential(_Nested())
        synthesis = ShieldedSynthesis(
            layers, ["g_s.0.inner.0"], _projections(["g_s.0.inner.0"], 3)
        )
        x = torch.randn(1, 3, 2, 2)
        trigger = torch.ones(1, 4)
        change = synthesis.projections[0][1](trigger).view(1, 3, 1, 1)
        expected = torch.relu(layers[0].inner(x) + change)
        torch.testing.assert_close(synthesis(x, trigger), expected)
        _raises(
            'Injection point "g_s.0.inner" is inside a _Nested, whose forward runs '
            "its layers itself; points inside it: ['inner.0']. Use a layer of g_s "
            '("g_s.0") or register the block with '
            "compressai_psic.models.register_block_runner",
            ShieldedSynthesis,
            layers,
            ["g_s.0.inner"],
            _projections(["g_s.0.inner"], 3),
        )
    finally:
        BLOCK_RUNNERS.pop(_Nested, None)


def test_several_triggers_without_points_run_the_layers_once_each():
    layers = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.Conv2d(3, 3, 1))
    synthesis = ShieldedSynthesis(layers, [], {})
    x = torch.randn(1, 3, 2, 2)
    out = synthesis.synthesize_each(x, [torch.ones(1, 4), torch.zeros(1, 4)])
    assert torch.equal(out, torch.cat([layers(x), layers(x)]))


def test_blocks_without_points_inside_run_as_themselves():
    from compressai.layers import ResidualBlock

    torch.manual_seed(0)
    layers = nn.Sequential(ResidualBlock(3, 3), nn.Conv2d(3, 3, 1))
    calls = []
    layers[0].register_forward_hook(lambda module, args, out: calls.append(out))
    synthesis = ShieldedSynthesis(layers, ["g_s.1"], _projections(["g_s.1"], 3))
    x = torch.randn(1, 3, 2, 2)
    synthesis(x, torch.ones(1, 4))
    assert len(calls) == 1  # the block's own forward, hooks and all
    synthesis.synthesize_each(x, [torch.ones(1, 4), torch.zeros(1, 4)])
    assert len(calls) == 2  # before the first point: once for both triggers


def test_the_trigger_takes_the_dtype_of_the_features():
    synthesis = _synthesis().double()
    for _, proj in synthesis.projections:
        proj.double()
    x = torch.randn(1, 3, 2, 2, dtype=torch.float64)
    trigger = torch.randn(1, 4)
    out = synthesis(x, trigger)
    assert out.dtype == torch.float64
    assert torch.equal(out, synthesis(x, trigger.double()))


def test_a_trigger_has_one_row_or_one_per_sample():
    synthesis = _synthesis()
    x = torch.randn(5, 3, 2, 2)  # a batch of 5 samples of 3 channels
    assert synthesis(x, torch.randn(1, 4)).shape == (5, 3, 2, 2)
    assert synthesis(x, torch.randn(5, 4)).shape == (5, 3, 2, 2)
    _raises(
        "trigger has 2 rows for a batch of 5 (give one row, or one per sample)",
        synthesis,
        x,
        torch.randn(2, 4),
    )


# ----------------------------------------------------------------- conditions
def _raises(message: str, function, *args, **kwargs):
    with pytest.raises(ValueError) as info:
        function(*args, **kwargs)
    assert str(info.value) == message


def test_condition_labels():
    assert condition_label(None) == "protected"
    assert condition_label("full") == "full"
    assert condition_label(torch.tensor(0.5)) == "beta=0.5"
    assert condition_label(torch.tensor([0.25])) == "beta=0.25"
    assert condition_label(torch.zeros(3)) == "beta[3]"
    assert condition_label(0.25) == "beta=0.25"
    assert condition_label(1) == "beta=1"


def test_fourier_features_are_the_value_then_sin_cos_per_frequency():
    features = FourierFeatures(3)
    assert features.num_frequencies == 3 and features.out_features == 7
    assert torch.equal(features.frequencies, torch.tensor([1.0, 2.0, 4.0]))
    assert features.frequencies.dtype == torch.float32
    assert "frequencies" not in features.state_dict()
    v = torch.tensor([0.5, 1.0], dtype=torch.float64)
    out = features(v)
    assert out.dtype == torch.float64 and out.shape == (2, 7)
    for row, value in zip(out, v.tolist()):
        expected = [value]
        for f in (1.0, 2.0, 4.0):
            expected += [math.sin(f * value), math.cos(f * value)]
        torch.testing.assert_close(row, torch.tensor(expected, dtype=torch.float64))
    assert FourierFeatures(0).out_features == 1
    assert torch.equal(FourierFeatures(0)(torch.tensor([0.3])), torch.tensor([[0.3]]))
    assert FourierFeatures().num_frequencies == 10
    _raises("num_frequencies must be >= 0, got -1", FourierFeatures, -1)


def test_fourier_features_keep_their_dtypes():
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert FourierFeatures(3).frequencies.dtype == torch.float32
    finally:
        torch.set_default_dtype(default)
    half = FourierFeatures(2)(torch.tensor([0.5], dtype=torch.float16))
    assert half.dtype == torch.float16


def test_the_beta_mlp_is_two_linear_layers_with_relu_after_each():
    torch.manual_seed(0)
    encoder = FourierConditionEncoder(trigger_dim=6, num_frequencies=1)
    assert encoder.trigger_dim == 6
    mlp = encoder.beta_mlp
    assert (mlp.fc1.in_features, mlp.fc1.out_features) == (3, 6)
    assert (mlp.fc2.in_features, mlp.fc2.out_features) == (6, 6)
    with torch.no_grad():
        mlp.fc2.bias.fill_(-0.1)  # some outputs negative before the last ReLU
    x = torch.randn(5, 3)
    expected = torch.relu(mlp.fc2(torch.relu(mlp.fc1(x))))
    assert torch.equal(mlp(x), expected)
    values = torch.tensor([0.0, 0.5, 1.0])
    assert torch.equal(encoder(values), mlp(encoder.fourier(values)))
    assert (mlp(x) == 0).any()  # ReLU last
    assert FourierConditionEncoder().trigger_dim == 512
    assert FourierConditionEncoder().fourier.num_frequencies == 10


def test_the_encoder_interface():
    encoder = ConditionEncoder()
    assert encoder.full_condition == "full"
    with pytest.raises(NotImplementedError):
        encoder.condition_values("full", 1, torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_tensor_condition_moves_to_the_device_asked_for():
    # A CPU tensor of betas for a model on the GPU (and back): the values land
    # on the device the encoder asks for, which a CPU-only machine cannot show.
    encoder = FourierConditionEncoder(4, 1)
    for there, asked in (("cpu", "cuda"), ("cuda", "cpu")):
        betas = torch.tensor([0.25, 0.75], device=there)
        values = encoder.condition_values(betas, 2, torch.device(asked))
        assert values.device.type == asked
        assert torch.equal(values.cpu(), betas.cpu())
    net = psic.shield(tiny_base("bmshj2018-hyperprior")).cuda().eval()
    with torch.no_grad():
        from_cpu = net.trigger(torch.tensor([0.5]), 1)
        on_gpu = net.trigger(torch.tensor([0.5], device="cuda"), 1)
    assert from_cpu.device.type == "cuda"
    torch.testing.assert_close(from_cpu, on_gpu)


def test_condition_values_of_every_kind_of_condition():
    encoder = FourierConditionEncoder(4, 1)
    cpu = torch.device("cpu")
    values = encoder.condition_values(None, 3, cpu)
    assert torch.equal(values, torch.ones(3)) and values.dtype == torch.float32
    values = encoder.condition_values("full", 2, cpu, torch.float64)
    assert torch.equal(values, torch.zeros(2, dtype=torch.float64))
    assert values.dtype == torch.float64
    assert torch.equal(encoder.condition_values("protected", 2, cpu), torch.ones(2))
    for beta in (0.0, 0.3, 1.0, 0, 1):
        values = encoder.condition_values(beta, 2, cpu, torch.float64)
        assert torch.equal(values, torch.full((2,), float(beta), dtype=torch.float64))
    meta = encoder.condition_values(0.5, 2, torch.device("meta"))
    assert meta.device.type == "meta"
    assert encoder.condition_values("full", 1, torch.device("meta")).is_meta
    assert encoder.condition_values(0.5, 1, cpu, torch.float16).dtype == torch.float16
    _raises(
        "Invalid condition \"half\": use one of ['full', 'protected'], a float in "
        "[0, 1] or a tensor of betas",
        encoder.condition_values,
        "half",
        1,
        cpu,
    )
    _raises(
        "Invalid condition: a bool is ambiguous, use 0.0 or 1.0",
        encoder.condition_values,
        True,
        1,
        cpu,
    )
    for beta in (1.5, -0.1, float("nan")):
        _raises(
            f"Invalid condition beta={float(beta)}: must lie in [0, 1]",
            encoder.condition_values,
            beta,
            1,
            cpu,
        )
    _raises(
        "Invalid condition of type list: use ['full', 'protected'], a float in "
        "[0, 1] or a tensor of betas",
        encoder.condition_values,
        [0.5],
        1,
        cpu,
    )


def test_condition_values_of_tensors():
    encoder = FourierConditionEncoder(4, 1)
    cpu = torch.device("cpu")
    one = torch.tensor(0.25, requires_grad=True)
    values = encoder.condition_values(one, 3, cpu)
    assert torch.equal(values, torch.full((3,), 0.25)) and not values.requires_grad
    column = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    values = encoder.condition_values(column, 2, cpu)
    assert values.dtype == torch.float32 and torch.equal(values, torch.tensor([0, 1.0]))
    _raises(
        "Invalid condition tensor of shape (3,): expected one beta or one per sample "
        "(2)",
        encoder.condition_values,
        torch.zeros(3),
        2,
        cpu,
    )
    message = (
        "Invalid condition tensor: every beta must lie in [0, 1] (1 = protected, "
        "0 = full)"
    )
    for bad in ([0.5, 1.5], [-0.5, 0.5], [float("nan"), 0.5]):
        _raises(message, encoder.condition_values, torch.tensor(bad), 2, cpu)


class _ParameterFreeEncoder(ConditionEncoder):
    """β itself as the trigger, its full condition β = 0.5."""

    trigger_dim = 1

    def condition_values(self, condition, batch_size, device, dtype=torch.float32):
        self.asked = (device, dtype)
        values = torch.as_tensor(condition, dtype=dtype, device=device)
        return values.reshape(-1).expand(batch_size)

    def forward(self, values):
        return values.reshape(-1, 1) + 1

    @property
    def full_condition(self):
        return 0.5


def test_trigger_of_an_encoder_without_parameters():
    encoder = _ParameterFreeEncoder()
    trigger = trigger_of(encoder, 0.75, anchored=False)
    assert encoder.asked == (torch.device("cpu"), torch.float32)
    assert torch.equal(trigger, torch.tensor([[1.75]]))
    assert torch.equal(trigger_of(encoder, 0.5), torch.zeros(1, 1))
    torch.testing.assert_close(trigger_of(encoder, 0.75), torch.tensor([[0.25]]))
    rows = trigger_of(encoder, torch.tensor([0.5, 1.0, 0.5]), 3)
    torch.testing.assert_close(rows, torch.tensor([[0.0], [0.5], [0.0]]))


def test_trigger_of_uses_the_encoders_dtype_and_one_row_per_named_condition():
    torch.manual_seed(0)
    encoder = FourierConditionEncoder(8, 2).double()
    trigger = trigger_of(encoder, "protected", batch_size=4)
    assert trigger.shape == (1, 8) and trigger.dtype == torch.float64
    ones, zeros = torch.ones(1, dtype=torch.float64), torch.zeros(1).double()
    torch.testing.assert_close(trigger, encoder(ones) - encoder(zeros))
    assert torch.equal(trigger_of(encoder, "protected", 4, False), encoder(ones))
    assert trigger_of(encoder, torch.tensor(1.0), batch_size=4).shape == (1, 8)
    with pytest.raises(ValueError) as info:
        trigger_of(encoder, torch.tensor([1.0, 0.0]))  # a batch of one by default
    assert str(info.value).endswith("expected one beta or one per sample (1)")
    rows = trigger_of(encoder, torch.tensor([1.0, 0.0]), batch_size=2)
    assert rows.shape == (2, 8)
    torch.testing.assert_close(rows[:1], trigger)
    assert torch.equal(rows[1], torch.zeros(8, dtype=torch.float64))


def test_trigger_of_works_where_the_encoder_is():
    encoder = FourierConditionEncoder(8, 2).to("meta")
    for anchored in (True, False):
        trigger = trigger_of(encoder, "protected", 1, anchored)
        assert trigger.device.type == "meta" and trigger.shape == (1, 8)
    encoder = _ParameterFreeEncoder()
    trigger_of(encoder, 1.0)
    assert encoder.asked == (torch.device("cpu"), torch.float32)


class _KeyEncoder(ConditionEncoder):
    """Two numbers per condition (a key, say); its full condition is (0, 0)."""

    trigger_dim = 2

    def condition_values(self, condition, batch_size, device, dtype=torch.float32):
        values = torch.as_tensor(condition, dtype=dtype, device=device)
        return values.reshape(-1, 2).expand(batch_size, 2)

    def forward(self, values):
        return values * 2 + 1

    @property
    def full_condition(self):
        return (0.0, 0.0)


def test_anchoring_compares_every_value_of_a_condition():
    encoder = _KeyEncoder()
    assert torch.equal(trigger_of(encoder, (0.0, 0.0)), torch.zeros(1, 2))
    assert torch.equal(trigger_of(encoder, (0.0, 1.0)), torch.tensor([[0.0, 2.0]]))
    keys = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    rows = trigger_of(encoder, keys, 3)
    assert torch.equal(rows, torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 0.0]]))


def test_as_condition_list():
    assert as_condition_list(("full", 0.5)) == ["full", 0.5]
    assert as_condition_list(["protected"]) == ["protected"]
    message = "conditions must be a list or tuple of conditions"
    for bad in ("full", torch.zeros(2), {"full"}, 0.5):
        _raises(message, as_condition_list, bad)
    _raises("conditions must not be empty", as_condition_list, [])


# ------------------------------------------------------------------- shielded
def _factorized(**kwargs):
    torch.manual_seed(0)
    return ShieldedFactorizedPrior(N=8, M=12, trigger_dim=4, **kwargs).eval()


def test_trigger_projections_start_at_zero_and_affine_ones_say_so():
    proj = TriggerProjection(4, 3)
    assert proj.bias is None and proj.weight.shape == (3, 4)
    assert torch.equal(proj.weight, torch.zeros(3, 4))
    affine = AffineTriggerProjection(4, 3)
    assert affine.weight.shape == (6, 4) and affine.bias is None
    assert torch.equal(affine.weight, torch.zeros(6, 4))
    assert affine.get_extra_state() == {"modulation": "affine"}
    affine.set_extra_state({"modulation": "affine"})
    for bad in ({"modulation": "bias"}, {}, "affine"):
        _raises(
            f"Not the state of an affine projection: {bad!r}",
            affine.set_extra_state,
            bad,
        )


def test_shield_construction_errors_say_what_is_wrong():
    with pytest.raises(ValueError) as info:
        _factorized(modulation="scale")
    assert str(info.value) == (
        "Invalid modulation \"scale\": use one of ['bias', 'affine']"
    )
    with pytest.raises(ValueError) as info:
        _factorized(plan="late", injection_points=["g_s.4"])
    assert str(info.value) == "Give plan= or injection_points=, not both"
    with pytest.raises(ValueError) as info:
        _factorized(injection_points=[])
    assert str(info.value) == "At least one injection point is required"
    with pytest.raises(ValueError) as info:
        _factorized(injection_points=["g_a.0"])
    assert str(info.value) == (
        'Injection point "g_a.0" is not a module path inside g_s: triggers steer '
        "the synthesis transform only"
    )
    for target in ("g_s-0", "g_s.0-1"):
        with pytest.raises(ValueError) as info:
            _factorized(injection_points=[target])
        assert str(info.value) == (
            f'Injection point "{target}" is not a module path inside g_s: triggers '
            "steer the synthesis transform only"
        )
    with pytest.raises(ValueError) as info:
        _factorized(injection_points=["g_s.0", "g_s.0"])
    assert str(info.value) == 'Injection point "g_s.0" is listed twice'
    with pytest.raises(ValueError) as info:
        _factorized(injection_points=["g_s.9"])
    assert str(info.value) == (
        'Injection point "g_s.9" does not exist in ShieldedFactorizedPrior'
    )


class _NoChannels(nn.Module):
    def forward(self, x):
        return x


def test_points_whose_channels_cannot_be_inferred():
    base = FactorizedPrior(N=8, M=12)
    base.g_s = nn.Sequential(nn.ConvTranspose2d(12, 3, 1), _NoChannels())
    with pytest.raises(ValueError) as info:
        psic.shield(base, injection_points=["g_s.1"], trigger_dim=4)
    assert str(info.value) == (
        'Cannot infer the channels of injection point "g_s.1" (_NoChannels); give '
        "InjectionPoint(target, channels)"
    )
    net = psic.shield(
        base, injection_points=[InjectionPoint("g_s.1", 3)], trigger_dim=4
    )
    assert net.injection_points == [InjectionPoint("g_s.1", 3)]
    assert net.plan == "custom"


def test_a_synthesis_that_is_not_sequential_is_refused():
    base = FactorizedPrior(N=8, M=12)
    base.g_s = _NoChannels()
    with pytest.raises(ValueError) as info:
        psic.shield(base, injection_points=[InjectionPoint("g_s", 3)])
    assert str(info.value) == (
        "ShieldedFactorizedPrior.g_s is a _NoChannels: a shielded synthesis is an "
        "nn.Sequential (or takes trigger= itself, trigger_argument=True)"
    )


def test_trigger_argument_layouts_refuse_affine_and_plain_synthesis():
    official = get_architecture("psic-hy2018")
    with pytest.raises(ValueError) as info:
        PSICHyperprior(N=8, M=12, trigger_dim=4, modulation="affine")
    assert str(info.value) == "psic-hy2018 adds biases only (its blocks' own)"
    assert official.trigger_argument
    net = PSICHyperprior(N=8, M=12, trigger_dim=4)
    assert isinstance(net.g_s, TriggeredSynthesis)
    assert not isinstance(net.g_s, ShieldedSynthesis)
    assert len(net.trigger_proj) == 0
    assert net.g_s.trigger_source.encoder is net.global_cond
    assert net.g_s.trigger_source.anchored is False
    net.g_s = nn.Sequential(*net.g_s)
    with pytest.raises(ValueError) as info:
        net._init_shield(net.global_cond, None, None)
    assert str(info.value) == (
        "psic-hy2018 is registered with trigger_argument=True, but its g_s "
        "(Sequential) is not a TriggeredSynthesis"
    )


def test_the_shielded_synthesis_is_wired_to_the_model():
    net = _factorized(plan="late")
    assert isinstance(net.g_s, ShieldedSynthesis)
    assert net.g_s.points == ("g_s.4", "g_s.5")
    assert net.g_s.affine is False
    assert _factorized(modulation="affine").g_s.affine is True
    source = net.g_s.trigger_source
    assert source == TriggerSource(net.global_cond, True, "protected")
    assert [m for _, m in net.g_s.projections] == net.projection_modules()
    assert net.projection_modules() == [
        net.trigger_proj["g_s-4"],
        net.trigger_proj["g_s-5"],
    ]
    trained = ShieldedFactorizedPrior(N=8, M=12, trigger_dim=4)
    assert trained.training and trained.g_s.training
    assert not net.g_s.training
    # the encoder's size comes from the constructor
    assert net.global_cond.trigger_dim == 4
    assert net.global_cond.fourier.num_frequencies == 10
    assert _factorized(num_frequencies=3).global_cond.fourier.num_frequencies == 3


def test_re_shielding_a_shielded_synthesis_starts_from_its_plain_layers():
    net = _factorized(plan="late")
    layers = list(net.g_s)
    net._init_shield(net.global_cond, "every-stage", None)
    assert isinstance(net.g_s, ShieldedSynthesis)
    assert list(net.g_s) == layers
    assert net.plan == "every-stage" and len(net.g_s.points) == 6


def test_parameter_groups_and_trigger_parameters():
    net = _factorized(plan="late")
    groups = net.parameter_groups()
    assert list(groups) == [
        "synthesis",
        "trigger_encoder",
        "trigger_projections",
        "rate",
    ]
    names = dict(net.named_parameters())
    assert sorted(sum(groups.values(), [])) == sorted(names)
    assert groups["trigger_projections"] == [
        "trigger_proj.g_s-4.weight",
        "trigger_proj.g_s-5.weight",
    ]
    assert groups["trigger_encoder"] == [
        n for n in names if n.startswith("global_cond.")
    ]
    assert groups["synthesis"] == [n for n in names if n.startswith("g_s.")]
    assert groups["rate"] and all(
        n.startswith(("g_a.", "entropy_bottleneck.")) for n in groups["rate"]
    )
    params = list(net.trigger_parameters())
    expected = list(net.global_cond.parameters()) + [
        net.trigger_proj["g_s-4"].weight,
        net.trigger_proj["g_s-5"].weight,
    ]
    assert [id(p) for p in params] == [id(p) for p in expected]


def test_condition_betas_are_condition_major():
    net = _factorized()
    betas = net.condition_betas(["full", 0.5, "protected"], 2)
    assert torch.equal(betas, torch.tensor([0.0, 0.0, 0.5, 0.5, 1.0, 1.0]))
    assert betas.device.type == "cpu"


def test_trigger_defaults_to_the_models_default_condition():
    net = _factorized()
    perturb_triggers(net)
    assert torch.equal(net.trigger(), net.trigger("protected"))
    assert torch.equal(net.trigger("full"), torch.zeros(1, 4))
    assert net.trigger(torch.tensor([0.0, 1.0]), 2).shape == (2, 4)
    with pytest.raises(ValueError) as info:
        net.trigger(torch.tensor([0.0, 1.0]))  # a batch of one by default
    assert str(info.value).endswith("expected one beta or one per sample (1)")

    class FullByDefault(ShieldedFactorizedPrior):
        default_condition = "full"

    torch.manual_seed(0)
    other = FullByDefault(N=8, M=12, trigger_dim=4)
    perturb_triggers(other)
    assert torch.equal(other.trigger(), torch.zeros(1, 4))
    assert other.g_s.trigger_source.default_condition == "full"
    y = torch.randn(2, 12, 2, 2)
    with torch.no_grad():
        assert torch.equal(other.g_s(y), other.g_s(y, torch.zeros(1, 4)))
        assert not torch.equal(other.g_s(y), other.g_s(y, other.trigger(1.0)))

    class PerSampleDefault(ShieldedFactorizedPrior):
        default_condition = torch.tensor([1.0, 0.0])

    torch.manual_seed(0)
    per_sample = PerSampleDefault(N=8, M=12, trigger_dim=4)
    with pytest.raises(ValueError) as info:
        per_sample.g_s(y)  # the default is one condition for the whole batch
    assert str(info.value) == (
        "Invalid condition tensor of shape (2,): expected one beta or one per "
        "sample (1)"
    )


def test_synthesis_for_fixes_the_trigger_as_a_buffer():
    net = _factorized()
    perturb_triggers(net)
    decoder = net.synthesis_for("protected")
    assert isinstance(decoder, FixedConditionSynthesis)
    assert decoder.synthesis is net.g_s
    assert torch.equal(decoder.trigger, net.trigger("protected"))
    assert not decoder.trigger.requires_grad
    assert "trigger" in dict(decoder.named_buffers())
    default = net.synthesis_for()
    assert torch.equal(default.trigger, decoder.trigger)
    y = torch.randn(1, 12, 2, 2)
    with torch.no_grad():
        assert torch.equal(decoder(y), net.g_s(y, net.trigger("protected")))
        full = net.synthesis_for("full")
        assert torch.equal(full(y), net.g_s(y, torch.zeros(1, 4)))


def test_forward_reports_the_betas_of_its_conditions():
    net = _factorized()
    perturb_triggers(net)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        out = net(x)
        assert torch.equal(out["beta"], torch.ones(2))
        half = net(x, 0.5)
        assert torch.equal(half["beta"], torch.full((2,), 0.5))
        multi = net(x, ("full", "protected"))
        pair = net.forward_multi(x)
    assert len(multi["x_hat"]) == 2
    assert torch.equal(multi["x_hat"][1], out["x_hat"])
    assert [b.tolist() for b in pair["beta"]] == [[1.0, 1.0], [0.0, 0.0]]
    assert torch.equal(pair["x_hat"][0], out["x_hat"])
    assert torch.equal(pair["x_hat"][1], multi["x_hat"][0])


def test_forward_multi_with_per_sample_betas():
    net = _factorized()
    perturb_triggers(net)
    x = torch.rand(2, 3, 16, 16)
    betas = torch.tensor([0.0, 1.0])
    with torch.no_grad():
        multi = net.forward_multi(x, [betas, "full"])
        alone = net(x, betas)
    assert torch.equal(multi["x_hat"][0], alone["x_hat"])
    assert torch.equal(multi["beta"][0], betas)


def test_positional_arguments_reach_the_base_class():
    net = ShieldedFactorizedPrior(8, 12, trigger_dim=4)
    assert net.g_a[0].out_channels == 8 and net.g_a[-1].out_channels == 12


def test_trigger_parameters_are_each_given_once():
    net = _factorized(plan="late")
    net.trigger_proj["g_s-5"] = net.trigger_proj["g_s-4"]  # one module, two points
    params = list(net.trigger_parameters())
    assert len(params) == len(list(net.global_cond.parameters())) + 1
    assert len({id(p) for p in params}) == len(params)


def test_decompress_multi_with_per_sample_betas_and_unknown_arguments():
    net = _factorized()
    perturb_triggers(net)
    net.update(force=True)
    x = torch.rand(2, 3, 32, 32)
    betas = torch.tensor([1.0, 0.0])
    with torch.no_grad():
        coded = net.compress(x)
        strings, shape = coded["strings"], coded["shape"]
        multi = net.decompress_multi(strings, shape, [betas, "full"])["x_hat"]
        alone = net.decompress(strings, shape, betas)["x_hat"]
        assert torch.equal(multi[0], alone)
        with pytest.raises(TypeError):
            net.decompress_multi(strings, shape, unknown=1)
        with pytest.raises(TypeError):
            net.decompress(strings, shape, unknown=1)
        with pytest.raises(TypeError):
            net.compress(x, 1)
        with pytest.raises(TypeError):
            net.compress(x, unknown=1)


def test_condition_betas_are_made_where_the_encoder_is():
    net = _factorized()
    net.global_cond.to("meta")
    assert net.condition_betas(["full"], 2).device.type == "meta"
    net.global_cond = _ParameterFreeEncoder()
    betas = net.condition_betas([0.25], 2)
    assert betas.device.type == "cpu"
    assert torch.equal(betas, torch.full((2,), 0.25))


# -------------------------------------------------------------------- weights
def test_loading_weights_of_another_plan_or_modulation_says_how_to_load_them():
    late = _factorized(plan="late")
    every = _factorized()
    with pytest.raises(ValueError) as info:
        late.load_state_dict(every.state_dict())
    assert str(info.value) == (
        "The weights carry triggers at ['g_s.0', 'g_s.1', 'g_s.2', 'g_s.3', "
        "'g_s.4', 'g_s.5'], this model at ['g_s.4', 'g_s.5'] (plan \"late\"); "
        "build the model from the weights with from_state_dict() or "
        "load_checkpoint()"
    )
    affine = _factorized(plan="late", modulation="affine")
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
    affine = _factorized(plan="late", modulation="affine")
    perturb_triggers(affine)
    legacy = {
        k: v for k, v in affine.state_dict().items() if not k.endswith("_extra_state")
    }
    again = _factorized(plan="late", modulation="affine")
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


# -------------------------------------------------------------------- upgrade
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
    net = _factorized()
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
    net = _factorized()
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


# ------------------------------------------------------ registry, registration
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

    _raises(
        "Cannot infer N/M: the state dict has no 'g_a.6.weight' key",
        default_config_from_state_dict,
        {"g_a.0.weight": torch.zeros(4, 3)},
    )


def test_infer_channels_of_every_kind_of_layer():
    from compressai.layers import GDN, subpel_conv3x3

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
    _raises(message, auto_injection_points, model)
    model.g_s = nn.Conv2d(3, 4, 1)
    _raises(message, auto_injection_points, model)
    _raises(message, auto_injection_points, Model())
    model.g_s = nn.Sequential(nn.ReLU(), nn.Conv2d(3, 4, 1))
    _raises(
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

    net = _factorized()
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


def test_register_architecture_checks_its_arguments(registries):
    from compressai.registry import MODELS

    from compressai_psic.models.registration import _base_of
    from compressai_psic.models.registry import ARCHITECTURES

    register = psic.models.register_architecture

    class ShieldedToy(psic.models.ShieldedMixin, FactorizedPrior):
        pass

    _raises("plans must name at least one injection plan", register, "toy", plans={})
    for taken in ("bmshj2018-factorized", "psic-bmshj2018-factorized"):
        with pytest.raises(ValueError) as info:
            register(taken, plans={"a": ["g_s.0"]})(ShieldedToy)
        assert str(info.value) == (
            f'Architecture "{taken}" is already registered by '
            "compressai_psic.models.google.ShieldedFactorizedPrior"
        )
    for not_shielded in (FactorizedPrior, nn.Linear, 3):
        with pytest.raises(ValueError, match="must derive from ShieldedMixin"):
            register("toy", plans={"a": ["g_s.0"]})(not_shielded)

    class Lonely(psic.models.ShieldedMixin, nn.Module):
        pass

    _raises("Lonely extends no CompressAI model class", _base_of, Lonely)
    assert "toy" not in ARCHITECTURES and "psic-toy" not in MODELS


def test_register_architecture_entries(registries):
    from compressai.registry import MODELS

    from compressai_psic.models.registry import ARCHITECTURES

    made = register_toy(
        "toy", FactorizedPrior, {"default": ["g_s.0"]}, description="a toy"
    )
    arch = ARCHITECTURES["toy"]
    assert MODELS["psic-toy"] is made and arch.shielded_class is made
    assert made._psic_architecture is arch and made._psic_base_class is FactorizedPrior
    assert arch.plans == {"default": ["g_s.0"]} and arch.default_plan == "default"
    assert arch.name == "toy" and arch.model_class is FactorizedPrior
    assert arch.description == "a toy" and arch.key_aliases == {}
    assert arch.anchor_full and not arch.trigger_argument
    register_toy("psic-named", FactorizedPrior, {"b": ["g_s.2"], "a": ["g_s.0"]})
    assert "psic-named" in MODELS and "psic-psic-named" not in MODELS
    assert ARCHITECTURES["psic-named"].default_plan == "b"  # the first plan
    # The same class registered again (a module reloaded) replaces itself.
    again = register_toy("toy", FactorizedPrior, {"late": ["g_s.2"]})
    assert MODELS["psic-toy"] is again and again is not made

    def config(sd):
        return {"N": 8, "M": 12}

    @psic.models.register_architecture(
        "toy-class",
        plans={"b": ["g_s.2"], "a": ["g_s.0"]},
        config_from_state_dict=config,
        layout=psic.models.CheckpointLayout(
            anchor_full=False, key_aliases={"g_s.": "dec."}
        ),
    )
    class ShieldedToy(psic.models.ShieldedMixin, FactorizedPrior):
        pass

    arch = ARCHITECTURES["toy-class"]
    assert ShieldedToy._psic_architecture is arch
    assert ShieldedToy._psic_base_class is FactorizedPrior
    assert (
        arch.shielded_class is ShieldedToy and MODELS["psic-toy-class"] is ShieldedToy
    )
    assert arch.default_plan == "b" and arch.anchor_full is False
    assert arch.key_aliases == {"g_s.": "dec."}
    assert arch.config_from_state_dict is config
    assert arch.plans == {"b": ["g_s.2"], "a": ["g_s.0"]}
