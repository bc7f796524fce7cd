"""The condition as an argument: the shielded synthesis, deployable decoders and
deterministic decoding across modes (issue "Core clarity")."""

from __future__ import annotations

import copy
import threading
import warnings

import pytest
import torch
import torch.nn as nn
from compressai.layers import ResidualBlock, ResidualBlockUpsample
from compressai.models import (
    Cheng2020Anchor,
    Cheng2020Attention,
)

import compressai_psic as psic
from compressai_psic.models import (
    unshield,
)
from compressai_psic.models.conditions import (
    FourierConditionEncoder,
)
from compressai_psic.models.synthesis import (
    BLOCK_RUNNERS,
    BlockRunner,
    ShieldedSynthesis,
    TriggeredSynthesis,
    TriggerSource,
    call_triggers,
    register_block_runner,
)

from .helpers import (
    perturb_triggers,
    raises_exactly,
    tiny_base,
    tiny_zoo_model,
)

ARCHS = list(psic.ZOO_ARCHITECTURES) + ["psic-hy2018"]

warnings.filterwarnings("ignore", category=UserWarning)


@pytest.fixture(scope="module", params=ARCHS)
def shielded(request):
    net = psic.shield(tiny_base(request.param))
    perturb_triggers(net)
    return net.eval()


def _latent(net: nn.Module, seed: int = 0) -> torch.Tensor:
    first = next(m for m in net.g_s.modules() if hasattr(m, "in_channels"))
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, first.in_channels, 4, 6, generator=gen)


# ----------------------------------------------------------- the synthesis


def _run_in_threads(worker, count: int) -> None:
    """Runs ``worker(index)`` in ``count`` threads at once and waits for them."""
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_no_hooks_and_no_marks_on_any_module(shielded):
    for name, module in shielded.named_modules():
        hooks = (module._forward_hooks, module._forward_pre_hooks)
        assert not any(hooks), f"{name} has hooks"
        assert not [k for k in vars(module) if k.startswith("_psic")] or (
            module is shielded
        ), f"{name} carries marks of the shield"


def test_the_synthesis_and_its_points_show_in_print(shielded):
    text = repr(shielded)
    assert type(shielded.g_s).__name__ in text
    if isinstance(shielded.g_s, ShieldedSynthesis):
        assert f"points={[p.target for p in shielded.injection_points]}" in text
        assert shielded.g_s.points == tuple(p.target for p in shielded.injection_points)


def test_state_dict_keys_are_the_base_models_plus_the_triggers(shielded):
    if shielded.architecture == "psic-hy2018":
        pytest.skip("the official layout holds its projections in its blocks")
    base_keys = set(unshield(shielded).state_dict())
    keys = set(shielded.state_dict())
    trigger_keys = keys - base_keys
    assert base_keys <= keys
    assert all(k.startswith(("global_cond.", "trigger_proj.")) for k in trigger_keys)
    points = {k.split(".")[1] for k in trigger_keys if k.startswith("trigger_proj.")}
    assert points == {p.key for p in shielded.injection_points}


def test_trigger_is_an_argument_of_g_s(shielded):
    y = _latent(shielded)
    with torch.no_grad():
        protected = shielded.g_s(y, shielded.trigger("protected"))
        full = shielded.g_s(y, shielded.trigger("full"))
        default = shielded.g_s(y)
        half = shielded.g_s(y, shielded.trigger(0.5))
    assert torch.equal(default, protected)  # no trigger: the default condition
    assert not torch.allclose(protected, full, atol=1e-4)
    assert not torch.allclose(half, full, atol=1e-5)
    if shielded.architecture != "psic-hy2018":  # anchored: full is the base
        with torch.no_grad():
            assert torch.equal(full, unshield(shielded).g_s(y))


