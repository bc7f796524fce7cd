"""Old name of :mod:`compressai_psic.io.images` (``tools/train_demo_psic.py``
still imports it); new code imports :mod:`compressai_psic.io.images`."""

from .io import images
from .io.images import *  # noqa: F403

__all__ = list(images.__all__)
