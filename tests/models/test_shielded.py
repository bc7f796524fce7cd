"""Core tests: shielding, dual-path decoding, checkpoints, registry."""

from __future__ import annotations

import copy
import warnings

import compressai
import pytest
import torch
import torch.nn as nn
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import GDN
from compressai.models import (
    CompressionModel,
    FactorizedPrior,
)
from compressai.registry import MODELS
from hypothesis import given, settings
from hypothesis import strategies as st

import compressai_psic as psic
from compressai_psic import zoo
from compressai_psic.errors import DesyncError, KeyRequiredError
from compressai_psic.models import (
    InjectionPoint,
    PSICHyperprior,
    ShieldedFactorizedPrior,
    get_architecture,
    unshield,
)
from compressai_psic.models.guard import latent_layout
from compressai_psic.models.keys import ShieldKey
from compressai_psic.models.shielded import (
    AffineTriggerProjection,
    FixedConditionSynthesis,
    TriggerProjection,
    _latent_channels,
)
from compressai_psic.models.synthesis import (
    ShieldedSynthesis,
    TriggeredSynthesis,
    TriggerSource,
)

from .helpers import (
    ParameterFreeEncoder,
    factorized,
    perturb_triggers,
    raises_exactly,
    tiny_base,
    tiny_zoo_model,
)

ARCHS = list(psic.ZOO_ARCHITECTURES) + ["psic-hy2018"]
AUTOREGRESSIVE = {"mbt2018", "cheng2020-anchor", "cheng2020-attn"}

warnings.filterwarnings("ignore", category=UserWarning)


def capture_synthesis_input(model: nn.Module):
    seen = []
    handle = model.g_s.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    return seen, handle


@pytest.fixture(scope="module", params=ARCHS)
def pair(request):
    base = tiny_base(request.param)
    shielded = psic.shield(base)
    return request.param, base, shielded


@pytest.fixture(scope="module")
def image():
    torch.manual_seed(3)
    return torch.rand(1, 3, 64, 64)


def test_shielded_is_compression_model(pair):
    name, base, shielded = pair
    assert isinstance(shielded, CompressionModel)
    assert isinstance(shielded, type(base))
    assert shielded.architecture == name
    expected = name if name.startswith("psic-") else f"psic-{name}"
    assert issubclass(MODELS[expected], psic.ShieldedMixin)


def test_forward_shapes_and_keys(pair, image):
    name, _, shielded = pair
    out = shielded(image.repeat(2, 1, 1, 1), condition=torch.tensor([0.0, 1.0]))
    assert set(out) == {"x_hat", "likelihoods", "beta"}
    assert out["beta"].tolist() == [0.0, 1.0]
    assert out["x_hat"].shape == (2, 3, 64, 64)
    keys = set(out["likelihoods"])
    assert keys == ({"y"} if name == "bmshj2018-factorized" else {"y", "z"})
    multi = shielded(image, condition=["full", "protected"])
    assert [t.shape for t in multi["x_hat"]] == [(1, 3, 64, 64)] * 2
    assert [b.tolist() for b in multi["beta"]] == [[0.0], [1.0]]


def test_compress_identical_to_base(pair, image):
    _, base, shielded = pair
    with torch.no_grad():
        a = base.compress(image)
        b = shielded.compress(image)
    assert a["strings"] == b["strings"]
    assert tuple(a["shape"]) == tuple(b["shape"])


def test_both_paths_equal_base_after_shield(pair, image):
    _, base, shielded = pair
    with torch.no_grad():
        enc = base.compress(image)
        ref = base.decompress(enc["strings"], enc["shape"])["x_hat"]
        prot = shielded.decompress(enc["strings"], enc["shape"])["x_hat"]
        full = shielded.decompress(enc["strings"], enc["shape"], condition="full")
        both = shielded.decompress_multi(enc["strings"], enc["shape"])["x_hat"]
        fwd_ref = base(image)["x_hat"]
        fwd = shielded(image, condition="protected")["x_hat"]
    assert torch.equal(prot, ref)
    assert torch.equal(full["x_hat"], ref)
    # The stacked decode batches the synthesis, which may round differently.
    torch.testing.assert_close(both[0], ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(both[1], ref, rtol=0, atol=1e-5)
    assert torch.equal(fwd, fwd_ref)


@pytest.fixture(scope="module")
def perturbed(pair):
    name, base, shielded = pair
    model = copy.deepcopy(shielded)
    perturb_triggers(model)
    return name, base, model


def test_paths_differ_but_latents_identical(perturbed, image):
    name, base, model = perturbed
    with torch.no_grad():
        enc = model.compress(image)
        latent_layout(model)  # the decode guard's one-off probe runs g_s too
        seen, handle = capture_synthesis_input(model)
        prot = model.decompress(enc["strings"], enc["shape"])["x_hat"]
        full = model.decompress(enc["strings"], enc["shape"], condition="full")["x_hat"]
        handle.remove()
        ref = base.decompress(enc["strings"], enc["shape"])["x_hat"]
    assert len(seen) == 2 and torch.equal(seen[0], seen[1])
    assert (prot - full).abs().max() > 1e-3
    if get_architecture(name).anchor_full:
        # Anchored triggers: the full path is the base synthesis, exactly.
        assert torch.equal(full, ref)


def assert_close_scaled(actual, expected, scale):
    """Batched and unbatched convolutions round differently; random weights give
    outputs of magnitude up to ``scale``, so the tolerance is relative to it."""
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5 * max(1.0, scale))


