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
