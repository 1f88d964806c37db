"""The Shapes World vocabulary and scene sampler: pure functions of a numpy Generator.

A scene holds 1-6 colored shapes on a light background. Each shape exactly fills its
integer pixel box, so the box is exact ground truth. Overlaps are allowed under one rule
that keeps depth unambiguous: every object sits on a layer (0 = back, 1 = front) and two
boxes may overlap only when they are on different layers and differ in color. An object
whose box overlaps another gets a depth word in its phrase ("red circle in front",
"blue square behind"); the layer decides the drawing order (`z`).
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import numpy as np

from train.shapes.geometry import SHAPES, STAR_INNER_RANGE

RGB = tuple[int, int, int]
IntBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class ColorRange:
    """Shades a named color may take: HSV ranges, hue in degrees (may run below 0 for red)."""

    hue: tuple[float, float]
    sat: tuple[float, float]
    val: tuple[float, float]


# Object colors are saturated or (black) dark, so none is near any light, greyish background.
COLORS: dict[str, ColorRange] = {
    "red": ColorRange((-6, 8), (0.75, 1.0), (0.72, 0.95)),
    "orange": ColorRange((22, 36), (0.8, 1.0), (0.9, 1.0)),
    "yellow": ColorRange((48, 60), (0.75, 1.0), (0.85, 1.0)),
    "green": ColorRange((95, 145), (0.6, 0.95), (0.45, 0.8)),
    "blue": ColorRange((205, 240), (0.7, 1.0), (0.6, 0.95)),
    "purple": ColorRange((265, 295), (0.5, 0.85), (0.4, 0.7)),
    "pink": ColorRange((320, 342), (0.4, 0.75), (0.88, 1.0)),
    "black": ColorRange((0, 360), (0.0, 0.3), (0.0, 0.18)),
}

# name -> (top RGB, bottom RGB); plain backgrounds use one color for both.
PLAIN_BACKGROUNDS: dict[str, RGB] = {
    "white": (250, 250, 250),
    "light gray": (222, 222, 222),
    "beige": (240, 232, 210),
    "light blue": (212, 228, 245),
}
SKY: RGB = (200, 222, 245)
GROUNDS: dict[str, RGB] = {"sand": (232, 220, 190), "grass": (205, 230, 195)}
BACKGROUND_JITTER = 6  # +- per channel


@dataclass(frozen=True)
class Background:
    name: str  # "white", ... or "sky over sand" / "sky over grass"
    top: RGB
    bottom: RGB
    horizon: float  # fraction of the height where `bottom` starts; 1.0 for a plain background


DEFAULT_BACKGROUND = Background("white", PLAIN_BACKGROUNDS["white"], PLAIN_BACKGROUNDS["white"], 1.0)


@dataclass(frozen=True)
class ShapeObject:
    color: str
    shape: str
    box: IntBox  # pixel xyxy, x2/y2 exclusive
    layer: int  # 0 back, 1 front
    rgb: RGB  # the sampled shade of `color`
    star_inner: float = 0.44  # inner/outer radius, used by stars only
    phrase: str = ""  # "<color> <shape>" plus a depth word when its box overlaps another

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


@dataclass(frozen=True)
class RenderStyle:
    """Per-image rendering nuisances (robustness), sampled with the scene."""

    supersample: int = 4  # 1 = aliased edges; k > 1 = area-averaged antialiasing
    blur: float = 0.0  # Gaussian blur radius in output pixels
    noise: float = 0.0  # Gaussian noise sigma on the 0-255 scale
    noise_seed: int = 0


@dataclass(frozen=True)
class Scene:
    size: int
    background: Background
    objects: tuple[ShapeObject, ...]  # layout order (not drawing order)
    style: RenderStyle = field(default_factory=RenderStyle)

    @property
    def z(self) -> list[int]:
        """Drawing rank of each object (0 drawn first): back layer first, then layout order."""
        order = sorted(range(len(self.objects)), key=lambda i: (self.objects[i].layer, i))
        ranks = [0] * len(order)
        for rank, i in enumerate(order):
            ranks[i] = rank
        return ranks


@dataclass(frozen=True)
class SceneConfig:
    size: int = field(default=128, metadata={"help": "image side in pixels"})
    min_objects: int = field(default=1, metadata={"help": "fewest objects per scene"})
    max_objects: int = field(default=6, metadata={"help": "most objects per scene (fewer if they do not fit)"})
    min_side: float = field(default=0.12, metadata={"help": "smallest box side, fraction of the image side"})
    max_side: float = field(default=0.6, metadata={"help": "largest box side, fraction of the image side"})
    max_aspect: float = field(default=2.0, metadata={"help": "box width/height lies in [1/a, a]"})
    max_covered: float = field(default=0.4, metadata={"help": "box share of a back object that front boxes may cover"})
    same_color_gap: float = field(default=0.03, metadata={"help": "least gap between same-color boxes, share of side"})
    two_tone_prob: float = field(default=0.2, metadata={"help": "chance of a sky-over-ground background"})
    tries: int = field(default=40, metadata={"help": "placement attempts per object before giving up"})

    def __post_init__(self):
        if not 16 <= self.size <= 4096:
            raise ValueError(f"size must be in [16, 4096], got {self.size}")
        if not 1 <= self.min_objects <= self.max_objects <= 16:
            raise ValueError(f"need 1 <= min_objects <= max_objects <= 16, got {self.min_objects}, {self.max_objects}")
        if not 0 < self.min_side <= self.max_side <= 1:
            raise ValueError(f"need 0 < min_side <= max_side <= 1, got {self.min_side}, {self.max_side}")
        if self.max_aspect < 1:
            raise ValueError(f"max_aspect must be >= 1, got {self.max_aspect}")
        for name in ("max_covered", "same_color_gap", "two_tone_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.tries < 1:
            raise ValueError(f"tries must be >= 1, got {self.tries}")


def sample_rgb(rng: np.random.Generator, color: str) -> RGB:
    """One shade of a named color."""
    spec = COLORS[color]
    h = rng.uniform(*spec.hue) % 360 / 360
    r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(*spec.sat), rng.uniform(*spec.val))
    return round(r * 255), round(g * 255), round(b * 255)


def middle_rgb(color: str) -> RGB:
    """The middle shade of a named color's range."""
    spec = COLORS[color]
    h = (spec.hue[0] + spec.hue[1]) / 2 % 360 / 360
    r, g, b = colorsys.hsv_to_rgb(h, sum(spec.sat) / 2, sum(spec.val) / 2)
    return round(r * 255), round(g * 255), round(b * 255)


