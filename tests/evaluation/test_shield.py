"""Tests of the attacker's evaluation of a shielded codec
(compressai_psic.evaluation.shield), with stand-in codecs and VLPs."""

import json
import math

import pytest
import torch

from compressai_psic.datasets import SceneCaptions
from compressai_psic.evaluation import (
    DatasetSlice,
    apply_affine_colour,
    evaluate_privacy,
    evaluate_shield,
)
from compressai_psic.vlp import VLPAdapter, tiny_vlp
from compressai_psic.zoo import bmshj2018_hyperprior

from .helpers import COLOUR_MAP, COLOUR_OFFSET


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
    from compressai_psic.io.images import pil_to_tensor

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
