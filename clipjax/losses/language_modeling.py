"""Language-modelling objectives of LLM2CLIP stage 1: causal next-token prediction (pre-training a tiny LM) and
LLM2Vec's masked next-token prediction (MNTP, arXiv 2404.05961 Sec. 2.2): with bidirectional attention, a fraction
of the input tokens is masked and the output at position i-1 predicts the original token i.

Both score logits [B, T, V] against ids [B, T] shifted by one:
  loss = sum_i w_i * -log softmax(logits[:, i-1])[ids[:, i]] / max(sum_i w_i, 1)      (i = 1..T-1)
with w = valid(i-1) & valid(i) for next-token prediction and w = selected(i) for MNTP.
"""
import jax
import jax.numpy as jnp
import optax


def shifted_cross_entropy(logits: jax.Array, ids: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(weighted mean loss, accuracy): logits [B, T, V] at position i-1 against ids[:, i], weights [B, T] on the
    target positions (position 0 has no predecessor and is ignored). Computed in float32."""
    nll = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1].astype(jnp.float32), ids[:, 1:])
    hit = jnp.argmax(logits[:, :-1], axis=-1) == ids[:, 1:]
    w = weights[:, 1:].astype(jnp.float32)
    total = jnp.maximum(w.sum(), 1.0)
    return jnp.sum(nll * w) / total, jnp.sum(hit * w) / total


def next_token_weights(mask: jax.Array) -> jax.Array:
    """[B, T] target weights of causal LM training: token i counts when it and token i-1 are real (left padding)."""
    m = mask.astype(bool)
    return m & jnp.pad(m[:, :-1], ((0, 0), (1, 0)))


def mntp_mask(rng: jax.Array, ids: jax.Array, maskable: jax.Array, *, mask_prob: float, mask_id: int,
              replace_prob: float = 0.8, random_prob: float = 0.1, vocab_size: int) -> tuple[jax.Array, jax.Array]:
    """(inputs, selected) [B, T]: each maskable token (real, not special, not at position 0) is selected with
    probability mask_prob; a selected token becomes `mask_id` with probability replace_prob, a uniform random id
    in [0, vocab_size) with random_prob, else stays (BERT's 80/10/10, LLM2Vec's default collator; replace_prob=1
    masks every selected token). The loss targets are the original ids at the selected positions."""
    k_select, k_how, k_random = jax.random.split(rng, 3)
    maskable = maskable.astype(bool).at[:, 0].set(False)
    selected = maskable & jax.random.bernoulli(k_select, mask_prob, ids.shape)
    u = jax.random.uniform(k_how, ids.shape)
    random_ids = jax.random.randint(k_random, ids.shape, 0, vocab_size, ids.dtype)
    inputs = jnp.where(selected & (u < replace_prob), jnp.asarray(mask_id, ids.dtype), ids)
    inputs = jnp.where(selected & (u >= replace_prob) & (u < replace_prob + random_prob), random_ids, inputs)
    return inputs, selected
