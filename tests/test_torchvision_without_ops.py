"""scripts/torchvision_without_ops.py: the guard it writes into torchvision."""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).parents[1] / "scripts" / "torchvision_without_ops.py"

# The shape of torchvision 0.28's _meta_registrations.py around the two
# registrations the script guards (one guarded registration kept for contrast).
_SOURCE = """
import torch
import torchvision.extension


@register_meta("roi_align")
def meta_roi_align(x):
    return x


@torch.library.register_fake("torchvision::nms")
def meta_nms(dets, scores, iou_threshold):
    return "nms"


@torch.library.register_fake("torchvision::qnms")
def meta_qnms(dets, scores, iou_threshold):
    return "qnms"
"""


def _load_script() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("torchvision_without_ops", _SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(source: str, has_ops: bool) -> tuple[dict, list[str]]:
    """Executes ``source`` against stand-ins for torch and torchvision; returns its
    namespace and the ops whose fake kernels it registered."""
    registered: list[str] = []

    def register_fake(name):
        def decorate(fn):
            registered.append(name)
            return fn

        return decorate

    torch = types.SimpleNamespace(
        library=types.SimpleNamespace(register_fake=register_fake)
    )
    torchvision = types.SimpleNamespace(
        extension=types.SimpleNamespace(_has_ops=lambda: has_ops)
    )
    body = source.replace("import torch\nimport torchvision.extension\n", "")
    namespace = {
        "torch": torch,
        "torchvision": torchvision,
        "register_meta": lambda name: lambda fn: fn,
    }
    exec(compile(body, "<meta>", "exec"), namespace)
    return namespace, registered


def test_the_guarded_source_registers_only_when_the_extension_loaded() -> None:
    guarded = _load_script().guard_registrations(_SOURCE)
    assert _run(_SOURCE, has_ops=False)[1] == [
        "torchvision::nms",
        "torchvision::qnms",
    ]
    namespace, registered = _run(guarded, has_ops=False)
    assert registered == []
    assert namespace["meta_nms"](None, None, 0.5) == "nms"
    assert namespace["meta_qnms"](None, None, 0.5) == "qnms"
    assert _run(guarded, has_ops=True)[1] == ["torchvision::nms", "torchvision::qnms"]
    # Only the two lines change.
    changed = [
        (a, b)
        for a, b in zip(_SOURCE.splitlines(), guarded.splitlines(), strict=True)
        if a != b
    ]
    assert [a for a, _ in changed] == [
        '@torch.library.register_fake("torchvision::nms")',
        '@torch.library.register_fake("torchvision::qnms")',
    ]


@pytest.mark.parametrize(
    "source",
    [
        _SOURCE.replace('@torch.library.register_fake("torchvision::qnms")\n', ""),
        _SOURCE + '\n@torch.library.register_fake("torchvision::nms")\ndef f(): ...',
        "",
    ],
    ids=["a registration missing", "a registration twice", "empty"],
)
def test_an_unknown_file_is_refused(source: str) -> None:
    with pytest.raises(ValueError, match="expected '@torch.library.register_fake"):
        _load_script().guard_registrations(source)


def test_an_already_guarded_file_is_refused() -> None:
    script = _load_script()
    with pytest.raises(ValueError, match="found it 0 times"):
        script.guard_registrations(script.guard_registrations(_SOURCE))
