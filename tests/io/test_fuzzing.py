"""Tests of the decode fuzzer (tools/_lib/fuzzing.py): the isolated decode runner, the
reproducers of issue 12 and Hypothesis-driven mutants (each decoded in a forked
child, so that a segfault fails the test instead of killing pytest)."""

from __future__ import annotations

import random
import signal

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compressai_psic import zoo
from compressai_psic.io import container
from compressai_psic.io.codec import ModelSpec, compress_tensor
from compressai_psic.models import guard as decode_guard
from tools._lib import fuzzing

from ..models.helpers import tiny_zoo_model


@pytest.fixture(scope="module")
def models():
    return {name: tiny_zoo_model(name) for name in ("bmshj2018-hyperprior", "mbt2018")}


def _psic_bytes(model, seed=0, height=40, width=72):
    spec = ModelSpec(architecture=model.architecture, quality=1, metric="mse")
    x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed))
    return container.dumps(compress_tensor(model, x, spec))


def _identity(model):
    return fuzzing.model_identity(model.architecture, quality=1, metric="mse")


def test_isolation_reports_crashes_and_hangs(monkeypatch, models):
    import os
    import time

    def fake_decode(model, data, identity, conditions, max_pixels):
        if data == b"segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if data == b"hang":
            time.sleep(60)
        return "parser", ""

    monkeypatch.setattr(fuzzing, "decode_file", fake_decode)
    result = fuzzing.run_isolated(
        models["bmshj2018-hyperprior"],
        {},
        [b"a", b"segv", b"b", b"hang", b"c"],
        timeout=0.5,
    )
    assert [o for o, _ in result.outcomes] == [
        "parser",
        "crash",
        "parser",
        "hang",
        "parser",
    ]
    assert "-11" in result.outcomes[1][1] and result.children == 3


@pytest.fixture(scope="module")
def demo_codec():
    """The shipped demo codec, as ``psic decompress -c zoo/demo-psic-*`` builds it."""
    from compressai_psic import cli

    path = zoo.zoo_dir() / zoo.manifest_entry(name="demo-psic")["file"]
    spec = ModelSpec(architecture=None, checkpoint=path)
    model, sha256 = cli.build_model(spec)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    data = container.dumps(compress_tensor(model, x, spec, sha256))
    identity = fuzzing.model_identity(model.architecture, checkpoint_sha256=sha256)
    return model, identity, data


@pytest.mark.parametrize("name", ["demo-psic", "mbt2018"])
def test_issue_reproducers_fail_cleanly(models, demo_codec, name):
    if name == "demo-psic":
        model, identity, data = demo_codec
    else:
        model = models[name]
        identity, data = _identity(model), _psic_bytes(model)
    valid = container.loads(data)

    def variant(**changes):
        obj = container.loads(data)
        for key, value in changes.items():
            setattr(obj, key, value)
        return container.dumps(obj)

    y, z = valid.strings
    mutants = [data]
    # 0-12 byte y strings segfaulted (a 584-byte demo file killed psic).
    mutants += [variant(strings=[[y[0][:n]], z]) for n in range(13)]
    mutants += [
        variant(height=1, width=1, shape=(64, 64)),  # 4096² decode of a 1x1 file
        variant(height=8192, width=8192, shape=(128, 128)),  # 10.6 GB
        variant(strings=[y]),  # AssertionError: latent count
        variant(strings=[y, z, z]),
        variant(strings=[z, y]),  # swapped strings: NaN
        variant(shape=(valid.shape[1], valid.shape[0] + 1)),  # wrong shape: NaN
        variant(height=valid.height * 40, width=valid.width * 40),  # hang > 10 s
    ]
    result = fuzzing.run_isolated(model, identity, mutants, timeout=20.0)
    outcomes = [outcome for outcome, _ in result.outcomes]
    assert outcomes[0] == "decoded"
    assert not result.failures(), result.failures()
    for n, outcome in enumerate(outcomes[1:14]):
        # Whole words with a valid start state are padded, then decoded.
        if n <= len(y[0]) and (n < 8 or n % 4):
            assert outcome == "guard", (n, result.outcomes[1 + n])
    # Swapped strings may look valid: refused, or decoded to other symbols than
    # the header's digest (before its digest, a file like that decoded to
    # finite garbage).
    assert outcomes[18] in ("guard", "nonfinite", "desync")
    del outcomes[18]
    assert outcomes[14:] == ["guard", "limit"] + ["guard"] * 4, result.outcomes[14:]


@pytest.fixture(scope="module")
def fuzz_seeds(models):
    model = models["bmshj2018-hyperprior"]
    return model, [
        _psic_bytes(model, seed, *size)
        for seed, size in enumerate(((64, 64), (40, 72), (100, 30)))
    ]


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 2**32 - 1))
def test_hypothesis_mutants_reach_the_decoder_and_never_fail(fuzz_seeds, seed):
    model, seeds = fuzz_seeds
    rng = random.Random(seed)

    def shape_for(height, width):
        return decode_guard.expected_shape(model, height, width)

    mutants = []
    for index in range(40):
        source = index % len(seeds)
        donors = [s for i, s in enumerate(seeds) if i != source]
        mutants.append(fuzzing.mutate(seeds[source], rng, donors, shape_for))
    result = fuzzing.run_isolated(
        model,
        _identity(model),
        mutants,
        timeout=20.0,
        memory_mib=1024,
        max_pixels=1 << 18,
    )
    assert not result.failures(), result.failures()
    counts = result.counts()
    # Most mutants carry a valid checksum and get past the parser.
    assert counts["parser"] < len(mutants) // 2
