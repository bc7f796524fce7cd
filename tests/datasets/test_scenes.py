import re
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms.functional import to_tensor

from compressai_psic.datasets import (
    Flickr8kCaptions,
    SceneCaptions,
    collate_captions,
    scenes,
)
from compressai_psic.datasets.scenes import (
    BACKGROUND_COLOURS,
    COLOURS,
    SHAPES,
    SIZES,
    TEXTURES,
    Background,
    SceneObject,
    SceneSpec,
    caption_scene,
    make_split,
    render_object_masks,
    render_scene,
    sample_scene,
    split_rng,
    split_samples,
)

# An independent reading of the caption grammar: synonyms are listed here again
# on purpose, so that a wording that drifts from the scene content is caught.
SIZE_WORDS = {"small": "small", "little": "small", "tiny": "small"}
SIZE_WORDS.update({"large": "large", "big": "large"})
COUNT_WORDS = {"a": 1, "one": 1, "two": 2, "three": 3}
TEXTURE_WORDS = {
    "plain": "plain",
    "flat": "plain",
    "uniform": "plain",
    "striped": "striped",
    "stripy": "striped",
    "checkered": "checkered",
    "chequered": "checkered",
    "checked": "checkered",
    "speckled": "speckled",
    "mottled": "speckled",
    "noisy": "speckled",
    "gradient": "gradient",
    "shaded": "gradient",
}
ROW_WORDS = {"top": 0, "upper": 0, "bottom": 2, "lower": 2}
COLUMN_WORDS = {"left": 0, "right": 2}

_GROUP = re.compile(
    r"^(?P<count>a|one|two|three) (?P<size>\w+) (?P<colour>\w+) "
    r"(?P<shape>circle|ring|square|triangle|diamond|star|cross)(?P<plural>e?s)?"
    r"(?: (?P<position>.+))?$"
)
_PREFIX = r"(?:(?:a picture of|an image of|a drawing of|a rendering of) )?"


def parse_position(phrase):
    words = phrase.replace("corner", "").replace("side", "").split()
    if words[-1] in ("centre", "center", "middle") and len(words) == 2:
        return (1, 1)  # "in the centre" / "in the middle"
    row = next((ROW_WORDS[w] for w in words if w in ROW_WORDS), 1)
    column = next((COLUMN_WORDS[w] for w in words if w in COLUMN_WORDS), 1)
    return (row, column)


def parse_caption(caption):
    """Caption -> (Counter of (size, colour, shape) groups, positions, texture,
    background colour)."""
    m = re.fullmatch(r"an empty (\w+) (\w+) background", caption)
    if m:
        return Counter(), {}, TEXTURE_WORDS[m[1]], m[2].replace("gray", "grey")
    m = re.fullmatch(_PREFIX + r"(?P<objects>.+) on a (\w+) (\w+) background", caption)
    if m:
        objects, texture, colour = m["objects"], m[2], m[3]
    else:
        m = re.fullmatch(r"a (\w+) (\w+) background with (?P<objects>.+)", caption)
        assert m, caption
        objects, texture, colour = m["objects"], m[1], m[2]
    head, _, last = objects.rpartition(" and ")
    parts = (head.split(", ") if head else []) + [last]
    groups, positions = Counter(), {}
    for part in parts:
        g = _GROUP.match(part)
        assert g, (part, caption)
        count = COUNT_WORDS[g["count"]]
        assert (count > 1) == bool(g["plural"]), caption
        assert (count == 1) == bool(g["position"]), caption
        kind = (SIZE_WORDS[g["size"]], g["colour"], g["shape"])
        groups[kind] += count
        if count == 1:
            positions[kind] = parse_position(g["position"])
    return groups, positions, TEXTURE_WORDS[texture], colour.replace("gray", "grey")


def spec_content(spec):
    groups = Counter(obj.kind for obj in spec.objects)
    positions = {obj.kind: obj.cell for obj in spec.objects if groups[obj.kind] == 1}
    return groups, positions, spec.background.texture, spec.background.colour


def colour_distance(pixels, rgb):
    diff = pixels.astype(np.float64) - np.asarray(rgb, dtype=np.float64)
    return np.sqrt((diff**2).sum(-1))


def test_same_seed_same_pixels_and_captions():
    a = split_samples("train", 12, seed=3, captions_per_image=3)
    b = split_samples("train", 12, seed=3, captions_per_image=3)
    assert a == b
    for sa, sb in zip(a, b):
        assert np.array_equal(
            np.asarray(render_scene(sa.spec, 48)), np.asarray(render_scene(sb.spec, 48))
        )
    # A split is a prefix of a longer one, and more captions do not change scenes.
    longer = split_samples("train", 20, seed=3, captions_per_image=1)
    assert [s.spec for s in longer[:12]] == [s.spec for s in a]
    assert [s.captions[0] for s in longer[:12]] == [s.captions[0] for s in a]