def test_multi_condition_decode_equals_separate(perturbed, image):
    _, _, model = perturbed
    conditions = ["protected", "full", 0.25]
    with torch.no_grad():
        enc = model.compress(image.repeat(2, 1, 1, 1))
        multi = model.decompress_multi(enc["strings"], enc["shape"], conditions)
        scale = float(model(image, condition="protected")["x_hat"].abs().max())
        for cond, x_hat in zip(conditions, multi["x_hat"]):
            single = model.decompress(enc["strings"], enc["shape"], condition=cond)
            assert x_hat.shape == single["x_hat"].shape == (2, 3, 64, 64)
            assert_close_scaled(x_hat, single["x_hat"], scale)
        fwd = model(image, condition=conditions)
        for cond, x_hat in zip(conditions, fwd["x_hat"]):
            assert_close_scaled(x_hat, model(image, condition=cond)["x_hat"], scale)


def test_per_sample_condition_matches_named(perturbed, image):
    _, _, model = perturbed
    batch = image.repeat(2, 1, 1, 1)
    with torch.no_grad():
        mixed = model(batch, condition=torch.tensor([1.0, 0.0]))["x_hat"]
        prot = model(batch, condition="protected")["x_hat"]
        full = model(batch, condition="full")["x_hat"]
    scale = float(prot.abs().max())
    assert_close_scaled(mixed[0], prot[0], scale)
    assert_close_scaled(mixed[1], full[1], scale)


def test_from_state_dict_round_trip(perturbed, image):
    name, _, model = perturbed
    cls = type(model)
    restored = cls.from_state_dict(model.state_dict()).eval()
    restored.update(force=True)
    with torch.no_grad():
        enc = model.compress(image)
        assert restored.compress(image)["strings"] == enc["strings"]
        for cond in ("protected", "full"):
            a = model.decompress(enc["strings"], enc["shape"], condition=cond)
            b = restored.decompress(enc["strings"], enc["shape"], condition=cond)
            assert torch.equal(a["x_hat"], b["x_hat"])


def _old_style(state_dict):
    """CompressAI 1.2.6 entropy-bottleneck names, module. prefix, training wrap."""
    renamed = {}
    for key, value in state_dict.items():
        for new, old in (
            ("matrices.", "_matrix"),
            ("biases.", "_bias"),
            ("factors.", "_factor"),
        ):
            marker = f"entropy_bottleneck.{new}"
            if marker in key:
                key = key.replace(marker, f"entropy_bottleneck.{old}")
        renamed["module." + key] = value
    return {"epoch": 7, "state_dict": renamed, "loss": 1.0, "optimizer": {}}


def test_old_style_checkpoint_loads(perturbed, image, tmp_path):
    name, _, model = perturbed
    checkpoint = _old_style(model.state_dict())
    assert any("_matrix0" in k for k in checkpoint["state_dict"])
    path = tmp_path / "old.pth.tar"
    torch.save(checkpoint, path)
    loaded = psic.load_checkpoint(path)  # the architecture is guessed
    assert loaded.architecture == name
    with torch.no_grad():
        a = model(image, condition="protected")["x_hat"]
        b = loaded(image, condition="protected")["x_hat"]
    assert torch.equal(a, b)


def test_plain_compressai_checkpoint_is_upgraded(pair, image, tmp_path):
    name, base, _ = pair
    if name == "psic-hy2018":
        pytest.skip("no plain CompressAI checkpoint for the official layout")
    path = tmp_path / "base.pth.tar"
    torch.save({"state_dict": base.state_dict()}, path)
    loaded = psic.load_checkpoint(path, architecture=name)
    with torch.no_grad():
        assert torch.equal(loaded(image)["x_hat"], base(image)["x_hat"])


