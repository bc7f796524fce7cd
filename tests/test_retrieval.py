import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from compressai_psic.datasets import SceneCaptions
from compressai_psic.retrieval import (
    attack_success_rate,
    caption_owners,
    downscale,
    embed_images,
    embed_texts,
    evaluate_privacy,
    jpeg_reencode,
    recall_at_k,
    retrieval_hits,
    scraper_transforms,
    similarity,
)
from compressai_psic.scenes import write_split
from compressai_psic.testing import tiny_vlp
from compressai_psic.vlp import VLPEnsemble
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


# ----------------------------------------------------------------------- tool


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eval_retrieval_tool_on_a_flickr8k_style_folder(tmp_path, capsys):
    tool = _load_tool("eval_retrieval")
    write_split(tmp_path / "data", "test", 3, image_size=40, captions_per_image=2)
    output, plot = tmp_path / "out" / "r.json", tmp_path / "out" / "r.png"
    args = [
        "--dataset", str(tmp_path / "data"), "--split", "test",
        "--image-size", "48", "--model", "bmshj2018-factorized", "--quality", "1",
        "--random-init", "--vlp", "tiny", "--vlp", "tiny:1", "--ks", "1", "2",
        "--output", str(output), "--plot", str(plot), "--no-progress",
    ]  # fmt: skip
    result = tool.main(args)
    saved = json.loads(output.read_text())
    assert saved["num_images"] == 3 and saved["num_captions"] == 6
    assert saved["vlp"] == "tiny:0+tiny:1"
    assert saved["ks"] == [1, 2] and saved["image_size"] == 48
    assert set(saved["recall"]["protected_jpeg75"]["i2t"]) == {"R@1", "R@2"}
    assert saved["recall"] == result["recall"]
    assert plot.stat().st_size > 1000
    table = capsys.readouterr().out
    assert "protected_down2" in table and "ASR vs original" in table

    with pytest.raises(SystemExit):
        tool.main(["--scenes", "2", "--model", "mbt2018", "--quality", "1"])  # no VLP
    with pytest.raises(SystemExit):
        tool.main(["--scenes", "2", "--model", "mbt2018", "--vlp", "tiny"])  # no -q
