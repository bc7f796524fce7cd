"""Keyed models: the protected decode needs the publisher's key, the full one
never does, and nothing else about the model changes."""

from __future__ import annotations

import threading

import pytest
import torch

from compressai_psic.errors import KeyRequiredError
from compressai_psic.models import load_checkpoint
from compressai_psic.models.keyed import KeyedLatentShift
from compressai_psic.models.keys import ShieldKey, image_seeds, key_noise
from compressai_psic.models.synthesis import call_triggers

from .helpers import tiny_zoo_model

KEY = ShieldKey(bytes(range(32)))


def keyed(name: str = "bmshj2018-hyperprior", seed: int = 0):
    model = tiny_zoo_model(name)
    torch.manual_seed(seed)
    model.make_keyed(noise_channels=4, hidden=8)
    with torch.no_grad():  # a shift that moves the latent visibly
        model.key_shift.net[-1].weight.mul_(30)
        model.key_shift.net[-1].bias.normal_()
    return model


def coded(model, batch: int = 2, size: int = 64):
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return model.compress(x)


@pytest.mark.parametrize(
    "name", ["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean"]
)
def test_the_protected_decode_needs_the_key_and_the_full_one_never(name):
    plain = tiny_zoo_model(name)
    out = coded(plain)
    with torch.no_grad():
        full_before = plain.decompress(out["strings"], out["shape"], "full")["x_hat"]
        model = keyed(name)
        full = model.decompress(out["strings"], out["shape"], "full")["x_hat"]
        with pytest.raises(KeyRequiredError, match="needs the publisher's key"):
            model.decompress(out["strings"], out["shape"])
        with pytest.raises(KeyRequiredError, match="needs the publisher's key"):
            model.decompress(out["strings"], out["shape"], "protected")
        protected = model.decompress(out["strings"], out["shape"], key=KEY)["x_hat"]
        again = model.decompress(out["strings"], out["shape"], key=KEY)["x_hat"]
        other = model.decompress(
            out["strings"], out["shape"], key=ShieldKey.generate()
        )["x_hat"]
        both = model.decompress_multi(out["strings"], out["shape"], key=KEY)["x_hat"]
    assert torch.equal(full, full_before)  # the full path is the model's own
    assert torch.equal(protected, again)
    assert not torch.equal(protected, full) and not torch.equal(protected, other)
    assert torch.equal(both[0], protected) and torch.equal(both[1], full)
    assert (protected - full).abs().mean() > 1e-3


def test_the_protected_decode_is_the_full_synthesis_of_the_keyed_latent():
    model = keyed("bmshj2018-factorized")
    out = coded(model)
    with torch.no_grad():
        protected = model.decompress(out["strings"], out["shape"], key=KEY)["x_hat"]
        y_hat = model.entropy_bottleneck.decompress(out["strings"][0], out["shape"])
        seeds = image_seeds(KEY, out["strings"], out["shape"])
        noise = key_noise(seeds, 4, y_hat.shape[-2:], y_hat)
        expected = model.keyed_synthesis(y_hat, noise).clamp(0, 1)
    assert torch.equal(protected, expected)


def test_keys_apply_to_keyed_models_only_and_conditions_are_two():
    plain = tiny_zoo_model("bmshj2018-hyperprior")
    out = coded(plain)
    with pytest.raises(KeyRequiredError, match="not keyed"):
        plain.decompress(out["strings"], out["shape"], key=KEY)
    with pytest.raises(KeyRequiredError, match="not keyed"):
        plain.keyed_synthesis(torch.zeros(1, 12, 4, 4), torch.zeros(1, 4, 4, 4))
    model = keyed()
    for condition in (0.5, "half", torch.ones(2), True):
        with pytest.raises(ValueError, match="'protected' \\(with key=\\) or 'full'"):
            model.decompress(out["strings"], out["shape"], condition, key=KEY)
    with torch.no_grad():
        as_beta = model.decompress(out["strings"], out["shape"], 1.0, key=KEY)
        as_name = model.decompress(out["strings"], out["shape"], key=KEY)
        full_beta = model.decompress(out["strings"], out["shape"], 0)
    assert torch.equal(as_beta["x_hat"], as_name["x_hat"])
    assert full_beta["x_hat"].shape == as_name["x_hat"].shape
    with pytest.raises(KeyRequiredError, match="ShieldKey"):
        model.decompress(out["strings"], out["shape"], key=bytes(32))


