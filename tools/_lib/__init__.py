r"""Harness code of the tools, kept out of the installed package.

- :mod:`~tools._lib.benchmarks`: command line, interleaved timing and report of
  the A/B benchmarks (``tools/bench_guard.py``, ``tools/bench_portable.py``);
- :mod:`~tools._lib.calibration`: random-weight models whose latents and
  entropy parameters spread like a trained model's (cross-device checks, tests);
- :mod:`~tools._lib.photos`: crops of matplotlib's sample photographs;
- :mod:`~tools._lib.fuzzing`: mutants of ``.psic`` files and a crash-proof
  decode runner (``tools/fuzz_container.py`` and ``tests/io/test_fuzzing.py``);
- :mod:`~tools._lib.vlp_training`: the recipe that trains the demo and
  evaluation VLPs (``tools/train_demo_vlp.py``).

A tool run as a script (``python tools/<name>.py``) puts the repository root on
``sys.path`` before importing from here.
"""

from typing import List

__all__: List[str] = []
