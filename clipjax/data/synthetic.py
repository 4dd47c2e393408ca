"""A procedurally generated image-caption world: the built-in dataset for CPU training and tests.

Example `i` of a split is a pure function of `(seed, split, i)`. A scene holds 1-3 copies of one main
object (shape, colour, size and texture shared; grouped at one position) on a varied background, and in
half the scenes a smaller distractor of another shape and colour. Captions and paraphrases ("rewrites")
describe the scene truthfully; `CLASS_SETS` gives zero-shot classes and prompt templates.

Two worlds (`WORLDS`, config key `data.world`): 'v1' draws objects of two sizes (radius 8.5% or 14% of the
image), so a micro ViT at 64 px learns colour but hardly shape. 'graded' draws three size classes whose radii
span 6-21% of the image, so an attribute's difficulty depends on the pixels an object covers: shape is easy on
large objects and needs resolution (or tokens kept) on small ones, while colour stays easy at any size.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond", "hexagon", "heart")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
RGB = np.array(
    [(220, 30, 30), (30, 160, 50), (30, 70, 220), (240, 220, 30),
     (140, 40, 180), (245, 130, 20), (250, 250, 250), (10, 10, 10)], np.uint8)
SIZES = ("small", "large")
# 'graded': size label -> radius range as a fraction of the image side (gaps keep the labels unambiguous).
GRADED_RADII = {"small": (0.06, 0.09), "medium": (0.11, 0.15), "large": (0.17, 0.21)}
POSITIONS = ("left", "right", "top", "bottom", "centre")
COUNTS = ("one", "two", "three")
TEXTURES = ("solid", "striped", "dotted")
BACKGROUNDS = ("plain", "two-tone", "gradient", "noisy", "striped")
SPLITS = ("train", "eval")

_PLURAL = {s: s + ("es" if s == "cross" else "s") for s in SHAPES}
_SHAPE_SYNONYMS = {
    "circle": ("disc", "discs"), "square": ("square block", "square blocks"),
    "triangle": ("three-sided shape", "three-sided shapes"), "star": ("five-pointed star", "five-pointed stars"),
    "cross": ("plus sign", "plus signs"), "diamond": ("rhombus", "rhombi"),
    "hexagon": ("six-sided shape", "six-sided shapes"), "heart": ("heart shape", "heart shapes"),
}
_COLOUR_SYNONYMS = {"red": ("red", "scarlet"), "purple": ("purple", "violet")}
_SIZE_WORDS = {"small": ("small", "little"), "medium": ("medium", "medium-sized"), "large": ("large", "big")}
_COUNT_WORDS = {"one": ("one", "a single"), "two": ("two", "a pair of"), "three": ("three", "a group of three")}
_TEXTURE_WORDS = {"solid": ("solid", "filled"), "striped": ("striped", "stripy"), "dotted": ("dotted", "spotted")}
_POSITION_WORDS = {
    "left": ("on the left", "at the left side", "in the left half"),
    "right": ("on the right", "at the right side", "in the right half"),
    "top": ("at the top", "near the top edge", "in the upper half"),
    "bottom": ("at the bottom", "near the bottom edge", "in the lower half"),
    "centre": ("in the centre", "in the middle", "at the centre"),
}
_BACKGROUND_WORDS = {
    "plain": ("plain", "flat"), "two-tone": ("two-tone", "two-coloured"), "gradient": ("gradient", "shaded"),
    "noisy": ("noisy", "grainy"), "striped": ("striped", "banded"),
}
_ANCHORS = {"left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75),
            "centre": (0.5, 0.5)}


@dataclasses.dataclass(frozen=True)
class ClassSet:
    """Zero-shot classes: `names[k]` is class k of label `label_key`; each template has one '{}'."""

    names: tuple[str, ...]
    templates: tuple[str, ...]
    label_key: str


CLASS_SETS = {
    "shape": ClassSet(SHAPES, (
        "a photo of a {}.", "a drawing of a {} shape.", "an image of a {}.", "a {} on a background.",
        "a rendering of a {}.", "a picture containing a {}.", "a coloured {}.", "the {} shape.",
    ), "shape"),
    "colour": ClassSet(COLOURS, (
        "the {} object.", "a photo of something {}.", "a {} shape.", "the colour {}.",
        "a picture of {} things.", "an image with {} shapes.", "objects coloured {}.",
    ), "colour"),
    "count": ClassSet(COUNTS, (
        "a count of {}.", "{} in total.", "there are {} of them.", "number of shapes: {}.",
        "a picture showing {} of a kind.", "how many shapes? {}.",
    ), "count"),
}


@dataclasses.dataclass(frozen=True)
class Obj:
    """One drawn object: centre (cx, cy) and radius r in pixels, rotation in radians."""

    shape: int
    colour: int
    texture: int
    cx: float
    cy: float
    r: float
    angle: float


@dataclasses.dataclass(frozen=True)
class Scene:
    """All attributes of one example (indices into the tuples above) plus its drawing parameters."""

    shape: int
    colour: int
    size: int
    position: int
    count: int  # 0, 1, 2 for one, two, three objects
    texture: int
    background: int
    bg_colours: tuple[tuple[int, int, int], tuple[int, int, int]]
    bg_param: float  # direction (radians) of the two-tone split, gradient or stripes
    objects: tuple[Obj, ...]  # main objects
    distractor: Obj | None
    world: str = "v1"


# Secondary colour of stripes and dots: darker, or grey for black.
SHADES = np.array([(110, 110, 110) if c.max() < 60 else c * 0.55 for c in RGB], np.uint8)


@dataclasses.dataclass(frozen=True)
class World:
    """What sets a world apart. `radius(s, size, uniform)`: main-object radius in pixels for image side s, size
    class `size` and a draw `uniform(lo, hi)`; `groups_whole`: a group of objects is moved inwards as a whole
    (never overlapping, always a triangle for three) rather than each object clamped into the image (a triangle
    only at the centre); `focused_captions`: captions name shape, colour, number and one other attribute;
    `per_size_eval`: the built-in eval reports zero-shot top-1 per size class (where size grades difficulty)."""

    sizes: tuple[str, ...]
    radius: Callable[[int, int, Callable[[float, float], float]], float]
    groups_whole: bool
    distractor_tries: int
    focused_captions: bool
    draws: int  # uniforms drawn per scene: >= 40 must be left for the background colours
    per_size_eval: bool


WORLD_SPECS = {
    "v1": World(SIZES, lambda s, size, uniform: s * (0.14 if size else 0.085) * uniform(0.9, 1.1),
                groups_whole=False, distractor_tries=6, focused_captions=False, draws=96, per_size_eval=False),
    "graded": World(tuple(GRADED_RADII), lambda s, size, uniform: s * uniform(*tuple(GRADED_RADII.values())[size]),
                    groups_whole=True, distractor_tries=12, focused_captions=True, draws=128, per_size_eval=True),
}
WORLDS = tuple(WORLD_SPECS)


def size_names(world: str) -> tuple[str, ...]:
    """The size labels of `world` ('v1': SIZES; 'graded': the keys of GRADED_RADII)."""
    return WORLD_SPECS[world].sizes


def _far_colour(u: list[float], avoid: list[tuple[list[int], float]]) -> tuple[int, int, int]:
    """A muted background colour (channels in [35, 205]) from the uniforms `u` (4 per candidate): the first
    candidate at RGB distance >= d from each (colour, d) in `avoid`, else the one with the best worst ratio."""
    best, best_margin = None, -1.0
    for k in range(0, len(u), 4):
        grey = 60 + int(u[k] * 120)
        c = tuple(grey - 25 + int(t * 51) for t in u[k + 1 : k + 4])
        margin = min(sum((a - b) ** 2 for a, b in zip(c, col)) / (d * d) for col, d in avoid)
        if margin > best_margin:
            best, best_margin = c, margin
        if margin >= 1:
            break
    return best


def sample_scene(rng: np.random.Generator, image_size: int, world: str = "v1") -> Scene:
    """Draw every attribute of a scene from `rng` (uniform labels; distractor with probability 1/2)."""
    s, spec = image_size, WORLD_SPECS[world]
    u = iter(rng.random(spec.draws).tolist())  # one draw: numpy calls cost more than arithmetic
    pick = lambda k: int(next(u) * k)  # noqa: E731
    uniform = lambda lo, hi: lo + (hi - lo) * next(u)  # noqa: E731
    shape, colour, size, position, count, texture, background = (pick(k) for k in (8, 8, len(spec.sizes), 5, 3, 3, 5))
    r = spec.radius(s, size, uniform)
    ax, ay = ((a + uniform(-0.04, 0.04)) * s for a in _ANCHORS[POSITIONS[position]])
    n, gap = count + 1, 2.15 * r
    if n == 3 and (spec.groups_whole or POSITIONS[position] == "centre"):  # a triangle of objects around the anchor
        a0, rad = uniform(0, 2 * math.pi), gap / math.sqrt(3)
        angles = [a0 + k * 2 * math.pi / 3 for k in range(3)]
        offsets = [(rad * math.cos(a), rad * math.sin(a)) for a in angles]
    else:  # a row (top/bottom/centre) or a column (left/right)
        steps = [(k - (n - 1) / 2) * gap for k in range(n)]
        vertical = POSITIONS[position] in ("left", "right")
        offsets = [(0.0, d) if vertical else (d, 0.0) for d in steps]
    if spec.groups_whole:  # the group moved inwards as a whole, so objects never overlap (all fit: r <= 0.21 s)
        half_x, half_y = (max(abs(o[k]) for o in offsets) + r for k in (0, 1))
        ax, ay = min(max(ax, half_x), s - half_x), min(max(ay, half_y), s - half_y)
        centres = [(ax + dx, ay + dy) for dx, dy in offsets]
    else:  # each object clamped into the image
        centres = [(min(max(ax + dx, r), s - r), min(max(ay + dy, r), s - r)) for dx, dy in offsets]
    objects = tuple(Obj(shape, colour, texture, cx, cy, r, uniform(-0.2, 0.2)) for cx, cy in centres)
    distractor = None
    if next(u) < 0.5:
        d_shape, d_colour = (shape + 1 + pick(7)) % 8, (colour + 1 + pick(7)) % 8
        d_r = s * 0.08 * uniform(0.9, 1.2)
        for _ in range(spec.distractor_tries):
            cx, cy = uniform(d_r, s - d_r), uniform(d_r, s - d_r)
            if all(math.hypot(cx - o.cx, cy - o.cy) > o.r + d_r + 1 for o in objects):
                distractor = Obj(d_shape, d_colour, pick(3), cx, cy, d_r, uniform(-0.2, 0.2))
                break
    avoid = [(RGB[colour].tolist(), 100.0), (SHADES[colour].tolist(), 50.0)]
    if distractor:
        avoid.append((RGB[distractor.colour].tolist(), 100.0))
    bg_param = uniform(0, 2 * math.pi)
    rest = list(u)  # >= 40 uniforms left: 5 candidates per background colour
    bg_colours = (_far_colour(rest[:20], avoid), _far_colour(rest[20:40], avoid))
    return Scene(shape, colour, size, position, count, texture, background, bg_colours, bg_param, objects,
                 distractor, world)


@functools.lru_cache(maxsize=8)
def _grid(s: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), each float32 [s, s]."""
    y, x = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    return y, x


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of a unit-radius shape in object coordinates (u right, v down)."""
    au, av = np.abs(u), np.abs(v)
    if shape == "circle":
        return u * u + v * v <= 0.85**2
    if shape == "square":
        return np.maximum(au, av) <= 0.75
    if shape == "triangle":  # pointing up, circumradius 1
        return (v <= 0.5) & (v >= -1 + np.sqrt(3) * au)
    if shape == "diamond":
        return au / 0.7 + av <= 1
    if shape == "cross":
        return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))
    if shape == "hexagon":  # pointy top
        return (au <= 0.85) & (0.5 * au + 0.866 * av <= 0.98)
    if shape == "star":  # five points, inner radius 0.45; fold the angle into one half-spike
        rad, sector = np.hypot(u, v), 2 * np.pi / 5
        phi = np.abs(np.mod(np.arctan2(u, -v) + sector / 2, sector) - sector / 2)
        px, py = rad * np.cos(phi), rad * np.sin(phi)
        ex, ey = 0.45 * np.cos(sector / 2) - 1, 0.45 * np.sin(sector / 2)  # edge from tip (1, 0) inwards
        return ex * py - ey * (px - 1) >= 0
    if shape == "heart":  # (x^2 + y^2 - 1)^3 <= x^2 y^3 with y up
        x, y = 1.15 * u, 0.15 - 1.15 * v
        return (x * x + y * y - 1) ** 3 <= x * x * y**3
    raise ValueError(shape)


def _draw(img: np.ndarray, obj: Obj) -> tuple[slice, slice, np.ndarray]:
    """Paint `obj` into `img` in place; returns the (rows, cols) slices of its box and its mask there."""
    s = img.shape[0]
    y, x = _grid(s)
    y0, y1 = max(0, int(obj.cy - obj.r) - 1), min(s, int(obj.cy + obj.r) + 2)
    x0, x1 = max(0, int(obj.cx - obj.r) - 1), min(s, int(obj.cx + obj.r) + 2)
    dx, dy = x[y0:y1, x0:x1] - obj.cx, y[y0:y1, x0:x1] - obj.cy
    c, sn = np.cos(obj.angle), np.sin(obj.angle)
    u, v = (c * dx + sn * dy) / obj.r, (c * dy - sn * dx) / obj.r
    inside = _shape_mask(SHAPES[obj.shape], u, v)
    rgb = RGB[obj.colour]
    crop = img[y0:y1, x0:x1]
    crop[inside] = rgb
    period = s / 16
    if TEXTURES[obj.texture] == "striped":
        pattern = np.mod((dx + dy) / (2 * period), 1.0) < 0.35
    elif TEXTURES[obj.texture] == "dotted":
        pu, pv = np.mod(dx / period, 1.0) - 0.5, np.mod(dy / period, 1.0) - 0.5
        pattern = pu * pu + pv * pv <= 0.3**2
    else:
        pattern = None
    if pattern is not None:
        crop[inside & pattern] = SHADES[obj.colour]
    return slice(y0, y1), slice(x0, x1), inside


def render_scene(scene: Scene, image_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Image uint8 [S, S, 3] and the boolean [S, S] mask of visible main-object pixels; `rng` draws noise."""
    s = image_size
    y, x = _grid(s)
    c0, c1 = (np.array(c, np.uint8) for c in scene.bg_colours)
    kind, t = BACKGROUNDS[scene.background], scene.bg_param
    if kind in ("plain", "noisy"):
        img = np.empty((s, s, 3), np.uint8)
        img[:] = c0
        if kind == "noisy":  # +-16 in modular uint8 arithmetic: exact, as colours lie in [35, 205]
            img += (rng.integers(0, 33, (s, s, 3), np.uint8) - np.uint8(16))
    else:
        along = ((x - s / 2) * np.cos(t) + (y - s / 2) * np.sin(t))[..., None]
        if kind == "gradient":
            w = np.clip(along / s + 0.5, 0, 1)
            img = (c0 * (1 - w) + c1 * w).astype(np.uint8)
        else:  # two-tone, striped
            img = np.where(along < 0 if kind == "two-tone" else np.mod(along / (s / 8), 1.0) < 0.5, c0, c1)
    if scene.distractor is not None:
        _draw(img, scene.distractor)
    mask = np.zeros((s, s), bool)
    for obj in scene.objects:
        rows, cols, inside = _draw(img, obj)
        mask[rows, cols] |= inside
    return img, mask


