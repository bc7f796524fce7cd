"""Where training reports go: the console and ``train.log`` (rank 0), and
TensorBoard when it is installed."""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, List, Mapping, Optional, Sequence

if TYPE_CHECKING:
    from torch import Tensor

from .constants import LOG_FILE_NAME

__all__ = ["LOGGER_NAME", "logger"]

LOGGER_NAME = "compressai_psic.train"
logger = logging.getLogger(LOGGER_NAME)


class _ConsoleHandler(logging.StreamHandler):
    """Writes records with ``tqdm.write``, so that a log line printed during an
    epoch lands above the progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging's own convention
            self.handleError(record)


def _setup_logging(save_dir: Optional[Path], is_main: bool) -> List[logging.Handler]:
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    logger.propagate = False
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    handlers: List[logging.Handler] = []
    if is_main:
        handlers.append(_ConsoleHandler(sys.stdout))
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            handlers.append(logging.FileHandler(save_dir / LOG_FILE_NAME))
    else:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return handlers


def _teardown_logging(handlers: Sequence[logging.Handler]) -> None:
    for handler in handlers:
        logger.removeHandler(handler)
        handler.close()


def _log_warning(message, category, filename, lineno, file=None, line=None):
    logger.warning("%s: %s", category.__name__, message)


def _summary_writer(log_dir: Path):
    """A TensorBoard ``SummaryWriter``, or ``None`` (with a one-line notice in
    the log) when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.warning(
            "TensorBoard logs are off: the tensorboard package is not installed "
            "(pip install tensorboard); train.log still has every figure"
        )
        return None
    return SummaryWriter(log_dir=str(log_dir))


def _log_scalars(writer, prefix: str, values: Mapping[str, float], step: int) -> None:
    if writer is None:
        return
    for key, value in values.items():
        if isinstance(value, (int, float)) and math.isfinite(value):
            writer.add_scalar(f"{prefix}/{key}", value, step)


def _log_images(writer, samples: Optional[Tensor], step: int) -> None:
    if writer is None or samples is None:
        return
    from torchvision.utils import make_grid

    n = samples.size(0) // 3
    # One row each: original, full decode, protected decode.
    writer.add_image("val/original|full|protected", make_grid(samples, nrow=n), step)
