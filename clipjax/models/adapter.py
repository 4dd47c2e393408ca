"""LLM2CLIP's text-side adapter (arXiv 2411.04997 Sec. 3; microsoft/LLM2CLIP): a trainable head on frozen LLM
caption embeddings.

    x = e / ||e||                                    e: [B, d] LLM embedding (mean-pooled, float32)
    x = x + Linear(2d -> d)(GELU(Linear(d -> 2d)(LayerNorm(x))))      x num_blocks (4)
    z = Linear(d -> embed_dim, bias)(LayerNorm(x))  -> [B, embed_dim] (L2-normalised by the CLIP model)

For d = 4096 (Llama-3-8B) and 4 blocks that is ~268M parameters in the blocks plus the projection. Weights carry
logical axis names, so `mesh.fsdp` / `mesh.tensor` shard them like the towers.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from clipjax.models.layers import Dtype, Mlp, dense_init, layer_norm, logical, zeros


class LlmAdapter(nn.Module):
    """Frozen-LLM caption embedding [B, d] -> text feature [B, embed_dim] (not yet L2-normalised)."""
    embed_dim: int
    num_blocks: int = 4
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, embedding: jax.Array) -> jax.Array:
        e = embedding.astype(jnp.float32)
        x = e / jnp.maximum(jnp.linalg.norm(e, axis=-1, keepdims=True), 1e-6)
        for i in range(self.num_blocks):  # residual blocks x + Linear(2d -> d)(GELU(Linear(d -> 2d)(LN(x))))
            x = x + Mlp(2 * x.shape[-1], self.dtype, name=f"block{i}")(layer_norm(self.dtype, f"norm{i}")(x))
        x = layer_norm(self.dtype, name="norm")(x)
        return nn.Dense(self.embed_dim, dtype=self.dtype, kernel_init=logical(dense_init, "embed", "proj"),
                        bias_init=logical(zeros, "proj"), name="proj")(x)