def test_per_sample_triggers_match_named_rows(shielded):
    y = torch.cat([_latent(shielded, 1), _latent(shielded, 2)])
    betas = torch.tensor([1.0, 0.0])
    with torch.no_grad():
        mixed = shielded.g_s(y, shielded.trigger(betas, batch_size=2))
        protected = shielded.g_s(y, shielded.trigger("protected"))
        full = shielded.g_s(y, shielded.trigger("full"))
    scale = mixed.abs().max()
    torch.testing.assert_close(mixed[:1] / scale, protected[:1] / scale)
    torch.testing.assert_close(mixed[1:] / scale, full[1:] / scale)
    with pytest.raises(ValueError, match="rows for a batch"):
        shielded.g_s(y, torch.zeros(3, shielded.global_cond.trigger_dim))


def test_anchored_full_trigger_is_exactly_zero():
    net = psic.shield(tiny_base("mbt2018-mean"))
    perturb_triggers(net)
    assert torch.count_nonzero(net.trigger("full")) == 0
    assert torch.count_nonzero(net.trigger(torch.tensor([0.0, 1.0]), 2)[0]) == 0
    assert torch.count_nonzero(net.trigger("protected")) > 0


def test_user_hooks_survive_shield_and_unshield():
    base = tiny_base("bmshj2018-hyperprior")
    seen = []
    base.g_s[1].register_forward_hook(lambda m, a, out: seen.append(out.shape))
    net = psic.shield(base)
    back = unshield(net)
    y = _latent(net)
    with torch.no_grad():
        net.g_s(y)
        back.g_s(y)
    # The user's hook travels with the (copied) layer and runs in both models.
    assert len(seen) == 2
    assert len(net.g_s[1]._forward_hooks) == 1
    assert len(back.g_s[1]._forward_hooks) == 1
    assert type(back.g_s) is nn.Sequential


def test_shielding_runs_nothing():
    base = tiny_base("cheng2020-anchor")
    calls = []
    for module in base.g_s.modules():
        module.register_forward_hook(lambda m, a, o: calls.append(type(m)))
    psic.shield(base)
    assert calls == []  # no probe pass: points are checked from the structure


@pytest.mark.parametrize("block_type", sorted(BLOCK_RUNNERS, key=str))
def test_block_runners_reproduce_compressai_blocks(block_type):
    torch.manual_seed(0)
    if block_type is ResidualBlock:
        blocks = [ResidualBlock(8, 8), ResidualBlock(8, 6)]
    elif block_type is ResidualBlockUpsample:
        blocks = [ResidualBlockUpsample(8, 6)]
    else:
        pytest.skip(f"no fixture for {block_type.__name__}")
    runner = BLOCK_RUNNERS[block_type]
    x = torch.randn(2, 8, 5, 7)
    for block in blocks:
        visited = []

        def at(site, h, visited=visited):
            visited.append(site)
            return h

        with torch.no_grad():
            assert torch.equal(runner.run(block, x, at), block(x))
        assert visited == list(runner.sites)


def test_nested_points_change_what_the_site_feeds():
    net = psic.shield(tiny_base("cheng2020-anchor"))
    perturb_triggers(net)
    y = _latent(net)
    base = unshield(net)
    point = net.injection_points[0]  # g_s.0.conv1
    change = net.trigger_proj[point.key](net.trigger())[:, :, None, None]
    only = psic.shield(base, injection_points=[point.target])
    with torch.no_grad():
        only.trigger_proj[point.key].weight.copy_(net.trigger_proj[point.key].weight)
        only.global_cond.load_state_dict(net.global_cond.state_dict())
        base.get_submodule(point.target).register_forward_hook(
            lambda m, a, out: out + change
        )
        torch.testing.assert_close(only.g_s(y), base.g_s(y))


# ---------------------------------------------------------------- deployment
def test_export_of_g_s_and_of_fixed_condition_decoders(shielded):
    y = _latent(shielded, 3)
    with torch.no_grad():
        program = torch.export.export(shielded.g_s, (y,))
        torch.testing.assert_close(program.module()(y), shielded.g_s(y))
        for condition in ("protected", "full", 0.25):
            decoder = shielded.synthesis_for(condition)
            exported = torch.export.export(decoder, (y,)).module()
            expected = shielded.g_s(y, shielded.trigger(condition))
            torch.testing.assert_close(exported(y), expected)
            torch.testing.assert_close(decoder(y), expected)


