"""Decoding and augmentation presets on real JPEG/PNG bytes, including bad images."""
import io

import numpy as np
import pytest
from PIL import Image

from clipjax.data import augment, sources
from tests import datafiles as df


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("preset", augment.PRESETS)
def test_presets_give_uint8_images_of_the_configured_size(preset):
    out = augment.Augment(preset, 24)(df.jpeg(1, 50, 70), rng())
    assert out["image"].shape == (24, 24, 3) and out["image"].dtype == np.uint8
    if preset == "simclr":
        assert out["views"].shape == (2, 24, 24, 3) and out["views"].dtype == np.uint8
        assert not np.array_equal(out["views"][0], out["views"][1])
    again = augment.Augment(preset, 24)(df.jpeg(1, 50, 70), rng())
    assert all(np.array_equal(out[k], again[k]) for k in out)  # a function of the bytes and the rng


def test_eval_is_resize_shorter_side_then_centre_crop():
    arr = df.image_array(3, 60, 90)
    out = augment.Augment("eval", 30)(df.encode(arr, "PNG"), rng())["image"]
    ref = np.asarray(Image.fromarray(arr).resize((45, 30), Image.Resampling.BICUBIC))[:, 7:37]
    assert np.abs(out.astype(int) - ref).mean() < 3


def test_random_resized_crop_respects_scale_and_ratio():
    r = rng()
    for _ in range(200):
        x0, y0, x1, y1 = augment.random_crop_box(200, 100, (0.4, 1.0), r)
        w, h = x1 - x0, y1 - y0
        assert 0 <= x0 and x1 <= 200 + 1e-9 and 0 <= y0 and y1 <= 100 + 1e-9
        assert 0.4 * 20000 - 1e-6 <= w * h <= 20000 + 1e-6 and 3 / 4 - 1e-9 <= w / h <= 4 / 3 + 1e-9
    # a crop scale from the config overrides the preset's
    assert augment.Augment("clip").scale == (0.9, 1.0)
    assert augment.Augment("clip", crop_scale=(0.5, 0.8)).scale == (0.5, 0.8)
    assert augment.Augment("clipa_large").scale == (0.4, 1.0)
    with pytest.raises(ValueError, match="crop_scale"):
        augment.Augment("clip", crop_scale=(0.9, 0.1))


def test_jpeg_draft_mode_decodes_large_images_at_reduced_scale():
    data = df.jpeg(0, 800, 800)
    img = augment.open_image(data, 10**8)
    decoded, sx, _ = augment.decode(img, (200, 200))
    assert decoded.size == (200, 200) and sx == 0.25
    full = np.asarray(Image.open(io.BytesIO(data)).resize((100, 100), Image.Resampling.BICUBIC))
    out = augment.Augment("eval", 100)(data, rng())["image"]
    assert np.abs(out.astype(int) - full).mean() < 3  # same picture as a full decode


def test_colour_presets_change_colours_and_grayscale_is_grey():
    data = df.jpeg(5, 64, 64)
    outs = [augment.Augment("clipa_large", 32)(data, rng(s))["image"] for s in range(40)]
    grey = [o for o in outs if np.array_equal(o[..., 0], o[..., 1]) and np.array_equal(o[..., 1], o[..., 2])]
    assert 0 < len(grey) < 20  # p = 0.2
    plain = augment.Augment("clip", 32)(data, rng(0))["image"]
    assert augment.grayscale(Image.fromarray(plain)).getpixel((3, 3))[0] == np.asarray(
        Image.fromarray(plain).convert("L"))[3, 3]


def test_randaug_ops_all_run_and_change_the_image():
    img = Image.fromarray(df.image_array(2, 32, 32))
    changed = 0
    for name in augment.RAND_OPS:
        out = augment._rand_op(img, name, 0.9, 1.0)
        assert out.size == img.size and out.mode == "RGB"
        changed += not np.array_equal(np.asarray(out), np.asarray(img))
    assert changed >= len(augment.RAND_OPS) - 2  # identity (and maybe one no-op on this image)


def _reason(data, max_pixels=10**8):
    with pytest.raises(sources.BadSample) as e:
        augment.Augment("clip", 16, max_pixels=max_pixels)(data, rng())
    return e.value.reason


def test_bad_images_raise_bad_sample():
    good = df.jpeg(1, 64, 64)
    assert _reason(good[: len(good) // 2]) == "bad_image"      # truncated JPEG
    assert _reason(b"this is a text file, not an image") == "bad_image"
    corrupt = bytearray(good)
    corrupt[2:60] = b"\x00" * 58                               # header destroyed
    assert _reason(bytes(corrupt)) == "bad_image"
    assert _reason(b"") == "missing_image"
    big = df.encode(np.zeros((3000, 2000, 3), np.uint8), "PNG")  # compresses to a few kB
    assert _reason(big, max_pixels=1_000_000) == "too_large"
    assert augment.Augment("clip", 16, max_pixels=10**7)(big, rng())["image"].shape == (16, 16, 3)


def test_png_with_alpha_and_grey_become_rgb():
    rgba = df.encode(np.dstack([df.image_array(1), np.full((40, 48), 128, np.uint8)]), "PNG")
    grey = df.encode(df.image_array(2)[..., 0], "PNG")
    for data in (rgba, grey):
        assert augment.Augment("clip", 16)(data, rng())["image"].shape == (16, 16, 3)


def test_clipa_large_jitter_matches_clipa(monkeypatch):
    """UCSC-VLAA/CLIPA clipa_jax/transforms/ops_image.py `simclr_jitter_gray(jitter_strength=0.4)` and
    simclr_aug.py `color_jitter`: (brightness, contrast, saturation, hue) = (0.8, 0.8, 0.8, 0.2) x 0.4, applied with
    p 0.8 (so skipped 20% of the time); grayscale p 0.2."""
    assert augment.simclr_jitter(augment.CLIPA_JITTER_STRENGTH) == pytest.approx((0.32, 0.32, 0.32, 0.08))
    calls = []
    monkeypatch.setattr(augment, "colour_jitter", lambda img, r, *amps: calls.append(amps) or img)
    image, n = df.image_array(4, 16, 16), 2000
    for seed in range(n):
        augment.Augment("clipa_large", 8)(image, rng(seed))
    assert calls and all(c == pytest.approx((0.32, 0.32, 0.32, 0.08)) for c in calls)
    skipped = 1 - len(calls) / n
    assert abs(skipped - 0.2) < 4 * np.sqrt(0.2 * 0.8 / n), skipped


def test_hflip_mirrors_about_half_the_crops():
    """FLIP trains with RandomResizedCrop (0.5, 1) + horizontal flip (facebookresearch/flip configs/default.py
    `aug.flip = True`): with the full-image crop, each output is the plain crop or its mirror, about half each."""
    data = df.jpeg(2, 32, 32)
    plain = augment.Augment("clip", 32, (1.0, 1.0))(data, rng())["image"]
    flips = []
    for seed in range(200):
        out = augment.Augment("clip", 32, (1.0, 1.0), hflip=True)(data, rng(seed))["image"]
        mirrored = np.abs(out.astype(int) - plain[:, ::-1]).mean() < np.abs(out.astype(int) - plain).mean()
        flips.append(mirrored)
    assert 0.4 < np.mean(flips) < 0.6
    with pytest.raises(ValueError, match="hflip.*deterministic"):
        augment.Augment("eval", 32, hflip=True)
