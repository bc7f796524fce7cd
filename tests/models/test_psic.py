"""``compressai_psic.models.psic``: the authors' layout (``psic-hy2018``): its
defaults, its blocks and its synthesis, which adds the trigger itself."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from compressai.layers import GDN

from compressai_psic.models import (
    PSICHyperprior,
    PSICHyperpriorBase,
)
from compressai_psic.models.psic import (
    ConditionalResidualBlock,
    UpsamplingResidualBlock,
)

from .helpers import (
    perturb_triggers,
)


def test_official_defaults_are_the_papers():
    # The authors' checkpoints: N 192, M 320, a 512-wide trigger.
    net = PSICHyperpriorBase()
    assert (net.N, net.M, net.trigger_dim) == (192, 320, 512)
    assert net.g_s[0].conv1.in_channels == 320
    assert net.g_s[0].conv1.out_channels == 192
    assert net.g_s[0]._proj1[0].in_features == 512
    assert ConditionalResidualBlock(4, 6)._proj2[0].in_features == 512


def test_official_base_hands_compressai_its_keyword_arguments():
    with pytest.raises(TypeError, match="no_such_argument"):
        PSICHyperpriorBase(N=8, M=12, trigger_dim=4, no_such_argument=1)
    with pytest.warns(DeprecationWarning, match="init_weights"):
        PSICHyperpriorBase(N=8, M=12, trigger_dim=4, init_weights=True)


def test_trigger_projections_have_no_bias():
    # The authors' files have no bias key: with a bias a fresh model would no
    # longer decode the same image for every condition.
    block = ConditionalResidualBlock(6, 4, trigger_dim=5)
    assert block._proj1[0].bias is None and block._proj2[0].bias is None
    keys = PSICHyperprior(N=8, M=12, trigger_dim=4).state_dict().keys()
    assert not [k for k in keys if "_proj" in k and k.endswith(".bias")]


def test_upsampling_block_is_igdn_of_the_main_path_plus_the_skip():
    torch.manual_seed(0)
    block = UpsamplingResidualBlock(4, 6).eval()
    assert isinstance(block.igdn, GDN) and block.igdn.inverse is True
    x = torch.randn(2, 4, 5, 7)
    with torch.no_grad():
        main = block.conv(nn.functional.gelu(block.subpel_conv(x)))
        expected = block.igdn(main) + block.upsample(x)
        assert torch.allclose(block(x), expected, atol=1e-6)


def test_official_synthesis_takes_a_trigger_of_another_dtype():
    torch.manual_seed(0)
    net = PSICHyperprior(N=8, M=12, trigger_dim=4).double().eval()
    for block in (net.g_s[i] for i in (0, 2, 4, 6)):
        nn.init.normal_(block._proj1[0].weight)
    y_hat = torch.randn(1, 12, 2, 3, dtype=torch.float64)
    trigger = torch.randn(1, 4)
    with torch.no_grad():
        mixed = net.g_s(y_hat, trigger)
        same = net.g_s(y_hat, trigger.double())
    assert mixed.dtype == torch.float64
    assert torch.equal(mixed, same)


def test_bare_psic_hyperprior_respects_beta(image):
    net = PSICHyperprior(N=8, M=12, trigger_dim=16).eval()
    perturb_triggers(net)
    with torch.no_grad():
        net(image)
        net.update(force=True)
        enc = net.compress(image)
        prot = net.decompress(enc["strings"], enc["shape"])["x_hat"]
        full = net.decompress(enc["strings"], enc["shape"], condition="full")["x_hat"]
        y = torch.randn(1, 12, 4, 4)
        explicit = net.g_s(y, trigger=net.global_cond(torch.zeros(1)))
        by_condition = net.g_s(y, net.trigger("full"))
        default = net.g_s(y)
        protected = net.g_s(y, net.trigger("protected"))
    assert (prot - full).abs().max() > 1e-3
    # Not anchored: the full trigger is t(0) itself, as published.
    assert torch.equal(explicit, by_condition)
    assert torch.equal(default, protected)


def test_official_block_adds_its_projections_itself():
    from compressai_psic.models.psic import ConditionalResidualBlock

    torch.manual_seed(0)
    block = ConditionalResidualBlock(6, 4, trigger_dim=5)
    with torch.no_grad():
        block._proj1[0].weight.normal_()
        block._proj2[0].weight.normal_()
    x, t = torch.randn(2, 6, 3, 3), torch.randn(2, 5)
    h = nn.functional.gelu(block.conv1(x)) + block._proj1(t)[..., None, None]
    h = nn.functional.gelu(block.conv2(h)) + block._proj2(t)[..., None, None]
    torch.testing.assert_close(block(x, t), h + block.skip(x))
    assert not torch.allclose(block(x), block(x, t))
