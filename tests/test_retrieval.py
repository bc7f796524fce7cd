import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from compressai_psic.attacks import (
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
)
from compressai_psic.datasets import SceneCaptions
from compressai_psic.retrieval import (
    DatasetSlice,
    DifferenceStats,
    attack_success_rate,
    caption_owners,
    chance_recall,
    common_share,
    downscale,
    embed_images,
    embed_texts,
    evaluate_privacy,
    evaluate_shield,
    jpeg_reencode,
    ms_ssim_window,
    recall_at_k,
    retrieval_hits,
    scraper_transforms,
    similarity,
)
from compressai_psic.datasets.scenes import write_split
from compressai_psic.vlp import VLPAdapter, VLPEnsemble, tiny_vlp
from compressai_psic.zoo import bmshj2018_hyperprior

ROOT = Path(__file__).resolve().parents[1]


def one_hot_embeddings(n: int, dim: int = 8) -> torch.Tensor:
    return torch.eye(n, dim)


# --------------------------------------------------------------------- metrics


def test_identity_similarity_retrieves_everything():
    emb = one_hot_embeddings(4)
    sim = similarity(emb, emb)
    torch.testing.assert_close(sim, torch.eye(4))
    recalls = recall_at_k(sim, [0, 1, 2, 3], ks=(1, 5))
    assert recalls == {
        "i2t": {"R@1": 1.0, "R@5": 1.0},
        "t2i": {"R@1": 1.0, "R@5": 1.0},
    }


def test_swapped_images_miss_at_one_and_hit_at_two():
    texts = one_hot_embeddings(4)
    images = texts[[1, 0, 2, 3]]  # images 0 and 1 look like each other's caption
    # Image 0 is still closer to its own caption than to captions 2 and 3.
    images[0, 0] = images[1, 1] = 0.5
    hits = retrieval_hits(similarity(images, texts), [0, 1, 2, 3], ks=(1, 2))
    assert hits["i2t"][1].tolist() == [False, False, True, True]
    assert hits["i2t"][2].all()
    assert hits["t2i"][1].tolist() == [False, False, True, True]
    recalls = recall_at_k(similarity(images, texts), [0, 1, 2, 3], ks=(1, 2))
    assert recalls["i2t"]["R@1"] == 0.5 and recalls["t2i"]["R@2"] == 1.0


def test_several_captions_per_image():
    # Image 0 owns captions 0 and 1, image 1 owns caption 2.
    sim = torch.tensor(
        [
            [0.1, 0.8, 0.9],  # best caption of image 0 is wrong, second is right
            [0.2, 0.0, 0.7],  # image 1 ranks its own caption first
        ]
    )
    owners = [[0, 1], 2]
    hits = retrieval_hits(sim, owners, ks=(1, 2))
    assert hits["i2t"][1].tolist() == [False, True]
    assert hits["i2t"][2].tolist() == [True, True]
    # Caption 0 prefers image 1 (0.2 > 0.1); caption 1 prefers image 0; caption 2
    # prefers image 0 (0.9 > 0.7).
    assert hits["t2i"][1].tolist() == [False, True, False]
    assert hits["t2i"][2].tolist() == [True, True, True]
    assert recall_at_k(sim, owners, ks=(1,))["t2i"]["R@1"] == pytest.approx(1 / 3)


def test_ties_never_count_as_hits():
    sim = torch.zeros(3, 3)
    recalls = recall_at_k(sim, [0, 1, 2], ks=(1, 2, 3))
    assert recalls["i2t"] == {"R@1": 0.0, "R@2": 0.0, "R@3": 1.0}
    assert recalls["t2i"] == {"R@1": 0.0, "R@2": 0.0, "R@3": 1.0}


def test_caption_ownership_is_checked():
    assert caption_owners([[0, 2], [1]], 3).tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="exactly one image"):
        caption_owners([[0, 1], [1]], 2)
    with pytest.raises(ValueError, match="no image"):
        caption_owners([[0]], 2)
    with pytest.raises(ValueError, match="out of range"):
        caption_owners([[3]], 2)