def test_deepcopy_keeps_the_triggers_on_the_copy(pair, image):
    _, _, shielded = pair
    clone = copy.deepcopy(shielded)
    perturb_triggers(clone, seed=5)
    with torch.no_grad():
        a = shielded(image)["x_hat"]
        b = clone(image)["x_hat"]
        c = shielded(image, condition="full")["x_hat"]
    assert torch.equal(a, c)  # the original still has zero projections
    assert not torch.equal(a, b)


# ----------------------------------------------------------- official layout
def test_official_layout_keys_and_shapes():
    model = psic.SHIELDED_CLASSES["psic-hy2018"](N=192, M=320)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    prefix = "g_s_cond.synthesis_transform."
    assert not any(k.startswith("g_s.") for k in shapes)
    assert shapes["global_cond.beta_mlp.fc1.weight"] == (512, 21)
    assert shapes["global_cond.beta_mlp.fc2.weight"] == (512, 512)
    assert shapes[prefix + "0.conv1.weight"] == (192, 320, 3, 3)
    assert shapes[prefix + "0.skip.weight"] == (192, 320, 1, 1)
    assert shapes[prefix + "0._proj1.0.weight"] == (192, 512)
    assert shapes[prefix + "0._proj2.0.weight"] == (192, 512)
    assert prefix + "2.skip.weight" not in shapes
    assert shapes[prefix + "1.subpel_conv.0.weight"] == (768, 192, 3, 3)
    assert shapes[prefix + "1.upsample.0.weight"] == (768, 192, 3, 3)
    assert shapes[prefix + "3.conv.weight"] == (192, 192, 3, 3)
    assert prefix + "5.igdn.beta" in shapes
    assert shapes[prefix + "7.0.weight"] == (12, 192, 3, 3)
    assert not any(k.startswith("trigger_proj.") for k in shapes)


def test_official_checkpoint_with_126_names_loads(tmp_path):
    torch.manual_seed(0)
    model = psic.SHIELDED_CLASSES["psic-hy2018"](N=16, M=24, trigger_dim=32).eval()
    perturb_triggers(model)
    checkpoint = _old_style(model.state_dict())
    checkpoint["state_dict"] = {
        k[len("module.") :]: v for k, v in checkpoint["state_dict"].items()
    }
    checkpoint["aux_optimizer"] = {}
    path = tmp_path / "psic_official.pth.tar"
    torch.save(checkpoint, path)
    loaded = psic.load_checkpoint(path)
    assert loaded.architecture == "psic-hy2018"
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for cond in ("protected", "full"):
            assert torch.equal(model(x, cond)["x_hat"], loaded(x, cond)["x_hat"])
        # Not anchored: β=0 and β=1 both carry their own biases, as published.
        assert not torch.equal(loaded(x, "full")["x_hat"], loaded(x, 1.0)["x_hat"])


def test_official_block_math():
    """A conditional block adds P1(t) after GELU(conv1) and P2(t) after GELU(conv2)."""
    torch.manual_seed(0)
    model = psic.SHIELDED_CLASSES["psic-hy2018"](N=8, M=12, trigger_dim=16).eval()
    perturb_triggers(model)
    block = model.g_s[0]
    y = torch.randn(1, 12, 4, 4)
    with torch.no_grad():
        t = model.global_cond(torch.tensor([1.0]))
        h = nn.functional.gelu(block.conv1(y)) + block._proj1(t)[..., None, None]
        h = nn.functional.gelu(block.conv2(h)) + block._proj2(t)[..., None, None]
        expected = h + block.skip(y)
        seen = []
        handle = block.register_forward_hook(lambda m, a, o: seen.append(o))
        model.g_s(y)
        handle.remove()
    torch.testing.assert_close(seen[0], expected)


# ------------------------------------------------------------------ registry
class TinyCodec(CompressionModel):
    """A user's own model: factorized prior with ReLU and 3 layers."""

    def __init__(self, N=8, M=12):
        super().__init__()
        self.entropy_bottleneck = EntropyBottleneck(M)
        self.g_a = nn.Sequential(
            nn.Conv2d(3, N, 5, 2, 2), nn.ReLU(), nn.Conv2d(N, M, 5, 2, 2)
        )
        self.g_s = nn.Sequential(
            nn.ConvTranspose2d(M, N, 5, 2, 2, 1),
            GDN(N, inverse=True),
            nn.ConvTranspose2d(N, 3, 5, 2, 2, 1),
        )
        self.N, self.M = N, M

    @property
    def downsampling_factor(self):
        return 4

    def forward(self, x):
        y_hat, lik = self.entropy_bottleneck(self.g_a(x))
        return {"x_hat": self.g_s(y_hat), "likelihoods": {"y": lik}}

    def compress(self, x):
        y = self.g_a(x)
        return {"strings": [self.entropy_bottleneck.compress(y)], "shape": y.shape[-2:]}

    def decompress(self, strings, shape):
        y_hat = self.entropy_bottleneck.decompress(strings[0], shape)
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1)}


