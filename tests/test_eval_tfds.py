"""Evaluation suite on real (tiny) TFDS datasets that the tests build and prepare themselves, with an oracle model
whose embeddings are known, so that every accuracy and recall is checked against a hand-computed answer."""
import functools
import io
import json
import os

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from clipjax import config as config_lib, pytree, sharding, validation
from clipjax.data.tokenizer import ClipTokenizer
from clipjax.evaluate import classnames, suite

SIZE = 16
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
ORANGE, SKY, PURPLE = (255, 128, 0), (0, 200, 255), (255, 0, 255)
# (colour, label) with labels 0 red, 1 green, 2 blue; the oracle predicts the strongest channel
CLASSIFIED = [(RED, 0), (RED, 0), (GREEN, 1), (BLUE, 2), (BLUE, 1), (GREEN, 0), (ORANGE, 0), (ORANGE, 1),
              (BLUE, 2), (SKY, 1)]
CAPTIONED = [(RED, ["a red thing", "a blue thing"]), (GREEN, ["green"]), (PURPLE, ["red and blue"]),
             (BLUE, ["green"])]


def png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE), colour).save(buf, format="PNG")
    return buf.getvalue()


@functools.cache
def _builders():
    import tensorflow_datasets as tfds

    class TinyColours(tfds.core.GeneratorBasedBuilder):
        """Solid-colour PNGs labelled red / green / blue (some labels deliberately not the colour)."""
        VERSION = tfds.core.Version("1.0.0")
        code_path = None

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                "label": tfds.features.ClassLabel(names=["red", "green", "blue"])}))

        def _split_generators(self, dl_manager):
            return {"test": self._generate_examples()}

        def _generate_examples(self):
            for i, (colour, label) in enumerate(CLASSIFIED):
                yield i, {"image": io.BytesIO(png(colour)), "label": label}

    class TinyColourCaptions(tfds.core.GeneratorBasedBuilder):
        """Solid-colour PNGs with one or more captions each (COCO-captions layout: captions/text)."""
        VERSION = tfds.core.Version("1.0.0")
        code_path = None

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                "image_id": np.int64,
                "captions": tfds.features.Sequence({"text": tfds.features.Text()})}))

        def _split_generators(self, dl_manager):
            return {"test": self._generate_examples()}

        def _generate_examples(self):
            for i, (colour, caps) in enumerate(CAPTIONED):
                yield i, {"image": io.BytesIO(png(colour)), "image_id": i, "captions": {"text": caps}}

    return TinyColours, TinyColourCaptions


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tfds"))
    for cls in _builders():
        cls(data_dir=d, file_format="array_record").download_and_prepare()
    return d


class Oracle(nn.Module):
    """Image -> its mean (r, g, b); text -> counts of the words red, green, blue; both L2-normalised."""
    word_ids: tuple[int, int, int]

    def encode_image(self, images):
        return _norm(images.astype(jnp.float32).mean((1, 2)) / 255.0)

    def encode_text(self, tokens):
        return _norm(jnp.stack([(tokens == i).sum(-1) for i in self.word_ids], -1).astype(jnp.float32))

    def __call__(self, images, tokens):
        return self.encode_image(images), self.encode_text(tokens)


def _norm(x):
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def make_evaluator(entries, tmp_path=None, **evals):
    config = config_lib.default_config()
    config.model.image.image_size = config.data.image_size = SIZE
    config.evals.batch_size = 8
    for name, e in entries.items():
        config.evals.suite[name] = e
    for k, v in evals.items():
        config.evals[k] = v
    tok = ClipTokenizer()
    model = Oracle(tuple(tok.encode(w)[0] for w in ("red", "green", "blue")))
    mesh = sharding.make_mesh(config.mesh)
    return suite.SuiteEvaluator(config, model, mesh, {}, report_dir=str(tmp_path) if tmp_path else None)


def test_zeroshot_accuracy_hand_computed(data_dir, tmp_path):
    templates = tmp_path / "templates.txt"
    templates.write_text("a photo of a {}.\na {} thing.\n")
    ev = make_evaluator({"colours": suite.zeroshot("tiny_colours", data_dir=data_dir, templates=str(templates),
                                                   per_class=True)}, tmp_path)
    m = ev({}, step=10, total=10)  # the last step runs every entry
    # correct: items 0, 1, 2, 3, 6, 8 -> 6 of 10; per class red 3/4, green 1/4, blue 2/2
    assert m["colours/top1"] == pytest.approx(0.6)
    assert m["colours/top5"] == 1.0
    assert m["colours/mean_per_class_top1"] == pytest.approx((0.75 + 0.25 + 1.0) / 3)
    assert m["colours/num_examples"] == 10 and "skipped" not in m
    expected = {"red": {"top1": 0.75, "count": 4}, "green": {"top1": 0.25, "count": 4},
                "blue": {"top1": 1.0, "count": 2}}
    assert ev.tables["colours"] == expected
    assert json.load(open(tmp_path / "per_class_colours_10.json")) == expected


def test_zeroshot_subset_and_present_classes(data_dir):
    ev = make_evaluator({"few": suite.zeroshot("tiny_colours", data_dir=data_dir, num_examples=4)})
    m = ev({})
    assert m["few/num_examples"] == 4 and m["few/num_classes"] == 3
    assert classnames.dataset_info("imagenet_r").present_classes_only
    assert not classnames.dataset_info("imagenet2012").present_classes_only