def _jitter(rng: np.random.Generator, rgb: RGB) -> RGB:
    d = rng.integers(-BACKGROUND_JITTER, BACKGROUND_JITTER + 1, size=3)
    return tuple(min(max(int(c + dc), 0), 255) for c, dc in zip(rgb, d))  # type: ignore[return-value]


def sample_background(rng: np.random.Generator, two_tone_prob: float = 0.2) -> Background:
    if rng.random() < two_tone_prob:
        ground = str(rng.choice(sorted(GROUNDS)))
        return Background(f"sky over {ground}", _jitter(rng, SKY), _jitter(rng, GROUNDS[ground]),
                          float(rng.uniform(0.45, 0.75)))
    name = str(rng.choice(list(PLAIN_BACKGROUNDS)))
    rgb = _jitter(rng, PLAIN_BACKGROUNDS[name])
    return Background(name, rgb, rgb, 1.0)


def sample_style(rng: np.random.Generator) -> RenderStyle:
    return RenderStyle(
        supersample=int(rng.choice([1, 2, 4], p=[0.15, 0.35, 0.5])),
        blur=float(rng.uniform(0.3, 0.8)) if rng.random() < 0.25 else 0.0,
        noise=float(rng.uniform(0.0, 4.0)),
        noise_seed=int(rng.integers(2**31)),
    )


def sample_box(rng: np.random.Generator, cfg: SceneConfig) -> IntBox:
    """A box with sides in [min_side, max_side] of the image and aspect ratio within max_aspect."""
    side = rng.uniform(cfg.min_side, cfg.max_side)
    aspect = math.exp(rng.uniform(-math.log(cfg.max_aspect), math.log(cfg.max_aspect)))
    lo, hi = max(1, math.ceil(cfg.min_side * cfg.size)), max(1, math.floor(cfg.max_side * cfg.size))
    w = min(max(round(side * math.sqrt(aspect) * cfg.size), lo), hi)
    h = min(max(round(side / math.sqrt(aspect) * cfg.size), lo), hi)
    x1 = int(rng.integers(0, cfg.size - w + 1))
    y1 = int(rng.integers(0, cfg.size - h + 1))
    return x1, y1, x1 + w, y1 + h