def test_compile_of_g_s_has_no_graph_break(shielded):
    y = _latent(shielded, 4)
    explanation = torch._dynamo.explain(shielded.g_s)(y)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_synthesis_for_shares_the_models_layers(shielded):
    decoder = shielded.synthesis_for("full")
    assert decoder.synthesis is shielded.g_s
    assert set(dict(decoder.named_buffers())) >= {"trigger"}


def test_the_synthesis_survives_deepcopy_with_its_own_encoder(shielded):
    clone = copy.deepcopy(shielded)
    source = clone.g_s.trigger_source
    assert source.encoder is clone.global_cond
    if isinstance(clone.g_s, ShieldedSynthesis):
        projections = dict(clone.g_s.projections)
        assert all(
            projections[p.target] is clone.trigger_proj[p.key]
            for p in clone.injection_points
        )
    with torch.no_grad():
        for param in clone.global_cond.parameters():
            param.add_(0.1)
        y = _latent(shielded)
        assert not torch.equal(clone.g_s(y), shielded.g_s(y))


def test_a_triggered_synthesis_without_source_adds_nothing():
    base = tiny_base("psic-hy2018")  # PSICHyperprior's g_s
    assert isinstance(base.g_s, TriggeredSynthesis)
    plain = copy.deepcopy(base.g_s)
    plain.trigger_source = None
    y = _latent(base)
    with torch.no_grad():
        assert torch.equal(plain(y), plain.synthesize(y, None))


