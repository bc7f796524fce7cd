"""Files: the ``.psic`` format, images, and the codec between them.

- :mod:`~compressai_psic.io.container`: the ``.psic`` byte layout, a strict
  parser and an atomic writer (``docs/FORMAT.md``);
- :mod:`~compressai_psic.io.codec`: an image through a shielded model to a
  ``.psic`` header and back (what ``psic compress``/``decompress`` run);
- :mod:`~compressai_psic.io.images`: image files to tensors and back, safely;
- :mod:`~compressai_psic.io.files`: atomic writes and sha256 of files;
- :mod:`~compressai_psic.io.fuzzing`: mutants of ``.psic`` files and a
  crash-proof decode runner (tests and ``tools/fuzz_container.py``).

None of them imports torch at import time: ``psic info`` reads files without it.
"""

from typing import List

__all__: List[str] = []
