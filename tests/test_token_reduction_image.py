"""Image token reduction: counts, geometry, randomness, CLS, gradients through the train step."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clipjax import config as config_lib, sharding, token_reduction, train, validation
from clipjax.token_reduction import image as image_reduction
from clipjax.data import pipeline
from clipjax.models import clip
from tests.test_train import small_config

RNG = jax.random.PRNGKey(0)


@pytest.mark.parametrize("strategy,grid,ratio,count,expect", [
    ("random", (14, 14), 0.5, -1, 98), ("random", (14, 14), 0.25, -1, 49), ("random", (4, 6), 1.0, 5, 5),
    ("grid", (14, 14), 0.25, -1, 49), ("grid", (8, 8), 1 / 16, -1, 4), ("grid", (7, 7), 0.25, 9, 9),
    ("block", (14, 14), 0.25, -1, 49), ("block", (8, 8), 0.5, -1, 32), ("block", (4, 6), 1.0, 12, 12)])
def test_kept_counts_exact(strategy, grid, ratio, count, expect):
    assert image_reduction.kept_count(strategy, *grid, ratio, count) == expect
    keep = np.asarray(image_reduction.patch_keep(RNG, strategy, 16, *grid, ratio, count))
    assert keep.shape == (16, expect) and keep.dtype == np.int32
    for row in keep:
        assert len(set(row.tolist())) == expect and row.min() >= 0 and row.max() < grid[0] * grid[1]
        assert (np.diff(row) > 0).all()  # sorted, unique


def test_counts_the_strategy_cannot_give_fail_clearly():
    with pytest.raises(ValueError, match="keeps one of"):
        image_reduction.kept_count("grid", 14, 14, 0.3)
    with pytest.raises(ValueError, match="outside"):
        image_reduction.kept_count("random", 4, 4, keep_count=17)
    assert image_reduction.block_shape(14, 14, 147) == (12, 12)  # no 147-rectangle fits: the nearest one
    config = small_config()
    config.tokens.image_strategy, config.tokens.image_keep_ratio = "grid", 0.5  # 2 of 2x2
    with pytest.raises(ValueError, match="config.tokens"):
        validation.validate(config)
    config.tokens.image_strategy = "checkerboard"
    with pytest.raises(ValueError, match="tokens.image_strategy"):
        validation.validate(config)


def test_grid_geometry():
    gh, gw, s = 8, 12, 2
    keep = np.asarray(image_reduction.patch_keep(RNG, "grid", 64, gh, gw, keep_count=(gh // s) * (gw // s)))
    offsets = set()
    for row in keep:
        r, c = np.divmod(row, gw)
        windows = set(zip((r // s).tolist(), (c // s).tolist()))
        assert len(windows) == len(row) == (gh // s) * (gw // s)   # exactly one patch per s x s window
        off = {(int(a), int(b)) for a, b in zip(r % s, c % s)}
        assert len(off) == 1                                        # the same offset in every window
        offsets |= off
    assert offsets == {(0, 0), (0, 1), (1, 0), (1, 1)}              # offsets random per sample


def test_block_geometry():
    gh, gw = 7, 9
    keep = np.asarray(image_reduction.patch_keep(RNG, "block", 64, gh, gw, keep_count=12))
    bh, bw = image_reduction.block_shape(gh, gw, 12)
    assert (bh, bw) == (3, 4)
    corners = set()
    for row in keep:
        r, c = np.divmod(row, gw)
        top, left = r.min(), c.min()
        expect = {(top + i, left + j) for i in range(bh) for j in range(bw)}
        assert set(zip(r.tolist(), c.tolist())) == expect and top + bh <= gh and left + bw <= gw
        corners.add((int(top), int(left)))
    assert len(corners) > 10


@pytest.mark.parametrize("strategy", ["random", "grid", "block"])
def test_per_sample_masks_and_determinism(strategy):
    a = np.asarray(image_reduction.patch_keep(RNG, strategy, 32, 8, 8, 0.25))
    b = np.asarray(image_reduction.patch_keep(RNG, strategy, 32, 8, 8, 0.25))
    c = np.asarray(image_reduction.patch_keep(jax.random.PRNGKey(1), strategy, 32, 8, 8, 0.25))
    np.testing.assert_array_equal(a, b)                     # same rng, same mask
    assert len({tuple(r) for r in a.tolist()}) > 1           # samples differ
    assert not np.array_equal(a, c)                          # another rng, other masks
    assert image_reduction.patch_keep(RNG, "none", 32, 8, 8) is None


def _tiny_model(pos_emb="learn", pool="tok"):
    config = small_config()
    config.model.image.pos_emb, config.model.image.pool = pos_emb, pool
    model = clip.build_model(config.model)
    images = jax.random.randint(RNG, (2, 16, 16, 3), 0, 256).astype(jnp.uint8)
    text = jnp.array([[49406, 320, 1929, 49407, 0, 0, 0, 0]] * 2, jnp.int32)
    params = jax.jit(lambda r: jax.tree.map(lambda x: x, clip.nn.meta.unbox(model.init(r, images, text))))(RNG)
    return model, params, images, text


def test_cls_kept_and_only_kept_patches_matter():
    model, params, images, _ = _tiny_model()
    keep = jnp.array([[0, 3], [1, 2]], jnp.int32)        # a 2x2 grid of 8-px patches; keep 2 of 4
    _, inter = jax.jit(lambda p: model.apply(p, images, keep, method=model.encode_image,
                                             capture_intermediates=True))(params)
    tokens_in = inter["intermediates"]["image"]["encoder"]["block0"]["__call__"][0]
    assert tokens_in.shape[1] == 3                        # K + CLS

    def f(images_f, cls):
        p = {**params["params"], "image": {**params["params"]["image"], "cls": cls}}
        return model.apply({"params": p}, images_f, keep, method=model.encode_image).sum()

    g_img, g_cls = jax.jit(jax.grad(f, argnums=(0, 1)))(images.astype(jnp.float32), params["params"]["image"]["cls"])
    assert np.abs(np.asarray(g_cls)).sum() > 0           # the CLS token is in the computation ('tok' pooling)
    patch_grad = np.abs(np.asarray(g_img)).reshape(2, 2, 8, 2, 8, 3).sum(axis=(2, 4, 5)).reshape(2, 4)
    kept = np.zeros((2, 4), bool)
    kept[[0, 0, 1, 1], [0, 3, 1, 2]] = True
    assert (patch_grad[kept] > 0).all() and (patch_grad[~kept] == 0).all()


def test_train_step_masks_and_gradients_reach_only_kept_tokens():
    """One step through the Trainer's jitted train step with random masking of a learned position embedding:
    the rows of the embedding that change are exactly the union of the kept patches of the batch."""
    config = small_config(batch_size=8, mesh__data=8, data__image_size=32, optim__schedule="constant",
                          optim__warmup_steps=0)
    config.model.image.image_size, config.model.image.pos_emb = 32, "learn"
    config.tokens.image_strategy, config.tokens.image_keep_ratio = "random", 0.125
    trainer = train.Trainer(config, sharding.make_mesh(config.mesh, jax.devices()))
    it, size = pipeline.make_train_iterator(config, 0, 1)
    state = trainer.init_state(size)
    before = np.asarray(state.params["image"]["pos_embedding"])
    rng = jax.device_get(state.rng)
    state, metrics = trainer.step_fn(state, sharding.global_batch(next(it), trainer.mesh))
    assert np.isfinite(float(metrics["train/loss"]))
    changed = np.abs(np.asarray(state.params["image"]["pos_embedding"]) - before).sum(axis=1) > 0
    keep = np.asarray(token_reduction.patch_keep_fn(config)(train.tokens_rng(jax.random.split(rng)[1]), 8))
    assert keep.shape == (8, 2)                            # 4x4 patches of 8 px at 32 px, keep 1/8
    expect = np.zeros(16, bool)
    expect[keep.ravel()] = True
    np.testing.assert_array_equal(changed, expect)
    assert not expect.all()
