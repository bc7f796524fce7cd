"""Core v2: call-local conditions, real classes, plans, refusals, registry use."""

from __future__ import annotations

import copy
import io
import pickle
import threading

import pytest
import torch
import torch.nn as nn
from compressai.layers import GDN
from compressai.models import (
    Cheng2020Anchor,
    Cheng2020Attention,
    CompressionModel,
    ScaleHyperprior,
)

import compressai_psic as psic
from compressai_psic.models import (
    PSICHyperprior,
    get_architecture,
    guess_architecture,
    register_architecture,
    unshield,
)
from compressai_psic.models.google import ShieldedScaleHyperprior

from .helpers import perturb_triggers, tiny_base

GDN_EVERY = ["g_s.0", "g_s.1", "g_s.2", "g_s.3", "g_s.4", "g_s.5"]
CHENG_ANCHOR_EVERY = [
    f"g_s.{i}.{n}"
    for i, names in (
        (0, ("conv1", "conv2")),
        (1, ("subpel_conv", "conv")),
        (2, ("conv1", "conv2")),
        (3, ("subpel_conv", "conv")),
        (4, ("conv1", "conv2")),
        (5, ("subpel_conv", "conv")),
        (6, ("conv1", "conv2")),
    )
    for n in names
]
EXPECTED_PLANS = {
    "bmshj2018-factorized": {"every-stage": GDN_EVERY, "late": ["g_s.4", "g_s.5"]},
    "bmshj2018-hyperprior": {"every-stage": GDN_EVERY, "late": ["g_s.4", "g_s.5"]},
    "mbt2018-mean": {"every-stage": GDN_EVERY, "late": ["g_s.4", "g_s.5"]},
    "mbt2018": {"every-stage": GDN_EVERY, "late": ["g_s.4", "g_s.5"]},
    "cheng2020-anchor": {
        "every-stage": CHENG_ANCHOR_EVERY,
        "late": ["g_s.5", "g_s.6.conv1", "g_s.6.conv2"],
    },
    "cheng2020-attn": {
        # attention blocks at g_s.0 and g_s.5 carry no bias
        "every-stage": [
            f"g_s.{i}.{n}"
            for i, names in (
                (1, ("conv1", "conv2")),
                (2, ("subpel_conv", "conv")),
                (3, ("conv1", "conv2")),
                (4, ("subpel_conv", "conv")),
                (6, ("conv1", "conv2")),
                (7, ("subpel_conv", "conv")),
                (8, ("conv1", "conv2")),
            )
            for n in names
        ],
        "late": ["g_s.7", "g_s.8.conv1", "g_s.8.conv2"],
    },
}


@pytest.fixture(scope="module")
def hyperprior():
    net = psic.shield(tiny_base("bmshj2018-hyperprior"))
    perturb_triggers(net)
    return net.eval()


@pytest.fixture(scope="module")
def image():
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))


# ------------------------------------------------------------ call-local state
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

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
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


# -------------------------------------------------------------- real classes
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
    net = psic.shield(TinyCodec().eval())
    perturb_triggers(net)
    clone = pickle.loads(pickle.dumps(net))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(clone(x)["x_hat"], net(x)["x_hat"])


def test_shielded_classes_are_module_level_and_registered():
    for name in EXPECTED_PLANS:
        cls = get_architecture(name).shielded_class
        module = __import__(cls.__module__, fromlist=[cls.__name__])
        assert getattr(module, cls.__name__) is cls
        assert issubclass(cls, psic.ShieldedMixin)
        assert issubclass(cls, get_architecture(name).model_class)
    assert psic.shield(ScaleHyperprior(8, 12)).__class__ is ShieldedScaleHyperprior


# --------------------------------------------------------------------- plans
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


# ------------------------------------------------------------------ refusals
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


def test_missing_and_duplicate_points_are_refused():
    base = tiny_base("bmshj2018-factorized")
    with pytest.raises(ValueError, match="does not exist"):
        psic.shield(base, injection_points=["g_s.0", "g_s.9"])
    with pytest.raises(ValueError, match="listed twice"):
        psic.shield(base, injection_points=["g_s.1", "g_s.1"])
    with pytest.raises(ValueError, match="plan= or injection_points="):
        psic.shield(base, plan="late", injection_points=["g_s.1"])


# ------------------------------------------------------- shield on a shielded
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


# ----------------------------------------------------------- official layout
def test_bare_psic_hyperprior_respects_beta(image):
    net = PSICHyperprior(N=8, M=12, trigger_dim=16).eval()
    perturb_triggers(net)
    with torch.no_grad():
        net(image)
        net.update(force=True)
        enc = net.compress(image)
        prot = net.decompress(enc["strings"], enc["shape"])["x_hat"]
        full = net.decompress(enc["strings"], enc["shape"], condition="full")["x_hat"]
        y = torch.randn(1, 12, 4, 4)
        explicit = net.g_s(y, trigger=net.global_cond(torch.zeros(1)))
        by_condition = net.g_s(y, net.trigger("full"))
        default = net.g_s(y)
        protected = net.g_s(y, net.trigger("protected"))
    assert (prot - full).abs().max() > 1e-3
    # Not anchored: the full trigger is t(0) itself, as published.
    assert torch.equal(explicit, by_condition)
    assert torch.equal(default, protected)


