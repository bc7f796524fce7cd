"""Object colours and colour casts of protected decodes."""

from __future__ import annotations

import torch

from compressai_psic.datasets import SceneCaptions
from compressai_psic.datasets.scenes.render import render_object_masks
from compressai_psic.evaluation.objects import colour_shift_stats, object_colour_stats
from compressai_psic.io.images import pil_to_tensor


def scenes(n: int = 6):
    data = SceneCaptions("test", num_samples=n, image_size=64)
    images = torch.cat([pil_to_tensor(data.load_image(i)) for i in range(n)])
    return [s.spec for s in data.samples], images


def test_unchanged_decodes_keep_every_object_colour():
    specs, images = scenes()
    stats = object_colour_stats(specs, images, images, images)
    assert stats["objects"] == sum(len(s.objects) for s in specs)
    assert stats["palette_kept"] == stats["palette_kept_full"] == 1.0
    assert stats["protected_vs_full"] == {"median": 0.0, "p90": 0.0, "max": 0.0}


def test_a_recoloured_object_is_counted():
    specs, images = scenes()
    protected = images.clone()
    mask = torch.from_numpy(render_object_masks(specs[0], 64)[0])
    protected[0][:, mask] = torch.tensor([30, 70, 230]).float().div(255)[:, None]
    protected[0][:, mask] = 1 - protected[0][:, mask]  # far from its colour
    stats = object_colour_stats(specs, images, images, protected)
    assert stats["palette_kept"] == 1 - 1 / stats["objects"]
    assert stats["protected_vs_full"]["max"] > 50


def test_a_colour_cast_is_measured_in_levels():
    _, images = scenes(3)
    cast = images + torch.tensor([2.0, 0.0, -0.5]).div(255).view(1, 3, 1, 1)
    stats = colour_shift_stats(images, cast)
    assert abs(stats["max_abs"] - 2.0) < 1e-3
    assert stats["within_1_level"] == 0.0
    assert [round(v, 2) for v in stats["mean_rgb"]] == [2.0, 0.0, -0.5]
    assert colour_shift_stats(images, images)["within_1_level"] == 1.0