def _check_custom(model, base):
    x = torch.rand(2, 3, 20, 28)
    with torch.no_grad():
        enc = model.compress(x)
        assert enc["strings"] == base.compress(x)["strings"]
        ref = base.decompress(enc["strings"], enc["shape"])["x_hat"]
        assert torch.equal(model.decompress(enc["strings"], enc["shape"])["x_hat"], ref)
        perturb_triggers(model)
        both = model.decompress_multi(enc["strings"], enc["shape"])["x_hat"]
        assert torch.equal(both[1], ref)  # full == base (anchored)
        assert not torch.equal(both[0], ref)


def test_custom_architecture_registers_in_a_few_lines(registries):
    @psic.register_architecture("tiny-codec", plans={"default": ["g_s.0", "g_s.1"]})
    class ShieldedTinyCodec(psic.ShieldedMixin, TinyCodec):
        pass

    cls = ShieldedTinyCodec
    assert MODELS["psic-tiny-codec"] is cls
    torch.manual_seed(0)
    base = TinyCodec().eval()
    base.update(force=True)
    model = psic.shield(base)
    assert type(model) is cls
    assert [p.target for p in model.injection_points] == ["g_s.0", "g_s.1"]
    _check_custom(model, base)
    fresh = cls(N=8, M=12)
    assert set(fresh.state_dict()) == set(model.state_dict())


def test_unregistered_sequential_model_uses_automatic_points():
    class OtherCodec(TinyCodec):
        pass

    torch.manual_seed(0)
    base = OtherCodec().eval()
    base.update(force=True)
    model = psic.shield(base)
    assert [(p.target, p.channels) for p in model.injection_points] == [
        ("g_s.0", 8),
        ("g_s.1", 8),
    ]
    _check_custom(model, base)


def test_shield_leaves_the_callers_model_alone(image):
    base = tiny_base("bmshj2018-hyperprior")
    model = psic.shield(base)
    perturb_triggers(model)
    with torch.no_grad():
        assert not torch.equal(base(image)["x_hat"], model(image)["x_hat"])
        assert not base.g_s._forward_hooks


def test_shield_rejects_non_compressai_models():
    with pytest.raises(ValueError, match="CompressionModel"):
        psic.shield(nn.Conv2d(3, 3, 1))


def test_bad_injection_point_is_reported():
    with pytest.raises(ValueError, match="not a module path inside g_s"):
        psic.shield(tiny_base("bmshj2018-factorized"), injection_points=["g_a.0"])
    with pytest.raises(ValueError, match="does not exist"):
        psic.shield(tiny_base("bmshj2018-factorized"), injection_points=["g_s.42"])


# ---------------------------------------------------------------- conditions
@pytest.mark.parametrize(
    "condition",
    [
        "hidden",
        1.5,
        -0.1,
        float("nan"),
        True,
        torch.ones(3),
        torch.tensor([1.5, 0.0]),
        torch.tensor([float("nan"), 1.0]),
        [1.0],
    ],
)
def test_invalid_conditions(condition, image):
    model = psic.shield(tiny_base("bmshj2018-factorized"))
    with pytest.raises(ValueError):
        if isinstance(condition, list):
            model.decompress_multi([], None, conditions=[])
        else:
            model(image.repeat(2, 1, 1, 1), condition=condition)


def test_fourier_features_match_the_paper():
    feats = psic.FourierConditionEncoder(trigger_dim=8).fourier(torch.tensor([0.3]))
    expected = [0.3]
    for k in range(10):
        expected += [
            torch.sin(torch.tensor(2.0**k * 0.3)),
            torch.cos(torch.tensor(2.0**k * 0.3)),
        ]
    torch.testing.assert_close(feats[0], torch.tensor([float(v) for v in expected]))


# ------------------------------------------------------------------------ zoo
@pytest.mark.parametrize("name", psic.ZOO_ARCHITECTURES)
def test_zoo_signature_and_errors(name):
    entry = zoo.image_models[name]
    with pytest.raises(ValueError, match="metric"):
        entry(1, metric="psnr")
    top = 6 if name.startswith("cheng2020") else 8
    for bad in (0, top + 1):
        with pytest.raises(ValueError, match="quality"):
            entry(bad)
    kwargs = {"N": 16} if name.startswith("cheng2020") else {"N": 16, "M": 24}
    model = entry(1, "mse", False, True, **kwargs)
    assert model.architecture == name


