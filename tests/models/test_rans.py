"""Tests of compressai_psic.models.rans: the rANS decoder that checks the end of
its input decodes CompressAI's strings exactly, decodes any other bytes exactly
as CompressAI's decoder does on the zero-padded string (checked against the
reference model of ``tests/rans_reference.py``), and says whether a string was
consistent."""

from __future__ import annotations

import os
import random
import re
import threading

import numpy as np
import pytest
from compressai.ans import RansDecoder, RansEncoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compressai_psic.models import guard, rans

from ..rans_reference import (
    entropy_model_tables,
    random_case,
    reference_decode,
    streams,
)

needs_extension = pytest.mark.skipif(
    not rans.available(), reason="the C extension was not built"
)


def test_ci_builds_the_extension():
    # CI sets this: there, a missing extension is a failure, not a skip.
    if os.environ.get("PSIC_REQUIRE_EXTENSION") == "1":
        assert rans.available()


@pytest.fixture(scope="module")
def tables():
    return entropy_model_tables()


def _encode(tables, count, spread, seed):
    cdfs, lengths, offsets = tables
    rng = random.Random(seed)
    indexes = [rng.randrange(len(cdfs)) for _ in range(count)]
    symbols = [rng.randint(-spread, spread) for _ in indexes]
    string = RansEncoder().encode_with_indexes(symbols, indexes, cdfs, lengths, offsets)
    return string, indexes, symbols


@needs_extension
@pytest.mark.parametrize("table", [0, 1])
@pytest.mark.parametrize("spread", [0, 2, 40, 5000, 2**20])  # 5000+: bypass mode
def test_the_encoder_s_strings_decode_exactly_and_consistently(tables, table, spread):
    string, indexes, symbols = _encode(tables[table], 700, spread, seed=spread)
    values, check = rans.decode_with_indexes(string, indexes, *tables[table])
    assert values.dtype == np.int32 and values.tolist() == symbols
    assert check.consistent and check.describe() == ""
    assert check == rans.StreamCheck(0, 0, rans.INITIAL_STATE)


@needs_extension
def test_ragged_tables_decode_like_rows_of_one_length(tables):
    cdfs, lengths, offsets = tables[1]
    ragged = [row[:n] for row, n in zip(cdfs, lengths)]
    string, indexes, symbols = _encode(tables[1], 300, 40, seed=3)
    for form in (ragged, cdfs, np.array(cdfs)):
        values, check = rans.decode_with_indexes(
            string, indexes, form, lengths, offsets
        )
        assert values.tolist() == symbols and check.consistent


@needs_extension
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=st.integers(0, 1),
    data=streams,
    symbols=st.integers(1, 300),
    seed=st.integers(0, 2**16),
)
def test_any_bytes_decode_as_the_native_decoder_decodes_them_zero_padded(
    tables, table, data, symbols, seed
):
    cdfs, lengths, offsets = tables[table]
    data, indexes = random_case(data, len(cdfs), symbols, seed)
    padded = data + bytes(guard.padding_bytes(symbols, data))
    values, check = rans.decode_with_indexes(data, indexes, cdfs, lengths, offsets)
    native = RansDecoder().decode_with_indexes(padded, indexes, cdfs, lengths, offsets)
    assert values.tolist() == native
    # The words it needed past the end are those the reference read there.
    _, read = reference_decode(padded, indexes, cdfs, lengths, offsets)
    assert check.words_past_end == max(0, read - len(data)) // 4
    if check.words_past_end:
        assert not check.consistent
        assert f"{check.words_past_end} words past its end" in check.describe()


@needs_extension
def test_a_string_with_bytes_after_its_last_symbol_is_inconsistent(tables):
    string, indexes, symbols = _encode(tables[0], 200, 40, seed=5)
    values, check = rans.decode_with_indexes(
        string + b"\1\0\0\0" + bytes(8), indexes, *tables[0]
    )
    assert values.tolist() == symbols
    assert check.unread_bytes == 12 and not check.consistent
    assert "12 bytes after its last symbol" in check.describe()
    # Zero words at the end are padding: they decode as such.
    _, check = rans.decode_with_indexes(string + bytes(64), indexes, *tables[0])
    assert check.consistent