def test_official_block_adds_its_projections_itself():
    from compressai_psic.models.psic import ConditionalResidualBlock

    torch.manual_seed(0)
    block = ConditionalResidualBlock(6, 4, trigger_dim=5)
    with torch.no_grad():
        block._proj1[0].weight.normal_()
        block._proj2[0].weight.normal_()
    x, t = torch.randn(2, 6, 3, 3), torch.randn(2, 5)
    h = nn.functional.gelu(block.conv1(x)) + block._proj1(t)[..., None, None]
    h = nn.functional.gelu(block.conv2(h)) + block._proj2(t)[..., None, None]
    torch.testing.assert_close(block(x, t), h + block.skip(x))
    assert not torch.allclose(block(x), block(x, t))


# ---------------------------------------------------------- MLP and encoder
def test_trigger_mlp_structure():
    encoder = psic.FourierConditionEncoder(trigger_dim=512, num_frequencies=10)
    mlp = encoder.beta_mlp
    assert (mlp.fc1.in_features, mlp.fc1.out_features) == (21, 512)
    assert (mlp.fc2.in_features, mlp.fc2.out_features) == (512, 512)
    with torch.no_grad():
        mlp.fc1.bias.fill_(-100.0)  # every hidden unit negative before ReLU
        assert torch.equal(encoder(torch.tensor([0.3])), torch.relu(mlp.fc2.bias)[None])
        mlp.fc1.bias.zero_()
        mlp.fc2.bias.fill_(-100.0)  # ReLU after the second layer too
        assert torch.equal(encoder(torch.tensor([0.3])), torch.zeros(1, 512))


# ------------------------------------------------------------------ registry
class TinyCodec(CompressionModel):
    """A user's own model (module level, so that it pickles)."""

    def __init__(self, N=8, M=12):
        super().__init__()
        from compressai.entropy_models import EntropyBottleneck

        self.entropy_bottleneck = EntropyBottleneck(M)
        self.g_a = nn.Sequential(nn.Conv2d(3, N, 5, 2, 2), nn.Conv2d(N, M, 5, 2, 2))
        self.g_s = nn.Sequential(
            nn.ConvTranspose2d(M, N, 5, 2, 2, 1),
            GDN(N, inverse=True),
            nn.ConvTranspose2d(N, 3, 5, 2, 2, 1),
        )

    def forward(self, x):
        y_hat, likelihoods = self.entropy_bottleneck(self.g_a(x))
        return {"x_hat": self.g_s(y_hat), "likelihoods": {"y": likelihoods}}


def _tiny_config(state_dict):
    return {
        "N": int(state_dict["g_a.0.weight"].size(0)),
        "M": int(state_dict["g_a.1.weight"].size(0)),
    }


class WideCodec(TinyCodec):
    pass


def test_registered_architecture_checkpoint_loads_with_its_config(
    tmp_path, image, registries
):
    @register_architecture(
        "wide-codec",
        plans={"every-stage": ["g_s.0", "g_s.1"], "late": ["g_s.1"]},
        config_from_state_dict=_tiny_config,
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


# ---------------------------------------------------------------- modulation
@pytest.mark.parametrize("name", ["bmshj2018-factorized", "cheng2020-anchor"])
def test_affine_modulation_is_exact_at_creation_and_scales_features(name, image):
    base = tiny_base(name)
    net = psic.shield(base, modulation="affine")
    point = net.injection_points[0]
    assert net.trigger_proj[point.key].weight.shape[0] == 2 * point.channels
    with torch.no_grad():
        enc = base.compress(image)
        ref = base.decompress(enc["strings"], enc["shape"])["x_hat"]
        for condition in ("protected", "full"):
            out = net.decompress(enc["strings"], enc["shape"], condition)["x_hat"]
            assert torch.equal(out, ref)
    # With only the scale half non-zero the change is h·s: proportional to the
    # features, so it depends on the image.
    only = psic.shield(base, modulation="affine", injection_points=[point.target])
    with torch.no_grad():
        only.global_cond.beta_mlp.fc2.bias.fill_(1.0)
        only.trigger_proj[point.key].weight[: point.channels].normal_(0, 0.01)
        scale = only.trigger_proj[point.key](only.trigger("protected"))
        scale = scale[:, : point.channels, None, None]
        # The oracle: the base synthesis with the point's output scaled by a hook.
        plain = unshield(only)
        plain.get_submodule(point.target).register_forward_hook(
            lambda module, args, out: out * (1 + scale)
        )
        first = next(m for m in plain.g_s.modules() if hasattr(m, "in_channels"))
        y = torch.rand(2, first.in_channels, 4, 4)
        torch.testing.assert_close(only.g_s(y), plain.g_s(y))
        assert not torch.allclose(only.g_s(y), unshield(only).g_s(y))


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