def test_retrieval_recall_hand_computed(data_dir):
    ev = make_evaluator({"caps": suite.retrieval("tiny_colour_captions", data_dir=data_dir, captions_per_image=-1)})
    m = ev({})
    # t2i: 'a blue thing' ranks its red image 3rd, img 3's 'green' loses to the green image -> 3 of 5 at R@1
    # i2t: the blue image's own caption 'green' is beaten by 'a blue thing' and 'red and blue' -> 3 of 4 at R@1
    assert (m["caps/t2i_r1"], m["caps/t2i_r5"]) == (pytest.approx(0.6), 1.0)
    assert (m["caps/i2t_r1"], m["caps/i2t_r5"]) == (pytest.approx(0.75), 1.0)
    assert (m["caps/num_images"], m["caps/num_texts"]) == (4, 5)
    first = make_evaluator({"caps": suite.retrieval("tiny_colour_captions", data_dir=data_dir,
                                                    captions_per_image=1)})({})
    assert first["caps/num_texts"] == 4 and first["caps/t2i_r1"] == pytest.approx(0.75)  # 'a blue thing' dropped


def test_tasks_key_adds_default_entries_and_cadence(data_dir):
    ev = make_evaluator({"caps": suite.retrieval("tiny_colour_captions", data_dir=data_dir, every_steps=3)},
                        tasks="tiny_colours", data_dir=data_dir, every_steps=2)
    assert set(ev.tasks) == {"caps", "tiny_colours"}
    assert ev.entries["tiny_colours"].kind == "zeroshot" and ev.entries["tiny_colours"].data_dir == data_dir
    assert [s for s in range(1, 8) if ev.due(s, total=7)] == [2, 3, 4, 6, 7]
    assert set(ev({}, step=3, total=7)) == {k for k in ev({}) if k.startswith("caps/")}
    assert ev({}, step=4, total=7)["tiny_colours/top1"] == pytest.approx(0.6)


def test_default_is_builtin_and_bad_entries_fail_naming_the_key(data_dir):
    config = config_lib.default_config()
    assert set(suite.entries(config.evals)) == {"builtin"}
    config.evals.suite.bad = suite.zeroshot("tiny_colours")
    config.evals.suite.bad.unknown = 1
    with pytest.raises(KeyError, match=r"config.evals.suite.bad: .*unknown \['unknown'\]"):
        validation.validate(config)
    with pytest.raises(FileNotFoundError, match="config.evals.suite.missing"):
        make_evaluator({"missing": suite.zeroshot("tiny_colours", data_dir=os.path.join(data_dir, "nope"))})


def test_imagenet_classnames_and_templates_ship():
    info = classnames.dataset_info("imagenet2012")
    names = classnames.resolve_classnames(info.classnames, None)
    assert len(names) == 1000 and len(set(names)) >= 998 and names[0] == "tench"
    assert len(classnames.templates(info.templates)) == 80
    assert all("{}" in t for t in classnames.templates("imagenet"))
    assert classnames.dataset_info("imagenet_v2").classnames == "imagenet"
    assert classnames.clean("/b/bakery/shop") == "bakery shop" and classnames.clean("golden_retriever") == \
        "golden retriever"
    assert len(classnames.resolve_classnames("eurosat", None)) == 10


def test_mode_eval_runs_the_suite_on_converted_weights(data_dir, tmp_path):
    """convert_weights output -> configs/from_converted.py -> evaluate_checkpoint (what `--mode eval` runs): the
    report holds every entry, and the zero-shot accuracy equals the one computed directly with the same params."""
    import importlib.util

    from clipjax import train
    from clipjax.evaluate import zeroshot
    from clipjax.interop import files
    from clipjax.models import clip
    from tests.helpers import REPO
    from tests.test_interop import random_params, tiny_model

    model_cfg = tiny_model()
    params = random_params(model_cfg, seed=3)
    files.save_clipjax(str(tmp_path / "converted"), params, model_cfg)
    spec = importlib.util.spec_from_file_location("from_converted", REPO / "configs" / "from_converted.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(str(tmp_path / "converted"))
    config.evals.suite.colours = suite.zeroshot("tiny_colours", data_dir=data_dir, per_class=True)
    config.evals.tasks, config.evals.data_dir = "tiny_colour_captions", data_dir
    train.evaluate_checkpoint(config, str(tmp_path / "workdir"))
    report = json.load(open(tmp_path / "workdir" / "eval_0.json"))
    assert report["step"] == 0 and set(report["per_class"]["colours"]) == {"red", "green", "blue"}
    assert 0 <= report["eval/tiny_colour_captions/t2i_r1"] <= 1 and report["eval/tiny_colour_captions/num_texts"] == 5
    # the same accuracy computed directly (solid colours stay solid through the eval resize)
    m = clip.build_model(model_cfg)
    variables = {"params": pytree.unflatten({k: jnp.asarray(v) for k, v in params.items()})}
    s = model_cfg.image.image_size
    images = np.stack([np.full((s, s, 3), c, np.uint8) for c, _ in CLASSIFIED])
    zimg = np.asarray(m.apply(variables, images, method=m.encode_image))
    tok = ClipTokenizer()
    encode = lambda t: np.asarray(m.apply(variables, tok(t, context_length=model_cfg.text.context_length),
                                          method=m.encode_text))
    cls = zeroshot.class_embeddings(encode, ["red", "green", "blue"], classnames.templates("generic"))
    expected = zeroshot.topk_accuracy(zimg, cls, np.array([lab for _, lab in CLASSIFIED]))
    assert report["eval/colours/top1"] == pytest.approx(expected["top1"])
