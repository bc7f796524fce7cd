"""Tests of the retrieval metrics and embeddings
(compressai_psic.evaluation.retrieval)."""

import pytest
import torch

from compressai_psic.evaluation import (
    attack_success_rate,
    caption_owners,
    chance_recall,
    embed_images,
    embed_texts,
    ms_ssim_window,
    recall_at_k,
    retrieval_hits,
    similarity,
)
from compressai_psic.vlp import VLPEnsemble, tiny_vlp


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