# ----------------------------------------------------------- determinism
def _photo_like(height: int, width: int, seed: int) -> torch.Tensor:
    """Smooth gradients, edges and texture: a stand-in for a photo crop."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(
        torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij"
    )
    channels = [
        0.5 + 0.4 * torch.sin(6.0 * xx + 3 * c) * torch.cos(4.0 * yy - c)
        for c in range(3)
    ]
    x = torch.stack(channels)[None]
    x = x + 0.05 * torch.randn(1, 3, height, width, generator=gen)
    x[..., height // 3 : height // 2, width // 4 : width // 2] = 0.9
    return x.clamp(0, 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(psic.ZOO_ARCHITECTURES))
def test_decodes_are_identical_alone_together_and_in_threads(name):
    net = tiny_zoo_model(name)
    perturb_triggers(net, seed=7, scale=0.3)
    x = _photo_like(256, 384, seed=1)
    conditions = ["protected", "full", 0.5]
    with torch.no_grad():
        encoded = net.compress(x)
        strings, shape = encoded["strings"], encoded["shape"]
        alone = {
            str(c): net.decompress(strings, shape, condition=c)["x_hat"]
            for c in conditions
        }
        both = net.decompress_multi(strings, shape)["x_hat"]
        reordered = net.decompress_multi(strings, shape, ["full", 0.5, "protected"])
    assert torch.equal(both[0], alone["protected"])
    assert torch.equal(both[1], alone["full"])
    for got, c in zip(reordered["x_hat"], ["full", 0.5, "protected"]):
        assert torch.equal(got, alone[str(c)]), c
    assert not torch.equal(alone["protected"], alone["full"])

    results, errors = {}, []

    def worker(index: int) -> None:
        condition = conditions[index % len(conditions)]
        try:
            with torch.no_grad():
                out = net.decompress(strings, shape, condition=condition)["x_hat"]
            results[index] = (str(condition), out)
        except Exception as err:  # noqa: BLE001 - every failure counts
            errors.append(repr(err))

    _run_in_threads(worker, 6)
    assert errors == []
    for label, out in results.values():
        assert torch.equal(out, alone[label]), label


def test_late_plan_runs_the_shared_layers_once_and_stays_exact():
    net = psic.shield(tiny_base("bmshj2018-hyperprior"), plan="late")
    perturb_triggers(net)
    calls = []
    net.g_s[0].register_forward_hook(lambda m, a, o: calls.append(o.shape))
    x = _photo_like(64, 128, seed=2)
    with torch.no_grad():
        encoded = net.compress(x)
        net.decompress(encoded["strings"], encoded["shape"])  # the guard's probe
        calls.clear()
        both = net.decompress_multi(encoded["strings"], encoded["shape"])["x_hat"]
        shared_runs = len(calls)
        alone = [
            net.decompress(encoded["strings"], encoded["shape"], condition=c)["x_hat"]
            for c in ("protected", "full")
        ]
    assert shared_runs == 1
    assert torch.equal(both[0], alone[0]) and torch.equal(both[1], alone[1])


def test_the_weights_say_the_modulation(monkeypatch):
    from compressai_psic.models import weights

    affine = psic.shield(tiny_base("mbt2018-mean"), modulation="affine")
    perturb_triggers(affine, seed=2)
    state = affine.state_dict()
    marks = {k: v for k, v in state.items() if k.endswith("._extra_state")}
    assert set(marks) == {
        f"trigger_proj.{p.key}._extra_state" for p in affine.injection_points
    }
    assert all(v == {"modulation": "affine"} for v in marks.values())

    def no_probe(*args, **kwargs):
        raise AssertionError("the modulation is read, not inferred")

    monkeypatch.setattr(weights, "build_probe", no_probe)
    restored = type(affine).from_state_dict(state)
    assert restored.modulation == "affine"
    bias = psic.shield(tiny_base("mbt2018-mean"))
    with pytest.raises(ValueError, match="triggers are affine"):
        bias.load_state_dict(state)
    monkeypatch.undo()
    # A file of 0.2 (no mark): the shapes still tell, and the load adds the mark.
    legacy = {k: v for k, v in state.items() if k not in marks}
    again = type(affine).from_state_dict(legacy)
    assert again.modulation == "affine"
    y = _latent(affine)
    with torch.no_grad():
        assert torch.equal(again.g_s(y), affine.g_s(y))


# ------------------------------------------------------------- in-place changes
def _custom_synthesis(layers, points, affine, seed=0):
    gen = torch.Generator().manual_seed(seed)
    projections = nn.ModuleDict()
    for point in points:
        proj = nn.Linear(4, 3 * (2 if affine else 1), bias=False)
        with torch.no_grad():
            proj.weight.copy_(torch.randn(proj.weight.shape, generator=gen))
        projections[point.replace(".", "-")] = proj
    return ShieldedSynthesis(nn.Sequential(*layers), points, projections, affine)


class _View(nn.Module):
    def forward(self, x):
        return x.view(x.shape)


class _Keep(nn.Module):
    """Keeps the tensor it returns (to see whether it was changed in place)."""

    def forward(self, x):
        self.out = x * 1
        return self.out


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("layer", [nn.Identity, _View, lambda: nn.ReLU(inplace=True)])
def test_a_layer_that_passes_its_input_on_keeps_the_input_intact(layer, affine):
    # A point right after a layer that returns its input (or a view of it) must
    # not write into that input: the caller's latent, or the shared prefix that
    # a multi-condition decode hands to every condition.
    torch.manual_seed(0)
    first = _custom_synthesis([layer(), nn.Conv2d(3, 3, 1)], ["g_s.0"], affine)
    later = _custom_synthesis(
        [nn.Conv2d(3, 3, 1), layer(), nn.Conv2d(3, 3, 1)], ["g_s.1"], affine
    )
    x = torch.rand(1, 3, 4, 5)  # non-negative: an in-place ReLU leaves it as it is
    triggers = [torch.ones(1, 4), torch.full((1, 4), -2.0)]
    with torch.no_grad():
        for synthesis in (first, later):
            kept = x.clone()
            singles = [synthesis(x, t) for t in triggers]
            assert torch.equal(x, kept)
            both = synthesis.synthesize_each(x, triggers)
            assert torch.equal(both, torch.cat(singles))
            assert not torch.equal(singles[0], singles[1])


@pytest.mark.parametrize("affine", [False, True])
def test_a_decode_changes_layer_outputs_in_place_and_training_does_not(affine):
    torch.manual_seed(0)
    keep = _Keep()
    synthesis = _custom_synthesis([nn.Conv2d(3, 3, 1), keep], ["g_s.1"], affine)
    x = torch.rand(1, 3, 4, 5)
    trigger = torch.ones(1, 4)
    with torch.no_grad():
        decoded = synthesis(x, trigger)
    # No full-size copy in a decode: the layer's own output carries the change.
    assert decoded is keep.out
    trained = synthesis(x, trigger)
    assert trained is not keep.out
    torch.testing.assert_close(trained.detach(), decoded)


@pytest.mark.parametrize("affine", [False, True])
def test_training_through_a_point_after_an_activation(affine):
    # ReLU keeps its output for its backward pass: an in-place change there
    # would break autograd ("modified by an inplace operation").
    torch.manual_seed(0)
    synthesis = _custom_synthesis(
        [nn.Conv2d(3, 3, 1), nn.ReLU(), nn.Conv2d(3, 3, 1)], ["g_s.1"], affine
    )
    x = torch.randn(1, 3, 4, 5)
    trigger = torch.ones(1, 4)
    synthesis(x, trigger).square().sum().backward()
    grads = [p.grad.clone() for p in synthesis.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("affine", [False, True])
def test_modulate_copies_unless_told(affine):
    from compressai_psic.models.synthesis import modulate

    h = torch.randn(2, 3, 4, 5)
    kept = h.clone()
    terms = torch.randn(1, 6 if affine else 3)
    copied = modulate(h, terms, affine)
    assert copied is not h and torch.equal(h, kept)
    written = modulate(h, terms, affine, in_place=True)
    assert written is h and torch.equal(written, copied)


class _Runnable(nn.Module):
    """A block whose registered runner hands ``at`` either a fresh tensor or the
    block's own input, and keeps what it handed."""

    def __init__(self, pass_input: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 3, 1)
        self.pass_input = pass_input

    def forward(self, x):
        return x if self.pass_input else self.conv1(x)