@needs_extension
def test_a_string_decoded_with_other_tables_is_inconsistent(tables):
    string, indexes, _ = _encode(tables[1], 500, 10, seed=6)
    cdfs, lengths, offsets = tables[1]
    shifted = [(i + 1) % len(cdfs) for i in indexes]
    _, check = rans.decode_with_indexes(string, shifted, cdfs, lengths, offsets)
    assert not check.consistent
    # A string cut short needs words past its end.
    _, check = rans.decode_with_indexes(string[:-8], indexes, cdfs, lengths, offsets)
    assert check.words_past_end > 0


@needs_extension
def test_the_final_state_is_checked(tables):
    cdfs, lengths, offsets = tables[0]
    # No symbols: the string is only its start state, which must be 2**31.
    start = rans.INITIAL_STATE.to_bytes(8, "little")
    assert rans.decode_with_indexes(start, [], cdfs, lengths, offsets)[1].consistent
    other = (rans.INITIAL_STATE + 1).to_bytes(8, "little")
    _, check = rans.decode_with_indexes(other, [], cdfs, lengths, offsets)
    assert check.final_state == rans.INITIAL_STATE + 1 and not check.consistent
    assert "start state" in check.describe()


@needs_extension
@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s, i, c, n, o: (s + b"\0", i, c, n, o), "32-bit words"),
        (lambda s, i, c, n, o: (s, [len(c)] + i[1:], c, n, o), "table index"),
        (lambda s, i, c, n, o: (s, [-1] + i[1:], c, n, o), "table index"),
        (lambda s, i, c, n, o: (s, i, c, [1] + n[1:], o), "length 1"),
        (lambda s, i, c, n, o: (s, i, c, [len(c[0]) + 1] + n[1:], o), "length"),
        (lambda s, i, c, n, o: (s, i, [[70000] + c[0][1:]] + c[1:], n, o), "70000"),
        (lambda s, i, c, n, o: (s, i, [[-1] + c[0][1:]] + c[1:], n, o), "-1"),
        (lambda s, i, c, n, o: (s, i, c, n, o[:-1]), "offsets"),
    ],
)
def test_arguments_that_could_read_out_of_bounds_are_refused(tables, edit, message):
    string, indexes, _ = _encode(tables[0], 50, 5, seed=7)
    cdfs, lengths, offsets = (list(t) for t in tables[0])
    with pytest.raises(ValueError, match=message):
        rans.decode_with_indexes(*edit(string, indexes, cdfs, lengths, offsets))


@needs_extension
def test_a_table_that_is_not_a_cdf_is_refused(tables):
    cdfs, lengths, offsets = (list(t) for t in tables[0])
    # A first value above every state's low bits: no symbol starts there.
    broken = [[65536] * len(cdfs[0])] + cdfs[1:]
    string, indexes, _ = _encode(tables[0], 50, 5, seed=8)
    with pytest.raises(ValueError, match="table 0 is not a cumulative"):
        rans.decode_with_indexes(string, [0] * 50, broken, lengths, offsets)


