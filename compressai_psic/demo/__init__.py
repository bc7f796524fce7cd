r"""``psic demo`` and the training of the shipped scene CLIPs: applications of
the library on the procedural scene benchmark.

- :mod:`~compressai_psic.demo.pipeline`: :func:`run_demo`, the demo itself
  (shipped codec and VLPs, test scenes, retrieval, attacks, report);
- :mod:`~compressai_psic.demo.report`: :func:`format_table`, the printed table;
- :mod:`~compressai_psic.demo.grid`: :func:`draw_grid`, the PNG grid;
- :mod:`~compressai_psic.demo.command`: ``psic demo``'s arguments
  (:func:`add_arguments`) and entry point (:func:`run`).

The recipe that trains the demo and evaluation VLPs is repository harness, not
installed: ``tools/_lib/vlp_training.py`` (run by ``tools/train_demo_vlp.py``).
"""

from .command import add_arguments, run
from .grid import draw_grid
from .pipeline import (
    DEMO_MODEL_NAME,
    FIT_IMAGES,
    FIT_SPLIT,
    run_demo,
    shipped_eval_vlps,
)
from .report import format_table

__all__ = [
    "DEMO_MODEL_NAME",
    "FIT_IMAGES",
    "FIT_SPLIT",
    "add_arguments",
    "draw_grid",
    "format_table",
    "run",
    "run_demo",
    "shipped_eval_vlps",
]