def test_attack_success_rate_on_crafted_hits():
    reference = torch.tensor([True, True, False, True, True])
    protected = torch.tensor([False, True, True, False, True])
    # Queries 0 and 3: found by the reference, lost by the protected images.
    assert attack_success_rate(reference, protected) == pytest.approx(2 / 5)
    assert attack_success_rate(reference, protected, relative=True) == pytest.approx(
        2 / 4
    )
    assert attack_success_rate(reference, reference) == 0.0
    assert attack_success_rate(torch.zeros(3, dtype=torch.bool), protected[:3]) == 0.0
    with pytest.raises(ValueError, match="shape"):
        attack_success_rate(reference, protected[:3])


def test_ensemble_similarity_is_the_weighted_mean():
    gen = torch.Generator().manual_seed(0)
    a_img, a_txt = torch.randn(3, 4, generator=gen), torch.randn(5, 4, generator=gen)
    b_img, b_txt = torch.randn(3, 6, generator=gen), torch.randn(5, 6, generator=gen)
    combined = similarity([a_img, b_img], [a_txt, b_txt], weights=[3.0, 1.0])
    expected = 0.75 * similarity(a_img, a_txt) + 0.25 * similarity(b_img, b_txt)
    torch.testing.assert_close(combined, expected)
    assert similarity(a_img, a_txt).abs().max() <= 1.0 + 1e-6
    with pytest.raises(ValueError):
        similarity([a_img], [a_txt, b_txt])


# ------------------------------------------------------------------- embedding


@pytest.fixture(scope="module")
def vlp():
    return tiny_vlp(seed=0)


def test_embed_images_keeps_order_across_sizes(vlp):
    gen = torch.Generator().manual_seed(1)
    images = [
        torch.rand(3, 32, 32, generator=gen),
        torch.rand(3, 48, 40, generator=gen),
        torch.rand(3, 32, 32, generator=gen),
    ]
    got = embed_images(vlp, images, batch_size=2)
    expected = torch.cat([vlp.encode_image(image[None]) for image in images])
    assert got.shape == (3, vlp.embed_dim)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    batch = torch.stack([images[0], images[2]])
    torch.testing.assert_close(embed_images(vlp, batch, 1), expected[[0, 2]])


def test_embed_with_an_ensemble_gives_one_tensor_per_member(vlp):
    ensemble = VLPEnsemble([vlp, tiny_vlp(seed=1)])
    images = embed_images(ensemble, torch.rand(2, 3, 32, 32))
    texts = embed_texts(ensemble, ["a red circle", "two blue stars", "a cross"], 2)
    assert [t.shape for t in images] == [(2, 32), (2, 32)]
    assert [t.shape for t in texts] == [(3, 32), (3, 32)]
    assert not torch.allclose(texts[0], texts[1])
    assert similarity(images, texts).shape == (2, 3)


# --------------------------------------------------------------- robustness


def smooth_images() -> torch.Tensor:
    ramp = torch.linspace(0, 1, 48)
    red = ramp.view(1, -1).expand(40, 48)
    green = ramp[:40].view(-1, 1).expand(40, 48)
    one = torch.stack([red, green, torch.full((40, 48), 0.3)])
    return torch.stack([one, one.flip(-1)])


def test_jpeg_keeps_size_and_range_and_quality_orders_the_error():
    images = smooth_images()
    errors = {}
    for quality in (75, 90):
        out = jpeg_reencode(images, quality)
        assert out.shape == images.shape and out.dtype == torch.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
        errors[quality] = (out - images).abs().mean().item()
        # 8-bit output, as a decoded file.
        torch.testing.assert_close(out * 255, (out * 255).round())
    assert 0 < errors[90] < errors[75] < 0.03
    with pytest.raises(ValueError):
        jpeg_reencode(images, 0)


def test_downscale_halves_and_keeps_content():
    images = smooth_images()
    out = downscale(images, 0.5)
    assert out.shape == (2, 3, 20, 24)
    assert 0.0 <= out.min() and out.max() <= 1.0
    pooled = torch.nn.functional.avg_pool2d(images, 2)
    assert (out - pooled).abs().mean() < 0.02


def test_scraper_transforms_names():
    transforms = scraper_transforms()
    assert list(transforms) == ["jpeg75", "jpeg90", "down2"]
    images = smooth_images()
    assert transforms["down2"](images).shape[-2:] == (20, 24)
    assert transforms["jpeg90"](images).shape == images.shape


# ------------------------------------------------------------------ pipeline