@needs_extension
def test_decodes_in_threads_give_the_same_symbols(tables):
    jobs = [_encode(tables[k % 2], 20000, 40, seed=k) for k in range(6)]
    results = [None] * len(jobs)

    def run(k):
        string, indexes, _ = jobs[k]
        results[k] = rans.decode_with_indexes(string, indexes, *tables[k % 2])

    workers = [threading.Thread(target=run, args=(k,)) for k in range(len(jobs))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for (_, _, symbols), (values, check) in zip(jobs, results):
        assert values.tolist() == symbols and check.consistent


def test_without_the_extension_the_decoder_refuses_to_start(monkeypatch):
    monkeypatch.setattr(rans, "_native", None)
    assert not rans.available()
    message = (
        "the bounded rANS decoder was not built (no C compiler when "
        "compressai-psic was installed); reinstall with one"
    )
    with pytest.raises(RuntimeError, match=f"^{re.escape(message)}$"):
        rans.decode_with_indexes(b"s" * 8, [], [[0, 65536]], [2], [0])
    with pytest.raises(RuntimeError, match="not built"):
        rans.BoundedRansDecoder()


@needs_extension
def test_streaming_decodes_go_on_where_the_last_call_stopped(tables):
    string, indexes, symbols = _encode(tables[1], 600, 300, seed=10)
    decoder = rans.BoundedRansDecoder()
    decoder.set_stream(string)
    pieces, start = [], 0
    for size in (1, 0, 50, 249, 300):
        chunk = indexes[start : start + size]
        pieces += decoder.decode_stream(chunk, *tables[1]).tolist()
        start += size
    assert pieces == symbols and decoder.check().consistent
    # CompressAI's streaming decoder agrees, call for call.
    native = RansDecoder()
    native.set_stream(string)
    assert native.decode_stream(indexes[:300], *tables[1]) == symbols[:300]
    # A new stream starts afresh; a check before the end is not consistent.
    decoder.set_stream(string)
    decoder.decode_stream(indexes[:10], *tables[1])
    assert not decoder.check().consistent
    with pytest.raises(ValueError, match="^the string is not whole 32-bit words$"):
        decoder.set_stream(string + b"\0")


def test_describe_lists_every_problem_in_one_line():
    # The text DesyncError shows for a string that did not decode consistently.
    assert rans.StreamCheck(2, 4, 5).describe() == (
        "2 words past its end were needed; 4 bytes after its last symbol; the "
        "decoder did not end in the encoder's start state"
    )
    assert rans.StreamCheck(0, 0, 7).describe() == (
        "the decoder did not end in the encoder's start state"
    )
    assert not rans.StreamCheck(0, 0, 7).consistent
    assert not rans.StreamCheck(0, 4, rans.INITIAL_STATE).consistent


@needs_extension
def test_words_past_the_end_add_up_over_streaming_calls(tables):
    cdfs, lengths, offsets = tables[0]
    start = rans.INITIAL_STATE.to_bytes(8, "little")  # a string of 0 symbols
    indexes = [0] * 100
    _, whole = rans.decode_with_indexes(start, indexes, cdfs, lengths, offsets)
    decoder = rans.BoundedRansDecoder()
    decoder.set_stream(start)
    decoder.decode_stream(indexes[:50], cdfs, lengths, offsets)
    first = decoder.check().words_past_end
    decoder.decode_stream(indexes[50:], cdfs, lengths, offsets)
    assert decoder.check() == whole and 0 < first < whole.words_past_end


@needs_extension
def test_a_check_before_any_decode_counts_every_byte_unread(tables):
    string, _, _ = _encode(tables[0], 50, 40, seed=11)
    decoder = rans.BoundedRansDecoder()
    decoder.set_stream(string)
    assert decoder.check() == rans.StreamCheck(0, len(string), 0)
    # Before any string: nothing read, nothing unread.
    assert rans.BoundedRansDecoder().check() == rans.StreamCheck(0, 0, 0)


@needs_extension
def test_no_tables_is_refused():
    with pytest.raises(ValueError, match="^no tables: need at least one CDF$"):
        rans.decode_with_indexes(bytes(8), [], [], [], [])
    with pytest.raises(ValueError, match="need a table of at least 2 values"):
        rans.decode_with_indexes(bytes(8), [], np.zeros((0, 2)), [], [])


@needs_extension
def test_arguments_of_any_shape_are_read_flat(tables):
    string, indexes, symbols = _encode(tables[1], 60, 40, seed=12)
    cdfs, lengths, offsets = tables[1]
    values, check = rans.decode_with_indexes(
        string,
        np.array(indexes).reshape(6, 10),
        cdfs,
        np.array(lengths).reshape(1, -1),
        np.array(offsets).reshape(-1, 1),
    )
    assert values.tolist() == symbols and check.consistent
