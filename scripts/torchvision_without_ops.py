r"""Let PyPI's torchvision import beside a CPU-only torch wheel.

PyPI's Linux x86_64 torchvision wheels are built against PyTorch's CUDA build: their
C++ extension (``torchvision/_C.so``) links ``libtorch_cuda.so`` and cannot load
beside a CPU-only torch. torchvision then runs without its C++ ops (NMS, RoI align,
image decoders), which CompressAI, open_clip and compressai_psic never call: they use
its transforms and ``utils``. But ``import torchvision`` still fails, because
``_meta_registrations.py`` registers fake kernels for ``torchvision::nms`` and
``torchvision::qnms`` without checking that the extension defined them
(``RuntimeError: operator torchvision::nms does not exist``).

This script guards those two registrations with torchvision's own
``extension._has_ops()``, as its other registrations already are, in the installed
copy of the active environment. It changes nothing when ``import torchvision``
already works, and refuses (exit 1) if the file is not the one it knows.

Used by ``.ci/run`` and ``scripts/quickstart.sh`` on machines that reach PyPI but
not PyTorch's CPU index (where the matching CPU pair would come from); elsewhere
install a matching torch/torchvision pair instead (README, "Install").
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

__all__ = ["guard_registrations", "main"]

_UNGUARDED = (
    '@torch.library.register_fake("torchvision::nms")',
    '@torch.library.register_fake("torchvision::qnms")',
)
_MISSING_OP = "operator torchvision::nms does not exist"


def _import_error() -> str:
    """Returns what ``import torchvision`` prints in a fresh Python ('' if it works)."""
    run = subprocess.run(
        [sys.executable, "-c", "import torchvision"],
        capture_output=True,
        text=True,
        check=False,
    )
    return "" if run.returncode == 0 else run.stderr


def guard_registrations(source: str) -> str:
    """Returns ``_meta_registrations.py``'s source with the nms/qnms fake kernels
    registered only when torchvision's C++ extension loaded.

    Raises:
        ValueError: ``source`` does not hold each unguarded registration once.
    """
    for line in _UNGUARDED:
        if source.count(line) != 1:
            raise ValueError(
                f"expected {line!r} once, found it {source.count(line)} times"
            )
        guarded = line.replace(
            "@torch.library.register_fake(",
            "@(lambda fn: fn) if not torchvision.extension._has_ops() else "
            "torch.library.register_fake(",
        )
        source = source.replace(line, guarded)
    return source


def main() -> int:
    error = _import_error()
    if not error:
        print("torchvision imports: nothing to do")
        return 0
    if _MISSING_OP not in error:
        print(f"torchvision fails to import for another reason:\n{error}")
        return 1
    spec = importlib.util.find_spec("torchvision")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "_meta_registrations.py"
    try:
        text = guard_registrations(path.read_text())
    except ValueError as err:
        print(f"{path}: not the torchvision this script knows ({err}); unchanged")
        return 1
    path.write_text(text)
    error = _import_error()
    if error:
        print(f"torchvision still fails to import:\n{error}")
        return 1
    print(f"{path}: guarded the nms/qnms fake kernels; torchvision imports without ops")
    return 0


if __name__ == "__main__":
    sys.exit(main())
