"""``compressai_psic.models.conditions``: condition labels and values, the
Fourier features and β MLP of the condition encoder, triggers and anchoring."""

from __future__ import annotations

import math

import pytest
import torch

import compressai_psic as psic
from compressai_psic.models.conditions import (
    ConditionEncoder,
    FourierConditionEncoder,
    FourierFeatures,
    as_condition_list,
    condition_label,
    trigger_of,
)

from .helpers import (
    ParameterFreeEncoder,
    raises_exactly,
    tiny_base,
)


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
    raises_exactly("num_frequencies must be >= 0, got -1", FourierFeatures, -1)


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
    raises_exactly(
        "Invalid condition \"half\": use one of ['full', 'protected'], a float in "
        "[0, 1] or a tensor of betas",
        encoder.condition_values,
        "half",
        1,
        cpu,
    )
    raises_exactly(
        "Invalid condition: a bool is ambiguous, use 0.0 or 1.0",
        encoder.condition_values,
        True,
        1,
        cpu,
    )
    for beta in (1.5, -0.1, float("nan")):
        raises_exactly(
            f"Invalid condition beta={float(beta)}: must lie in [0, 1]",
            encoder.condition_values,
            beta,
            1,
            cpu,
        )
    raises_exactly(
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
    raises_exactly(
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
        raises_exactly(message, encoder.condition_values, torch.tensor(bad), 2, cpu)


def test_trigger_of_an_encoder_without_parameters():
    encoder = ParameterFreeEncoder()
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
    encoder = ParameterFreeEncoder()
    trigger_of(encoder, 1.0)
    assert encoder.asked == (torch.device("cpu"), torch.float32)


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
        raises_exactly(message, as_condition_list, bad)
    raises_exactly("conditions must not be empty", as_condition_list, [])


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
