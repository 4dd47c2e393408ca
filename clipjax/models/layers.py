"""Transformer pieces shared by the image and text towers (Flax linen).

Every parameter carries logical axis names (`nn.with_logical_partitioning`); `clipjax.sharding` maps them
to mesh axes. Names used here: dense kernels ('embed', 'mlp') / ('mlp', 'embed'), attention kernels
('embed', 'heads', 'kv') / ('heads', 'kv', 'embed'), biases by their output axes, LayerNorm ('norm',); under
`scan` every block parameter gains a leading ('layers',) axis.

Initialisation: xavier_uniform for every dense kernel, zeros for biases, ones/zeros for LayerNorm.
Mixed precision: computation runs in `dtype` with float32 parameters (cast at each matmul); attention logits and
softmax and LayerNorm statistics are float32 whatever `dtype` is.

Performance switches (config.model, see `Encoder`): `attention` picks the kernel (`ATTENTION_IMPLS`), `remat` the
rematerialisation policy of each block (`REMAT_POLICIES`), `scan` runs the blocks under `nn.scan` (one traced
block; parameters stacked [depth, ...] under 'blocks' instead of 'block0' .. 'block{depth-1}').
"""
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from clipjax import sharding

Dtype = Any

dense_init = nn.initializers.xavier_uniform()
zeros = nn.initializers.zeros

# 'auto': cuDNN's fused (flash) attention on GPU for bf16/fp16 inputs with head_dim % 8 == 0 and <= 128, even
# lengths and no arbitrary mask (causal and trailing-padding masks are fine), else XLA's; 'xla' / 'cudnn':
# jax.nn.dot_product_attention with that implementation; 'einsum': the explicit softmax(q k^T) v of two einsums.
ATTENTION_IMPLS = ("auto", "xla", "cudnn", "einsum")
# 'none': keep every activation; 'full': recompute each block in the backward pass (keep its input only);
# 'dots_saveable': keep every matmul output (jax.checkpoint_policies.dots_saveable), recompute the rest;
# 'dots_no_batch': keep only weight matmuls (dots without batch dims: not q k^T / attention x v);
# 'offload': like dots_no_batch but the kept values go to pinned host memory (backends with a 'pinned_host'
# memory: GPU, TPU, recent XLA:CPU).
REMAT_POLICIES = ("none", "full", "dots_saveable", "dots_no_batch", "offload")


def logical(init: nn.initializers.Initializer, *names: str) -> nn.initializers.Initializer:
    """`init` whose parameter is boxed with the logical axis names `names`."""
    return nn.with_logical_partitioning(init, names)


def layer_norm(dtype: Dtype, name: str | None = None) -> nn.LayerNorm:
    """LayerNorm (eps 1e-5, float32 statistics) with scale/bias named ('norm',)."""
    return nn.LayerNorm(epsilon=1e-5, dtype=dtype, scale_init=logical(nn.initializers.ones, "norm"),
                        bias_init=logical(zeros, "norm"), name=name)


def remat_name(value: bool | str) -> str:
    """config.model.remat as a policy name: bools of configs written before policies existed map to
    'full' (True) / 'none' (False)."""
    if isinstance(value, bool):
        return "full" if value else "none"
    if value not in REMAT_POLICIES:
        raise ValueError(f"config.model.remat = {value!r}: expected one of {REMAT_POLICIES}")
    return value


def remat_policy(name: str) -> Callable | None:
    """The jax.checkpoint policy of a REMAT_POLICIES name ('full': None, i.e. save nothing). 'offload' needs a
    'pinned_host' memory on the default device, else a ValueError naming the backend."""
    if name == "full":
        return None
    if name == "dots_saveable":
        return jax.checkpoint_policies.dots_saveable
    if name == "dots_no_batch":
        return jax.checkpoint_policies.dots_with_no_batch_dims_saveable
    if name == "offload":
        device = jax.devices()[0]
        kinds = {m.kind for m in device.addressable_memories()}
        if "pinned_host" not in kinds:
            raise ValueError(f"config.model.remat = 'offload' needs a 'pinned_host' memory, which the "
                             f"{device.platform} backend ({device.device_kind}) lacks (it has {sorted(kinds)}); "
                             f"use 'dots_no_batch' or 'full'")
        return jax.checkpoint_policies.offload_dot_with_no_batch_dims("device", "pinned_host")
    raise ValueError(f"config.model.remat = {name!r}: expected one of {REMAT_POLICIES[1:]} here")


def padding_mask(length: int, kv_lengths: jax.Array) -> jax.Array:
    """bool [B, 1, 1, length]: key position < kv_lengths[b] (padding trails the real tokens)."""
    return (jnp.arange(length)[None, :] < kv_lengths[:, None])[:, None, None, :]