def test_zoo_default_channels_follow_compressai():
    model = zoo.bmshj2018_hyperprior(3)
    assert (model.N, model.M) == compressai.zoo.image.cfgs["bmshj2018-hyperprior"][3]


def test_pretrained_without_weights_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(tmp_path / "none.json"))
    with pytest.raises(RuntimeError, match="No PSIC weights"):
        zoo.mbt2018_mean(2, pretrained=True)


def test_manifest_weights_are_sha256_checked(monkeypatch, tmp_path):
    base = tiny_base("bmshj2018-hyperprior")
    model = psic.shield(base)
    perturb_triggers(model)
    weights = tmp_path / "w.pth.tar"
    torch.save(model.state_dict(), weights)
    from compressai_psic.io.files import file_sha256 as sha256_file

    manifest = tmp_path / "manifest.json"
    entry = {
        "name": "tiny",
        "architecture": "bmshj2018-hyperprior",
        "file": "w.pth.tar",
        "sha256": sha256_file(weights),
        "includes_base": True,
    }
    import json

    manifest.write_text(json.dumps({"models": [entry]}))
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(manifest))
    loaded = zoo.load_named("tiny")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x)["x_hat"], model(x)["x_hat"])
    entry["sha256"] = "0" * 64
    manifest.write_text(json.dumps({"models": [entry]}))
    with pytest.raises(RuntimeError, match="sha256"):
        zoo.load_named("tiny")


# ------------------------------------------------------------------ properties
@pytest.fixture(scope="module")
def coding_model():
    model = psic.shield(tiny_base("bmshj2018-hyperprior"))
    perturb_triggers(model, seed=11)
    return model


@settings(max_examples=8, deadline=None)
@given(
    height=st.integers(8, 150).filter(lambda v: v % 64),
    width=st.integers(8, 150).filter(lambda v: v % 64),
    beta=st.floats(0.0, 1.0),
)
def test_any_size_round_trip_and_conditions(coding_model, height, width, beta):
    model = coding_model
    x = torch.rand(1, 3, height, width)
    padded, padding = psic.pad_to_multiple(x, model.downsampling_factor)
    assert padded.shape[-1] % 64 == 0 and padded.shape[-2] % 64 == 0
    with torch.no_grad():
        enc = model.compress(padded)
        out = model.decompress_multi(enc["strings"], enc["shape"], [beta, "full"])
        single = model.decompress(enc["strings"], enc["shape"], condition=beta)
    x_hat = psic.crop_padding(out["x_hat"][0], padding)
    assert x_hat.shape == x.shape
    assert 0 <= float(x_hat.min()) and float(x_hat.max()) <= 1
    with torch.no_grad():
        scale = float(model(padded, condition=beta)["x_hat"].abs().max())
    assert_close_scaled(out["x_hat"][0], single["x_hat"], scale)
    if beta == 0.0:
        assert torch.equal(out["x_hat"][0], out["x_hat"][1])


@given(
    height=st.integers(1, 200),
    width=st.integers(1, 200),
    multiple=st.sampled_from([1, 16, 64]),
)
def test_pad_crop_inverse(height, width, multiple):
    x = torch.rand(1, 3, height, width)
    padded, padding = psic.pad_to_multiple(x, multiple)
    assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
    assert torch.equal(psic.crop_padding(padded, padding), x)


def test_load_named_refuses_non_codec_entries(monkeypatch, tmp_path):
    import json

    manifest = tmp_path / "manifest.json"
    entry = {"name": "some-vlp", "kind": "vlp", "file": "x.pt", "sha256": "0" * 64}
    manifest.write_text(json.dumps({"models": [entry]}))
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(manifest))
    with pytest.raises(ValueError, match="not a shielded codec"):
        zoo.load_named("some-vlp")
    with pytest.raises(ValueError, match="Unknown model"):
        zoo.load_named("nothing")


