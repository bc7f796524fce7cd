r"""What a scene is: coloured shapes in the cells of a 3×3 grid on a textured
background (:class:`SceneSpec`), and the vocabulary of shapes, colours, sizes
and textures the benchmark draws from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, Tuple

__all__ = [
    "BACKGROUND_COLOURS",
    "COLOURS",
    "GRID",
    "SHAPES",
    "SIZES",
    "TEXTURES",
    "Background",
    "SceneObject",
    "SceneSpec",
    "check_choice",
]

#: Object shapes. Each is drawn inside a circle of the object's radius.
SHAPES = ("circle", "ring", "square", "triangle", "diamond", "star", "cross")

#: Object colours: saturated, or white, so that they stand out from every background.
COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (215, 30, 30),
    "orange": (250, 135, 0),
    "yellow": (250, 225, 30),
    "green": (30, 170, 50),
    "cyan": (0, 200, 220),
    "blue": (30, 70, 230),
    "purple": (150, 40, 200),
    "white": (250, 250, 250),
}

#: Object radius as a fraction of the image side. A large object (diameter 0.30)
#: still fits in one grid cell (side 1/3), so objects never overlap.
SIZES: Dict[str, float] = {"small": 0.08, "large": 0.15}

#: Background textures, named by the adjective the caption uses.
TEXTURES = ("plain", "striped", "checkered", "speckled", "gradient")

#: Muted background colours, far from every object colour even after texturing.
BACKGROUND_COLOURS: Dict[str, Tuple[int, int, int]] = {
    "grey": (125, 125, 125),
    "brown": (120, 88, 62),
    "olive": (108, 112, 60),
    "slate": (78, 92, 118),
    "beige": (172, 158, 128),
    "plum": (108, 72, 98),
}


#: Objects sit in the cells of a ``GRID``×``GRID`` grid, at most one per cell.
GRID = 3


@dataclass(frozen=True)
class SceneObject:
    """One shape; ``x`` and ``y`` are its centre as fractions of the image side."""

    shape: str
    colour: str
    size: str
    x: float
    y: float

    def __post_init__(self) -> None:
        check_choice("shape", self.shape, SHAPES)
        check_choice("colour", self.colour, COLOURS)
        check_choice("size", self.size, SIZES)
        if not (0.0 <= self.x <= 1.0 and 0.0 <= self.y <= 1.0):
            raise ValueError(f"Object centre must lie in [0, 1]², got {self.x, self.y}")

    @property
    def radius(self) -> float:
        """Radius as a fraction of the image side."""
        return SIZES[self.size]

    @property
    def cell(self) -> Tuple[int, int]:
        """Grid cell ``(row, column)`` of the centre, row 0 at the top."""
        row = min(int(self.y * GRID), GRID - 1)
        column = min(int(self.x * GRID), GRID - 1)
        return row, column

    @property
    def kind(self) -> Tuple[str, str, str]:
        """``(size, colour, shape)``: objects of the same kind are counted together."""
        return self.size, self.colour, self.shape


@dataclass(frozen=True)
class Background:
    """Background texture.

    ``angle`` (degrees) orients stripes and gradients, ``period`` (fraction of the
    image side) sets the stripe or check width, and ``seed`` drives the speckle noise.
    """

    texture: str = "plain"
    colour: str = "grey"
    angle: float = 0.0
    period: float = 0.125
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("texture", self.texture, TEXTURES)
        check_choice("background colour", self.colour, BACKGROUND_COLOURS)
        if not self.period > 0:
            raise ValueError(f"Background period must be positive, got {self.period}")


@dataclass(frozen=True)
class SceneSpec:
    """A scene: objects (at most one per grid cell) on a background."""

    objects: Tuple[SceneObject, ...] = ()
    background: Background = field(default_factory=Background)

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        cells = [obj.cell for obj in self.objects]
        if len(set(cells)) != len(cells):
            raise ValueError(f"At most one object per grid cell, got cells {cells}")

    def to_dict(self) -> dict:
        """JSON-serialisable form; :meth:`from_dict` inverts it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SceneSpec:
        return cls(
            objects=tuple(SceneObject(**obj) for obj in data["objects"]),
            background=Background(**data["background"]),
        )


def check_choice(what: str, value, allowed) -> None:
    """Raises ``ValueError`` naming ``what`` and the allowed values."""
    if value not in allowed:
        raise ValueError(f"Invalid {what} {value!r}; allowed: {', '.join(allowed)}")