def _use_cudnn(q: jax.Array, k: jax.Array, mask: jax.Array | None) -> bool:
    """Whether 'auto' attention takes cuDNN's fused kernel for q [B, Lq, heads, head_dim], k [B, Lk, ...].

    Both lengths must be even: JAX's training-time check (jax/_src/cudnn/fused_attention_stablehlo.py,
    check_is_flash_attention, jax 0.10-0.11) refuses odd lengths whenever a bias is present, and every call passes
    a placeholder bias, so ViT-B/16's 197 tokens fail in the backward pass, too late for `attend`'s fallback.
    """
    head_dim = q.shape[-1]
    return (jax.default_backend() == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16) and mask is None
            and head_dim % 8 == 0 and head_dim <= 128 and q.shape[1] % 2 == 0 and k.shape[1] % 2 == 0)


def attend(q: jax.Array, k: jax.Array, v: jax.Array, impl: str, mask: jax.Array | None = None,
           causal: bool = False, kv_lengths: jax.Array | None = None) -> jax.Array:
    """softmax(q k^T / sqrt(d) + masks) v for q [B, Lq, H, d], k/v [B, Lk, H, d] -> [B, Lq, H, d].

    Masks (all optional, combined): `mask` bool broadcastable to [B, H, Lq, Lk] (True = attend), `causal`
    (key <= query position), `kv_lengths` int [B] (keys at positions >= kv_lengths[b] are padding). Logits and
    softmax are float32. With 'einsum' a fully masked row gets uniform weights; never the case for CLIP's masks.
    """
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"config.model.attention = {impl!r}: expected one of {ATTENTION_IMPLS}")
    scale = q.shape[-1] ** -0.5
    if impl == "einsum":
        logits = jnp.einsum("bqhd,bkhd->bhqk", q * jnp.asarray(scale, q.dtype), k,
                            preferred_element_type=jnp.float32)
        if causal:
            mask = _and(mask, jnp.tril(jnp.ones((q.shape[1], k.shape[1]), bool))[None, None])
        if kv_lengths is not None:
            mask = _and(mask, padding_mask(k.shape[1], kv_lengths))
        if mask is not None:
            logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        return jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    lengths = None if kv_lengths is None else kv_lengths.astype(jnp.int32)
    call = lambda implementation: jax.nn.dot_product_attention(  # noqa: E731
        q, k, v, mask=mask, scale=scale, is_causal=causal, key_value_seq_lengths=lengths,
        implementation=implementation)
    if impl == "auto":
        if _use_cudnn(q, k, mask):
            try:  # the forward pass's cuDNN checks run here (the backward's are _use_cudnn's job): a refusal -> XLA
                return call("cudnn")
            except (ValueError, NotImplementedError, RuntimeError):
                pass
        return call("xla")
    return call(impl)


def _and(a: jax.Array | None, b: jax.Array) -> jax.Array:
    return b if a is None else a & b


def gelu(x: jax.Array) -> jax.Array:
    """Exact GELU, x * Phi(x) = x/2 * (1 + erf(x / sqrt 2)) (arXiv:1606.08415). Equal to `nn.gelu(approximate=False)`
    within 5e-7, whose erfc form XLA:CPU evaluates 2.5x slower than erf."""
    return 0.5 * x * (1 + jax.lax.erf(x * jnp.asarray(2 ** -0.5, x.dtype)))


class Mlp(nn.Module):
    """x -> Dense(mlp_dim) -> gelu -> Dense(width): [..., width] -> [..., width]."""
    mlp_dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        x = nn.Dense(self.mlp_dim, dtype=self.dtype, kernel_init=logical(dense_init, "embed", "mlp"),
                     bias_init=logical(zeros, "mlp"), name="fc1")(x)
        x = gelu(x)
        return nn.Dense(width, dtype=self.dtype, kernel_init=logical(dense_init, "mlp", "embed"),
                        bias_init=logical(zeros, "embed"), name="fc2")(x)


class HeadProjection(nn.Module):
    """The parameters of one per-head projection, laid out as `nn.DenseGeneral((heads, head_dim))`'s:
    kernel [width, heads, head_dim], bias [heads, head_dim]."""
    width: int
    num_heads: int
    head_dim: int

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array]:
        shape = (self.num_heads, self.head_dim)

        def kernel_init(rng, shape, dtype=jnp.float32):  # DenseGeneral's: init the 2-D [W, H*d] view, reshape
            return jnp.reshape(dense_init(rng, (shape[0], shape[1] * shape[2]), dtype), shape)
        return (self.param("kernel", logical(kernel_init, "embed", "heads", "kv"), (self.width, *shape)),
                self.param("bias", logical(zeros, "heads", "kv"), shape))


def project(x: jax.Array, kernels: list[tuple[jax.Array, jax.Array]], dtype: Dtype) -> list[jax.Array]:
    """x [B, L, W] through n (kernel [W, H, d], bias [H, d]) pairs -> n arrays [B, L, H, d], as one matmul
    (kernels concatenated along the output axis), in `dtype` as nn.DenseGeneral computes."""
    w = jnp.stack([k for k, _ in kernels], axis=1).astype(dtype)         # [W, n, H, d]
    b = jnp.stack([b for _, b in kernels]).astype(dtype)                 # [n, H, d]
    y = jnp.einsum("blw,wnhd->blnhd", x.astype(dtype), w) + b
    return [y[:, :, i] for i in range(len(kernels))]