def test_different_seed_or_split_gives_different_scenes():
    base = [s.spec for s in split_samples("train", 10, seed=0)]
    other_seed = [s.spec for s in split_samples("train", 10, seed=1)]
    other_split = [s.spec for s in split_samples("val", 10, seed=0)]
    assert all(x != y for x, y in zip(base, other_seed))
    assert all(x != y for x, y in zip(base, other_split))
    image_a = np.asarray(render_scene(base[0], 32))
    image_b = np.asarray(render_scene(other_seed[0], 32))
    assert not np.array_equal(image_a, image_b)


def test_splits_are_disjoint():
    names, specs = {}, {}
    for split in scenes.SPLITS:
        samples = split_samples(split, 300, seed=0)
        names[split] = {s.name for s in samples}
        specs[split] = {s.spec for s in samples}
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        assert not names[a] & names[b]
        assert not specs[a] & specs[b]


def test_canonical_and_reworded_captions_match_scene_content():
    samples = split_samples("train", 300, seed=5, captions_per_image=4)
    seen_counts = Counter()
    for sample in samples:
        expected = spec_content(sample.spec)
        assert len(set(sample.captions)) > 1
        for caption in sample.captions:
            assert parse_caption(caption) == expected, caption
        seen_counts.update(expected[0].values())
    # The generator exercises counting: groups of two and three occur.
    assert seen_counts[2] > 10 and seen_counts[3] > 0


def test_caption_example_and_grouping():
    spec = SceneSpec(
        objects=(
            SceneObject("circle", "red", "large", 0.17, 0.17),
            SceneObject("star", "blue", "small", 0.5, 0.5),
            SceneObject("star", "blue", "small", 0.83, 0.83),
            SceneObject("cross", "yellow", "small", 0.5, 0.83),
        ),
        background=Background("striped", "grey"),
    )
    assert caption_scene(spec) == (
        "a large red circle at the top left, two small blue stars and a small "
        "yellow cross at the bottom on a striped grey background"
    )
    empty = SceneSpec(background=Background("checkered", "olive"))
    assert caption_scene(empty) == "an empty checkered olive background"


def test_rendered_pixels_match_objects_and_positions():
    size = 96
    for sample in split_samples("test", 40, seed=0):
        spec = sample.spec
        image = np.asarray(render_scene(spec, size))
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
        full = render_object_masks(spec, size, threshold=0.999)
        touched = render_object_masks(spec, size, threshold=0.0)
        _, positions, _, _ = parse_caption(caption_scene(spec))
        for obj, inside in zip(spec.objects, full):
            assert inside.sum() >= (12 if obj.size == "small" else 60)
            # Fully covered pixels carry exactly the object's colour.
            assert colour_distance(image[inside], COLOURS[obj.colour]).max() <= 2
            # The object lies in the grid cell the caption names.
            rows, cols = np.nonzero(inside)
            cell = (int(rows.mean() * 3 / size), int(cols.mean() * 3 / size))
            assert cell == obj.cell
            if obj.kind in positions:
                assert positions[obj.kind] == cell
        # Pixels no object touches are background: far from every object colour.
        background = image[~touched.any(0)]
        for rgb in COLOURS.values():
            assert colour_distance(background, rgb).min() > 40


@pytest.mark.parametrize("texture", TEXTURES)
def test_background_only_scene_has_no_object_colours(texture):
    for colour in BACKGROUND_COLOURS:
        spec = SceneSpec(background=Background(texture, colour, angle=30.0, seed=7))
        image = np.asarray(render_scene(spec, 64)).reshape(-1, 3)
        for rgb in COLOURS.values():
            assert colour_distance(image, rgb).min() > 40, (texture, colour)
        if texture == "plain":
            assert (image == BACKGROUND_COLOURS[colour]).all()
        else:
            assert len(np.unique(image, axis=0)) > 1