def test_evaluate_privacy_end_to_end(vlp):
    torch.manual_seed(0)
    model = bmshj2018_hyperprior(1, N=16, M=24, trigger_dim=32).eval()
    dataset = SceneCaptions(
        "test", num_samples=4, image_size=48, captions_per_image=2,
        distinct_captions=True,
    )  # fmt: skip
    result = evaluate_privacy(model, dataset, vlp, ks=(1, 5), batch_size=3,
                              progress=False)  # fmt: skip
    json.dumps(result)  # JSON-serialisable
    assert result["num_images"] == 4 and result["num_captions"] == 8
    variants = {"original", "full", "protected"}
    for source in ("full", "protected"):
        variants |= {f"{source}_{t}" for t in ("jpeg75", "jpeg90", "down2")}
    assert set(result["recall"]) == variants
    for recalls in result["recall"].values():
        for direction in ("i2t", "t2i"):
            assert set(recalls[direction]) == {"R@1", "R@5"}
            assert all(0.0 <= r <= 1.0 for r in recalls[direction].values())
            # 4 images, 8 captions: every image→text query hits at 5 of 8
            # only if ranked well, but every text→image query hits at 5 of 4.
        assert recalls["t2i"]["R@5"] == 1.0
    # Images 48×48 are padded to 64×64 for the codec and cropped back.
    assert result["bpp"] > 0 and math.isfinite(result["bpp"])
    assert result["psnr"]["full"] > 0 and result["psnr"]["protected"] > 0
    protected = ["protected", "protected_jpeg75", "protected_jpeg90", "protected_down2"]
    assert set(result["asr"]) == set(protected)
    for variant in protected:
        for reference in ("full", "original"):
            for direction in ("i2t", "t2i"):
                asr = result["asr"][variant][f"vs_{reference}"][direction]
                rel = result["asr_relative"][variant][f"vs_{reference}"][direction]
                for k in ("R@1", "R@5"):
                    recall_ref = result["recall"][reference][direction][k]
                    # Successes are a subset of the reference's hits.
                    assert 0.0 <= asr[k] <= recall_ref + 1e-9
                    assert asr[k] == pytest.approx(rel[k] * recall_ref)


# --------------------------------------------------------------------- attacks

# A global colour map that mixes channels (a rotation of RGB, scaled, plus an
# offset): invertible, and it keeps [0, 1] inside [0.15, 0.85], so nothing clips.
COLOUR_MAP = torch.tensor([[0.1, 0.6, 0.0], [0.0, 0.1, 0.6], [0.6, 0.0, 0.1]])
COLOUR_OFFSET = torch.tensor([0.15, 0.15, 0.15])


def scene_batch(split: str, n: int, size: int = 32) -> torch.Tensor:
    from compressai_psic.image_io import pil_to_tensor

    data = SceneCaptions(split, num_samples=n, image_size=size)
    return torch.cat([pil_to_tensor(data.load_image(i)) for i in range(n)])


