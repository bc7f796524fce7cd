r"""Fuzzing the whole decode path of ``.psic`` files, crash-proof.

A privacy codec decodes files from strangers, and the container's checksum can be
recomputed by anyone; so the fuzzer mutates real files *and repairs their
checksum*, and the mutants go through everything ``psic decompress`` does:
parsing, the model identity check, :mod:`compressai_psic.models.guard`, the
entropy decoder, the synthesis transform and the crop
(:func:`compressai_psic.io.codec.decompress_header`).

Native code can crash, so :func:`run_isolated` decodes in forked child processes
with a time limit per file and an address-space limit; a child killed by a
signal or stopped for running too long is an outcome (``crash``, ``hang``), not
the end of the test run. The benchmark is ``tools/fuzz_container.py``; the
tests (``tests/io/test_fuzzing.py``) run the same code under Hypothesis.

Outcomes of one file (:data:`FAILURES` are bugs):

========== ==============================================================
parser     :class:`~compressai_psic.errors.PSICFormatError` from ``loads``
mismatch   the header names another model (``ModelMismatchError``)
guard      refused before decoding (``BitstreamError``)
limit      refused before decoding (``PixelLimitError``)
nonfinite  decoded to NaN/infinity and refused (``BitstreamError``)
desync     decoded to other symbols than the header's digest, refused
           (``DesyncError``)
refused    another one-line ``psic`` error (``CLIError``)
decoded    a finite image of the declared size
nan        **failure**: a decoded image with non-finite values was returned
size       **failure**: a decoded image of another size was returned
uncaught   **failure**: any other exception
memory     **failure**: ``MemoryError`` under the address-space limit
crash      **failure**: the child died from a signal (e.g. SIGSEGV)
hang       **failure**: the child went over the time limit
========== ==============================================================
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import random
import resource
import time
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from compressai_psic.errors import (
    BitstreamError,
    CLIError,
    DesyncError,
    ModelMismatchError,
    PixelLimitError,
    PSICFormatError,
)
from compressai_psic.io import container
from compressai_psic.io.codec import decompress_header
from compressai_psic.io.container import PSICFile
from compressai_psic.options import MAX_DECODE_PIXELS

__all__ = [
    "FAILURES",
    "OUTCOMES",
    "FuzzResult",
    "decode_file",
    "model_identity",
    "mutate",
    "run_isolated",
]

OUTCOMES = (
    "parser",
    "mismatch",
    "guard",
    "limit",
    "nonfinite",
    "desync",
    "refused",
    "decoded",
    "nan",
    "size",
    "uncaught",
    "memory",
    "crash",
    "hang",
)
#: Outcomes that are bugs.
FAILURES = frozenset({"nan", "size", "uncaught", "memory", "crash", "hang"})


def model_identity(
    architecture: str,
    quality: Optional[int] = None,
    metric: Optional[str] = None,
    checkpoint_sha256: Optional[str] = None,
    seed: Optional[int] = None,
) -> Dict[str, Any]:
    """Keyword arguments of :func:`container.check_compatible` for a model."""
    return {
        "architecture": architecture,
        "quality": quality,
        "metric": metric,
        "checkpoint_sha256": checkpoint_sha256,
        "seed": seed,
    }


def decode_file(
    model: Any,
    data: bytes,
    identity: Dict[str, Any],
    conditions: Sequence[str] = ("protected",),
    max_pixels: Optional[int] = MAX_DECODE_PIXELS,
) -> Tuple[str, str]:
    """Decodes ``data`` as ``psic decompress`` does (with its pixel limit
    ``max_pixels``); returns (outcome, detail)."""
    try:
        header = container.loads(data)
    except PSICFormatError as exc:
        return "parser", str(exc)
    try:
        container.check_compatible(header, **identity)
        images = decompress_header(model, header, list(conditions), max_pixels)
    except ModelMismatchError as exc:
        return "mismatch", str(exc)
    except PixelLimitError as exc:
        return "limit", str(exc)
    except DesyncError as exc:
        return "desync", str(exc)
    except BitstreamError as exc:
        kind = "nonfinite" if "non-finite" in str(exc) else "guard"
        return kind, str(exc)
    except (PSICFormatError, CLIError) as exc:
        if "out of memory" in str(exc) or "can't allocate memory" in str(exc):
            return "memory", str(exc)
        return "refused", str(exc)
    except MemoryError:
        return "memory", "MemoryError"
    except Exception as exc:  # noqa: BLE001 - every other exception is a bug
        return "uncaught", f"{type(exc).__name__}: {exc}"
    import torch

    for image in images:
        if not bool(torch.isfinite(image).all()):
            return "nan", "non-finite pixels returned"
        if tuple(image.shape[-2:]) != (header.height, header.width):
            return "size", f"{tuple(image.shape)} for {header.width}x{header.height}"
    return "decoded", f"{header.width}x{header.height}"


# ------------------------------------------------------------------ mutation


def _random_bytes(rng: random.Random, size: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(size))


def _mutate_string(string: bytes, rng: random.Random) -> bytes:
    op = rng.randrange(7)
    data = bytearray(string)
    if op == 0 and data:  # flip bits
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif op == 1 and data:  # overwrite bytes
        for _ in range(rng.randint(1, 16)):
            data[rng.randrange(len(data))] = rng.getrandbits(8)
    elif op == 2:  # truncate (often to the 0-16 bytes that used to crash)
        keep = rng.randint(0, 16) if rng.random() < 0.5 else rng.randint(0, len(data))
        del data[keep:]
    elif op == 3:  # extend
        data += _random_bytes(rng, rng.randint(1, 64))
    elif op == 4:  # replace by random bytes
        data = bytearray(_random_bytes(rng, rng.randint(0, max(16, 2 * len(data)))))
    elif op == 5 and data:  # runs of 0x00 or 0xff
        start = rng.randrange(len(data))
        value = rng.choice((0, 255))
        for index in range(start, min(len(data), start + rng.randint(4, 64))):
            data[index] = value
    else:  # keep the rANS start state valid, garble the rest
        data = bytearray(string[:8]) + _random_bytes(rng, max(0, len(data) - 8))
    return bytes(data)


def _mutate_header(obj: PSICFile, rng: random.Random, shape_for=None) -> PSICFile:
    op = rng.randrange(7)
    if op == 0:
        obj.height = rng.choice((1, 2, 63, 64, 65, rng.randint(1, 65535)))
    elif op == 1:
        obj.width = rng.choice((1, 2, 63, 64, 65, rng.randint(1, 65535)))
    elif op == 2:
        dims = list(obj.shape)
        index = rng.randrange(len(dims))
        dims[index] = max(1, min(1 << 20, dims[index] + rng.choice((-1, 1, 2, 63))))
        if rng.random() < 0.3:
            dims[index] = rng.randint(1, 1 << 20)
        obj.shape = tuple(dims)
    elif op == 3:
        obj.shape = tuple(rng.randint(1, 8) for _ in range(rng.randint(1, 4)))
    elif op == 4 and shape_for is not None:
        # A consistent new size: passes the shape check, decodes (bounded by
        # the pixel limit) from strings that do not fit it.
        obj.height = rng.randint(1, 2048)
        obj.width = rng.randint(1, 2048)
        obj.shape = tuple(shape_for(obj.height, obj.width))
    elif op == 5:
        obj.height, obj.width = obj.width, obj.height
    else:
        obj.shape = tuple(reversed(obj.shape))
    return obj


def _mutate_latents(obj: PSICFile, rng: random.Random, donors: Sequence[PSICFile]):
    op = rng.randrange(4)
    strings = [list(latent) for latent in obj.strings]
    if op == 0 and len(strings) > 1:
        strings.reverse()  # swapped y and z
    elif op == 1 and len(strings) > 1:
        del strings[rng.randrange(len(strings))]
    elif op == 2 and len(strings) < container.MAX_LATENTS:
        strings.insert(rng.randrange(len(strings) + 1), list(rng.choice(strings)))
    elif donors:  # a string of another file
        donor = rng.choice(donors)
        index = rng.randrange(len(strings))
        strings[index] = list(rng.choice(donor.strings))
    obj.strings = strings
    return obj


def mutate(
    data: bytes,
    rng: random.Random,
    donors: Sequence[bytes] = (),
    shape_for=None,
    repair_checksum: bool = True,
) -> bytes:
    r"""A mutant of the ``.psic`` file ``data``, with a recomputed checksum.

    One to three edits among: the bytes of an entropy-coded string (bit flips,
    overwrites, truncation to 0–16 bytes, extension, replacement, runs of 0x00
    or 0xff, a valid rANS start followed by garbage), the header (height,
    width, latent shape, both made consistent through ``shape_for(h, w)``), the
    latent list (swapped, dropped, duplicated, taken from ``donors``), or raw
    bytes of the serialised file. Header edits out of the format's ranges fall
    back to raw edits, which the parser refuses.
    """
    parsed = [container.loads(d) for d in donors]
    obj = container.loads(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        kind = rng.random()
        candidate = replace(obj, strings=[list(latent) for latent in obj.strings])
        if kind < 0.5:
            latent = rng.randrange(len(candidate.strings))
            candidate.strings[latent][0] = _mutate_string(
                candidate.strings[latent][0], rng
            )
        elif kind < 0.8:
            candidate = _mutate_header(candidate, rng, shape_for)
        else:
            candidate = _mutate_latents(candidate, rng, parsed)
        try:
            container.dumps(candidate)
        except PSICFormatError:
            continue
        obj = candidate
    out = bytearray(container.dumps(obj))
    if rng.random() < 0.1:  # raw edits of the file, checksum repaired below
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out) - container.CHECKSUM_SIZE)] = rng.getrandbits(8)
    body = bytes(out[: -container.CHECKSUM_SIZE])
    if not repair_checksum:
        return bytes(out)
    return body + container._checksum(body)


# ----------------------------------------------------------------- isolation


@dataclass
class FuzzResult:
    """Outcomes of :func:`run_isolated`, in input order, and resource figures."""

    outcomes: List[Tuple[str, str]] = field(default_factory=list)
    #: Seconds of the slowest single decode (time limit excluded).
    max_seconds: float = 0.0
    #: Largest peak resident set size of a child, in MiB.
    max_rss_mib: float = 0.0
    #: Children started (1 + one per crash or hang).
    children: int = 0

    def counts(self) -> Dict[str, int]:
        counts = {name: 0 for name in OUTCOMES}
        for outcome, _ in self.outcomes:
            counts[outcome] += 1
        return counts

    def failures(self) -> List[Tuple[int, str, str]]:
        return [
            (index, outcome, detail)
            for index, (outcome, detail) in enumerate(self.outcomes)
            if outcome in FAILURES
        ]


def _vm_size_bytes() -> Optional[int]:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _child(
    connection, model, identity, mutants, start, conditions, memory_mib, max_pixels
):
    # A crash is an outcome here: no fatal-error dump from pytest's faulthandler.
    faulthandler.disable()
    if memory_mib is not None:
        base = _vm_size_bytes()
        if base is not None:
            limit = base + memory_mib * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for index in range(start, len(mutants)):
        connection.send(("start", index))
        began = time.perf_counter()
        outcome, detail = decode_file(
            model, mutants[index], identity, conditions, max_pixels
        )
        connection.send(("done", index, outcome, detail, time.perf_counter() - began))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    connection.send(("end", peak))
    connection.close()


def run_isolated(
    model: Any,
    identity: Dict[str, Any],
    mutants: Sequence[bytes],
    timeout: float = 10.0,
    memory_mib: Optional[int] = 2048,
    conditions: Sequence[str] = ("protected",),
    max_pixels: Optional[int] = MAX_DECODE_PIXELS,
) -> FuzzResult:
    r"""Decodes every mutant in forked children; a crash or hang is an outcome.

    One child decodes the mutants in order; when it dies from a signal or takes
    more than ``timeout`` seconds on one file, it is killed, the file is recorded
    as ``crash`` or ``hang`` and a new child goes on with the next file. Each
    child may allocate ``memory_mib`` MiB of address space beyond what it
    inherits (``RLIMIT_AS``); going over it shows as ``memory``. ``max_pixels``
    is the decode's pixel limit (an argument of each decode).

    The model is probed (:func:`compressai_psic.models.guard.latent_layout`)
    before forking, so children inherit it. Needs the ``fork`` start method
    (Linux, macOS).
    """
    from compressai_psic.models.guard import latent_layout

    latent_layout(model)
    context = multiprocessing.get_context("fork")
    result = FuzzResult(outcomes=[("hang", "not run")] * len(mutants))
    start = 0
    while start < len(mutants):
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(
            target=_child,
            args=(
                sender,
                model,
                identity,
                mutants,
                start,
                conditions,
                memory_mib,
                max_pixels,
            ),
            daemon=True,
        )
        child.start()
        sender.close()
        result.children += 1
        current = start
        start = len(mutants)
        while True:
            if not receiver.poll(timeout):
                child.kill()
                child.join()
                if current < len(mutants):
                    result.outcomes[current] = ("hang", f"over {timeout} s")
                start = current + 1
                break
            try:
                message = receiver.recv()
            except EOFError:
                child.join()
                if current < len(mutants):
                    result.outcomes[current] = (
                        "crash",
                        f"exit code {child.exitcode}",
                    )
                start = current + 1
                break
            if message[0] == "start":
                current = message[1]
            elif message[0] == "done":
                _, index, outcome, detail, seconds = message
                result.outcomes[index] = (outcome, detail)
                result.max_seconds = max(result.max_seconds, seconds)
                current = index + 1
            else:
                result.max_rss_mib = max(result.max_rss_mib, message[1])
                child.join()
                break
        receiver.close()
    return result
