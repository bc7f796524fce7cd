"""Tests of periodic_energy (compressai_psic.losses.transfer): the energy of
``protected − full`` on the stride lattice, with exact values."""

import math

import pytest
import torch

from compressai_psic.losses.transfer import periodic_energy


def wave(height, width, cycles_y=0, cycles_x=0, amplitude=1.0, batch=1):
    """A cosine of ``cycles_y`` periods down and ``cycles_x`` across the image."""
    y = torch.arange(height, dtype=torch.float64)[:, None] / height
    x = torch.arange(width, dtype=torch.float64)[None, :] / width
    values = amplitude * torch.cos(2 * math.pi * (cycles_y * y + cycles_x * x))
    return values.expand(batch, 3, height, width).clone()


def test_a_lattice_frequency_keeps_all_its_energy():
    # 32 px, period 16: the lattice holds every second frequency; 2 cycles are
    # a 16-pixel pattern, all of whose energy (mean square 0.5·a²) is counted.
    full = torch.zeros(2, 3, 32, 32, dtype=torch.float64)
    for cycles in ((0, 2), (2, 0), (2, 4), (4, 6)):
        protected = wave(32, 32, *cycles, amplitude=0.3, batch=2)
        value = periodic_energy(protected, full)
        assert value.item() == pytest.approx(0.5 * 0.3**2, rel=1e-9)
        assert value.item() == pytest.approx(protected.pow(2).mean().item())


def test_frequencies_off_the_lattice_and_dc_are_not_counted():
    full = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    for cycles in ((0, 1), (1, 0), (3, 3), (0, 5)):
        protected = full + wave(32, 32, *cycles)
        assert periodic_energy(protected, full).item() == pytest.approx(0, abs=1e-12)
    # A constant change (DC) is a colour shift, not a lattice.
    assert periodic_energy(full + 0.25, full).item() == pytest.approx(0, abs=1e-12)


def test_only_the_lattice_part_of_a_mixture_counts():
    full = torch.zeros(1, 3, 32, 32, dtype=torch.float64)
    on, off = wave(32, 32, 0, 2, amplitude=0.5), wave(32, 32, 1, 0, amplitude=0.7)
    value = periodic_energy(on + off + 0.1, full).item()
    assert value == pytest.approx(0.5 * 0.5**2, rel=1e-9)


def test_the_period_sets_the_lattice():
    full = torch.zeros(1, 3, 32, 32, dtype=torch.float64)
    sixteen = wave(32, 32, 0, 2)  # a 16-pixel pattern
    eight = wave(32, 32, 0, 4)  # an 8-pixel one
    assert periodic_energy(sixteen, full, period=8).item() == pytest.approx(
        0, abs=1e-12
    )
    assert periodic_energy(eight, full, period=8).item() == pytest.approx(0.5)
    assert periodic_energy(eight, full, period=16).item() == pytest.approx(0.5)
    # period = size: every frequency is on the lattice (all but DC).
    assert periodic_energy(wave(32, 32, 1, 3), full, period=32).item() == (
        pytest.approx(0.5)
    )


def test_rows_and_columns_use_their_own_size():
    # 32 high, 64 wide, period 16: rows step 2, columns step 4.
    full = torch.zeros(1, 3, 32, 64, dtype=torch.float64)
    assert periodic_energy(wave(32, 64, 0, 4), full).item() == pytest.approx(0.5)
    assert periodic_energy(wave(32, 64, 2, 0), full).item() == pytest.approx(0.5)
    assert periodic_energy(wave(32, 64, 0, 2), full).item() == pytest.approx(
        0, abs=1e-12
    )
    assert periodic_energy(wave(32, 64, 1, 0), full).item() == pytest.approx(
        0, abs=1e-12
    )


def test_mean_over_images_and_channels():
    full = torch.zeros(2, 3, 32, 32, dtype=torch.float64)
    protected = torch.zeros_like(full)
    protected[0, 1] = wave(32, 32, 0, 2)[0, 0]
    assert periodic_energy(protected, full).item() == pytest.approx(0.5 / 6)


def test_no_lattice_is_zero_and_attached():
    a = torch.rand(2, 3, 32, 32, requires_grad=True)
    cases = [
        (a, torch.rand(2, 3, 32, 16)),  # shapes differ
        (a[..., :24, :], torch.rand(2, 3, 24, 32)),  # height not a multiple
        (a[..., :24], torch.rand(2, 3, 32, 24)),  # width not a multiple
        (a[:0], torch.rand(0, 3, 32, 32)),  # empty batch
    ]
    for protected, full in cases:
        value = periodic_energy(protected, full)
        assert value.item() == 0
        assert value.requires_grad


def test_gradient_pushes_the_lattice_part_down():
    full = torch.zeros(1, 3, 32, 32, dtype=torch.float64)
    protected = (wave(32, 32, 0, 2) + wave(32, 32, 1, 0)).requires_grad_(True)
    periodic_energy(protected, full).backward()
    # d/dx mean(lattice(x)²) = 2·lattice(x)/N: the gradient is the lattice part.
    expected = 2 * wave(32, 32, 0, 2) / protected.numel()
    assert torch.allclose(protected.grad, expected, atol=1e-12)


def test_one_image_without_a_batch_dimension():
    full = torch.zeros(3, 32, 64, dtype=torch.float64)
    protected = wave(32, 64, 2, 4)[0]
    assert periodic_energy(protected, full).item() == pytest.approx(0.5)
    assert periodic_energy(wave(32, 64, 0, 2)[0], full).item() == pytest.approx(
        0, abs=1e-12
    )
