"""The synthetic image-caption world: determinism, held-out split, truthful captions, rendering."""
import hashlib
import math
import pickle

import grain
import numpy as np
import pytest

from clipjax.data import synthetic as sy

N = 64  # examples sampled per test


@pytest.fixture(scope="module")
def train():
    return sy.SyntheticSource("train", size=1000, image_size=64, seed=0)


@pytest.fixture(scope="module")
def examples(train):
    return [train[i] for i in range(N)]


def test_deterministic_and_distinct(train, examples):
    again = sy.SyntheticSource("train", size=1000, image_size=64, seed=0)
    for i in (0, 7, 999):
        a, b = train[i], again[i]
        assert a["image"].tobytes() == b["image"].tobytes()
        assert (a["captions"], a["rewrites"], a["labels"]) == (b["captions"], b["rewrites"], b["labels"])
    assert len({ex["image"].tobytes() for ex in examples}) == N
    other_seed = sy.SyntheticSource("train", size=1000, image_size=64, seed=1)
    assert other_seed[0]["image"].tobytes() != examples[0]["image"].tobytes()


def test_eval_split_is_disjoint(examples):
    held_out = sy.SyntheticSource("eval", size=1000, image_size=64, seed=0)
    train_images = {ex["image"].tobytes() for ex in examples}
    assert not train_images & {held_out[i]["image"].tobytes() for i in range(N)}
    assert held_out[3]["key"] == "eval-00000003"


def test_example_fields(train, examples):
    ranges = {"shape": 8, "colour": 8, "count": 3, "size": 2, "position": 5, "texture": 3}
    for i, ex in enumerate(examples):
        assert ex["image"].dtype == np.uint8 and ex["image"].shape == (64, 64, 3)
        assert ex["index"] == i and ex["key"] == f"train-{i:08d}"
        assert ex["caption"] == ex["captions"][0] and len(ex["captions"]) >= 4 and len(ex["rewrites"]) == 3
        assert ex["labels"].keys() == ranges.keys()
        assert all(0 <= ex["labels"][k] < n for k, n in ranges.items())
    seen = {k: {ex["labels"][k] for ex in examples} for k in ranges}
    assert all(len(seen[k]) == n for k, n in ranges.items() if k != "shape")
    assert len({ex["caption"] for ex in examples}) == N
    assert sy.SyntheticSource("train", size=5, image_size=32)[4]["image"].shape == (32, 32, 3)


def test_captions_are_truthful(examples):
    for ex in examples:
        lab = ex["labels"]
        shape, colour = sy.SHAPES[lab["shape"]], sy.COLOURS[lab["colour"]]
        for cap in ex["captions"]:
            assert shape in cap and colour in cap, cap
        assert any(sy.COUNTS[lab["count"]] in cap for cap in ex["captions"])
        assert any(sy.SIZES[lab["size"]] in cap for cap in ex["captions"])
        colour_words = sy._COLOUR_SYNONYMS.get(colour, (colour,))
        shape_words = (shape, *sy._SHAPE_SYNONYMS[shape])
        for cap in ex["rewrites"]:
            assert any(w in cap for w in colour_words) and any(w in cap for w in shape_words), cap


def test_distractor_is_mentioned_somewhere(train):
    scenes = [(i, train.scene(i)) for i in range(N)]
    with_distractor = [(i, s) for i, s in scenes if s.distractor is not None]
    assert 0.25 * N < len(with_distractor) < 0.75 * N
    for i, s in with_distractor:
        d = s.distractor
        assert (d.shape, d.colour) != (s.shape, s.colour) and d.shape != s.shape and d.colour != s.colour
        name = f"{sy.COLOURS[d.colour]} {sy.SHAPES[d.shape]}"
        assert any(name in cap for cap in train[i]["captions"])


def test_labelled_colour_dominates_object_pixels(train):
    rng = np.random.default_rng(0)
    for i in range(N):
        scene = train.scene(i)
        image, mask = sy.render_scene(scene, 64, rng)
        pixels = image[mask].astype(int)
        rgb = sy.RGB[scene.colour].astype(int)
        assert mask.sum() >= 20
        assert np.mean(np.all(pixels == rgb, axis=1)) > 0.55
        if sy.TEXTURES[scene.texture] == "solid":
            assert np.abs(pixels.mean(0) - rgb).max() < 1
        background = image[~mask].astype(int)
        assert np.mean(np.all(background == rgb, axis=1)) < 0.02  # the colour is (almost) only the object's
        assert ((background.mean(0) - rgb) ** 2).sum() > 40**2


def test_render_matches_getitem(train):
    ex = train[5]
    rng = train._rng(5)
    scene = sy.sample_scene(rng, 64)
    image, _ = sy.render_scene(scene, 64, rng)
    assert image.tobytes() == ex["image"].tobytes()


def test_class_sets():
    for name, cs in sy.CLASS_SETS.items():
        assert cs.label_key == name and len(cs.templates) >= 6
        assert all(t.count("{}") == 1 for t in cs.templates)
        assert len(set(cs.names)) == len(cs.names)
    assert sy.CLASS_SETS["shape"].names == sy.SHAPES and sy.CLASS_SETS["colour"].names == sy.COLOURS
    assert len(sy.CLASS_SETS["count"].names) == 3


