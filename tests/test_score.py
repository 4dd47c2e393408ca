"""Data quality: the built-in world's caption noise, clipjax.tools.score (keyed, chunked, resumable, split over
processes) and config.data.filter in the training pipeline, with its bad inputs."""
import os

import flax.linen as nn
import jax
import numpy as np
import pytest

from clipjax import validation
from clipjax.data import pipeline, quality, synthetic
from clipjax.interop import files
from clipjax.models import clip
from clipjax.tools import score
from tests.test_train import small_config


def test_caption_noise_is_deterministic_and_swaps_in_another_examples_captions():
    clean = synthetic.SyntheticSource("train", size=200, image_size=16)
    noisy = synthetic.SyntheticSource("train", size=200, image_size=16, caption_noise=0.5)
    flags = [noisy.is_noisy(i) for i in range(200)]
    assert 0.35 < np.mean(flags) < 0.65
    assert flags == [synthetic.SyntheticSource("train", 200, 16, caption_noise=0.5).is_noisy(i) for i in range(200)]
    assert not any(clean[i]["noisy"] for i in range(20))
    more = synthetic.SyntheticSource("train", size=200, image_size=16, caption_noise=0.8)
    assert all(more.is_noisy(i) for i in range(200) if flags[i])  # the noisy set grows with the knob
    for i in range(30):
        a, b = clean[i], noisy[i]
        np.testing.assert_array_equal(a["image"], b["image"])
        assert a["labels"] == b["labels"]
        if flags[i]:
            j = noisy.mismatch(i)
            assert j != i and b["captions"] == clean[j]["captions"] and b["rewrites"] == clean[j]["rewrites"]
        else:
            assert b["captions"] == a["captions"]
    with pytest.raises(ValueError, match="caption_noise"):
        synthetic.SyntheticSource("train", 10, 16, caption_noise=1.5)


