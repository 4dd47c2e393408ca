"""Caption-contrastive (CC) loss of LLM2CLIP stage 1 (arXiv 2411.04997 Sec. 3.1), after LLM2Vec's supervised
contrastive step (arXiv 2404.05961): two captions of one image are a positive pair.

Inside `jax.shard_map` over the batch axes; device k holds b of the B = n b triples (query, document, hard negative),
each an L2-normalised LLM embedding [b, D]. Documents and hard negatives of the whole batch are all-gathered WITH
gradient (the transpose of all_gather is a reduce-scatter), and each query is scored against all of them:
  logits_i = scale * q_i . [D_1..D_B, N_1..N_B]        [b, 2B], scale = 1/tau = 50 (cosine x 50)
  loss = mean over the B queries of -log softmax(logits_i)[k*b + i]      (query -> document only)
Memory O(b x 2B) per device.
"""
import jax
import jax.numpy as jnp

from clipjax.losses.contrastive import AxisName, _cross_entropy, _scores


def caption_contrastive_loss(query: jax.Array, document: jax.Array, negative: jax.Array, *, scale: float = 50.0,
                             axis_name: AxisName) -> tuple[jax.Array, dict]:
    """InfoNCE of local queries against all documents and hard negatives; returns (global mean loss, metrics
    {'accuracy'}: fraction of queries whose best match is their document)."""
    b = query.shape[0]
    candidates = jnp.concatenate([jax.lax.all_gather(document, axis_name, tiled=True),
                                  jax.lax.all_gather(negative, axis_name, tiled=True)])  # [2B, D]
    labels = jax.lax.axis_index(axis_name) * b + jnp.arange(b)
    logits = _scores(query, candidates, jnp.float32(scale))
    loss = jax.lax.pmean(jnp.mean(_cross_entropy(logits, labels)), axis_name)
    accuracy = jax.lax.pmean(jnp.mean(jnp.argmax(logits, axis=1) == labels), axis_name)
    return loss, {"accuracy": accuracy}


def caption_contrastive_reference(query: jax.Array, document: jax.Array, negative: jax.Array,
                                  scale: float = 50.0) -> jax.Array:
    """Unsharded twin on global [B, D] arrays."""
    logits = scale * jnp.dot(query, jnp.concatenate([document, negative]).T, precision=jax.lax.Precision.HIGHEST)
    return jnp.mean(_cross_entropy(logits, jnp.arange(query.shape[0])))
