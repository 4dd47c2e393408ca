"""clipjax.tools.vec_captions (VeCLIP): a tiny random LLaVA built here (no downloads) describes the images, the tiny
Flax LLM fuses; the built-in world end to end with resume, a CSV with broken images, bad input."""
import os

import numpy as np
import pytest
from PIL import Image

from clipjax.data import chunked_files, pipeline, sources
from clipjax.tools import vec_captions
from clipjax.tools.tiny_models import save_random_vlm as save_tiny_vlm
from tests.helpers import load_config, save_tiny_llm

SMALL = dict(vlm_max_new_tokens=6, max_new_tokens=12, context=160, batch_size=4, chunk=4)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    raw = sources.SyntheticRaw(32, 16)
    texts = [raw[i]["captions"]["caption"] for i in range(32)] + ["=>", "AltText:", "|", "Image:", "a red car"]
    pool = vec_captions.fusion_pool()
    texts += [pool["instruction"], vec_captions.VLM_PROMPT, *(x for pair in pool["pairs"] for x in pair)]
    root = tmp_path_factory.mktemp("models")
    return save_tiny_vlm(str(root / "vlm"), texts), save_tiny_llm(str(root / "llm"), texts)


def read(folder, name):
    return open(os.path.join(folder, name), encoding="utf-8").read().splitlines()


def test_builtin_world_end_to_end_and_resume(models, tmp_path):
    vlm, lm = models
    config, out = load_config("tiny.py"), str(tmp_path / "vec")
    summary = vec_captions.run(config, vlm, lm, out, rows=10, progress_bar=False, **SMALL)
    vec, described = read(out, "vec.txt"), read(out, "vlm.txt")
    assert len(vec) == len(described) == 10 and all(described) and all(vec)
    assert summary["replaced"]["bad_image"] == 0 and 0 <= summary["replaced_fraction"] <= 1
    # an interrupted run: the last chunk and the assembled files gone -> the rerun rebuilds the same files
    for name in ("vec.txt", "vlm.txt", "summary.json", "chunks/000002.json"):
        os.remove(os.path.join(out, name))
    assert vec_captions.run(config, vlm, lm, out, rows=10, progress_bar=False, **SMALL) == summary
    assert read(out, "vec.txt") == vec and read(out, "vlm.txt") == described
    with pytest.raises(chunked_files.StaleOutput, match="vlm_prompt"):
        vec_captions.run(config, vlm, lm, out, rows=10, vlm_prompt="Describe it.", **SMALL)


def test_csv_broken_images_keep_the_caption(models, tmp_path):
    vlm, lm = models
    Image.fromarray(np.full((20, 24, 3), 200, np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    captions = ["a red car", "two dotted blue diamonds", "a red car parked", "blue diamonds"]
    paths = ["ok.png", "broken.jpg", "missing.png", "ok.png"]
    index = tmp_path / "index.csv"
    index.write_text("path,caption\n" + "".join(f"{p},{c}\n" for p, c in zip(paths, captions)))
    config = load_config("tiny.py")
    config.data.name, config.data.path, config.data.csv_header = "csv", str(index), True
    config.data.image_root = str(tmp_path)
    out = str(tmp_path / "vec")
    summary = vec_captions.run(config, vlm, lm, out, progress_bar=False, **SMALL)
    assert summary["replaced"]["bad_image"] == 2
    vec, described = read(out, "vec.txt"), read(out, "vlm.txt")
    assert vec[1:3] == captions[1:3] and described[1:3] == ["", ""] and described[0] and described[3]
    config.data.rewrite_files = os.path.join(out, "vec.txt")
    config.data.caption_mode, config.data.veclip_field = "veclip", "rewrite_1"
    assert pipeline.make_source(config.data)[0]["captions"]["rewrite_1"].decode() == vec[0]


def test_missing_models(models, tmp_path):
    vlm, lm = models
    with pytest.raises(FileNotFoundError, match="--vlm"):
        vec_captions.run(load_config("tiny.py"), str(tmp_path / "no_vlm"), lm, str(tmp_path / "o"), **SMALL)
    with pytest.raises(FileNotFoundError, match="--llm"):
        vec_captions.run(load_config("tiny.py"), vlm, str(tmp_path / "no_llm"), str(tmp_path / "o"), **SMALL)
