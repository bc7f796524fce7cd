"""Tests of compressai_psic.train.optimizers: what trains in each stage, and the
split into main and auxiliary parameters."""

from __future__ import annotations

import pytest

from compressai_psic import zoo
from compressai_psic.models import SHIELDED_CLASSES
from compressai_psic.train import (
    configure_optimizers,
    set_trainable,
    split_parameters,
)


def test_parameter_split_handles_frozen_parameters():
    net = zoo.bmshj2018_hyperprior(1, N=16, M=24)
    for name, param in net.named_parameters():
        if name.startswith("g_a.") or name == "entropy_bottleneck.quantiles":
            param.requires_grad_(False)
    main_params, aux_params = split_parameters(net)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert set(main_params) | set(aux_params) == trainable
    assert not set(main_params) & set(aux_params)
    assert not any(n.startswith("g_a.") for n in main_params)
    assert aux_params == {}
    optimizer, aux_optimizer = configure_optimizers(net, 1e-4, 1e-3)
    assert aux_optimizer is None
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(main_params)

    net.entropy_bottleneck.quantiles.requires_grad_(True)
    _, aux_optimizer = configure_optimizers(net, 1e-4, 1e-3)
    (aux,) = aux_optimizer.param_groups[0]["params"]
    assert aux is net.entropy_bottleneck.quantiles


def test_set_trainable_groups():
    net = zoo.bmshj2018_hyperprior(1, N=16, M=24)
    groups = net.parameter_groups()
    assert set(set_trainable(net, 1)) == {n for n, _ in net.named_parameters()}
    names = set(set_trainable(net, 2, "synthesis"))
    assert names == set(groups["synthesis"]) | set(groups["trigger_projections"])
    assert not any(n.startswith("global_cond.") for n in names)
    names = set(set_trainable(net, 2, "triggers"))
    assert names == set(groups["trigger_projections"])
    assert {n for n, p in net.named_parameters() if p.requires_grad} == names
    # The official layout keeps its projections inside g_s.
    psic = SHIELDED_CLASSES["psic-hy2018"](N=16, M=24, trigger_dim=32)
    names = set(set_trainable(psic, 2, "triggers"))
    assert names and all(n.startswith("g_s.") and "_proj" in n for n in names)
    with pytest.raises(ValueError, match="synthesis"):
        set_trainable(net, 2, "decoder")