def _config(size=40, noise=0.5, **overrides):
    return small_config(data__size=size, data__caption_noise=noise, **overrides)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A randomly initialised small CLIP saved as a converted folder (what score --model reads)."""
    config = _config()
    model = clip.build_model(config.model)
    h, l = config.data.image_size, config.data.text_length
    params = model.init(jax.random.key(0), np.zeros((1, h, h, 3), np.uint8), np.zeros((1, l), np.int32))["params"]
    folder = str(tmp_path_factory.mktemp("model"))
    files.save_clipjax(folder, nn.meta.unbox(params), config.model)
    return folder


def test_score_writes_keyed_cosines_resumes_and_splits_over_processes(tmp_path, model_dir):
    config = _config()
    one = str(tmp_path / "one")
    score.run(config, model_dir, one, batch_size=16, chunk=16, progress_bar=False)
    header, keys, scores = quality.read_scores(one)
    assert header["size"] == 40 and len(os.listdir(one)) == 4  # header + 3 chunks
    assert list(keys) == [f"train-{i:08d}" for i in range(40)]
    assert np.all(np.abs(scores) <= 1.0) and np.std(scores) > 1e-4
    # row 5 by hand: cosine of the model's own embeddings of the eval-preprocessed image and primary caption
    flat, model_cfg = files.load_clipjax(model_dir)
    cfg = score.scoring_config(config, model_cfg)
    ex = pipeline.make_transform(cfg)(pipeline.make_source(cfg.data)[5])
    out = clip.build_model(model_cfg).apply({"params": score.pytree.unflatten(flat)}, ex["image"][None],
                                            ex["tokens"][None])
    np.testing.assert_allclose(scores[5], float((out["zimg"] * out["ztxt"]).sum()), rtol=1e-4, atol=1e-6)
    # two processes, each its chunks (0, 2 | 1), give the same folder; a deleted chunk is redone alone
    two = str(tmp_path / "two")
    score.run(config, model_dir, two, batch_size=16, chunk=16, progress_bar=False, process=(1, 2))
    assert sorted(os.listdir(two)) == ["header.json", "scores_00001.npz"]
    score.run(config, model_dir, two, batch_size=16, chunk=16, progress_bar=False, process=(0, 2))
    np.testing.assert_array_equal(quality.read_scores(two)[2], scores)
    os.remove(quality.chunk_path(two, 2))
    mtime = os.path.getmtime(quality.chunk_path(two, 0))
    score.run(config, model_dir, two, batch_size=16, chunk=16, progress_bar=False)
    assert os.path.getmtime(quality.chunk_path(two, 0)) == mtime
    np.testing.assert_array_equal(quality.read_scores(two)[2], scores)
    # another dataset into the same folder is refused, naming what differs
    with pytest.raises(quality.ScoresMismatch, match="caption_noise"):
        score.run(_config(noise=0.25), model_dir, two, batch_size=16, chunk=16, progress_bar=False)


def _scores_folder(tmp_path, scores, keys=None, noise=0.5, chunk=16):
    folder = str(tmp_path / "scores")
    config = _config(size=len(scores), noise=noise)
    header = {"data": quality.data_fingerprint(config.data, len(scores)), "model": "test", "chunk": chunk,
              "size": len(scores)}
    quality.chunked_files.open_folder(folder, header)
    keys = [f"train-{i:08d}" for i in range(len(scores))] if keys is None else keys
    for c in range(quality.num_chunks(len(scores), chunk)):
        quality.write_chunk(folder, c, keys[c * chunk:(c + 1) * chunk], scores[c * chunk:(c + 1) * chunk])
    return folder


def test_filter_keeps_the_top_fraction_in_training_and_counts_it(tmp_path):
    scores = np.random.default_rng(0).permutation(np.linspace(-1, 1, 64)).astype(np.float32)
    folder = _scores_folder(tmp_path, scores)
    config = _config(size=64, data__filter__scores=folder, data__filter__top_fraction=0.25)
    validation.validate(config)
    want = set(np.argsort(-scores)[:16].tolist())
    it, size = pipeline.make_train_iterator(config, 0, 1)
    seen = set()
    for _ in range(4):  # 4 batches of 16: four epochs of the 16 kept pairs
        seen.update(int(i) for i in next(it)["index"])
    assert size == 64 and seen == want
    metrics = pipeline.data_metrics(it)
    assert metrics["data/filter_kept"] == 16 and metrics["data/filter_total"] == 64
    assert metrics["data/filter_min_kept_score"] == pytest.approx(np.sort(scores)[-16])
    threshold = _config(size=64, data__filter__scores=folder, data__filter__min_score=0.5)
    np.testing.assert_array_equal(quality.kept_rows(threshold, scores), np.flatnonzero(scores >= 0.5))


def test_filter_bad_inputs(tmp_path):
    scores = np.linspace(-0.5, 0.5, 64).astype(np.float32)
    folder = _scores_folder(tmp_path, scores)
    with pytest.raises(ValueError, match=r"config\.data\.filter\.min_score = 0\.9: keeps none.*highest score is 0\.5"):
        pipeline.make_train_iterator(_config(size=64, data__filter__scores=folder, data__filter__min_score=0.9), 0, 1)
    with pytest.raises(ValueError, match=r"config\.data\.filter\.top_fraction.*exactly one"):
        validation.validate(_config(size=64, data__filter__scores=folder))
    tiny = quality.kept_rows(_config(data__filter__scores=folder, data__filter__top_fraction=0.001), scores[:10])
    np.testing.assert_array_equal(tiny, [9])  # ceil(f N): a positive fraction keeps at least the best pair
    with pytest.raises(ValueError, match=r"config\.data\.filter\.scores = '/nonexistent'"):
        validation.validate(_config(data__filter__scores="/nonexistent", data__filter__top_fraction=0.5))
    with pytest.raises(quality.ScoresMismatch, match=r"(?s)other data.*size: folder 64 vs this run 80"):
        pipeline.make_train_iterator(_config(size=80, data__filter__scores=folder, data__filter__top_fraction=0.5),
                                     0, 1)
    with pytest.raises(quality.ScoresMismatch, match=r"caption_noise: folder 0.5 vs this run 0.0"):
        pipeline.make_train_iterator(_config(size=64, noise=0.0, data__filter__scores=folder,
                                             data__filter__top_fraction=0.5), 0, 1)
    shuffled = str(tmp_path / "shuffled")
    os.rename(_scores_folder(tmp_path, scores, keys=[f"train-{i:08d}" for i in reversed(range(64))]), shuffled)
    with pytest.raises(quality.ScoresMismatch, match=r"row 0 is keyed 'train-00000063' there but 'train-00000000'"):
        pipeline.make_train_iterator(_config(size=64, data__filter__scores=shuffled, data__filter__top_fraction=0.5),
                                     0, 1)
    os.remove(quality.chunk_path(shuffled, 1))
    with pytest.raises(FileNotFoundError, match=r"scores_00001\.npz is missing"):
        quality.read_scores(shuffled)
    with pytest.raises(ValueError, match=r"config\.data\.caption_noise.*built-in world"):
        validation.validate(_config(noise=0.5, data__name="csv", data__path="x.csv"))