def test_attack_registry():
    assert {"jpeg75", "jpeg90", "down2", "greyworld", "affine_fit"} <= set(
        DEFAULT_ATTACKS
    )
    attacks = build_attacks()
    assert list(attacks) == list(DEFAULT_ATTACKS)
    assert [n for n, a in attacks.items() if a.needs_fit] == [
        "greyworld_fit", "offset_fit", "affine_fit",
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


# ------------------------------------------------------------ image dependence


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


def test_chance_recall_and_ms_ssim_window():
    assert chance_recall([0, 1, 2, 3], ks=(1, 2)) == {
        "i2t": {"R@1": pytest.approx(0.25), "R@2": pytest.approx(0.5)},
        "t2i": {"R@1": pytest.approx(0.25), "R@2": pytest.approx(0.5)},
    }
    # Two captions each among 8: image→text hits at 1 with probability 2/8.
    chance = chance_recall([[0, 1], [2, 3], [4, 5], [6, 7]], ks=(1, 2))
    assert chance["i2t"]["R@1"] == pytest.approx(2 / 8)
    assert chance["i2t"]["R@2"] == pytest.approx(1 - (6 * 5) / (8 * 7))
    assert chance["t2i"]["R@1"] == pytest.approx(1 / 4)
    assert ms_ssim_window(256) == 11 and ms_ssim_window(161) == 11
    assert ms_ssim_window(160) == 9 and ms_ssim_window(64) == 3
    assert ms_ssim_window(32) is None


# -------------------------------------------------------- attacker's evaluation


class ColourShield(torch.nn.Module):
    """A stand-in codec: 8-bit lossless "bitstream"; the protected decode is a
    fixed global colour map of the full one (a shield an attacker can undo)."""

    downsampling_factor = 1

    def __init__(self, matrix: torch.Tensor, offset: torch.Tensor):
        super().__init__()
        self.register_buffer("matrix", matrix)
        self.register_buffer("offset", offset)
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return {"x_hat": x}

    def update(self, force: bool = False) -> bool:
        return True

    def compress(self, x):
        data = x.clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
        return {"strings": [[d.numpy().tobytes() for d in data]], "shape": x.shape[1:]}

    def decompress_multi(self, strings, shape, conditions):
        full = (
            torch.stack(
                [
                    torch.frombuffer(bytearray(s), dtype=torch.uint8).view(*shape)
                    for s in strings[0]
                ]
            ).float()
            / 255
        )
        return {
            "x_hat": [
                full
                if c == "full"
                else apply_affine_colour(full, self.matrix, self.offset)
                for c in conditions
            ]
        }


class _OracleModel(torch.nn.Module):
    def __init__(self, bank: torch.Tensor):
        super().__init__()
        self.register_buffer("bank", bank)
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def encode_image(self, pixels):
        features = torch.nn.functional.adaptive_avg_pool2d(pixels, 4).flatten(1)
        return features - features.mean(1, keepdim=True)

    def encode_text(self, tokens):
        return self.bank[tokens[:, 0]]


def oracle_vlp(dataset, size: int = 32, name: str = "oracle") -> VLPAdapter:
    """A "VLP" that knows the dataset: a caption's embedding is the pixel
    features of its original image, so originals are retrieved perfectly and
    anything that changes colours is not."""
    from compressai_psic.image_io import pil_to_tensor

    captions, images = [], []
    for i in range(len(dataset)):
        for caption in dataset.image_captions_at(i):
            captions.append(caption)
            images.append(pil_to_tensor(dataset.load_image(i)))
    index = {caption: i for i, caption in enumerate(captions)}
    vlp = VLPAdapter(
        _OracleModel(torch.zeros(len(captions), 48)),
        lambda texts: torch.tensor([[index[t]] for t in texts]),
        image_size=size,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        resize_mode="squash",
        name=name,
    )
    vlp.model.bank = vlp.encode_image(torch.cat(images))
    return vlp


@pytest.fixture(scope="module")
def scenes_and_fit():
    dataset = SceneCaptions("test", 10, image_size=32, distinct_captions=True)
    fit = SceneCaptions("val", 4, image_size=32)
    return dataset, fit


def test_evaluate_shield_informed_attack_restores_retrieval(scenes_and_fit):
    dataset, fit = scenes_and_fit
    shield = ColourShield(COLOUR_MAP, COLOUR_OFFSET)
    result = evaluate_shield(
        shield, dataset, train_vlps=[oracle_vlp(dataset)],
        attacks=["greyworld", "offset_fit", "affine_fit", "affine_fit+jpeg90"],
        fit_dataset=fit, ks=(1,), batch_size=4, progress=False,
    )  # fmt: skip
    json.dumps(result)
    recall = result["recall"]
    r1 = {v: (recall[v]["i2t"]["R@1"], recall[v]["t2i"]["R@1"]) for v in recall}
    assert r1["original"] == r1["full"] == (1.0, 1.0)
    assert max(r1["protected"]) <= 0.3  # the colour map hides the scenes
    assert max(r1["protected_offset_fit"]) <= 0.5  # an offset is not enough
    # The informed attacker fitted on 4 other scenes gets everything back.
    assert r1["protected_affine_fit"] == (1.0, 1.0)
    assert r1["protected_affine_fit+jpeg90"] == (1.0, 1.0)
    assert result["fit"] == {
        "num_images": 4,
        "attacks": ["offset_fit", "affine_fit", "affine_fit+jpeg90"],
    }
    params = result["attack_params"]["protected_affine_fit"]
    assert params["fitted_on"]["images"] == 4
    torch.testing.assert_close(
        torch.tensor(params["matrix"]), torch.linalg.inv(COLOUR_MAP), atol=1e-3, rtol=0
    )
    # PSNR means leave infinite values out: None when every image is exact.
    assert (result["psnr"]["protected_affine_fit"] or math.inf) > 45
    assert result["psnr"]["protected"] < 20
    assert result["psnr"]["full"] is None  # lossless stand-in codec
    assert result["ms_ssim_window"] is None  # 32-pixel images: too small
    asr = result["asr"]["protected"]["vs_original"]["i2t"]["R@1"]
    assert asr == pytest.approx(1.0 - r1["protected"][0])
    assert result["asr"]["protected_affine_fit"]["vs_original"]["i2t"]["R@1"] == 0.0
    # Every image gets the same cast: protected − full is common to all of them
    # only in part (the map scales image content), but the dependence is
    # measured over all 10.
    dependence = result["image_dependence"]
    assert dependence["num_images"] == 10
    assert 0.0 < dependence["common_share"] < 1.0


def test_evaluate_shield_keeps_vlp_roles_apart(scenes_and_fit):
    dataset, fit = scenes_and_fit
    shield = ColourShield(COLOUR_MAP, COLOUR_OFFSET)
    blind = tiny_vlp(seed=3)
    result = evaluate_shield(
        shield, dataset, train_vlps=[oracle_vlp(dataset, name="seen")],
        eval_vlps=[blind, oracle_vlp(dataset, name="unseen")],
        attacks=["jpeg75"], ks=(1, 5), batch_size=5, attack_full=True,
        progress=False,
    )  # fmt: skip
    entries = result["vlps"]
    assert [(e["role"], e["name"]) for e in entries] == [
        ("train", "seen"), ("eval", "tiny:3"), ("eval", "unseen"),
    ]  # fmt: skip
    assert result["vlp"] == "seen" and result["vlp_role"] == "train"
    assert result["recall"] == entries[0]["recall"]
    assert result["fit"] is None and result["attack_sources"] == ["protected", "full"]
    variants = {"original", "full", "protected", "protected_jpeg75", "full_jpeg75"}
    for entry in entries:
        assert set(entry["recall"]) == variants
        assert set(entry["asr"]) == {"protected", "protected_jpeg75"}
    # Each VLP's own figures: the oracles read originals perfectly, the random
    # tiny VLP does not; nothing is averaged over VLPs.
    assert entries[0]["recall"]["original"]["i2t"]["R@1"] == 1.0
    assert entries[2]["recall"] == entries[0]["recall"]
    assert entries[1]["recall"]["original"]["i2t"]["R@1"] < 1.0
    with pytest.raises(ValueError, match="at least one"):
        evaluate_shield(shield, dataset, None, None, attacks=[], progress=False)


def test_evaluate_shield_fit_and_eval_sets_are_disjoint(scenes_and_fit):
    dataset, _ = scenes_and_fit
    shield = ColourShield(COLOUR_MAP, COLOUR_OFFSET)
    vlp = oracle_vlp(dataset)
    kwargs = dict(attacks=["affine_fit"], ks=(1,), progress=False)
    with pytest.raises(ValueError, match="fit_dataset"):
        evaluate_shield(shield, dataset, [vlp], **kwargs)
    with pytest.raises(ValueError, match="must not be the evaluated"):
        evaluate_shield(shield, dataset, [vlp], fit_dataset=dataset, **kwargs)
    # A fit slice that overlaps the evaluated images is refused...
    with pytest.raises(ValueError, match="disjoint"):
        evaluate_shield(
            shield, dataset, [vlp], fit_dataset=DatasetSlice(dataset, 6), limit=7,
            **kwargs,
        )  # fmt: skip
    # ...and the images after the evaluated ones are accepted.
    result = evaluate_shield(
        shield, dataset, [vlp], fit_dataset=DatasetSlice(dataset, 6), limit=6,
        **kwargs,
    )  # fmt: skip
    assert result["num_images"] == 6 and result["fit"]["num_images"] == 4
    sliced = DatasetSlice(dataset, 6, 8)
    assert len(sliced) == 2
    assert sliced.image_captions_at(1) == dataset.image_captions_at(7)
    with pytest.raises(IndexError):
        sliced.load_image(2)


def test_demo_report_has_attacks_and_image_dependence(tmp_path):
    from compressai_psic.demo import format_table, run_demo, shipped_eval_vlps
    from compressai_psic.vlp import EVAL_VLPS

    assert set(shipped_eval_vlps()) <= set(EVAL_VLPS)
    report = run_demo(
        num_images=8, output_dir=tmp_path, grid_rows=2, progress=False,
        attacks=["jpeg75", "greyworld", "affine_fit"], fit_images=3,
        eval_vlps=["tiny:5"],
    )  # fmt: skip
    assert report["attacks"] == ["jpeg75", "greyworld", "affine_fit"]
    assert report["fit"] == {
        "num_images": 3,
        "attacks": ["affine_fit"],
        "dataset": "scenes:val:seed0:3",
    }
    assert [(e["role"], e["name"]) for e in report["vlps"]] == [
        ("train", "demo-vlp"),
        ("eval", "tiny:5"),
    ]
    assert report["recall"] == report["vlps"][0]["recall"]
    dependence = report["image_dependence"]
    assert dependence["num_images"] == 8 and 0 <= dependence["common_share"] <= 1
    assert report["ms_ssim_window"] == 3 and 0 < report["ms_ssim"]["protected"] <= 1
    table = format_table(report)
    assert "protected_affine_fit" in table and "demo-vlp (train)" in table
    assert "tiny:5 (eval)" in table
    assert "common to all images" in table
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["image_dependence"] == dependence


# --------------------------------------------------------------- Pareto plot


def test_pareto_front():
    tool = _load_tool("plot_pareto")
    pairs = [(0.1, 20.0), (0.3, 25.0), (0.2, 19.0), (0.9, 28.0), (0.5, 24.0),
             (None, 30.0), (0.9, 28.0)]  # fmt: skip
    # (0.2, 19) is beaten by (0.1, 20); (0.5, 24) by (0.3, 25); ties both kept.
    assert tool.pareto_front(pairs) == [0, 1, 3, 6]


def _sweep_report(psnr, r1_train, r1_eval):
    def recall(value):
        return {"i2t": {"R@1": value}, "t2i": {"R@1": value / 2}}

    def entry(role, name, value):
        return {
            "role": role,
            "name": name,
            "recall": {
                "original": recall(0.9),
                "full": recall(0.9),
                "protected": recall(value),
                "protected_affine_fit": recall(min(1.0, value + 0.4)),
            },
        }

    return {
        "num_images": 50,
        "bpp": 0.8,
        "psnr": {"full": 30.0, "protected": psnr},
        "ms_ssim": {"full": 0.97, "protected": 0.9 + psnr / 1000},
        "image_dependence": {"common_share": 0.4},
        "chance": {"i2t": {"R@1": 0.02}, "t2i": {"R@1": 0.02}},
        "vlps": [entry("train", "demo-vlp", r1_train), entry("eval", "rn", r1_eval)],
    }


def test_plot_pareto_tool(tmp_path):
    tool = _load_tool("plot_pareto")
    files = []
    sweep = {"a": (18, 0.05, 0.5), "b": (24, 0.2, 0.6), "c": (28, 0.6, 0.7),
             "d": (20, 0.5, 0.4)}  # fmt: skip
    for name, figures in sweep.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(_sweep_report(*figures)))
        files.append(str(path))
    png, summary_file = tmp_path / "p.png", tmp_path / "p.json"
    summary = tool.main(
        files
        + [
            "--shipped",
            "b",
            "--variants",
            "protected",
            "protected_affine_fit",
            "--output",
            str(png),
            "--summary",
            str(summary_file),
        ]  # fmt: skip
    )
    assert png.stat().st_size > 5000
    assert json.loads(summary_file.read_text()) == summary
    assert summary["shipped"] == "b"
    assert [p["label"] for p in summary["points"] if p["shipped"]] == ["b"]
    # Per VLP, labelled by role, never pooled: "d" is dominated for the
    # training VLP (b is better on both axes) but on the front for the
    # evaluation VLP (lowest recall there).
    front = summary["pareto"]
    assert set(front) == {"train:demo-vlp", "eval:rn"}
    assert front["train:demo-vlp"]["protected"]["i2t"]["psnr"] == ["a", "b", "c"]
    assert front["eval:rn"]["protected"]["i2t"]["psnr"] == ["d", "b", "c"]
    point = summary["points"][1]
    assert point["recall"]["eval:rn"]["protected"] == {"i2t": 0.6, "t2i": 0.3}
    assert point["psnr"] == 24 and point["common_share"] == 0.4
    # The shipped point can be named by its file too; unknown names fail.
    assert (
        tool.main(files + ["--shipped", files[2], "--output", str(png)])["shipped"]
        == "c"
    )
    with pytest.raises(SystemExit):
        tool.main(files + ["--shipped", "zzz", "--output", str(png)])
    with pytest.raises(SystemExit):
        tool.main(files + ["--labels", "x", "--output", str(png)])


