"""``compressai_psic.models.registration``: ``register_architecture``, the
decorator that writes this package's registry and CompressAI's."""

from __future__ import annotations

import pytest
import torch.nn as nn
from compressai.models import (
    FactorizedPrior,
    ScaleHyperprior,
)
from compressai.registry import MODELS

import compressai_psic as psic
from compressai_psic.models import (
    ShieldedMixin,
    get_architecture,
)
from compressai_psic.models.google import ShieldedScaleHyperprior
from compressai_psic.models.registration import _base_of
from compressai_psic.models.registry import (
    ARCHITECTURES,
)

from .helpers import (
    EXPECTED_PLANS,
    raises_exactly,
    register_toy,
)


def test_register_architecture_checks_its_arguments(registries):
    from compressai.registry import MODELS

    from compressai_psic.models.registration import _base_of
    from compressai_psic.models.registry import ARCHITECTURES

    register = psic.models.register_architecture

    class ShieldedToy(psic.models.ShieldedMixin, FactorizedPrior):
        pass

    raises_exactly(
        "plans must name at least one injection plan", register, "toy", plans={}
    )
    for taken in ("bmshj2018-factorized", "psic-bmshj2018-factorized"):
        with pytest.raises(ValueError) as info:
            register(taken, plans={"a": ["g_s.0"]})(ShieldedToy)
        assert str(info.value) == (
            f'Architecture "{taken}" is already registered by '
            "compressai_psic.models.google.ShieldedFactorizedPrior"
        )
    # The message names the class (or shows the object) the user passed.
    for not_shielded, shown in ((FactorizedPrior, "'FactorizedPrior'"), (3, "3")):
        raises_exactly(
            f"{shown} must derive from ShieldedMixin (put it first) and a "
            "CompressAI model class",
            register("toy", plans={"a": ["g_s.0"]}),
            not_shielded,
        )
    with pytest.raises(ValueError, match="'Linear' must derive from ShieldedMixin"):
        register("toy", plans={"a": ["g_s.0"]})(nn.Linear)
    # Either registry holding the name refuses another class, even when the
    # other one lost it (CompressAI's MODELS is a plain dict a user can edit).
    del MODELS["psic-bmshj2018-factorized"]
    with pytest.raises(ValueError, match="already registered by"):
        register("bmshj2018-factorized", plans={"a": ["g_s.0"]})(ShieldedToy)

    class Lonely(psic.models.ShieldedMixin, nn.Module):
        pass

    raises_exactly("Lonely extends no CompressAI model class", _base_of, Lonely)
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


def test_base_of_looks_at_the_class_right_after_the_shielded_one():
    # The first CompressAI class of the MRO after the class itself, wherever the
    # mixin is: here the base comes first, right after the class.
    base_first = type("BaseFirst", (FactorizedPrior, ShieldedMixin), {})
    assert base_first.__mro__[1] is FactorizedPrior
    assert _base_of(base_first) is FactorizedPrior


def test_decorator_registers_and_returns_the_decorated_class_itself(registries):
    class ShieldedToy(ShieldedMixin, FactorizedPrior):
        def marker(self):
            return "mine"

    decorated = psic.models.register_architecture("toy-own", plans={"a": ["g_s.0"]})(
        ShieldedToy
    )
    assert decorated is ShieldedToy
    assert MODELS["psic-toy-own"] is ShieldedToy
    assert ARCHITECTURES["toy-own"].shielded_class is ShieldedToy
    assert decorated(N=8, M=12).marker() == "mine"


def test_registration_defaults_and_trigger_argument(registries):
    register_toy("toy-plain", FactorizedPrior, {"default": ["g_s.0"]})
    plain = ARCHITECTURES["toy-plain"]
    assert plain.description == ""
    assert plain.trigger_argument is False and plain.anchor_full is True

    @psic.models.register_architecture(
        "toy-trigger",
        plans={"a": ["g_s.0"]},
        layout=psic.models.CheckpointLayout(trigger_argument=True),
    )
    class ShieldedTriggerToy(ShieldedMixin, FactorizedPrior):
        pass

    assert ARCHITECTURES["toy-trigger"].trigger_argument is True
    assert ShieldedTriggerToy._psic_architecture.trigger_argument is True


def test_shielded_classes_are_module_level_and_registered():
    for name in EXPECTED_PLANS:
        cls = get_architecture(name).shielded_class
        module = __import__(cls.__module__, fromlist=[cls.__name__])
        assert getattr(module, cls.__name__) is cls
        assert issubclass(cls, psic.ShieldedMixin)
        assert issubclass(cls, get_architecture(name).model_class)
    assert psic.shield(ScaleHyperprior(8, 12)).__class__ is ShieldedScaleHyperprior
