"""Tests of the scraper attacks (compressai_psic.evaluation.attacks)."""

import pytest
import torch

from compressai_psic.evaluation import (
    DEFAULT_ATTACKS,
    AffineColourAttack,
    ChainAttack,
    GreyWorldAttack,
    OffsetAttack,
    PatternAttack,
    apply_affine_colour,
    build_attack,
    build_attacks,
    fit_affine_colour,
    jpeg_reencode,
    scraper_transforms,
)
from compressai_psic.evaluation.attacks import PURIFICATION_ATTACKS
from compressai_psic.evaluation.pixels import quantise_8bit

from .helpers import COLOUR_MAP, COLOUR_OFFSET, psnr, scene_batch, smooth_images


def test_scraper_transforms_names():
    transforms = scraper_transforms()
    assert list(transforms) == ["jpeg75", "jpeg90", "down2"]
    images = smooth_images()
    assert transforms["down2"](images).shape[-2:] == (20, 24)
    assert transforms["jpeg90"](images).shape == images.shape


def test_attack_registry():
    assert {"jpeg75", "jpeg90", "down2", "greyworld", "affine_fit"} <= set(
        DEFAULT_ATTACKS
    )
    attacks = build_attacks()
    assert list(attacks) == list(DEFAULT_ATTACKS)
    assert [n for n, a in attacks.items() if a.needs_fit] == [
        "greyworld_fit", "offset_fit", "pattern_fit", "affine_fit", "filter_fit",
    ]  # fmt: skip
    images = smooth_images()
    torch.testing.assert_close(
        build_attack("jpeg60")(images), jpeg_reencode(images, 60)
    )
    assert build_attack("down4")(images).shape[-2:] == (10, 12)
    chain = build_attack("greyworld+jpeg75")
    assert isinstance(chain, ChainAttack) and not chain.needs_fit
    torch.testing.assert_close(
        chain(images), jpeg_reencode(build_attack("greyworld")(images), 75)
    )
    assert build_attack("jpeg75+affine_fit").needs_fit
    for bad in (
        "jpeg0",
        "jpeg101",
        "down1",
        "sharpen",
        "jpeg75+",
        "offset_fit+affine_fit",
    ):
        with pytest.raises(ValueError):
            build_attack(bad)
    with pytest.raises(RuntimeError, match="fitted"):
        build_attack("affine_fit")(images)
    # Plain callables are accepted, and every output is a saved 8-bit image.
    custom = build_attacks({"half": lambda x: x * 0.5 + 0.001})["half"](images)
    torch.testing.assert_close(custom * 255, (custom * 255).round())


def test_affine_attack_exactly_undoes_a_global_colour_map():
    fit_originals, originals = scene_batch("val", 6), scene_batch("test", 4)
    fit_decoded = apply_affine_colour(fit_originals, COLOUR_MAP, COLOUR_OFFSET)
    decoded = apply_affine_colour(originals, COLOUR_MAP, COLOUR_OFFSET)
    attack = AffineColourAttack().fit(fit_decoded, fit_originals)
    assert attack.fit_images == 6 and attack.fit_pixels == 6 * 32 * 32
    inverse = torch.linalg.inv(COLOUR_MAP)
    torch.testing.assert_close(attack.matrix, inverse, atol=1e-4, rtol=0)
    torch.testing.assert_close(
        attack.offset, -inverse @ COLOUR_OFFSET, atol=1e-4, rtol=0
    )
    # On images it never saw: the originals back, to 8-bit rounding.
    assert (attack(decoded) - originals).abs().max() <= 0.5 / 255 + 1e-6
    # Streaming fit (batch by batch, or image lists) gives the same map.
    streamed = AffineColourAttack().reset_fit()
    streamed.partial_fit(fit_decoded[:2], fit_originals[:2])
    streamed.partial_fit(list(fit_decoded[2:]), list(fit_originals[2:]))
    streamed.finish_fit()
    torch.testing.assert_close(streamed.matrix, attack.matrix, atol=1e-5, rtol=0)
    matrix, offset = fit_affine_colour(fit_decoded, fit_originals)
    torch.testing.assert_close(matrix, attack.matrix)
    # An offset alone cannot undo a channel mix.
    offset_attack = OffsetAttack().fit(fit_decoded, fit_originals)
    assert (offset_attack(decoded) - originals).abs().mean() > 0.05
    with pytest.raises(ValueError, match="differ in size"):
        AffineColourAttack().fit(fit_decoded, fit_originals[:, :, :16])


def test_offset_and_grey_world_attacks_undo_casts():
    fit_originals, originals = scene_batch("val", 5), scene_batch("test", 3)
    shift = torch.tensor([0.1, -0.08, 0.03]).view(1, 3, 1, 1)
    offset = OffsetAttack().fit((fit_originals + shift).clamp(0, 1), fit_originals)
    torch.testing.assert_close(offset.offset, -shift.flatten(), atol=0.01, rtol=0)
    assert offset.describe()["fitted_on"] == {"images": 5, "pixels": 5 * 32 * 32}

    gain = torch.tensor([0.7, 1.2, 0.9]).view(1, 3, 1, 1)
    bias = torch.tensor([0.1, -0.05, 0.05]).view(1, 3, 1, 1)
    x = originals * 0.6 + 0.2  # room for the cast without clipping
    cast = x * gain + bias
    assert cast.min() >= 0 and cast.max() <= 1
    # Blind: the cast image is corrected like the clean one, up to one
    # brightness/contrast change shared by all channels.
    grey = build_attack("greyworld")
    from_cast, from_clean = grey(cast), grey(x)
    means = from_cast.mean(dim=(2, 3))
    assert (means - means.mean(1, keepdim=True)).abs().max() < 2 / 255
    ratio = from_cast.std(dim=(2, 3)) / from_clean.std(dim=(2, 3))
    assert (ratio - ratio.mean(1, keepdim=True)).abs().max() < 0.02
    # Fitted target: statistics of originals; on a single image fitted on
    # itself, the cast is undone to 8-bit rounding.
    fitted = GreyWorldAttack("greyworld_fit", "fit").fit(cast[:1], x[:1])
    assert (fitted(cast[:1]) - x[:1]).abs().max() < 2 / 255
    assert fitted.describe()["target_mean"] == pytest.approx(
        x[0].mean(dim=(1, 2)).tolist(), abs=1e-4
    )


