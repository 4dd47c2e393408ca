"""Image decoding and augmentation presets with PIL; out: uint8 [S,S,3] (normalised later, on the device).

Presets (CLIPA arXiv 2305.07017, SLIP arXiv 2112.12750, "Scaling (down) CLIP" arXiv 2404.08197):
- 'none':        the image as it is when already S x S (the built-in world), else the eval transform.
- 'eval':        resize the shorter side to S (bicubic) and take the centre S x S.
- 'clip':        RandomResizedCrop, area scale `crop_scale` (default (0.9, 1)), aspect ratio in [3/4, 4/3].
- 'clipa_large': RandomResizedCrop (0.4, 1), then CLIPA's SimCLR-v2 colour distortion at strength 0.4: colour jitter
                 (brightness, contrast, saturation, hue) = (0.32, 0.32, 0.32, 0.08) with p 0.8, grayscale p 0.2.
- 'randaug':     RandomResizedCrop (0.08, 1) + horizontal flip + RandAugment (N ops at magnitude M of 10).
- 'stacked_randaug': RandomResizedCrop + flip, then RandAugment applied twice, each round with its magnitude drawn
                 uniformly from [0, M] (so mild and strong versions of the same image are both seen).
- 'simclr':      the CLIP view RandomResizedCrop (0.5, 1) as 'image', plus two SimCLR views ('views' [2,S,S,3]):
                 RandomResizedCrop (0.08, 1), flip, colour jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale p 0.2,
                 Gaussian blur sigma in [0.1, 2] p 0.5 (SLIP).
`hflip` adds a horizontal flip (p 0.5) to 'clip' and 'clipa_large' (FLIP trains with crop (0.5, 1) + flip).
JPEGs are decoded in PIL's draft mode at the smallest DCT scale (1/1 .. 1/8) that still covers the crop at S
pixels, which is where most of the speed comes from. Undecodable, truncated or over-large images raise
BadSample.
"""
from __future__ import annotations

import dataclasses
import io
import math
import struct

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from clipjax.data.sources import BadSample

PRESETS = ("none", "eval", "clip", "clipa_large", "randaug", "stacked_randaug", "simclr")
DEFAULT_SCALE = {"clip": (0.9, 1.0), "clipa_large": (0.4, 1.0), "randaug": (0.08, 1.0),
                 "stacked_randaug": (0.08, 1.0), "simclr": (0.5, 1.0)}
# CLIPA (UCSC-VLAA/CLIPA clipa_jax/transforms/ops_image.py `simclr_jitter_gray(jitter_strength=0.4)`)
CLIPA_JITTER_STRENGTH = 0.4
CLIPA_JITTER_P, CLIPA_GRAYSCALE_P = 0.8, 0.2
_BICUBIC = Image.Resampling.BICUBIC
INTERPOLATIONS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


