"""Two-tower contrastive losses: CLIP softmax (InfoNCE) and SigLIP sigmoid, over the global batch.

`softmax_loss` and `sigmoid_loss` run INSIDE `jax.shard_map`: each device holds its local rows
zimg, ztxt [b, D] (float32, L2-normalised) and `axis_name` names the mesh axis (or tuple of axes) the
global batch B = n * b is split over. Device k along `axis_name` (row-major over a tuple of axes, the
same order `P(axis_name)` shards with and `all_gather(..., tiled=True)` concatenates in) holds global
rows [k*b, (k+1)*b). `sharded` wraps either loss for a mesh; the `*_reference` twins compute the same
values from the global [B, D] arrays without a mesh.

Logits are computed in float32 at HIGHEST matmul precision (on TPU the default would round the
operands to bfloat16, an error of ~1e-2 * t in the logits); the matmuls are O(b * B * D), cheap next
to the towers.
"""
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from clipjax import config as config_lib
from clipjax.losses import registry

AxisName = str | tuple[str, ...]


def _scores(a: jax.Array, b: jax.Array, scale: jax.Array) -> jax.Array:
    """scale * a @ b.T in float32: [m, D] x [n, D] -> [m, n]."""
    dots = jnp.dot(a.astype(jnp.float32), b.astype(jnp.float32).T,
                   precision=jax.lax.Precision.HIGHEST)
    return scale * dots


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-row -log softmax(logits)[label]: [m, n], [m] -> [m]."""
    picked = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    return jax.nn.logsumexp(logits, axis=1) - picked


def softmax_loss(zimg: jax.Array, ztxt: jax.Array, logit_scale: jax.Array, *,
                 axis_name: AxisName) -> tuple[jax.Array, dict]:
    """CLIP InfoNCE over the global batch, inside shard_map.

    t = exp(logit_scale). Device k scores its rows against the all-gathered ones:
      L_i2t[i] = logsumexp_j(t zimg_i . ZTXT_j) - t zimg_i . ZTXT_{k*b+i}   (logits [b, B])
      L_t2i[i] = logsumexp_j(t ztxt_i . ZIMG_j) - t ztxt_i . ZIMG_{k*b+i}
      loss = (mean_global L_i2t + mean_global L_t2i) / 2
    Args: zimg, ztxt [b, D] local features; logit_scale scalar (replicated).
    Returns: the global mean loss (identical on every device) and metrics
      {'accuracy_i2t', 'accuracy_t2i'}: fraction of rows whose argmax is the positive.
    The gradient flows through all_gather (its transpose is psum_scatter).
    """
    b = zimg.shape[0]
    t = jnp.exp(jnp.asarray(logit_scale, jnp.float32))
    all_img = jax.lax.all_gather(zimg, axis_name, tiled=True)  # [B, D]
    all_txt = jax.lax.all_gather(ztxt, axis_name, tiled=True)  # [B, D]
    labels = jax.lax.axis_index(axis_name) * b + jnp.arange(b)  # global column of the positive
    logits_i2t = _scores(zimg, all_txt, t)  # [b, B]
    logits_t2i = _scores(ztxt, all_img, t)  # [b, B]
    loss = 0.5 * jax.lax.pmean(
        jnp.mean(_cross_entropy(logits_i2t, labels)) + jnp.mean(_cross_entropy(logits_t2i, labels)),
        axis_name)
    metrics = {
        "accuracy_i2t": jax.lax.pmean(jnp.mean(jnp.argmax(logits_i2t, axis=1) == labels), axis_name),
        "accuracy_t2i": jax.lax.pmean(jnp.mean(jnp.argmax(logits_t2i, axis=1) == labels), axis_name),
    }
    return loss, metrics


def sigmoid_loss(zimg: jax.Array, ztxt: jax.Array, logit_scale: jax.Array, logit_bias: jax.Array,
                 *, axis_name: AxisName) -> tuple[jax.Array, dict]:
    """SigLIP sigmoid loss over the global batch, inside shard_map, chunked over a ring of devices.

    logits_ij = t zimg_i . ztxt_j + bias, t = exp(logit_scale); label_ij = +1 if i == j else -1;
      loss = -(1/B) sum_{i,j} log_sigmoid(label_ij * logits_ij)   (i, j over the global batch B = n*b)
    Device k first scores its images against its own texts (the diagonal block); then, n-1 times, the
    text block moves one step along the ring (ppermute k -> k+1 mod n) and the local images are scored
    against it (all labels -1). Memory per step is one [b, b] block. The loop is a `fori_loop`, so the
    program size does not grow with n. Gradients flow back through ppermute (its transpose is the
    inverse permutation).
    Args: zimg, ztxt [b, D] local features; logit_scale, logit_bias scalars (replicated).
    Returns: the global loss (identical on every device) and metrics {'accuracy_i2t'}: fraction of
      images whose positive logit exceeds every negative logit in its row.
    """
    b = zimg.shape[0]
    n = jax.lax.axis_size(axis_name)
    t = jnp.exp(jnp.asarray(logit_scale, jnp.float32))
    bias = jnp.asarray(logit_bias, jnp.float32)
    ring = [(k, (k + 1) % n) for k in range(n)]
    eye = jnp.eye(b, dtype=bool)

    diag = _scores(zimg, ztxt, t) + bias  # [b, b], positives on the diagonal
    loss = -jnp.sum(jax.nn.log_sigmoid(jnp.where(eye, diag, -diag)))
    max_neg = jnp.max(jnp.where(eye, -jnp.inf, diag), axis=1)  # [b] hardest negative so far

    def step(_, carry):
        txt, loss, max_neg = carry
        txt = jax.lax.ppermute(txt, axis_name, ring)
        logits = _scores(zimg, txt, t) + bias  # [b, b], all negatives
        loss = loss - jnp.sum(jax.nn.log_sigmoid(-logits))
        return txt, loss, jnp.maximum(max_neg, jnp.max(logits, axis=1))

    _, loss, max_neg = jax.lax.fori_loop(0, n - 1, step, (ztxt, loss, max_neg))
    loss = jax.lax.psum(loss, axis_name) / (n * b)
    correct = jnp.diagonal(diag) > max_neg
    return loss, {"accuracy_i2t": jax.lax.pmean(jnp.mean(correct), axis_name)}


def softmax_loss_reference(zimg: jax.Array, ztxt: jax.Array, logit_scale: jax.Array) -> jax.Array:
    """Unsharded `softmax_loss` on global zimg, ztxt [B, D]: mean of the two [B, B] cross-entropies."""
    logits = _scores(zimg, ztxt, jnp.exp(logit_scale))
    labels = jnp.arange(logits.shape[0])
    return 0.5 * (jnp.mean(_cross_entropy(logits, labels)) + jnp.mean(_cross_entropy(logits.T, labels)))


def sigmoid_loss_reference(zimg: jax.Array, ztxt: jax.Array, logit_scale: jax.Array,
                           logit_bias: jax.Array) -> jax.Array:
    """Unsharded `sigmoid_loss` on global zimg, ztxt [B, D]: one [B, B] block."""
    logits = _scores(zimg, ztxt, jnp.exp(logit_scale)) + logit_bias
    labels = 2.0 * jnp.eye(logits.shape[0]) - 1.0
    return -jnp.sum(jax.nn.log_sigmoid(labels * logits)) / logits.shape[0]


def sharded(loss_fn: Callable[..., tuple[jax.Array, dict]], mesh: Mesh,
            batch_axes: Sequence[str] = ("data", "fsdp")) -> Callable[..., tuple[jax.Array, dict]]:
    """Wrap `softmax_loss` / `sigmoid_loss` for `mesh`: f(zimg, ztxt, *scalars) -> (loss, metrics).

    zimg, ztxt are global [B, D] arrays split along dim 0 over `batch_axes`; the scalars (logit_scale,
    logit_bias) are replicated; mesh axes outside `batch_axes` (e.g. 'tensor') see replicated inputs.
    The outputs are replicated scalars. check_vma stays on (the jax 0.10 default): it verifies that the
    outputs really are replicated and makes the scalar gradients come back psum'd over the batch axes.
    """
    axes = tuple(batch_axes)

    def f(zimg: jax.Array, ztxt: jax.Array, *scalars: jax.Array) -> tuple[jax.Array, dict]:
        in_specs = (P(axes), P(axes)) + (P(),) * len(scalars)
        body = lambda *args: loss_fn(*args, axis_name=axes)  # noqa: E731
        return jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=(P(), P()))(
            zimg, ztxt, *scalars)

    return f


def _make_clip(config, mesh: Mesh) -> registry.LossFn:
    fn = sharded(softmax_loss, mesh)
    return lambda out, batch, loss_state, step: (*fn(out["zimg"], out["ztxt"], out["logit_scale"]), loss_state)


def _make_siglip(config, mesh: Mesh) -> registry.LossFn:
    fn = sharded(sigmoid_loss, mesh)
    return lambda out, batch, loss_state, step: (
        *fn(out["zimg"], out["ztxt"], out["logit_scale"], out["logit_bias"]), loss_state)


def _validate_siglip(config) -> None:
    config_lib.require(config.model.logit_bias_init is not None, config, "model.logit_bias_init",
                       "a float for loss 'siglip' (e.g. -10)")


registry.register(registry.LossSpec("clip", _make_clip))
registry.register(registry.LossSpec("siglip", _make_siglip, validate=_validate_siglip))