#: cuDNN settings under which a GPU decode can be compared: deterministic kernels
#: (ConvTranspose2d's default ones may add in any order) and full float32 (no TF32).
_EXACT_CUDNN = dict(enabled=True, benchmark=False, deterministic=True, allow_tf32=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["bmshj2018-hyperprior", "psic-hy2018"])
def test_cuda_forward_and_dual_decode(name, image):
    # eval(): forward rounds the latents instead of adding uniform noise, whose
    # draws differ between the CPU and the GPU.
    model = psic.shield(tiny_base(name)).eval()
    perturb_triggers(model)
    with torch.no_grad(), torch.backends.cudnn.flags(**_EXACT_CUDNN):
        cpu_out = model(image, condition=["full", "protected"])["x_hat"]
        model = model.cuda()
        model.update(force=True)
        out = model(image.cuda(), condition=["full", "protected"])["x_hat"]
        enc = model.compress(image.cuda())
        both = model.decompress_multi(
            enc["strings"], enc["shape"], ["full", "protected"]
        )
    for a, b in zip(out, cpu_out):
        assert a.device.type == "cuda"
        scale = float(b.abs().max())
        torch.testing.assert_close(a.cpu(), b, rtol=1e-3, atol=1e-4 * scale)
    assert all(x.device.type == "cuda" for x in both["x_hat"])
    assert not torch.equal(both["x_hat"][0], both["x_hat"][1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_decodes_are_identical_with_deterministic_kernels(image):
    model = psic.shield(tiny_base("bmshj2018-hyperprior")).eval()
    perturb_triggers(model)
    model = model.cuda()
    model.update(force=True)
    conditions = ["protected", "full", 0.5]
    with torch.no_grad(), torch.backends.cudnn.flags(**_EXACT_CUDNN):
        enc = model.compress(image.cuda())
        strings, shape = enc["strings"], enc["shape"]
        alone = [
            model.decompress(strings, shape, condition=c)["x_hat"] for c in conditions
        ]
        again = [
            model.decompress(strings, shape, condition=c)["x_hat"] for c in conditions
        ]
        together = model.decompress_multi(strings, shape, conditions)["x_hat"]
    for a, b, c in zip(alone, again, together):
        assert a.device.type == "cuda"
        assert torch.equal(a, b) and torch.equal(a, c)


def test_pretrained_offline_names_the_file_to_download(monkeypatch, tmp_path):
    """PSIC weights on top of CompressAI's: the base download fails offline."""
    import json
    import urllib.error

    import compressai.zoo as cai_zoo

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    from compressai_psic.io.files import file_sha256 as sha256_file

    monkeypatch.setitem(cai_zoo.image_models, "mbt2018-mean", offline)
    manifest = tmp_path / "manifest.json"
    delta = tmp_path / "delta.pth.tar"
    torch.save({}, delta)
    entry = {
        "architecture": "mbt2018-mean",
        "metric": "mse",
        "quality": 2,
        "file": delta.name,
        "sha256": sha256_file(delta),
        "includes_base": False,
    }
    manifest.write_text(json.dumps({"models": [entry]}))
    monkeypatch.setenv("COMPRESSAI_PSIC_MANIFEST", str(manifest))
    monkeypatch.setenv("COMPRESSAI_PSIC_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match=r"Download https://.*mbt2018-mean.*put it"):
        zoo.mbt2018_mean(2, pretrained=True)


class _NoChannels(nn.Module):
    def forward(self, x):
        return x


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
        raises_exactly(
            f"Not the state of an affine projection: {bad!r}",
            affine.set_extra_state,
            bad,
        )


def test_shield_construction_errors_say_what_is_wrong():
    with pytest.raises(ValueError) as info:
        factorized(modulation="scale")
    assert str(info.value) == (
        "Invalid modulation \"scale\": use one of ['bias', 'affine']"
    )
    with pytest.raises(ValueError) as info:
        factorized(plan="late", injection_points=["g_s.4"])
    assert str(info.value) == "Give plan= or injection_points=, not both"
    with pytest.raises(ValueError) as info:
        factorized(injection_points=[])
    assert str(info.value) == "At least one injection point is required"
    with pytest.raises(ValueError) as info:
        factorized(injection_points=["g_a.0"])
    assert str(info.value) == (
        'Injection point "g_a.0" is not a module path inside g_s: triggers steer '
        "the synthesis transform only"
    )
    for target in ("g_s-0", "g_s.0-1"):
        with pytest.raises(ValueError) as info:
            factorized(injection_points=[target])
        assert str(info.value) == (
            f'Injection point "{target}" is not a module path inside g_s: triggers '
            "steer the synthesis transform only"
        )
    with pytest.raises(ValueError) as info:
        factorized(injection_points=["g_s.0", "g_s.0"])
    assert str(info.value) == 'Injection point "g_s.0" is listed twice'
    with pytest.raises(ValueError) as info:
        factorized(injection_points=["g_s.9"])
    assert str(info.value) == (
        'Injection point "g_s.9" does not exist in ShieldedFactorizedPrior'
    )


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
    net = factorized(plan="late")
    assert isinstance(net.g_s, ShieldedSynthesis)
    assert net.g_s.points == ("g_s.4", "g_s.5")
    assert net.g_s.affine is False
    assert factorized(modulation="affine").g_s.affine is True
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
    assert factorized(num_frequencies=3).global_cond.fourier.num_frequencies == 3


def test_re_shielding_a_shielded_synthesis_starts_from_its_plain_layers():
    net = factorized(plan="late")
    layers = list(net.g_s)
    net._init_shield(net.global_cond, "every-stage", None)
    assert isinstance(net.g_s, ShieldedSynthesis)
    assert list(net.g_s) == layers
    assert net.plan == "every-stage" and len(net.g_s.points) == 6


def test_parameter_groups_and_trigger_parameters():
    net = factorized(plan="late")
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
    net = factorized()
    betas = net.condition_betas(["full", 0.5, "protected"], 2)
    assert torch.equal(betas, torch.tensor([0.0, 0.0, 0.5, 0.5, 1.0, 1.0]))
    assert betas.device.type == "cpu"


def test_trigger_defaults_to_the_models_default_condition():
    net = factorized()
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
    net = factorized()
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
    net = factorized()
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
    net = factorized()
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
    net = factorized(plan="late")
    net.trigger_proj["g_s-5"] = net.trigger_proj["g_s-4"]  # one module, two points
    params = list(net.trigger_parameters())
    assert len(params) == len(list(net.global_cond.parameters())) + 1
    assert len({id(p) for p in params}) == len(params)


def test_decompress_multi_with_per_sample_betas_and_unknown_arguments():
    net = factorized()
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
    net = factorized()
    net.global_cond.to("meta")
    assert net.condition_betas(["full"], 2).device.type == "meta"
    net.global_cond = ParameterFreeEncoder()
    betas = net.condition_betas([0.25], 2)
    assert betas.device.type == "cpu"
    assert torch.equal(betas, torch.full((2,), 0.25))


def test_missing_and_duplicate_points_are_refused():
    base = tiny_base("bmshj2018-factorized")
    with pytest.raises(ValueError, match="does not exist"):
        psic.shield(base, injection_points=["g_s.0", "g_s.9"])
    with pytest.raises(ValueError, match="listed twice"):
        psic.shield(base, injection_points=["g_s.1", "g_s.1"])
    with pytest.raises(ValueError, match="plan= or injection_points="):
        psic.shield(base, plan="late", injection_points=["g_s.1"])


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


# ------------------------------------------------------------------ keyed models
def test_make_keyed_builds_the_documented_default_shift_or_the_one_asked_for():
    model = tiny_zoo_model("bmshj2018-hyperprior")
    assert model.make_keyed() is model
    shift = model.key_shift
    assert (shift.latent_channels, shift.noise_channels, shift.form) == (12, 32, "mix")
    assert shift.net[0].out_channels == 192
    model.make_keyed(4, 8, "concat")
    shift = model.key_shift
    assert (shift.noise_channels, shift.form, shift.net[0].out_channels) == (
        4,
        "concat",
        8,
    )


def test_make_keyed_puts_the_shift_where_the_synthesis_is():
    model = tiny_zoo_model("bmshj2018-hyperprior")
    model.g_s.to("meta")
    model.make_keyed(4, 8)
    assert {p.device.type for p in model.key_shift.parameters()} == {"meta"}


def test_the_latent_channels_are_found_or_the_synthesis_is_named():
    assert _latent_channels(tiny_zoo_model("bmshj2018-hyperprior").g_s) == 12
    raises_exactly(
        "Cannot find the latent channels of Sequential",
        _latent_channels,
        nn.Sequential(nn.ReLU()),
    )


def test_keyed_synthesis_decodes_the_shifted_latent_on_the_full_path():
    model = tiny_zoo_model("bmshj2018-hyperprior")
    perturb_triggers(model, scale=0.3)
    model.make_keyed(4, 8)
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(1, 12, 2, 2, generator=gen)
    noise = torch.randn(1, 4, 2, 2, generator=gen)
    with torch.no_grad():
        shifted = y + model.key_shift(y, noise)
        out = model.keyed_synthesis(y, noise)
        # Anchored: the full path is the base synthesis, not the default one.
        assert torch.equal(out, model.g_s.plain()(shifted))
        assert not torch.equal(out, model.g_s(shifted))


def test_keyed_synthesis_of_a_model_without_a_key_says_how_to_get_one():
    model = tiny_zoo_model("bmshj2018-hyperprior")
    with pytest.raises(KeyRequiredError) as info:
        model.keyed_synthesis(torch.zeros(1, 12, 2, 2), torch.zeros(1, 4, 2, 2))
    assert str(info.value) == (
        "This model is not keyed: its protected path is the public trigger path "
        "(make_keyed() adds a keyed shift)"
    )


def test_a_keyed_model_names_the_two_conditions_it_decodes(image):
    model = tiny_zoo_model("bmshj2018-hyperprior").make_keyed(4, 8)
    with torch.no_grad():
        out = model.compress(image)
    with pytest.raises(ValueError) as info:
        model.decompress(out["strings"], out["shape"], 0.5)
    assert str(info.value) == (
        "A keyed model decodes 'protected' (with key=) or 'full', got 0.5"
    )


def test_decompress_multi_passes_portable_on_as_decompress_does(image):
    model = tiny_zoo_model("mbt2018")
    with torch.no_grad():
        out = model.compress(image)
    for decode in (model.decompress, model.decompress_multi):
        with pytest.raises(ValueError) as info:
            decode(out["strings"], out["shape"], portable=True)
        assert str(info.value) == (
            "mbt2018 cannot code portable bitstreams (its entropy parameters come "
            "from a context model); use portable=False"
        )
    model = tiny_zoo_model("bmshj2018-hyperprior")
    with torch.no_grad():
        out = model.compress(image, portable=True)
        args = (out["strings"], out["shape"])
        kwargs = dict(portable=True, symbols_digest=out["symbols_digest"])
        both = model.decompress_multi(*args, ["protected", "full"], **kwargs)
        alone = [model.decompress(*args, c, **kwargs) for c in ("protected", "full")]
    assert all(torch.equal(b, a["x_hat"]) for b, a in zip(both["x_hat"], alone))
    assert both["symbols_digest"] == out["symbols_digest"]


def test_the_constructor_makes_a_keyed_model_of_the_documented_defaults():
    cls = type(tiny_zoo_model("bmshj2018-hyperprior"))
    assert not cls(N=8, M=12).is_keyed
    shift = cls(N=8, M=12, key_noise_channels=4).key_shift
    assert (shift.noise_channels, shift.form, shift.net[0].out_channels) == (
        4,
        "mix",
        192,
    )
    model = cls(N=8, M=12, key_noise_channels=2, key_hidden=8, key_form="concat")
    assert (model.key_shift.form, model.key_shift.net[0].out_channels) == ("concat", 8)


def test_a_wrong_digest_of_a_portable_file_blames_the_file_not_the_machine(image):
    model = tiny_zoo_model("bmshj2018-hyperprior")
    for portable, blame in ((True, "the file is portable"), (False, "--portable")):
        with torch.no_grad():
            out = model.compress(image, portable=portable)
        wrong = out["symbols_digest"] ^ 1
        with pytest.raises(DesyncError, match=blame):
            model.decompress(
                out["strings"], out["shape"], portable=portable, symbols_digest=wrong
            )


def test_a_key_given_or_missing_is_refused_with_what_to_do(image):
    """The messages psic decompress prints for --key-file."""
    model = tiny_zoo_model("bmshj2018-hyperprior")
    with torch.no_grad():
        out = model.compress(image)
    args = (out["strings"], out["shape"])
    with pytest.raises(KeyRequiredError) as info:
        model.decompress(*args, key=ShieldKey(bytes(32)))
    assert str(info.value) == (
        "This model is not keyed; key= (psic --key-file) applies to keyed models only"
    )
    model.make_keyed(4, 8)
    with pytest.raises(KeyRequiredError) as info:
        model.decompress(*args)
    assert str(info.value) == (
        "This model's protected decode needs the publisher's key: pass "
        "key=read_key_file(PATH) (psic decompress --key-file PATH); "
        'condition="full" needs none'
    )
    with pytest.raises(KeyRequiredError) as info:
        model.decompress(*args, key=bytes(32))
    assert str(info.value) == (
        "key must be a ShieldKey (read_key_file or ShieldKey.generate), got bytes"
    )


def test_making_a_model_keyed_leaves_its_full_decode_as_it_was(image):
    """Also for the official layout, whose full trigger t(0) is not zero."""
    model = tiny_base("psic-hy2018")
    perturb_triggers(model, scale=0.1)
    assert model.trigger("full").abs().max() > 0
    with torch.no_grad():
        out = model.compress(image)
        args = (out["strings"], out["shape"], "full")
        before = model.decompress(*args)["x_hat"]
        assert not torch.equal(
            before, model.decompress(*args[:2], "protected")["x_hat"]
        )
        model.make_keyed(4, 8)
        assert torch.equal(model.decompress(*args)["x_hat"], before)


def test_forward_reports_the_betas_of_the_models_own_default():
    class FullByDefault(ShieldedFactorizedPrior):
        default_condition = "full"

    torch.manual_seed(0)
    net = FullByDefault(N=8, M=12, trigger_dim=4).eval()
    perturb_triggers(net)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = net(x)
        assert torch.equal(out["x_hat"], net(x, "full")["x_hat"])
    assert torch.equal(out["beta"], torch.zeros(2))