def test_keyed_weights_load_back_and_are_found_by_their_shapes(tmp_path):
    model = keyed("mbt2018-mean")
    assert model.is_keyed and not tiny_zoo_model("mbt2018-mean").is_keyed
    groups = model.parameter_groups()
    assert groups["key_shift"] == [
        n for n, _ in model.named_parameters() if n.startswith("key_shift.")
    ]
    assert "key_shift" not in tiny_zoo_model("mbt2018-mean").parameter_groups()
    path = tmp_path / "keyed.pth.tar"
    torch.save(model.state_dict(), path)
    loaded = load_checkpoint(path)
    loaded.update(force=True)
    assert loaded.is_keyed and loaded.key_shift.noise_channels == 4
    out = coded(model)
    with torch.no_grad():
        a = model.decompress(out["strings"], out["shape"], key=KEY)["x_hat"]
        b = loaded.decompress(out["strings"], out["shape"], key=KEY)["x_hat"]
    assert torch.equal(a, b)
    assert KeyedLatentShift.config_from_state_dict(
        model.state_dict(), "key_shift."
    ) == {
        "latent_channels": 12,
        "noise_channels": 4,
        "hidden": 8,
        "form": "mix",
    }


def test_threads_sharing_a_keyed_model_get_their_own_decodes():
    model = keyed()
    out = coded(model)
    keys = [KEY, ShieldKey(bytes(32))]
    with torch.no_grad():
        expected = [
            model.decompress(out["strings"], out["shape"], key=k)["x_hat"] for k in keys
        ]
    results = {}

    def work(index: int) -> None:
        with torch.no_grad():
            for _ in range(3):
                got = model.decompress(
                    out["strings"], out["shape"], key=keys[index % 2]
                )
                results.setdefault(index, []).append(got["x_hat"])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, decodes in results.items():
        assert all(torch.equal(d, expected[index % 2]) for d in decodes)


def test_call_triggers_checks_one_shift_per_trigger_and_unsets_them():
    model = keyed()
    y = torch.zeros(1, 12, 4, 4)
    trigger = model.trigger("full")
    with pytest.raises(ValueError, match="1 latent shifts for 2 triggers"):
        with call_triggers(model.g_s, [trigger, trigger], [None]):
            pass
    plain = model.g_s(y, trigger)
    with call_triggers(model.g_s, [trigger], [lambda v: v + 1]):
        moved = model.g_s(y)
    with call_triggers(model.g_s, [trigger], [None]):
        same = model.g_s(y)
    assert not torch.equal(moved, plain) and torch.equal(same, plain)
    assert torch.equal(model.g_s(y + 1, trigger), moved)


def test_both_forms_load_back_and_a_mix_shift_is_linear_in_the_noise():
    y = torch.randn(2, 12, 4, 4)
    noise = torch.randn(2, 4, 4, 4)
    mix = KeyedLatentShift(12, 4, 8, "mix")
    assert torch.allclose(mix(y, 2 * noise), 2 * mix(y, noise), atol=1e-6)
    assert torch.allclose(mix(y, -noise), -mix(y, noise), atol=1e-6)
    assert torch.equal(mix(y, torch.zeros_like(noise)), torch.zeros_like(y))
    concat = KeyedLatentShift(12, 4, 8, "concat")
    for shift in (mix, concat):
        state = shift.state_dict(prefix="key_shift.")
        config = KeyedLatentShift.config_from_state_dict(state, "key_shift.")
        again = KeyedLatentShift(**config)
        again.load_state_dict(shift.state_dict())
        assert torch.equal(again(y, noise), shift(y, noise))
    with pytest.raises(ValueError, match="'concat' keyed shift"):
        mix.load_state_dict(concat.state_dict(), strict=False)
    with pytest.raises(ValueError, match="Invalid form"):
        KeyedLatentShift(12, 4, 8, "add")


