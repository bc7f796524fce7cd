r"""Procedural image–caption benchmark: rendered shape scenes with exact captions.

Every scene is a textured background with one to three coloured shapes placed in
the cells of a 3×3 grid; its caption names, for every group of identical objects,
the count, size, colour and shape, the grid position of single objects, and the
background texture and colour::

    a large red circle at the top left, two small blue stars and a small
    yellow cross at the bottom on a striped grey background

Everything is a pure function of a seed: :func:`split_rng` derives one independent
random stream per ``(seed, split, index)``, so the train, validation and test splits
never share a scene stream, any sample can be regenerated on its own, and a split
of ``n`` scenes is a prefix of the same split with more scenes.

The benchmark stands in for real image–caption data (CC3M, Flickr8k) where none can
be downloaded: it is small enough to train a CLIP-architecture model and a PSIC
codec in minutes, and rich enough (7 shapes × 8 colours × 2 sizes × 9 positions per
object, up to three objects, 5 textures × 6 background colours) that 100-way
retrieval is chance-level for an untrained model. It supports demonstrations and
tests of PSIC; it is not part of the published method.

- :mod:`~compressai_psic.datasets.scenes.spec`: what a scene is;
- :mod:`~compressai_psic.datasets.scenes.captions`: its captions;
- :mod:`~compressai_psic.datasets.scenes.render`: its pixels (about 1 ms at
  64×64 on one CPU core);
- :mod:`~compressai_psic.datasets.scenes.benchmark`: the seeded splits;
- :mod:`~compressai_psic.datasets.scenes.dataset`: :class:`SceneCaptions`, a
  split as a caption dataset.
"""

from .benchmark import (
    SPLITS,
    SceneSample,
    make_split,
    sample_scene,
    split_rng,
    split_samples,
    write_split,
)
from .captions import (
    caption_scene,
    position_phrase,
    scene_captions,
)
from .dataset import (
    SceneCaptions,
)
from .render import (
    render_object_masks,
    render_scene,
)
from .spec import (
    BACKGROUND_COLOURS,
    COLOURS,
    GRID,
    SHAPES,
    SIZES,
    TEXTURES,
    Background,
    SceneObject,
    SceneSpec,
)

__all__ = [
    "BACKGROUND_COLOURS",
    "COLOURS",
    "GRID",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "TEXTURES",
    "Background",
    "SceneCaptions",
    "SceneObject",
    "SceneSample",
    "SceneSpec",
    "caption_scene",
    "make_split",
    "position_phrase",
    "render_object_masks",
    "render_scene",
    "sample_scene",
    "scene_captions",
    "split_rng",
    "split_samples",
    "write_split",
]