def test_pattern_attack_undoes_a_fixed_pattern_but_not_image_dependent_changes():
    g = torch.Generator().manual_seed(7)
    originals = torch.rand(6, 3, 16, 16, generator=g) * 0.6 + 0.2
    pattern = torch.randn(1, 3, 16, 16, generator=g) * 0.1
    attack = PatternAttack().fit(originals[:3] + pattern, originals[:3])
    restored = attack(originals[3:] + pattern)
    # The attack publishes 8-bit images: equal up to rounding.
    torch.testing.assert_close(restored, originals[3:], atol=0.5 / 255 + 1e-6, rtol=0)
    # Changes that depend on the image are not a pattern: nothing to subtract.
    signs = torch.tensor([1.0, -1.0, 1.0]).view(3, 1, 1, 1)
    attack = PatternAttack().fit(originals[:3] + signs * pattern, originals[:3])
    assert attack.pattern.abs().max() <= pattern.abs().max() / 3 + 1e-6
    assert attack(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)  # other sizes pass


def test_the_fitted_filter_undoes_a_linear_filter_and_a_colour_map():
    from compressai_psic.evaluation.attacks import LinearFilterAttack

    originals = torch.rand(4, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    kernel = torch.tensor([[0.0, 0.1, 0.0], [0.1, 0.6, 0.1], [0.0, 0.1, 0.0]])
    blurred = torch.nn.functional.conv2d(
        torch.nn.functional.pad(originals, (1, 1, 1, 1), mode="replicate"),
        kernel.expand(3, 1, 3, 3),
        groups=3,
    )
    decoded = blurred[:, [1, 2, 0]] * 0.8 + 0.1  # channels mixed, scaled, offset
    attack = LinearFilterAttack(size=5).fit(decoded, originals)
    # A 5×5 inverse of a 3×3 blur is approximate; the colour map is exact.
    assert (attack.apply(decoded) - originals).abs().mean() < 0.02
    assert (decoded - originals).abs().mean() > 0.1
    assert attack.describe()["size"] == 5 and len(attack.describe()["offset"]) == 3
    with pytest.raises(ValueError, match="odd and positive"):
        LinearFilterAttack(size=4)


def fine_pattern():
    idx = torch.arange(40)
    board = ((idx[:, None] + torch.arange(48)[None, :]) % 2).float()
    return (0.25 + 0.5 * board).expand(2, 3, 40, 48).contiguous()


def test_purification_attacks_listed_in_defaults():
    assert set(PURIFICATION_ATTACKS) <= set(DEFAULT_ATTACKS)
    assert "noisyup" in PURIFICATION_ATTACKS


@pytest.mark.parametrize("name", PURIFICATION_ATTACKS)
def test_purification_attack_is_8bit_in_range(name):
    attack = build_attack(name)
    assert attack.name == name
    x = smooth_images() * 0.9 + 0.05
    out = attack(x)
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out * 255, (out * 255).round(), atol=1e-4, rtol=0)
    assert not torch.equal(out, quantise_8bit(x)) or name.startswith("median")


@pytest.mark.parametrize(
    "name", ["blur0", "blur0.0", "blur11", "median2", "median4", "median1", "downup1"]
)
def test_invalid_purification_names_raise(name):
    with pytest.raises(ValueError):
        build_attack(name)


def test_noisyup_deterministic_across_calls():
    x = smooth_images()
    first = build_attack("noisyup")(x)
    second = build_attack("noisyup")(x)
    torch.testing.assert_close(first, second)
    assert (first - quantise_8bit(x)).abs().max() > 0


def test_blur1_keeps_smooth_and_damps_fine_pattern():
    blur = build_attack("blur1")
    x = smooth_images()
    assert psnr(blur(x), x) > 35
    fine = fine_pattern()
    out = blur(fine)
    assert (out - out.mean()).pow(2).mean() < 0.05 * (fine - fine.mean()).pow(2).mean()
    assert psnr(out, fine) < 15


def test_median3_removes_salt_and_downup2_washes_fine_pattern():
    x = smooth_images()
    salted = quantise_8bit(x).clone()
    salted[:, :, ::7, ::5] = 1.0  # isolated salt pixels
    out = build_attack("median3")(salted)
    assert psnr(out, x) > psnr(salted, x) + 10
    fine = fine_pattern()
    out = build_attack("downup2")(fine)
    assert out.std() < 0.05 * fine.std()
    for name in ("median3", "downup2"):
        assert psnr(build_attack(name)(x), x) > 30, name


def test_purification_chains_and_build_attacks():
    attacks = build_attacks(["blur1", "jpeg75+median3"])
    assert list(attacks) == ["blur1", "jpeg75+median3"]
    out = attacks["jpeg75+median3"](smooth_images())
    assert out.shape == smooth_images().shape
