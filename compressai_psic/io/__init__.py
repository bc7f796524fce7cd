"""Files: the ``.psic`` format, images, and the codec between them.

- :mod:`~compressai_psic.io.container`: the ``.psic`` byte layout, a strict
  parser and an atomic writer (``docs/FORMAT.md``);
- :mod:`~compressai_psic.io.codec`: an image through a shielded model to a
  ``.psic`` header and back (what ``psic compress``/``decompress`` run);
- :mod:`~compressai_psic.io.images`: image files to tensors and back, safely;
- :mod:`~compressai_psic.io.files`: atomic writes and sha256 of files.

The decode fuzzer is repository harness, not installed:
``tools/_lib/fuzzing.py`` (run by ``tools/fuzz_container.py`` and the tests).

None of them imports torch at import time: ``psic info`` reads files without it.
"""

from typing import List

__all__: List[str] = []
