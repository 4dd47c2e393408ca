"""SLIP's self-supervised term (arXiv 2112.12750, section 3): SimCLR's NT-Xent on two augmented views, over the
global batch, added to any image-text loss as `loss.ssl_scale` * NT-Xent.

`nt_xent_loss` runs INSIDE `jax.shard_map`: device k holds its local rows a, b [n, D] (the SimCLR head outputs
of views 1 and 2; n local, N = global rows) and scores them against the all-gathered A, B [N, D], so memory is
O(n x 2N). With unit-norm rows and temperature tau (SimCLR arXiv 2002.05709 eq. 1; SLIP's loss averages the
two anchor directions):
  L_a[i] = -log softmax([a_i.B / tau, a_i.A / tau with a_i.a_i masked])[g]   (g = global row of i)
  L_b[i] = -log softmax([b_i.A / tau, b_i.B / tau with b_i.b_i masked])[g]
  loss = (mean_global L_a + mean_global L_b) / 2
The gradient flows back through all_gather (its transpose is psum_scatter), so each device's rows receive the
gradient of the whole global loss. `nt_xent_reference` is the same formula on the global arrays, one device.
"""
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from clipjax.losses.contrastive import AxisName, _cross_entropy, _scores

_MASKED = -1e9  # a self-similarity's logit (excluded from the softmax)


def _unit(x: jax.Array) -> jax.Array:
    x = x.astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def _anchor_loss(q: jax.Array, same: jax.Array, other: jax.Array, labels: jax.Array, inv_tau: float
                 ) -> tuple[jax.Array, jax.Array]:
    """Per-row NT-Xent of anchors q [n, D] against [other, same] [N, D] each; labels [n] global rows.
    Returns (loss [n], correct [n] bool)."""
    pos_block = _scores(q, other, inv_tau)                             # [n, N], positive at column label
    self_block = _scores(q, same, inv_tau)                             # [n, N], own row masked
    self_block = jnp.where(jnp.arange(same.shape[0])[None, :] == labels[:, None], _MASKED, self_block)
    logits = jnp.concatenate([pos_block, self_block], axis=1)          # [n, 2N]
    return _cross_entropy(logits, labels), jnp.argmax(logits, axis=1) == labels


def nt_xent_loss(a: jax.Array, b: jax.Array, *, temperature: float, axis_name: AxisName
                 ) -> tuple[jax.Array, dict]:
    """NT-Xent over the global batch, inside shard_map. a, b [n, D] local head outputs (any norm; normalised
    here). Returns the global mean loss (replicated) and {'ssl_accuracy'}: fraction of anchors whose argmax
    over the 2N - 1 candidates is the other view of the same image."""
    a, b = _unit(a), _unit(b)
    n = a.shape[0]
    all_a = jax.lax.all_gather(a, axis_name, tiled=True)  # [N, D]
    all_b = jax.lax.all_gather(b, axis_name, tiled=True)
    labels = jax.lax.axis_index(axis_name) * n + jnp.arange(n)
    loss_a, hit_a = _anchor_loss(a, all_a, all_b, labels, 1.0 / temperature)
    loss_b, hit_b = _anchor_loss(b, all_b, all_a, labels, 1.0 / temperature)
    loss = 0.5 * jax.lax.pmean(jnp.mean(loss_a) + jnp.mean(loss_b), axis_name)
    accuracy = 0.5 * jax.lax.pmean(jnp.mean(hit_a) + jnp.mean(hit_b), axis_name)
    return loss, {"ssl_accuracy": accuracy}


def nt_xent_reference(a: jax.Array, b: jax.Array, temperature: float) -> jax.Array:
    """The same loss from the global [N, D] arrays, written directly: the [2N, 2N] similarity matrix of the
    stacked views with its diagonal removed, positive of row i at i +- N (SimCLR arXiv 2002.05709 Algorithm 1)."""
    z = _unit(jnp.concatenate([a, b], axis=0))
    n = a.shape[0]
    sim = jnp.dot(z, z.T, precision=jax.lax.Precision.HIGHEST) / temperature
    sim = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, sim)
    positive = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
    losses = jax.nn.logsumexp(sim, axis=1) - sim[jnp.arange(2 * n), positive]
    return jnp.mean(losses)


def sharded_nt_xent(mesh: Mesh, temperature: float, batch_axes: Sequence[str] = ("data", "fsdp")):
    """f(a, b) -> (loss, metrics) for global [N, D] arrays split along dim 0 over `batch_axes`."""
    axes = tuple(batch_axes)

    def f(a: jax.Array, b: jax.Array) -> tuple[jax.Array, dict]:
        body = lambda x, y: nt_xent_loss(x, y, temperature=temperature, axis_name=axes)  # noqa: E731
        return jax.shard_map(body, mesh=mesh, in_specs=(P(axes), P(axes)), out_specs=(P(), P()))(a, b)

    return f


def with_ssl(base, config, mesh: Mesh):
    """The train-step loss `base` plus config.loss.ssl_scale * NT-Xent of out['ssl_a'], out['ssl_b'] (the SimCLR
    head outputs of the two views, [B, ssl_out_dim], added to the model outputs by the train step)."""
    scale = float(config.loss.ssl_scale)
    nt_xent = sharded_nt_xent(mesh, float(config.loss.ssl_temperature))

    def loss_fn(out, batch, loss_state, step):
        loss, metrics, loss_state = base(out, batch, loss_state, step)
        ssl, ssl_metrics = nt_xent(out["ssl_a"], out["ssl_b"])
        return loss + scale * ssl, {**metrics, **ssl_metrics, "image_text_loss": loss, "ssl_loss": ssl}, loss_state

    return loss_fn
