"""Tests of the image-dependence statistics
(compressai_psic.evaluation.image_dependence)."""

import pytest
import torch

from compressai_psic.evaluation import (
    DifferenceStats,
    common_share,
)


def test_common_share():
    generator = torch.Generator().manual_seed(0)
    n = 40
    offset = torch.tensor([0.2, -0.1, 0.05]).view(1, 3, 1, 1).expand(n, 3, 8, 8)
    assert common_share(offset) == pytest.approx(1.0)
    pattern = torch.randn(1, 3, 8, 8, generator=generator).expand(n, -1, -1, -1)
    assert common_share(pattern) == pytest.approx(1.0)
    noise = torch.randn(n, 3, 8, 8, generator=generator)
    assert 0.3 / n < common_share(noise) < 3.0 / n
    assert common_share(torch.cat([pattern[:1], -pattern[:1]])) == pytest.approx(0.0)
    assert common_share(pattern + 0.3 * noise) > 0.85
    assert common_share(torch.zeros(3, 3, 4, 4)) is None

    stats = DifferenceStats()
    stats.update(offset[:10] + 0.5, torch.full((10, 3, 8, 8), 0.5))
    stats.update(offset[10:])
    result = stats.result()
    assert result["common_share"] == pytest.approx(1.0)
    assert result["global_offset_share"] == pytest.approx(1.0)
    assert result["mean_offset_rgb"] == pytest.approx([0.2, -0.1, 0.05])
    assert result["num_images"] == n
    # Each image its own colour shift: all energy in per-image DC, little global.
    own = torch.randn(n, 3, 1, 1, generator=generator).expand(n, 3, 8, 8)
    result = DifferenceStats()
    result.update(own)
    result = result.result()
    assert result["per_image_dc_share"] == pytest.approx(1.0)
    assert result["global_offset_share"] < 0.2 and result["common_share"] < 0.2
    # Mixed sizes: no common share, the other figures still come.
    mixed = DifferenceStats()
    mixed.update(torch.ones(2, 3, 4, 4))
    mixed.update(torch.ones(1, 3, 6, 4))
    assert mixed.result()["common_share"] is None
    assert mixed.result()["global_offset_share"] == pytest.approx(1.0)


# -- periodic peaks --


def blob_lattice(size=64, period=8, offset=3):
    """Gaussian blobs ``period`` pixels apart."""
    coords = torch.arange(size, dtype=torch.float64)
    distance = ((coords - offset) % period).clamp(max=period / 2)
    distance = torch.minimum(distance, period - (coords - offset) % period)
    bump = torch.exp(-0.5 * (distance / 1.0) ** 2)
    return bump[:, None] * bump[None, :]


def test_periodic_peaks_blob_lattice():
    from compressai_psic.evaluation.image_dependence import PERIODS, periodic_peaks

    peaks = periodic_peaks(blob_lattice(period=8))
    assert set(peaks) == set(PERIODS)
    assert peaks[8] > 10
    # Noise added to the lattice still leaves a clear peak at its period.
    noise = torch.rand(64, 64, generator=torch.Generator().manual_seed(0))
    noisy = periodic_peaks(blob_lattice(period=8).float() + 0.3 * noise)
    assert noisy[8] > 3


def test_periodic_peaks_white_noise_and_sizes():
    from compressai_psic.evaluation.image_dependence import periodic_peaks

    noise = torch.rand(64, 64, generator=torch.Generator().manual_seed(1))
    peaks = periodic_peaks(noise)
    for period in (4, 8, 16):
        assert 0.5 < peaks[period] < 2.0
    odd = periodic_peaks(torch.rand(48, 40), periods=(8, 16, 3, 1))
    assert odd[8] is not None
    assert odd[16] is None and odd[3] is None and odd[1] is None
    with pytest.raises(ValueError):
        periodic_peaks(torch.rand(1, 8, 8))
    # A constant map has no pattern at all.
    assert set(periodic_peaks(torch.full((16, 16), 0.3)).values()) == {None}


def test_difference_stats_periodic_peaks():
    lattice = blob_lattice(period=8).float()
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0]).view(4, 1, 1, 1)
    differences = signs * lattice.expand(4, 3, 64, 64)
    stats = DifferenceStats()
    stats.update(differences[:2])
    stats.update(differences[2:])
    peaks = stats.result()["periodic_peaks"]
    assert set(peaks) == {"2", "4", "8", "16"}
    assert peaks["8"] > 10  # from the mean |D|: signs do not cancel it
    noise = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    noisy = DifferenceStats()
    noisy.update(noise)
    assert 0.5 < noisy.result()["periodic_peaks"]["8"] < 2.0
    mixed = DifferenceStats()
    mixed.update(torch.ones(2, 3, 8, 8))
    mixed.update(torch.ones(1, 3, 16, 8))
    assert mixed.result()["periodic_peaks"] is None


def test_periodic_amplitude_measures_the_repeating_part_in_8bit_levels():
    from compressai_psic.evaluation.image_dependence import periodic_amplitude

    rows = torch.arange(64).view(-1, 1).expand(64, 64)
    grid = ((rows % 8) < 4).double()  # stripes 8 px apart, 0/1
    faint = periodic_amplitude(grid * 2 / 255)
    bold = periodic_amplitude(grid * 8 / 255)
    # Four times the contrast, four times the amplitude; a square wave of
    # levels 0 and a has an AC root mean square of a/2.
    assert bold[8] == pytest.approx(4 * faint[8])
    assert faint[8] == pytest.approx(1.0, rel=1e-6)
    # The 8-px stripes live on the 8- and 16-px lattices, not on the 4-px one
    # (only the odd harmonics of a square wave are non-zero).
    assert faint[4] == pytest.approx(0.0, abs=1e-9) and faint[16] == faint[8]
    noise = torch.rand(64, 64, generator=torch.Generator().manual_seed(0))
    assert periodic_amplitude(torch.full((64, 64), 0.3))[8] == pytest.approx(0.0)
    assert periodic_amplitude(noise)[8] < periodic_amplitude(noise)[2] + 1e3
    assert periodic_amplitude(torch.zeros(60, 60))[8] is None
    stats = DifferenceStats()
    stats.update(grid.float().view(1, 1, 64, 64).expand(2, 3, 64, 64) * 2 / 255)
    assert stats.result()["periodic_amplitude"]["8"] == pytest.approx(1.0, rel=1e-4)