def test_pickle_and_index_errors(train):
    clone = pickle.loads(pickle.dumps(train))
    assert len(clone) == 1000 and clone[12]["image"].tobytes() == train[12]["image"].tobytes()
    for bad in (-1, 1000):
        with pytest.raises(IndexError):
            train[bad]
    with pytest.raises(ValueError, match="split"):
        sy.SyntheticSource("test")


def test_grain_reads_source(train):
    ds = grain.MapDataset.source(train).batch(4)
    batch = ds[0]
    assert batch["image"].shape == (4, 64, 64, 3) and list(batch["index"]) == [0, 1, 2, 3]



def _digest(world: str) -> str:
    h = hashlib.sha256()
    for split in ("train", "eval"):
        for res in (32, 64):
            src = sy.SyntheticSource(split, size=300, image_size=res, seed=0, caption_noise=0.3, world=world)
            for i in range(0, 300, 7):
                ex = src[i]
                h.update(ex["image"].tobytes())
                h.update(repr((ex["captions"], ex["rewrites"], ex["labels"])).encode())
    return h.hexdigest()[:16]


def test_v1_world_is_unchanged():
    """Images, captions and labels of the first world, pinned when the graded world was added (the README's and
    earlier studies' numbers were measured on it)."""
    assert _digest("v1") == "455c5c767e9e7d01"
    assert _digest("graded") != "455c5c767e9e7d01"


@pytest.fixture(scope="module")
def graded():
    return sy.SyntheticSource("train", size=400, image_size=64, seed=0, world="graded")


def test_graded_world_sizes_layout_and_captions(graded):
    names = sy.size_names("graded")
    area = {n: [] for n in names}
    for i in range(200):
        scene, ex = graded.scene(i), graded[i]
        size = names[scene.size]
        lo, hi = sy.GRADED_RADII[size]
        assert ex["labels"]["size"] == scene.size and scene.world == "graded"
        for a in scene.objects:
            assert lo * 64 <= a.r <= hi * 64
            assert a.r - 1e-6 <= a.cx <= 64 - a.r + 1e-6 and a.r - 1e-6 <= a.cy <= 64 - a.r + 1e-6  # inside
            for b in scene.objects:
                assert a is b or math.hypot(a.cx - b.cx, a.cy - b.cy) >= 2 * a.r  # never overlapping
        assert len(scene.objects) == scene.count + 1
        assert any(size in cap for cap in ex["captions"]) and sy.SHAPES[scene.shape] in ex["captions"][0]
        area[size].append(sy.render_scene(scene, 64, np.random.default_rng(0))[1].sum() / (scene.count + 1))
    assert {ex["labels"]["size"] for ex in (graded[i] for i in range(60))} == {0, 1, 2}
    small, medium, large = (np.median(area[n]) for n in names)
    assert 2 * small < medium and 1.6 * medium < large  # pixels per object grow with the size class


def test_graded_world_through_config_and_bad_name():
    from clipjax.data import pipeline
    from tests.helpers import load_config
    config = load_config("tiny.py", data__world="graded", data__size=8, evals__num_examples=4)
    raw = pipeline.make_source(config.data)
    assert raw.source.world == "graded" and raw[3]["image"].tobytes() == sy.SyntheticSource(
        "train", 8, 64, world="graded")[3]["image"].tobytes()
    held_out = pipeline.load_eval_split(config)
    assert held_out["images"].tobytes() == np.stack(
        [sy.SyntheticSource("eval", 4, 64, world="graded")[i]["image"] for i in range(4)]).tobytes()
    with pytest.raises(ValueError, match=r"config.data.world = 'v2'"):
        sy.SyntheticSource("train", 8, 64, world="v2")
    with pytest.raises(ValueError, match=r"config.data.world = 'v2': expected a built-in world"):
        pipeline.validate(load_config("tiny.py", data__world="v2"))


def test_builtin_eval_reports_zero_shot_per_size_class_in_the_graded_world():
    from clipjax import train
    from clipjax.evaluate.builtin import BuiltinEvaluator
    from tests.helpers import load_config
    config = load_config("tiny.py", data__world="graded", evals__num_examples=60)
    trainer = train.Trainer(config)
    state = trainer.init_state(64)
    metrics = BuiltinEvaluator(config, trainer.model, trainer.mesh, trainer.eval_shardings)(state.eval_params())
    sizes = np.array([sy.SyntheticSource("eval", 60, 64, world="graded")[i]["labels"]["size"] for i in range(60)])
    for name in ("shape", "colour", "count"):
        per_size = [metrics[f"zeroshot_{name}_{s}_top1"] for s in sy.size_names("graded")]
        overall = sum(acc * (sizes == k).sum() for k, acc in enumerate(per_size)) / 60
        assert metrics[f"zeroshot_{name}_top1"] == pytest.approx(overall, abs=1e-6)
    config.data.world = "v1"
    assert not any("_small_" in k for k in BuiltinEvaluator(config, trainer.model, trainer.mesh,
                                                            trainer.eval_shardings)(state.eval_params()))