def _describe(scene: Scene, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """(captions, rewrites): six phrasings with canonical words and three paraphrases with synonyms."""
    shape, colour, count = SHAPES[scene.shape], COLOURS[scene.colour], COUNTS[scene.count]
    size, pos, tex = size_names(scene.world)[scene.size], POSITIONS[scene.position], TEXTURES[scene.texture]
    bg = BACKGROUNDS[scene.background]
    one = scene.count == 0
    noun = shape if one else _PLURAL[shape]
    art, be = ("a", "is") if one else (count, "are")
    p0, p1, p2 = _POSITION_WORDS[pos]
    d = scene.distractor
    other = f"{'an' if COLOURS[d.colour][0] in 'aeiou' else 'a'} {COLOURS[d.colour]} {SHAPES[d.shape]}" if d else ""
    focused = WORLD_SPECS[scene.world].focused_captions  # then shape tells pairs of captions apart
    if focused:
        captions = [
            f"{count} {colour} {noun}",
            f"a picture of {art} {_SIZE_WORDS[size][0]} {colour} {noun}",
            f"{art} {colour} {noun} {p0}",
            f"{art} {tex} {colour} {noun}",
            f"{art} {colour} {noun} on a {bg} background",
            f"{art} {colour} {noun}" + (f" and {other}" if d else " and nothing else"),
        ]
    else:
        captions = [
            f"{count} {size} {colour} {noun} {p0}",
            f"a picture of {art} {_SIZE_WORDS[size][1]} {colour} {noun} {p1} over a {bg} background",
            f"{p0.capitalize()}, there {be} {art} {tex} {colour} {noun}" + (f" and {other} elsewhere." if d else "."),
            f"{colour} {noun}: {count}, {size}, {tex}, {pos}",
            f"an image showing {art} {noun} in {colour}, {size} and {tex}, {p2}" + (f", next to {other}" if d else ""),
            f"{art} {tex} {colour} {noun} {p0} on a {bg} background",
        ]
    u = iter(rng.random(7).tolist())
    pick = lambda options: options[int(next(u) * len(options))]  # noqa: E731
    syn_noun = pick([(shape, _PLURAL[shape]), _SHAPE_SYNONYMS[shape]])[0 if one else 1]
    syn_colour, syn_size = pick(_COLOUR_SYNONYMS.get(colour, (colour,))), pick(_SIZE_WORDS[size])
    syn_count, syn_pos = pick(_COUNT_WORDS[count]), pick(_POSITION_WORDS[pos])
    syn_tex, syn_bg = pick(_TEXTURE_WORDS[tex]), pick(_BACKGROUND_WORDS[bg])
    syn_be = "is" if syn_count.startswith("a ") else be  # "there is a pair of discs"
    if focused:
        return captions, [
            f"there {syn_be} {syn_count} {syn_size} {syn_colour} {syn_noun}.",
            f"{syn_pos.capitalize()} you can see {syn_count} {syn_colour} {syn_noun}.",
            f"{syn_count} {syn_tex} {syn_colour} {syn_noun} on a {syn_bg} background.",
        ]
    rewrites = [
        f"there {syn_be} {syn_count} {syn_size} {syn_colour} {syn_noun} {syn_pos}.",
        f"{syn_pos.capitalize()} you can see {syn_count} {syn_colour} {syn_noun} that {be} {syn_size} and {syn_tex}.",
        f"a {syn_bg} background with {syn_count} {syn_size} {syn_tex} {syn_colour} {syn_noun} {syn_pos}"
        + (f", plus one {COLOURS[d.colour]} {SHAPES[d.shape]}." if d else "."),
    ]
    return captions, rewrites


class SyntheticSource:
    """Random-access source of synthetic image-caption examples (a picklable grain `MapDataSource`).

    `source[i]` -> {'image': uint8 [S, S, 3], 'caption': str, 'captions': list[str] (primary first),
    'rewrites': list[str], 'index': i, 'key': f'{split}-{i:08d}', 'labels': {name: int}} with label names
    shape, colour, count, size, position, texture. Train and eval draw from different RNG streams.

    `world`: 'v1' or 'graded' (module docstring).
    `caption_noise` in [0, 1]: example i is noisy when u_i < caption_noise, u_i uniform from (seed, split, i) on a
    stream of its own (so the noisy set grows with the knob); a noisy example keeps its image and labels but takes
    every caption and rewrite of example `mismatch(i)` != i, and carries 'noisy': True.
    """

    def __init__(self, split: str = "train", size: int = 20000, image_size: int = 64, seed: int = 0,
                 caption_noise: float = 0.0, world: str = "v1"):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if size < 0 or image_size < 16:
            raise ValueError(f"need size >= 0 and image_size >= 16, got {size=}, {image_size=}")
        if not 0 <= caption_noise <= 1:
            raise ValueError(f"config.data.caption_noise = {caption_noise}: expected a fraction in [0, 1]")
        if world not in WORLDS:
            raise ValueError(f"config.data.world = {world!r}: expected one of {WORLDS}")
        self.world = world
        self.split, self.size, self.image_size, self.seed = split, size, image_size, seed
        self.caption_noise = float(caption_noise)

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return (f"SyntheticSource(split={self.split!r}, size={self.size}, image_size={self.image_size}, "
                f"seed={self.seed}, caption_noise={self.caption_noise}, world={self.world!r})")

    def is_noisy(self, i: int) -> bool:
        """Whether example i's captions are replaced (deterministic in (seed, split, i, caption_noise))."""
        if self.caption_noise <= 0 or self.size <= 1:
            return False
        return np.random.default_rng((self.seed, SPLITS.index(self.split), i, 1)).random() < self.caption_noise

    def mismatch(self, i: int) -> int:
        """The other example whose captions a noisy example i takes (uniform over the rest of the split)."""
        rng = np.random.default_rng((self.seed, SPLITS.index(self.split), i, 2))
        return (i + 1 + int(rng.integers(0, self.size - 1))) % self.size

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, SPLITS.index(self.split), i))

    def scene(self, i: int) -> Scene:
        """The attributes of example `i` (what `__getitem__` renders)."""
        return sample_scene(self._rng(self._check(i)), self.image_size, self.world)

    def _check(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < self.size:
            raise IndexError(f"index {i} out of range for {self!r}")
        return i

    def __getitem__(self, i: int) -> dict:
        i = self._check(i)
        example = self._clean(i)
        if self.is_noisy(i):
            other = self._clean(self.mismatch(i))
            example.update(caption=other["caption"], captions=other["captions"], rewrites=other["rewrites"])
        example["noisy"] = self.is_noisy(i)
        return example

    def _clean(self, i: int) -> dict:
        rng = self._rng(i)
        scene = sample_scene(rng, self.image_size, self.world)
        image, _ = render_scene(scene, self.image_size, rng)
        captions, rewrites = _describe(scene, rng)
        first = int(rng.integers(len(captions)))
        captions = captions[first:] + captions[:first]
        labels = {"shape": scene.shape, "colour": scene.colour, "count": scene.count, "size": scene.size,
                  "position": scene.position, "texture": scene.texture}
        return {"image": image, "caption": captions[0], "captions": captions, "rewrites": rewrites,
                "index": i, "key": f"{self.split}-{i:08d}", "labels": labels}