def _run_runnable(block, x, at):
    block.handed = x if block.pass_input else block.conv1(x)
    return at("conv1", block.handed)


@pytest.mark.parametrize("affine", [False, True])
def test_block_runner_sites_are_changed_in_place_unless_they_are_the_input(affine):
    from compressai_psic.models.synthesis import register_block_runner

    register_block_runner(_Runnable, sites=("conv1",))(_run_runnable)
    try:
        x = torch.rand(1, 3, 4, 5)
        trigger = torch.ones(1, 4)
        for pass_input in (False, True):
            torch.manual_seed(0)
            block = _Runnable(pass_input)
            synthesis = _custom_synthesis([block], ["g_s.0.conv1"], affine)
            kept = x.clone()
            with torch.no_grad():
                decoded = synthesis(x, trigger)
            assert torch.equal(x, kept)
            # A fresh tensor carries the change itself; the input never does.
            assert (decoded is block.handed) is not pass_input
            with torch.no_grad():
                expected = synthesis.synthesize_each(x, [trigger, trigger])[:1]
            assert torch.equal(decoded, expected)
    finally:
        BLOCK_RUNNERS.pop(_Runnable, None)


def test_projection_modules_is_part_of_the_synthesis_interface():
    # ShieldedMixin.projection_modules asks g_s for them (trigger_argument).
    from compressai_psic.models.psic import PSICSynthesis
    from compressai_psic.models.synthesis import ShieldedSynthesis, TriggeredSynthesis

    assert "projection_modules" in vars(TriggeredSynthesis)
    with pytest.raises(NotImplementedError):
        TriggeredSynthesis().projection_modules()
    for synthesis in (ShieldedSynthesis, PSICSynthesis):
        assert "projection_modules" in vars(synthesis)


