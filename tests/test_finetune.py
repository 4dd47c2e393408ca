"""Multi-stage training: position-embedding adaptation and a fine-tune stage started from another resolution."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clipjax import finetune, train
from clipjax.models import clip
from tests.test_train import small_config


def test_image_pos_resize_is_identity_at_the_same_size_and_bilinear_otherwise():
    pos = jax.random.normal(jax.random.PRNGKey(0), (16, 8))
    np.testing.assert_allclose(finetune.resize_image_pos(pos, 16), pos, atol=1e-6)
    ramp = jnp.broadcast_to(jnp.arange(4.0)[None, :, None], (4, 4, 2)).reshape(16, 2)  # value = column index
    up = np.asarray(finetune.resize_image_pos(ramp, 64)).reshape(8, 8, 2)
    np.testing.assert_allclose(up[0, :, 0], [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3], atol=1e-6)
    np.testing.assert_allclose(up[:, 3, 1], 1.25, atol=1e-6)       # constant along rows


def test_text_pos_modes():
    old, fresh = jnp.ones((4, 6)), jnp.zeros((8, 6))
    np.testing.assert_allclose(finetune.resize_text_pos(old, fresh, "resize"), np.ones((8, 6)), atol=1e-6)
    ext = np.asarray(finetune.resize_text_pos(old, fresh, "extend"))
    assert (ext[:4] == 1).all() and (ext[4:] == 0).all()
    assert (np.asarray(finetune.resize_text_pos(old, fresh, "reinit")) == 0).all()
    same = jax.random.normal(jax.random.PRNGKey(1), (8, 6))
    np.testing.assert_allclose(finetune.resize_text_pos(same, fresh, "resize"), same, atol=1e-6)


def _init(config):
    model = clip.build_model(config.model)
    h, length = config.data.image_size, config.data.text_length
    params = jax.jit(lambda r: clip.nn.meta.unbox(model.init(r, jnp.zeros((2, h, h, 3), jnp.uint8),
                                                             jnp.zeros((2, length), jnp.int32))["params"]))(
        jax.random.PRNGKey(0))
    return model, params


def test_adapt_params_leaves_the_function_unchanged_when_sizes_match():
    config = small_config()
    config.model.image.pos_emb = "learn"
    model, params = _init(config)
    adapted = finetune.adapt_params(params, jax.tree.map(jnp.zeros_like, params))
    images = jax.random.randint(jax.random.PRNGKey(2), (2, 16, 16, 3), 0, 256).astype(jnp.uint8)
    text = jnp.array([[49406, 320, 1929, 49407, 0, 0, 0, 0]] * 2, jnp.int32)
    apply = jax.jit(lambda p: model.apply({"params": p}, images, text))
    a, b = apply(params), apply(adapted)
    for k in ("zimg", "ztxt"):
        np.testing.assert_allclose(a[k], b[k], atol=1e-6)


def test_adapt_params_rejects_other_differences():
    config = small_config()
    _, params = _init(config)
    config.model.embed_dim = 16
    _, other = _init(config)
    with pytest.raises(ValueError, match="only position embeddings may differ"):
        finetune.adapt_params(params, other)
    with pytest.raises(FileNotFoundError, match="config.init_from"):
        finetune.resolve_step_dir("/nonexistent/run")


@pytest.mark.slow
def test_finetune_stage_loads_a_checkpoint_of_another_resolution_and_trains(tmp_path):
    pre = small_config(total_steps=4, checkpoint__every_steps=4, data__image_size=16, data__text_length=6,
                       tokens__image_strategy="random", tokens__image_keep_ratio=0.5, tokens__text_strategy="syntax")
    pre.model.image.pos_emb = "learn"
    train.train_and_evaluate(pre, str(tmp_path / "pre"))

    ft = small_config(total_steps=3, checkpoint__every_steps=3, data__image_size=32, data__text_length=8)
    ft.model.image.pos_emb = "learn"
    ft.init_from = str(tmp_path / "pre")
    ft.init_text_pos = "extend"
    # What the stage starts from: the pre-training params, position embeddings adapted.
    trainer = train.Trainer(ft)
    fresh = trainer.init_state(ft.data.size).params
    loaded = finetune.init_params_from(ft.init_from, fresh, trainer.mesh, ft.init_text_pos)
    saved = finetune.load_params(finetune.resolve_step_dir(str(tmp_path / "pre" / "checkpoints")), {}, trainer.mesh)
    assert loaded["image"]["pos_embedding"].shape == (16, 64) and saved["image"]["pos_embedding"].shape == (4, 64)
    np.testing.assert_allclose(loaded["image"]["encoder"]["block0"]["mlp"]["fc1"]["kernel"],
                               saved["image"]["encoder"]["block0"]["mlp"]["fc1"]["kernel"])
    np.testing.assert_allclose(loaded["text"]["pos_embedding"][:6], saved["text"]["pos_embedding"])
    np.testing.assert_allclose(loaded["text"]["pos_embedding"][6:], fresh["text"]["pos_embedding"][6:])
    grid = np.asarray(loaded["image"]["pos_embedding"]).reshape(4, 4, 64)
    np.testing.assert_allclose(grid.mean(axis=(0, 1)), np.asarray(saved["image"]["pos_embedding"]).mean(0), atol=1e-5)

    final = train.train_and_evaluate(ft, str(tmp_path / "ft"))
    assert np.isfinite(final["train/loss"]) and "eval/zeroshot_top1" in final
    with open(os.path.join(tmp_path / "ft", "metrics.jsonl")) as f:
        assert [json.loads(line)["step"] for line in f if "train/loss" in line] == [1, 2, 3]