def open_image(data, max_pixels: int) -> Image.Image:
    """Encoded bytes (or a uint8 array) -> a lazily decoded PIL image; checks the pixel count from the header."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim != 3 or data.shape[-1] != 3:
            raise BadSample("bad_image", f"array of {data.dtype} {data.shape}")
        return Image.fromarray(data)
    if data is None or len(data) == 0:
        raise BadSample("missing_image")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise BadSample("too_large", str(e)) from None
    except _DECODE_ERRORS as e:
        raise BadSample("bad_image", str(e)) from None
    if img.size[0] * img.size[1] > max_pixels:
        raise BadSample("too_large", f"{img.size[0]}x{img.size[1]} > config.data.max_image_pixels={max_pixels}")
    return img


def decode(img: Image.Image, need: tuple[int, int] | None = None) -> tuple[Image.Image, float, float]:
    """Load `img` as RGB; with `need` = (w, h), a JPEG is decoded at the smallest DCT scale at least that large.
    Returns (image, x scale, y scale) from original to decoded coordinates."""
    w0, h0 = img.size
    try:
        if need is not None and img.format == "JPEG":
            img.draft("RGB", need)
        img.load()
        if img.mode != "RGB":
            img = img.convert("RGB")
    except _DECODE_ERRORS as e:
        raise BadSample("bad_image", str(e)) from None
    return img, img.size[0] / w0, img.size[1] / h0


def random_crop_box(w: int, h: int, scale: tuple[float, float], rng: np.random.Generator,
                    ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[float, float, float, float]:
    """RandomResizedCrop box (left, top, right, bottom): area fraction ~ U(scale), log aspect ratio ~ U(log ratio);
    10 tries, then the largest centred box with the ratio clamped into range."""
    area = w * h
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        r = math.exp(rng.uniform(*log_r))
        cw, ch = math.sqrt(target * r), math.sqrt(target / r)
        if 0 < cw <= w and 0 < ch <= h:
            x, y = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
            return x, y, x + cw, y + ch
    r = min(max(w / h, ratio[0]), ratio[1])
    cw, ch = (w, w / r) if w / h < r else (h * r, h)
    x, y = (w - cw) / 2, (h - ch) / 2
    return x, y, x + cw, y + ch


def centre_box(w: int, h: int) -> tuple[float, float, float, float]:
    """The centred square of side min(w, h): resized to S it equals resize-shorter-side + centre crop."""
    s = min(w, h)
    return (w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2


def crop_resize(img: Image.Image, box, size: int, resample=_BICUBIC) -> Image.Image:
    """Decode (draft mode sized to the box) and resize `box` of the original image to size x size."""
    x0, y0, x1, y1 = box
    need = (math.ceil(img.size[0] * size / max(x1 - x0, 1e-6)), math.ceil(img.size[1] * size / max(y1 - y0, 1e-6)))
    img, sx, sy = decode(img, need)
    return img.resize((size, size), resample, box=(x0 * sx, y0 * sy, x1 * sx, y1 * sy))


# --------------------------------------------------------------------------------------------- colour ops


def colour_jitter(img: Image.Image, rng: np.random.Generator, brightness: float, contrast: float,
                  saturation: float, hue: float) -> Image.Image:
    """Brightness, contrast, saturation factors ~ U(1 - x, 1 + x) and a hue shift ~ U(-hue, hue) of a turn,
    applied in random order."""
    ops = []
    if brightness:
        ops.append(lambda im, f=rng.uniform(1 - brightness, 1 + brightness): ImageEnhance.Brightness(im).enhance(f))
    if contrast:
        ops.append(lambda im, f=rng.uniform(1 - contrast, 1 + contrast): ImageEnhance.Contrast(im).enhance(f))
    if saturation:
        ops.append(lambda im, f=rng.uniform(1 - saturation, 1 + saturation): ImageEnhance.Color(im).enhance(f))
    if hue:
        ops.append(lambda im, f=rng.uniform(-hue, hue): shift_hue(im, f))
    for k in rng.permutation(len(ops)):
        img = ops[k](img)
    return img


def simclr_jitter(strength: float) -> tuple[float, float, float, float]:
    """SimCLR's colour-jitter amplitudes for `strength` s: (brightness, contrast, saturation, hue) =
    (0.8 s, 0.8 s, 0.8 s, 0.2 s) (UCSC-VLAA/CLIPA clipa_jax/transforms/simclr_aug.py `color_jitter`)."""
    return 0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength


def shift_hue(img: Image.Image, turns: float) -> Image.Image:
    hsv = np.array(img.convert("HSV"))
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(turns * 255))) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def grayscale(img: Image.Image) -> Image.Image:
    return img.convert("L").convert("RGB")


# --------------------------------------------------------------------------------------------- RandAugment

_FILL = (128, 128, 128)


def _affine(img, matrix):
    return img.transform(img.size, Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR, fillcolor=_FILL)


def _rand_op(img: Image.Image, name: str, m: float, sign: float) -> Image.Image:
    """One RandAugment op at strength m in [0, 1] (signed ops use `sign`)."""
    w, h = img.size
    if name == "identity":
        return img
    if name == "autocontrast":
        return ImageOps.autocontrast(img)
    if name == "equalize":
        return ImageOps.equalize(img)
    if name == "rotate":
        return img.rotate(sign * 30 * m, Image.Resampling.BILINEAR, fillcolor=_FILL)
    if name == "solarize":
        return ImageOps.solarize(img, int(256 - 256 * m))
    if name == "posterize":
        return ImageOps.posterize(img, max(1, int(round(8 - 4 * m))))
    if name in ("color", "contrast", "brightness", "sharpness"):
        enhancer = {"color": ImageEnhance.Color, "contrast": ImageEnhance.Contrast,
                    "brightness": ImageEnhance.Brightness, "sharpness": ImageEnhance.Sharpness}[name]
        return enhancer(img).enhance(1 + sign * 0.9 * m)
    if name == "shear_x":
        return _affine(img, (1, sign * 0.3 * m, 0, 0, 1, 0))
    if name == "shear_y":
        return _affine(img, (1, 0, 0, sign * 0.3 * m, 1, 0))
    if name == "translate_x":
        return _affine(img, (1, 0, sign * 0.45 * m * w, 0, 1, 0))
    if name == "translate_y":
        return _affine(img, (1, 0, 0, 0, 1, sign * 0.45 * m * h))
    raise ValueError(name)


RAND_OPS = ("identity", "autocontrast", "equalize", "rotate", "solarize", "color", "posterize", "contrast",
            "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y")


def rand_augment(img: Image.Image, rng: np.random.Generator, layers: int, magnitude: float) -> Image.Image:
    """RandAugment: `layers` ops drawn uniformly (with replacement), each at strength magnitude / 10."""
    for k in rng.integers(len(RAND_OPS), size=layers):
        img = _rand_op(img, RAND_OPS[k], min(magnitude, 10) / 10, 1.0 if rng.random() < 0.5 else -1.0)
    return img


# --------------------------------------------------------------------------------------------- presets


@dataclasses.dataclass(frozen=True)
class Augment:
    """`augment(image_data, rng) -> {'image': uint8 [S,S,3]}` (+ 'views' uint8 [2,S,S,3] for 'simclr')."""
    preset: str = "none"
    size: int = 224
    crop_scale: tuple[float, ...] = ()
    randaug_layers: int = 2
    randaug_magnitude: float = 9.0
    max_pixels: int = 89_478_485  # PIL's default decompression-bomb limit
    interpolation: str = "bicubic"  # of the crop resize: 'bicubic' (OpenCLIP) or 'bilinear' (faster)
    hflip: bool = False  # horizontal flip with p 0.5 after the crop of 'clip' / 'clipa_large' (FLIP)

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"config.data.augment = {self.preset!r}: expected one of {PRESETS}")
        if self.crop_scale and not (len(self.crop_scale) == 2 and 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1):
            raise ValueError(f"config.data.crop_scale = {self.crop_scale!r}: expected (min, max) with 0 < min <= max "
                             "<= 1, or () for the preset's default")
        if self.hflip and self.preset in ("none", "eval"):
            raise ValueError(f"config.data.hflip = True: the {self.preset!r} preset is deterministic; use 'clip'")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"config.data.interpolation = {self.interpolation!r}: expected one of "
                             f"{tuple(INTERPOLATIONS)}")

    @property
    def scale(self) -> tuple[float, float]:
        return tuple(self.crop_scale) if self.crop_scale else DEFAULT_SCALE.get(self.preset, (1.0, 1.0))

    def __call__(self, data, rng: np.random.Generator) -> dict[str, np.ndarray]:
        s, preset = self.size, self.preset
        if preset == "none" and isinstance(data, np.ndarray) and data.shape[:2] == (s, s) and data.dtype == np.uint8:
            return {"image": data}
        img = open_image(data, self.max_pixels)
        if preset in ("none", "eval"):
            return {"image": np.asarray(crop_resize(img, centre_box(*img.size), s, INTERPOLATIONS[self.interpolation]))}
        if preset == "simclr":
            full, _, _ = decode(img)
            views = np.stack([np.asarray(self._simclr_view(full, rng)) for _ in range(2)])
            clip_view = full.resize((s, s), _BICUBIC, box=random_crop_box(*full.size, self.scale, rng))
            return {"image": np.asarray(clip_view), "views": views}
        out = crop_resize(img, random_crop_box(*img.size, self.scale, rng), s, INTERPOLATIONS[self.interpolation])
        if self.hflip and preset in ("clip", "clipa_large") and rng.random() < 0.5:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if preset == "clipa_large":
            if rng.random() < CLIPA_JITTER_P:
                out = colour_jitter(out, rng, *simclr_jitter(CLIPA_JITTER_STRENGTH))
            if rng.random() < CLIPA_GRAYSCALE_P:
                out = grayscale(out)
        elif preset in ("randaug", "stacked_randaug"):
            if rng.random() < 0.5:
                out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            if preset == "randaug":
                out = rand_augment(out, rng, self.randaug_layers, self.randaug_magnitude)
            else:
                for _ in range(2):
                    out = rand_augment(out, rng, self.randaug_layers, rng.uniform(0, self.randaug_magnitude))
        return {"image": np.asarray(out)}

    def _simclr_view(self, full: Image.Image, rng: np.random.Generator) -> Image.Image:
        v = full.resize((self.size, self.size), _BICUBIC, box=random_crop_box(*full.size, (0.08, 1.0), rng))
        if rng.random() < 0.5:
            v = v.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if rng.random() < 0.8:
            v = colour_jitter(v, rng, 0.4, 0.4, 0.4, 0.1)
        if rng.random() < 0.2:
            v = grayscale(v)
        if rng.random() < 0.5:
            v = v.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.1, 2.0)))
        return v