# Probe points (dx, dy) in units of the object radius, inside and outside each shape.
PROBES = {
    "circle": ([(0, 0), (0.6, 0)], [(0.85, 0.85)]),
    "ring": ([(0.76, 0), (0, -0.76)], [(0, 0), (0.4, 0), (0.85, 0.85)]),
    "square": ([(0, 0), (0.7, 0.7)], [(0.95, 0), (0, -0.95)]),
    "triangle": ([(0, 0), (0, 0.3), (0, -0.6)], [(-0.6, -0.6), (0, 0.8)]),
    "diamond": ([(0, 0), (0, 0.6)], [(0.5, 0.5), (-0.5, -0.5)]),
    "star": ([(0, 0), (0, -0.6)], [(0, 0.7), (0.7, 0.7)]),
    "cross": ([(0, 0), (0.8, 0), (0, -0.8)], [(0.6, 0.6), (-0.6, 0.6)]),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_has_its_own_outline(shape):
    size = 240
    obj = SceneObject(shape, "red", "large", 0.5, 0.5)
    spec = SceneSpec(objects=(obj,), background=Background("plain", "slate"))
    image = np.asarray(render_scene(spec, size))
    r = SIZES["large"] * size
    inside, outside = PROBES[shape]
    for dx, dy in inside:
        pixel = image[int(size / 2 + dy * r), int(size / 2 + dx * r)]
        assert colour_distance(pixel, COLOURS["red"]) < 5, (shape, dx, dy)
    for dx, dy in outside:
        pixel = image[int(size / 2 + dy * r), int(size / 2 + dx * r)]
        assert colour_distance(pixel, BACKGROUND_COLOURS["slate"]) < 5, (shape, dx, dy)


def test_test_split_captions_rarely_repeat():
    captions = [s.captions[0] for s in split_samples("test", 100, seed=0)]
    repeated = sum(c for c in Counter(captions).values() if c > 1)
    assert repeated <= 5
    distinct = split_samples("test", 100, seed=0, distinct_captions=True)
    assert len({s.captions[0] for s in distinct}) == 100


def test_make_split_yields_rendered_pairs():
    pairs = list(make_split("val", 3, seed=2, image_size=32))
    samples = split_samples("val", 3, seed=2)
    for (image, caption), sample in zip(pairs, samples):
        assert image.size == (32, 32) and image.mode == "RGB"
        assert caption == sample.captions[0]
        assert np.array_equal(
            np.asarray(image), np.asarray(render_scene(sample.spec, 32))
        )


def test_spec_round_trip_and_validation():
    spec = sample_scene(split_rng("train", 0, seed=0))
    assert SceneSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="allowed: circle"):
        SceneObject("hexagon", "red", "small", 0.5, 0.5)
    with pytest.raises(ValueError, match="allowed: train, val, test"):
        split_rng("dev", 0)
    with pytest.raises(ValueError, match="one object per grid cell"):
        SceneSpec(
            objects=(
                SceneObject("circle", "red", "small", 0.45, 0.5),
                SceneObject("ring", "blue", "small", 0.55, 0.5),
            )
        )


def test_write_split_is_idempotent_and_keeps_other_splits(tmp_path):
    info = scenes.write_split(tmp_path, "train", 4, image_size=32, captions_per_image=2)
    assert info["num_images"] == 4 and info["num_captions"] == 8
    scenes.write_split(tmp_path, "test", 3, image_size=32)
    first = (tmp_path / "captions.txt").read_text()
    scenes.write_split(tmp_path, "test", 3, image_size=32)
    assert (tmp_path / "captions.txt").read_text() == first
    lines = first.splitlines()
    assert lines[0] == "image,caption" and len(lines) == 1 + 8 + 3
    assert (tmp_path / "test.txt").read_text().split() == [
        "test_000000.png",
        "test_000001.png",
        "test_000002.png",
    ]
    assert len(list((tmp_path / "Images").glob("*.png"))) == 7


def test_scene_captions_match_written_folder(tmp_path):
    live = SceneCaptions("test", 5, seed=1, image_size=32, captions_per_image=2)
    samples = scenes.split_samples("test", 5, seed=1, captions_per_image=2)
    assert live.captions == [list(s.captions) for s in samples]
    scenes.write_split(tmp_path, "test", 5, seed=1, image_size=32, captions_per_image=2)
    written = Flickr8kCaptions(tmp_path, split="test", caption_mode="all")
    assert written.captions == live.captions
    for i in range(5):
        assert torch.equal(written[i][0], live[i][0])
        assert torch.equal(
            live[i][0], to_tensor(scenes.render_scene(samples[i].spec, 32))
        )
    cached = SceneCaptions("test", 2, seed=1, image_size=32, cache=True)
    assert cached.load_image(0) is cached.load_image(0)
    batch = next(iter(DataLoader(live, batch_size=5, collate_fn=collate_captions)))
    assert batch[0].shape == (5, 3, 32, 32) and len(batch[1]) == 5