def test_make_keyed_rejects_nonsense_sizes():
    with pytest.raises(ValueError, match="positive"):
        tiny_zoo_model("bmshj2018-hyperprior").make_keyed(noise_channels=0)
    with pytest.raises(ValueError, match="key_noise_channels must be >= 0"):
        type(tiny_zoo_model("bmshj2018-hyperprior"))(N=8, M=12, key_noise_channels=-1)
    shift = KeyedLatentShift(12, 4, 8)
    with pytest.raises(ValueError, match="does not fit"):
        shift(torch.zeros(1, 12, 4, 4), torch.zeros(1, 4, 4, 5))


def test_a_keyed_decode_checks_the_symbol_digest_first():
    from compressai_psic.errors import DesyncError

    model = keyed()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = model.compress(x, portable=True)
        args = (out["strings"], out["shape"])
        checks = {"portable": True, "symbols_digest": out["symbols_digest"]}
        single = model.decompress(*args, key=KEY, **checks)
        both = model.decompress_multi(*args, key=KEY, **checks)
        assert single["symbols_digest"] == out["symbols_digest"]
        assert torch.equal(both["x_hat"][0], single["x_hat"])
        wrong = dict(checks, symbols_digest=out["symbols_digest"] ^ 1)
        with pytest.raises(DesyncError):
            model.decompress(*args, key=KEY, **wrong)
        with pytest.raises(DesyncError):
            model.decompress_multi(*args, conditions=("full",), **wrong)


def test_a_shift_of_the_documented_defaults_is_found_by_its_shapes():
    shift = KeyedLatentShift(12)
    assert shift.noise_channels == 32 and shift.net[0].out_channels == 192
    assert KeyedLatentShift.config_from_state_dict(shift.state_dict(), "") == {
        "latent_channels": 12,
        "noise_channels": 32,
        "hidden": 192,
        "form": "mix",
    }


def test_every_size_must_be_positive_and_one_is_enough():
    for sizes in ((0, 4, 8), (12, 0, 8), (12, 4, 0), (-1, 4, 8)):
        with pytest.raises(
            ValueError,
            match="^KeyedLatentShift needs positive latent_channels, noise_channels "
            rf"and hidden, got {sizes[0]}, {sizes[1]}, {sizes[2]}$",
        ):
            KeyedLatentShift(*sizes)
    for form in ("mix", "concat"):
        shift = KeyedLatentShift(1, 1, 1, form)
        ones = torch.ones(1, 1, 2, 2)
        assert shift(ones, ones).shape == ones.shape


def test_a_fresh_shift_starts_small_and_unbiased():
    # The last layer is a tenth of PyTorch's own initialisation, its bias zero.
    torch.manual_seed(0)
    shift = KeyedLatentShift(12, 4, 8)
    torch.manual_seed(0)
    convs = [torch.nn.Conv2d(12, 8, 3), torch.nn.Conv2d(8, 8, 3)]
    last = torch.nn.Conv2d(8, 48, 3, padding=1)
    assert torch.equal(shift.net[0].weight, convs[0].weight)
    assert torch.equal(shift.net[-1].weight, last.weight * 0.1)
    assert torch.equal(shift.net[-1].bias, torch.zeros(48))


def test_weights_whose_form_is_not_written_are_read_as_concat_and_refused():
    # Shifts written before the form was (all "concat") carry no _extra_state.
    concat = KeyedLatentShift(12, 4, 8, "concat")
    state = concat.state_dict(prefix="key_shift.")
    del state["key_shift._extra_state"]
    assert KeyedLatentShift.config_from_state_dict(state, "key_shift.") == {
        "latent_channels": 12,
        "noise_channels": 4,
        "hidden": 8,
        "form": "concat",
    }
    # A form that is not written as a dict is no form: refused, with the reason.
    state = concat.state_dict()
    for extra in ("concat", None):
        state["_extra_state"] = extra
        with pytest.raises(ValueError, match="are a None keyed shift"):
            KeyedLatentShift(12, 4, 8, "concat").load_state_dict(state)


@pytest.mark.parametrize("form", ["mix", "concat"])
def test_the_shift_is_in_the_latent_dtype_whatever_the_noise(form):
    shift = KeyedLatentShift(12, 4, 8, form)
    y = torch.randn(2, 12, 4, 4)
    noise = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    out = shift(y, noise)
    assert out.dtype == torch.float32
    assert torch.equal(out, shift(y, noise.float()))
