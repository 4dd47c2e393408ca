"""Contrastive losses: sharded (shard_map over 8 CPU devices) against the unsharded reference formulas."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from clipjax.losses import contrastive as C

B_LOCAL, D = 4, 16
BATCH_AXES = ("data", "fsdp")
MESH_SHAPES = [(8, 1, 1), (2, 4, 1), (1, 8, 1), (2, 2, 2)]


def _features(key, batch, dim=D):
    """Two [batch, dim] L2-normalised float32 arrays, mildly correlated row by row."""
    k1, k2 = jax.random.split(key)
    zimg = jax.random.normal(k1, (batch, dim))
    ztxt = zimg + 1.5 * jax.random.normal(k2, (batch, dim))
    norm = lambda x: x / jnp.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    return norm(zimg), norm(ztxt)


@functools.lru_cache(maxsize=None)
def _mesh(shape):
    return jax.make_mesh(shape, ("data", "fsdp", "tensor"),
                         axis_types=(jax.sharding.AxisType.Auto,) * 3)


# (sharded loss, reference, scalars: logit_scale [, logit_bias])
LOSSES = {
    "softmax": (C.softmax_loss, C.softmax_loss_reference, (jnp.log(10.0),)),
    "sigmoid": (C.sigmoid_loss, C.sigmoid_loss_reference, (jnp.log(10.0), jnp.asarray(-5.0))),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("shape", MESH_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_value_and_grad_match_reference(name, shape):
    loss_fn, reference, scalars = LOSSES[name]
    mesh = _mesh(shape)
    n = shape[0] * shape[1]
    zimg, ztxt = _features(jax.random.key(0), n * B_LOCAL)
    batch = NamedSharding(mesh, P(BATCH_AXES))
    zimg_s, ztxt_s = jax.device_put((zimg, ztxt), batch)
    f = C.sharded(loss_fn, mesh, BATCH_AXES)
    argnums = tuple(range(2 + len(scalars)))

    (loss, metrics), grads = jax.jit(jax.value_and_grad(f, argnums, has_aux=True))(
        zimg_s, ztxt_s, *scalars)
    ref_loss, ref_grads = jax.value_and_grad(reference, argnums)(zimg, ztxt, *scalars)

    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-7)
    assert grads[0].sharding.is_equivalent_to(batch, 2)
    assert 0.0 <= float(metrics["accuracy_i2t"]) <= 1.0


def test_accuracy_matches_global_argmax():
    zimg, ztxt = _features(jax.random.key(1), 8 * B_LOCAL)
    mesh = _mesh((2, 4, 1))
    logits = zimg @ ztxt.T
    want_i2t = np.mean(np.argmax(logits, axis=1) == np.arange(len(zimg)))
    want_t2i = np.mean(np.argmax(logits, axis=0) == np.arange(len(zimg)))
    assert 0.0 < want_i2t < 1.0  # the check below could fail
    _, m = C.sharded(C.softmax_loss, mesh)(zimg, ztxt, jnp.log(10.0))
    np.testing.assert_allclose(m["accuracy_i2t"], want_i2t)
    np.testing.assert_allclose(m["accuracy_t2i"], want_t2i)
    _, m = C.sharded(C.sigmoid_loss, mesh)(zimg, ztxt, jnp.log(10.0), jnp.asarray(-5.0))
    np.testing.assert_allclose(m["accuracy_i2t"], want_i2t)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_perfect_alignment_large_scale_is_near_zero(name):
    loss_fn, _, scalars = LOSSES[name]
    # Orthonormal rows: positives score 1, negatives 0. t = 100; sigmoid bias -50 puts both at |50|.
    z = jnp.eye(8 * B_LOCAL, 8 * B_LOCAL + 3)
    scalars = (jnp.log(100.0),) + ((jnp.asarray(-50.0),) if len(scalars) == 2 else ())
    loss, metrics = C.sharded(loss_fn, _mesh((2, 4, 1)))(z, z, *scalars)
    assert float(loss) < 1e-6
    assert float(metrics["accuracy_i2t"]) == 1.0


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_shuffling_texts_increases_loss(name):
    loss_fn, _, scalars = LOSSES[name]
    zimg, ztxt = _features(jax.random.key(2), 8 * B_LOCAL)
    f = C.sharded(loss_fn, _mesh((8, 1, 1)))
    aligned, _ = f(zimg, ztxt, *scalars)
    shuffled, _ = f(zimg, jnp.roll(ztxt, 3, axis=0), *scalars)
    assert float(shuffled) > float(aligned) + 0.5


def test_one_device_mesh_equals_reference():
    zimg, ztxt = _features(jax.random.key(3), 2 * B_LOCAL)
    mesh = jax.make_mesh((1, 1, 1), ("data", "fsdp", "tensor"), devices=jax.devices()[:1],
                         axis_types=(jax.sharding.AxisType.Auto,) * 3)
    for loss_fn, reference, scalars in LOSSES.values():
        loss, _ = C.sharded(loss_fn, mesh)(zimg, ztxt, *scalars)
        np.testing.assert_allclose(loss, reference(zimg, ztxt, *scalars), rtol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1, 1), (8, 1, 1), (2, 4, 1)])
def test_caption_contrastive_matches_reference_values_and_gradients(shape):
    """LLM2CLIP stage-1 CC loss (query -> documents and hard negatives of the global batch, cosine x 50) on 1 and 8
    devices equals the plain formula, values and gradients through the gather."""
    from clipjax.losses import caption_contrastive as CC
    n = math.prod(shape)
    mesh = jax.make_mesh(shape, ("data", "fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 3,
                         devices=jax.devices()[:n])
    q, d = _features(jax.random.PRNGKey(3), 8)
    neg, _ = _features(jax.random.PRNGKey(4), 8)
    axes = ("data", "fsdp")
    sharded = jax.shard_map(functools.partial(CC.caption_contrastive_loss, axis_name=axes), mesh=mesh,
                            in_specs=(P(axes),) * 3, out_specs=(P(), P()))
    value, grads = jax.value_and_grad(lambda *a: sharded(*a)[0], argnums=(0, 1, 2))(q, d, neg)
    ref, ref_grads = jax.value_and_grad(CC.caption_contrastive_reference, argnums=(0, 1, 2))(q, d, neg)
    np.testing.assert_allclose(value, ref, rtol=1e-5)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6)
    assert float(ref) > 0 and float(jnp.abs(ref_grads[2]).sum()) > 0  # hard negatives receive gradient
