"""A VLP with hand-picked embeddings, a float64 reference of the UAEO terms and
model outputs, shared by the loss tests."""

import numpy as np
import torch
import torch.nn as nn

from compressai_psic.vlp import VLPAdapter

__all__ = [
    "P3",
    "RN_CONFIG",
    "S",
    "TAU",
    "U3",
    "V3",
    "captions",
    "color_images",
    "color_vlp",
    "model_output",
    "reference_uaeo",
    "unit",
]

S = 1 / 0.07
TAU = 0.1


# -- a VLP with hand-picked embeddings --


class _MeanColorModel(nn.Module):
    """Image embedding = mean colour; caption "k" embeds as row k of a table."""

    def __init__(self, table):
        super().__init__()
        self.table = nn.Parameter(torch.as_tensor(table, dtype=torch.float32))

    def encode_image(self, pixels):
        return pixels.mean(dim=(2, 3))

    def encode_text(self, tokens):
        return self.table[tokens[:, 0]]


def color_vlp(table, image_size=4):
    def tokenize(texts):
        return torch.tensor([[int(t)] for t in texts])

    return VLPAdapter(
        _MeanColorModel(table),
        tokenize,
        image_size=image_size,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        name="color",
    )


def color_images(colors, size=4):
    colors = torch.as_tensor(colors, dtype=torch.float32)
    return colors[:, :, None, None].expand(-1, -1, size, size).contiguous()


def captions(n):
    return [str(i) for i in range(n)]


def unit(a):
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def reference_uaeo(u, v, p, s=S, tau=TAU, offset=1.0):
    """Loop-by-loop float64 version of the paper's UAEO terms (labels skip self)."""
    u, v, p = unit(u), unit(v), unit(p)
    n = len(u)
    sim = s * u @ v.T
    rel = 0.5 * (sim + sim.T)
    evidence = np.exp(np.tanh(rel) / tau)
    a_i2t, a_t2i = evidence + 1, evidence.T + 1
    joint = evidence + evidence.T
    norm = joint / joint.sum(axis=1, keepdims=True)
    clean = [int(np.argmax(norm[i])) == i for i in range(n)]
    img_lab, txt_lab = [-1] * n, [-1] * n
    for i in range(n):
        if not clean[i]:
            others = [j for j in range(n) if j != i]
            img_lab[i] = min(others, key=lambda j: a_i2t[i, j])
            txt_lab[i] = min(others, key=lambda j: a_t2i[i, j])
    cos = [float(p[i] @ v[i]) for i in range(n)]
    clean_terms = [offset + cos[i] for i in range(n) if clean[i]]
    i2t, t2i = [], []
    for i in range(n):
        if clean[i]:
            continue
        logits = s * p[i] @ v.T
        i2t.append(-logits[img_lab[i]] + np.log(np.exp(logits).sum()))
        logits = s * v[i] @ p.T
        t2i.append(-logits[txt_lab[i]] + np.log(np.exp(logits).sum()))
    mean = lambda xs: float(np.mean(xs)) if xs else 0.0  # noqa: E731
    return {
        "alpha_i2t": a_i2t,
        "alpha_t2i": a_t2i,
        "normalized_evidence": norm,
        "clean": clean,
        "image_labels": img_lab,
        "text_labels": txt_lab,
        "clean_loss": mean(clean_terms),
        "i2t_loss": mean(i2t),
        "t2i_loss": mean(t2i),
    }


# 3 pairs: pair 0 matches; captions 1 and 2 are closer to the other image.
U3 = [[1.0, 0.05, 0.1], [0.1, 1.0, 0.2], [0.05, 0.1, 1.0]]
V3 = [[0.9, 0.1, 0.2], [0.1, 0.3, 0.8], [0.2, 0.7, 0.3]]
P3 = [[0.3, 0.6, 0.5], [0.7, 0.2, 0.4], [0.2, 0.5, 0.9]]


def model_output(x_hat, batch=4, seed=0, beta=None):
    """A model output; a list ``x_hat`` is [full, protected] as forward_multi's."""
    g = torch.Generator().manual_seed(seed)
    likelihoods = {
        "y": torch.rand(batch, 8, 4, 4, generator=g) * 0.9 + 0.05,
        "z": torch.rand(batch, 4, 2, 2, generator=g) * 0.9 + 0.05,
    }
    out = {"x_hat": x_hat, "likelihoods": likelihoods}
    if beta is None and isinstance(x_hat, list):
        beta = [torch.zeros(batch), torch.ones(batch)][: len(x_hat)]
    if beta is not None:
        out["beta"] = beta
    return out


#: Captions of :func:`noisy_batch`'s four images.
CAPTIONS = ["a red square", "a blue circle", "green grass", "a white wall"]


def noisy_batch(seed=0):
    """Four 32×32 images and two noisy decodes of them: (target, full, protected)."""
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(4, 3, 32, 32, generator=g)
    full = (target + 0.02 * torch.randn(4, 3, 32, 32, generator=g)).clamp(0, 1)
    protected = (target + 0.1 * torch.randn(4, 3, 32, 32, generator=g)).clamp(0, 1)
    return target, full, protected


#: A tiny open_clip CLIP with a ResNet image tower (the feature terms need one).
RN_CONFIG = {
    "embed_dim": 16,
    "quick_gelu": False,
    "vision_cfg": {
        "image_size": 32,
        "layers": [1, 1, 1, 1],
        "width": 8,
        "head_width": 8,
    },
    "text_cfg": {
        "context_length": 48,
        "vocab_size": 49408,
        "width": 16,
        "heads": 2,
        "layers": 1,
    },
}