class Attention(nn.Module):
    """Multi-head attention: softmax(q k^T / sqrt(d_head) + masks) v, then output projection.

    inputs_q [B, Lq, W], inputs_kv [B, Lk, W]; masks as `attend` (mask bool broadcastable to [B, heads, Lq, Lk],
    True = attend; `causal`; kv_lengths int [B]). Returns [B, Lq, W]. `impl` is one of ATTENTION_IMPLS.
    """
    num_heads: int
    dtype: Dtype = jnp.float32
    impl: str = "auto"

    @nn.compact
    def __call__(self, inputs_q: jax.Array, inputs_kv: jax.Array, mask: jax.Array | None = None,
                 causal: bool = False, kv_lengths: jax.Array | None = None) -> jax.Array:
        width = inputs_q.shape[-1]
        if width % self.num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {self.num_heads}")
        head_dim = width // self.num_heads

        names = ("query", "key", "value")
        kernels = [HeadProjection(width, self.num_heads, head_dim, name=name)() for name in names]
        if inputs_kv is inputs_q:  # self-attention: one matmul with the three kernels side by side
            q, k, v = project(inputs_q, kernels, self.dtype)
        else:
            (q,), (k, v) = project(inputs_q, kernels[:1], self.dtype), project(inputs_kv, kernels[1:], self.dtype)
        out = attend(q, k, v, self.impl, mask, causal, kv_lengths)
        return nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype,
                               kernel_init=logical(dense_init, "heads", "kv", "embed"),
                               bias_init=logical(zeros, "embed"), name="out")(out)


class Block(nn.Module):
    """Pre-LN transformer block: x + Attn(LN(x)), then x + Mlp(LN(x)). [B, L, W] -> [B, L, W].
    kv_lengths int [B] or None: keys past each row's length are padding; `causal` adds the causal mask.
    `carry`: return (x, None), the signature nn.scan needs."""
    mlp_dim: int
    num_heads: int
    dtype: Dtype = jnp.float32
    attention: str = "auto"
    causal: bool = False
    carry: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, kv_lengths: jax.Array | None = None):
        x = sharding.constrain_batch(x)
        y = layer_norm(self.dtype, "ln1")(x)
        x = x + Attention(self.num_heads, self.dtype, self.attention, name="attn")(
            y, y, causal=self.causal, kv_lengths=kv_lengths)
        y = layer_norm(self.dtype, "ln2")(x)
        x = x + Mlp(self.mlp_dim, self.dtype, name="mlp")(y)
        return (x, None) if self.carry else x


class Encoder(nn.Module):
    """`depth` pre-LN blocks followed by a final LayerNorm. [B, L, W] -> [B, L, W] (or pooled, see below).

    `remat`: a REMAT_POLICIES name applied to each block; `attention`: an ATTENTION_IMPLS name; `scan`: the
    blocks under nn.scan (parameters 'blocks/...' stacked [depth, ...], logical axis 'layers'), else unrolled
    ('block0' ...). `causal` masks attention causally; `kv_lengths` int [B] masks trailing padding keys.
    `pool_before_norm` ([B, L, W] -> [B, W]) pools the tokens before the final LayerNorm (CLIPA's 'gap' layout)."""
    depth: int
    mlp_dim: int
    num_heads: int
    dtype: Dtype = jnp.float32
    remat: str = "none"
    attention: str = "auto"
    scan: bool = False
    causal: bool = False
    pool_before_norm: Callable[[jax.Array], jax.Array] | None = None

    @nn.compact
    def __call__(self, x: jax.Array, kv_lengths: jax.Array | None = None) -> jax.Array:
        policy = remat_name(self.remat)
        kw = dict(mlp_dim=self.mlp_dim, num_heads=self.num_heads, dtype=self.dtype, attention=self.attention,
                  causal=self.causal)
        if self.scan:
            block = Block
            if policy != "none":  # prevent_cse is unnecessary under scan (and costs fusion)
                block = nn.remat(block, policy=remat_policy(policy), prevent_cse=False)
            stack = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                            in_axes=nn.broadcast, length=self.depth, metadata_params={nn.PARTITION_NAME: "layers"})
            x, _ = stack(**kw, carry=True, name="blocks")(x, kv_lengths)
        else:
            block = Block if policy == "none" else nn.remat(Block, policy=remat_policy(policy))
            for i in range(self.depth):
                x = block(**kw, name=f"block{i}")(x, kv_lengths)
        if self.pool_before_norm is not None:
            x = self.pool_before_norm(x)
        return layer_norm(self.dtype, "ln_final")(x)
