"""Transformer pieces shared by the image and text towers (Flax linen).

Every parameter carries logical axis names (`nn.with_logical_partitioning`); `clipjax.sharding` maps them
to mesh axes. Names used here: dense kernels ('embed', 'mlp') / ('mlp', 'embed'), attention kernels
('embed', 'heads', 'kv') / ('heads', 'kv', 'embed'), biases by their output axes, LayerNorm ('norm',).

Initialisation: xavier_uniform for every dense kernel, zeros for biases, ones/zeros for LayerNorm.
Computation runs in `dtype` with float32 parameters; attention softmax and LayerNorm statistics are float32.
"""
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

dense_init = nn.initializers.xavier_uniform()
zeros = nn.initializers.zeros


def logical(init: nn.initializers.Initializer, *names: str) -> nn.initializers.Initializer:
    """`init` whose parameter is boxed with the logical axis names `names`."""
    return nn.with_logical_partitioning(init, names)


def layer_norm(dtype: Dtype, name: str | None = None) -> nn.LayerNorm:
    """LayerNorm (eps 1e-5, float32 statistics) with scale/bias named ('norm',)."""
    return nn.LayerNorm(epsilon=1e-5, dtype=dtype, scale_init=logical(nn.initializers.ones, "norm"),
                        bias_init=logical(zeros, "norm"), name=name)


class Mlp(nn.Module):
    """x -> Dense(mlp_dim) -> gelu -> Dense(width): [..., width] -> [..., width]."""
    mlp_dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        x = nn.Dense(self.mlp_dim, dtype=self.dtype, kernel_init=logical(dense_init, "embed", "mlp"),
                     bias_init=logical(zeros, "mlp"), name="fc1")(x)
        x = nn.gelu(x, approximate=False)
        return nn.Dense(width, dtype=self.dtype, kernel_init=logical(dense_init, "mlp", "embed"),
                        bias_init=logical(zeros, "embed"), name="fc2")(x)


class Attention(nn.Module):
    """Multi-head attention: softmax(q k^T / sqrt(d_head) + mask) v, then output projection.

    inputs_q [B, Lq, W], inputs_kv [B, Lk, W], mask: bool broadcastable to [B, heads, Lq, Lk] (True = attend)
    or None. Returns [B, Lq, W]. Logits and softmax are float32; a fully masked row gives uniform weights.
    """
    num_heads: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs_q: jax.Array, inputs_kv: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        width = inputs_q.shape[-1]
        if width % self.num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {self.num_heads}")
        head_dim = width // self.num_heads

        def proj(name: str, x: jax.Array) -> jax.Array:
            return nn.DenseGeneral((self.num_heads, head_dim), dtype=self.dtype,
                                   kernel_init=logical(dense_init, "embed", "heads", "kv"),
                                   bias_init=logical(zeros, "heads", "kv"), name=name)(x)

        q = proj("query", inputs_q) * jnp.asarray(head_dim ** -0.5, self.dtype)
        k, v = proj("key", inputs_kv), proj("value", inputs_kv)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        if mask is not None:
            logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        return nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype,
                               kernel_init=logical(dense_init, "heads", "kv", "embed"),
                               bias_init=logical(zeros, "embed"), name="out")(out)


class Block(nn.Module):
    """Pre-LN transformer block: x + Attn(LN(x)), then x + Mlp(LN(x)). [B, L, W] -> [B, L, W]."""
    mlp_dim: int
    num_heads: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        y = layer_norm(self.dtype, "ln1")(x)
        x = x + Attention(self.num_heads, self.dtype, name="attn")(y, y, mask)
        y = layer_norm(self.dtype, "ln2")(x)
        return x + Mlp(self.mlp_dim, self.dtype, name="mlp")(y)


class Encoder(nn.Module):
    """`depth` pre-LN blocks followed by a final LayerNorm; each block is rematerialised if `remat`.
    `pool_before_norm` ([B, L, W] -> [B, W]) pools the tokens before that LayerNorm (CLIPA's 'gap' layout)."""
    depth: int
    mlp_dim: int
    num_heads: int
    dtype: Dtype = jnp.float32
    remat: bool = False
    pool_before_norm: Callable[[jax.Array], jax.Array] | None = None

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        block = nn.remat(Block) if self.remat else Block
        for i in range(self.depth):
            x = block(self.mlp_dim, self.num_heads, self.dtype, name=f"block{i}")(x, mask)
        if self.pool_before_norm is not None:
            x = self.pool_before_norm(x)
        return layer_norm(self.dtype, "ln_final")(x)