def test_the_synthesis_lists_the_model_s_projections():
    for net in (
        tiny_zoo_model("bmshj2018-hyperprior"),
        psic.PSICHyperprior(N=8, M=12, trigger_dim=4),
    ):
        assert list(net.g_s.projection_modules()) == net.projection_modules()


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


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return x + torch.relu(self.conv1(x))


class _Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Conv2d(3, 3, 1))

    def forward(self, x):
        return torch.relu(self.inner(x))


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
        raises_exactly(
            f'Injection point "{path}" is not inside g_s',
            ShieldedSynthesis,
            layers,
            [path],
            _projections([path], 3),
        )
    raises_exactly(
        "Injection point \"g_s.7\" does not exist: g_s has layers ['0', '1', '2']",
        ShieldedSynthesis,
        layers,
        ["g_s.7"],
        _projections(["g_s.7"], 3),
    )
    raises_exactly(
        'Injection point "g_s.0.weight" is inside a Conv2d, whose forward runs its '
        "layers itself; points inside it: none registered. Use a layer of g_s "
        '("g_s.0") or register the block with '
        "compressai_psic.models.register_block_runner",
        ShieldedSynthesis,
        layers,
        ["g_s.0.weight"],
        _projections(["g_s.0.weight"], 3),
    )


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
        raises_exactly(
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
    raises_exactly(
        "trigger has 2 rows for a batch of 5 (give one row, or one per sample)",
        synthesis,
        x,
        torch.randn(2, 4),
    )


def test_threads_sharing_one_model_get_what_they_ask(hyperprior, image):
    net = hyperprior
    with torch.no_grad():
        enc = net.compress(image)
        expected = {
            c: net.decompress(enc["strings"], enc["shape"], condition=c)["x_hat"]
            for c in ("full", "protected", 0.5)
        }
    assert not torch.equal(expected["full"], expected["protected"])
    wrong, errors = [], []
    start = threading.Barrier(6)

    def worker(index: int) -> None:
        conditions = ("full", "protected", 0.5)
        start.wait()
        for step in range(50):
            condition = conditions[(index + step) % 3]
            try:
                with torch.no_grad():
                    out = net.decompress(enc["strings"], enc["shape"], condition)
                if not torch.equal(out["x_hat"], expected[condition]):
                    wrong.append((index, step, condition))
            except Exception as err:  # noqa: BLE001 - every failure counts
                errors.append(repr(err))

    _run_in_threads(worker, 6)
    assert errors == [] and wrong == []


def test_no_call_state_is_left_on_the_instance(hyperprior, image):
    before = set(hyperprior.__dict__)
    with torch.no_grad():
        hyperprior(image, condition="full")
        hyperprior.forward_multi(image)
    assert set(hyperprior.__dict__) == before
    ours = [key for key in before if key.startswith("_psic")]
    assert not any("call" in key or "condition" in key for key in ours)


def test_a_failed_synthesis_leaves_no_state_behind(hyperprior, image):
    with torch.no_grad(), pytest.raises(RuntimeError):
        hyperprior.g_s(torch.rand(1, 5, 4, 4))  # wrong channel count
        # the next call must not see a half-finished call
    with torch.no_grad():
        a = hyperprior(image, condition="full")["x_hat"]
        b = unshield(hyperprior)(image)["x_hat"]
    assert torch.equal(a, b)


def test_layers_are_the_base_ones_and_slices_keep_their_triggers(hyperprior):
    base = unshield(hyperprior)
    h = torch.rand(2, 16, 8, 8)
    with torch.no_grad():
        layer, plain = hyperprior.g_s[4](h), base.g_s[4](h)
        sliced = hyperprior.g_s[4:]
        protected = sliced(h)
        full = sliced(h, hyperprior.trigger("full"))
        bias = hyperprior.trigger_proj["g_s-4"](hyperprior.trigger("protected"))
        by_hand = base.g_s[6](
            base.g_s[5](plain + bias[:, :, None, None])
            + hyperprior.trigger_proj["g_s-5"](hyperprior.trigger())[:, :, None, None]
        )
    assert torch.equal(layer, plain)  # a layer alone is the base model's layer
    assert sliced.points == ("g_s.4", "g_s.5")
    assert torch.equal(full, base.g_s[4:](h))
    torch.testing.assert_close(protected, by_hand)
    assert not torch.allclose(protected, full, atol=1e-3)


def test_points_inside_blocks_are_their_runners_sites():
    # ResidualBlock applies its one leaky_relu module twice: not a site.
    with pytest.raises(ValueError, match=r"ResidualBlock.*\['conv1', 'conv2'\]"):
        psic.shield(
            Cheng2020Anchor(N=8),
            injection_points=[psic.InjectionPoint("g_s.0.leaky_relu", 8)],
        )
    # A block nobody registered a runner for refuses points inside it.
    attn = Cheng2020Attention(N=8)
    with pytest.raises(ValueError, match="none registered"):
        psic.shield(attn, injection_points=[psic.InjectionPoint("g_s.5.conv_a", 8)])


def test_synthesize_terms_is_the_synthesis_with_the_changes_given():
    """The whole modulation space, as an attacker who searches it sees it: the
    projections' changes given directly reproduce the triggered synthesis, a
    subset of points changes only those, none is the plain synthesis."""
    model = tiny_zoo_model("bmshj2018-hyperprior")
    perturb_triggers(model, scale=0.3)
    y = torch.randn(2, 12, 2, 2, generator=torch.Generator().manual_seed(0))
    trigger = model.trigger("protected", 2)
    terms = {point: proj(trigger) for point, proj in model.g_s.projections}
    with torch.no_grad():
        assert torch.equal(model.g_s.synthesize_terms(y, terms), model.g_s(y, trigger))
        first = next(iter(terms))
        only = model.g_s.synthesize_terms(y, {first: terms[first]})
        plain = model.g_s.synthesize_terms(y, {})
        assert torch.equal(plain, model.g_s(y, model.trigger("full", 2)))
        assert not torch.equal(only, plain) and not torch.equal(
            only, model.g_s(y, trigger)
        )
    with pytest.raises(ValueError, match=r"No injection points \['g_s.99'\]"):
        model.g_s.synthesize_terms(y, {"g_s.99": terms[first]})


def test_latent_shifts_keep_each_run_s_own_trigger():
    """With a latent shift per trigger (a keyed decode), each run decodes its
    shifted latent with its own trigger: what a single decode of that trigger
    computes, also for a trigger that is not zero."""
    model = tiny_zoo_model("bmshj2018-hyperprior")
    perturb_triggers(model, scale=0.3)
    y = torch.randn(1, 12, 2, 2, generator=torch.Generator().manual_seed(0))
    protected, full = model.trigger("protected"), model.trigger("full")
    assert protected.abs().max() > 0

    def shift(latent: torch.Tensor) -> torch.Tensor:
        return latent + 0.5

    with torch.no_grad():
        with call_triggers(model.g_s, [protected, full], [shift, None]):
            both = model.g_s(y)
        alone = [model.g_s(shift(y), protected), model.g_s(y, full)]
        assert not torch.equal(alone[0], model.g_s.synthesize(shift(y), None))
    assert torch.equal(both, torch.cat(alone))


def test_synthesize_without_a_trigger_is_the_base_synthesis():
    model = tiny_zoo_model("bmshj2018-hyperprior")
    perturb_triggers(model, scale=0.3)
    y = torch.randn(1, 12, 2, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base = model.g_s.synthesize(y, None)
        assert torch.equal(base, model.g_s.plain()(y))
        assert not torch.equal(base, model.g_s(y))