# ----------------------------------------------------------------------- tool


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eval_retrieval_tool_on_a_flickr8k_style_folder(tmp_path, capsys):
    tool = _load_tool("eval_retrieval")
    write_split(tmp_path / "data", "test", 4, image_size=40, captions_per_image=2)
    output, plot = tmp_path / "out" / "r.json", tmp_path / "out" / "r.png"
    args = [
        "--dataset", str(tmp_path / "data"), "--split", "test", "--limit", "3",
        "--image-size", "48", "--model", "bmshj2018-factorized", "--quality", "1",
        "--random-init", "--train-vlp", "tiny", "--eval-vlp", "tiny:1",
        "--ks", "1", "2", "--attacks", "jpeg75", "greyworld", "affine_fit",
        "--output", str(output), "--plot", str(plot), "--no-progress",
    ]  # fmt: skip
    result = tool.main(args)
    saved = json.loads(output.read_text())
    assert saved["num_images"] == 3 and saved["num_captions"] == 6
    # The fit set is the image after the three evaluated ones.
    assert saved["fit"]["num_images"] == 1
    assert saved["fit"]["dataset"].endswith("test[3:]")
    # One entry per VLP, each with its role and spec; never pooled.
    assert [(v["role"], v["name"], v["spec"]) for v in saved["vlps"]] == [
        ("train", "tiny:0", "tiny"),
        ("eval", "tiny:1", "tiny:1"),
    ]
    assert saved["vlp"] == "tiny:0" and saved["vlp_role"] == "train"
    assert saved["recall"] == saved["vlps"][0]["recall"]
    assert saved["vlps"][0]["recall"] != saved["vlps"][1]["recall"]
    assert saved["ks"] == [1, 2] and saved["image_size"] == 48
    assert set(saved["recall"]["protected_affine_fit"]["i2t"]) == {"R@1", "R@2"}
    assert saved["recall"] == result["recall"]
    assert plot.stat().st_size > 1000
    table = capsys.readouterr().out
    assert "protected_affine_fit" in table and "ASR vs original" in table
    assert "tiny:1 (role: eval)" in table and "common share" in table

    with pytest.raises(SystemExit):
        tool.main(["--scenes", "2", "--model", "mbt2018", "--quality", "1"])  # no VLP
    with pytest.raises(SystemExit):
        tool.main(["--scenes", "2", "--model", "mbt2018", "--vlp", "tiny"])  # no -q
    # A fitted attack on a folder needs a fit split or --limit.
    with pytest.raises(SystemExit):
        tool.main(args[:4] + args[6:])
    with pytest.raises(SystemExit):
        tool.main(["--scenes", "2", "--model", "mbt2018", "--quality", "1",
                   "--vlp", "tiny", "--fit-split", "test"])  # fmt: skip
    with pytest.raises(SystemExit):
        tool.main(["--scenes", "2", "--model", "mbt2018", "--quality", "1",
                   "--vlp", "tiny", "--attacks", "sharpen"])  # fmt: skip


def test_eval_retrieval_tool_fits_on_val_scenes():
    tool = _load_tool("eval_retrieval")
    args = tool.build_parser().parse_args(
        [
            "--scenes",
            "3",
            "--model",
            "mbt2018",
            "--quality",
            "1",
            "--vlp",
            "tiny",
            "--fit-limit",
            "2",
            "--image-size",
            "32",
        ]  # fmt: skip
    )
    dataset, fit, label = tool.load_datasets(args, fitted=True)
    assert label == "scenes:val:seed0:2" and len(fit) == 2 and len(dataset) == 3
    # Another stream of the generator: no fit scene is an evaluated scene.
    evaluated = [np.asarray(dataset.load_image(i)) for i in range(len(dataset))]
    for j in range(len(fit)):
        image = np.asarray(fit.load_image(j))
        assert image.shape == (32, 32, 3)
        assert not any(np.array_equal(image, e) for e in evaluated)
    assert fit.image_captions_at(0) != dataset.image_captions_at(0)
    assert tool.load_datasets(args, fitted=False)[1] is None


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