def box_intersection(a: IntBox, b: IntBox) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def box_gap(a: IntBox, b: IntBox) -> int:
    """Pixels between two boxes along the axis where they are furthest apart (<= 0 if touching)."""
    return max(a[0] - b[2], b[0] - a[2], a[1] - b[3], b[1] - a[3])


def _covered(obj: ShapeObject, others: list[ShapeObject]) -> float:
    """Upper bound on the share of obj's box hidden by the boxes in front of it."""
    hidden = sum(box_intersection(obj.box, o.box) for o in others if o.layer > obj.layer)
    return hidden / obj.area


def fits(new: ShapeObject, placed: list[ShapeObject], cfg: SceneConfig) -> bool:
    """Whether `new` may join `placed` under the overlap and same-color rules."""
    min_gap = cfg.same_color_gap * cfg.size
    for other in placed:
        overlap = box_intersection(new.box, other.box) > 0
        if overlap and (new.layer == other.layer or new.color == other.color):
            return False
        if new.color == other.color and box_gap(new.box, other.box) < min_gap:
            return False
    scene = placed + [new]
    return all(_covered(o, scene) <= cfg.max_covered for o in scene)


def depth_phrase(obj: ShapeObject, others: list[ShapeObject]) -> str:
    """'<color> <shape>', with 'in front'/'behind' when its box overlaps another's."""
    if not any(box_intersection(obj.box, o.box) > 0 for o in others):
        return obj.name
    return f"{obj.name} in front" if obj.layer == 1 else f"{obj.name} behind"


def parse_phrase(phrase: str) -> tuple[str, str, int | None]:
    """(color, shape, layer) of a Shapes World phrase such as "red circle in front";
    layer is 1 for "in front", 0 for "behind", None without a depth word. Raises ValueError."""
    words = phrase.lower().split()
    layer = None
    if words[-2:] == ["in", "front"]:
        words, layer = words[:-2], 1
    elif words[-1:] == ["behind"]:
        words, layer = words[:-1], 0
    if len(words) < 2 or words[-1] not in SHAPES or " ".join(words[:-1]) not in COLORS:
        raise ValueError(f"not a Shapes World phrase: {phrase!r}")
    return " ".join(words[:-1]), words[-1], layer


def sample_scene(rng: np.random.Generator, cfg: SceneConfig = SceneConfig()) -> Scene:
    """A random scene; objects that find no legal place in `cfg.tries` attempts are dropped."""
    background = sample_background(rng, cfg.two_tone_prob)
    wanted = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    placed: list[ShapeObject] = []
    for _ in range(wanted):
        color = str(rng.choice(list(COLORS)))
        shape = str(rng.choice(SHAPES))
        layer = int(rng.integers(2))
        rgb = sample_rgb(rng, color)
        inner = float(rng.uniform(*STAR_INNER_RANGE))
        for _ in range(cfg.tries):
            candidate = ShapeObject(color, shape, sample_box(rng, cfg), layer, rgb, inner)
            if fits(candidate, placed, cfg):
                placed.append(candidate)
                break
    objects = tuple(
        ShapeObject(o.color, o.shape, o.box, o.layer, o.rgb, o.star_inner,
                    depth_phrase(o, placed[:i] + placed[i + 1:]))
        for i, o in enumerate(placed)
    )
    return Scene(cfg.size, background, objects, sample_style(rng))


_COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def _article(name: str) -> str:
    return "an" if name[0] in "aeiou" else "a"


def _plural(name: str) -> str:
    return name + "es" if name.endswith("s") else name + "s"


def caption(scene: Scene) -> str:
    """'a yellow square and two blue circles on a beige background'."""
    counts: dict[str, int] = {}
    for obj in scene.objects:
        counts[obj.name] = counts.get(obj.name, 0) + 1
    parts = [f"{_article(name)} {name}" if n == 1 else f"{_COUNT_WORDS.get(n, str(n))} {_plural(name)}"
             for name, n in counts.items()]
    things = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    bg = scene.background
    if bg.horizon < 1.0:
        ground = bg.name.removeprefix("sky over ")
        return f"{things} under a pale sky over {ground}"
    return f"{things} on a {bg.name} background"
