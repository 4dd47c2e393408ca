"""OpenAI CLIP's modified ResNet image tower (arXiv 2103.00020 sec 2.4; layout of openai/CLIP `model.py` and
mlfoundations/open_clip `modified_resnet.py`, re-derived here in Flax).

images [B, H, W, 3] in [0, 255] -> OpenAI mean/std normalisation -> stem: three 3x3 convs (stride 2, 1, 1; widths
w/2, w/2, w), each BN + ReLU, then 2x2 average pool -> four stages of bottlenecks (w, 2w, 4w, 8w planes, 4x
expansion; strides 1, 2, 2, 2) -> attention pooling (query: the mean token) -> [B, embed_dim].

Anti-aliased strided bottleneck: 1x1 -> BN -> ReLU -> 3x3 (stride 1) -> BN -> ReLU -> avgpool(stride) -> 1x1 (4x)
-> BN, plus the shortcut [avgpool(stride) -> 1x1 -> BN] when stride > 1 or the channels change; ReLU after the sum.
The last BN of each block starts with zero scale, so every block starts as the identity of its shortcut.

Batch norm: `train=True` normalises with the batch's statistics (over the global batch: the arrays are global, so
GSPMD reduces across devices) and updates the running statistics in the 'batch_stats' collection (momentum 0.1 as
PyTorch, unbiased variance); `train=False` uses the running statistics (evaluation, or a frozen-BN run).

Logical axis names: conv kernels ('conv_h', 'conv_w', 'conv_in', 'conv_out'); BN scale/bias and running
mean/var ('conv_out',); attention pool as clipjax.models.layers ('embed', 'heads', 'kv'), its output projection
('heads', 'kv', 'proj'), its position embedding ('pos', 'embed').
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from clipjax.models.layers import Dtype, attend, logical, zeros
from clipjax.models.vit import normalise_images

BN_EPS = 1e-5
BN_MOMENTUM = 0.1  # PyTorch convention: running <- (1 - m) running + m batch


class BatchNorm(nn.Module):
    """Batch norm over [B, H, W, C] (statistics over B, H, W in float32); see the module docstring.
    `zero_scale`: the scale starts at 0 (the last BN of a bottleneck)."""
    train: bool = False
    zero_scale: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        init_scale = zeros if self.zero_scale else nn.initializers.ones
        scale = self.param("scale", logical(init_scale, "conv_out"), (c,))
        bias = self.param("bias", logical(zeros, "conv_out"), (c,))
        ra_mean = self.variable("batch_stats", "mean", logical(zeros, "conv_out"), None, (c,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", logical(nn.initializers.ones, "conv_out"), None, (c,),
                               jnp.float32)
        x32 = x.astype(jnp.float32)
        if self.train:
            mean = jnp.mean(x32, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(x32 - mean), axis=(0, 1, 2))
            if not self.is_initializing():
                n = x.shape[0] * x.shape[1] * x.shape[2]
                unbiased = var * n / max(n - 1, 1)
                ra_mean.value = (1 - BN_MOMENTUM) * ra_mean.value + BN_MOMENTUM * mean
                ra_var.value = (1 - BN_MOMENTUM) * ra_var.value + BN_MOMENTUM * unbiased
        else:
            mean, var = ra_mean.value, ra_var.value
        y = (x32 - mean) * jax.lax.rsqrt(var + BN_EPS) * scale + bias
        return y.astype(self.dtype)


def conv(features: int, kernel: int, dtype: Dtype, name: str) -> nn.Conv:
    """Bias-free conv, stride 1, 'same' padding (kernel // 2 on each side as PyTorch's padding=1 for 3x3)."""
    pad = kernel // 2
    return nn.Conv(features, (kernel, kernel), padding=((pad, pad), (pad, pad)), use_bias=False, dtype=dtype,
                   kernel_init=logical(nn.initializers.he_normal(), "conv_h", "conv_w", "conv_in", "conv_out"),
                   name=name)


def avg_pool(x: jax.Array, stride: int) -> jax.Array:
    """stride x stride average pool, stride `stride` (PyTorch AvgPool2d(stride): floor of odd sizes)."""
    return x if stride == 1 else nn.avg_pool(x, (stride, stride), strides=(stride, stride), padding="VALID")


class Bottleneck(nn.Module):
    """[B, H, W, Cin] -> [B, H/stride, W/stride, 4 * planes]; see the module docstring."""
    planes: int
    stride: int = 1
    train: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        bn = lambda name, zero=False: BatchNorm(self.train, zero, self.dtype, name=name)  # noqa: E731
        out = nn.relu(bn("bn1")(conv(self.planes, 1, self.dtype, "conv1")(x)))
        out = nn.relu(bn("bn2")(conv(self.planes, 3, self.dtype, "conv2")(out)))
        out = bn("bn3", zero=True)(conv(4 * self.planes, 1, self.dtype, "conv3")(avg_pool(out, self.stride)))
        if self.stride > 1 or x.shape[-1] != 4 * self.planes:
            x = bn("downsample_bn")(conv(4 * self.planes, 1, self.dtype, "downsample_conv")(avg_pool(x, self.stride)))
        return nn.relu(out + x)


class AttentionPool(nn.Module):
    """x [B, H, W, C] -> [B, out_dim]: tokens t = [mean; x_1 .. x_HW] + pos ([HW + 1, C], normal std C^-0.5);
    one query, q(t_0), attends over all HW + 1 tokens (heads of C / num_heads), then the output projection (bias)."""
    num_heads: int
    out_dim: int
    dtype: Dtype = jnp.float32
    attention: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        x = x.reshape(b, h * w, c)
        x = jnp.concatenate([jnp.mean(x, axis=1, keepdims=True), x], axis=1)
        pos = self.param("pos_embedding", logical(nn.initializers.normal(c ** -0.5), "pos", "embed"), (h * w + 1, c))
        x = x + pos.astype(self.dtype)[None]
        head_dim = c // self.num_heads
        init = nn.initializers.normal(c ** -0.5)

        def proj(name: str, t: jax.Array) -> jax.Array:
            return nn.DenseGeneral((self.num_heads, head_dim), dtype=self.dtype,
                                   kernel_init=logical(init, "embed", "heads", "kv"),
                                   bias_init=logical(zeros, "heads", "kv"), name=name)(t)

        out = attend(proj("query", x[:, :1]), proj("key", x), proj("value", x), self.attention)
        return nn.DenseGeneral(self.out_dim, axis=(-2, -1), dtype=self.dtype,
                               kernel_init=logical(init, "heads", "kv", "proj"),
                               bias_init=logical(zeros, "proj"), name="out")(out)[:, 0]


class ModifiedResNet(nn.Module):
    """ResNet tower; fields mirror `sizes.resnet` plus embed_dim, dtype (compute), `train` (BN mode, see the
    module docstring) and `attention` (the attention-pool kernel, clipjax.models.layers.ATTENTION_IMPLS)."""
    layers: tuple[int, ...]
    width: int
    num_heads: int
    image_size: int
    embed_dim: int
    train: bool = False
    dtype: Dtype = jnp.float32
    attention: str = "auto"

    @nn.compact
    def __call__(self, images: jax.Array, patch_keep: jax.Array | None = None) -> jax.Array:
        """images [B, H, W, 3] in [0, 255] (H, W multiples of 32) -> features [B, embed_dim] in `dtype`.
        `patch_keep` must be None: a ResNet has no tokens to drop."""
        if patch_keep is not None:
            raise ValueError("a ResNet image tower takes no patch_keep (image token masking is for ViTs)")
        w, bn = self.width, lambda name: BatchNorm(self.train, False, self.dtype, name=name)  # noqa: E731
        x = normalise_images(images).astype(self.dtype)
        x = nn.Conv(w // 2, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=False, dtype=self.dtype,
                    kernel_init=logical(nn.initializers.he_normal(), "conv_h", "conv_w", "conv_in", "conv_out"),
                    name="conv1")(x)
        x = nn.relu(bn("bn1")(x))
        x = nn.relu(bn("bn2")(conv(w // 2, 3, self.dtype, "conv2")(x)))
        x = nn.relu(bn("bn3")(conv(w, 3, self.dtype, "conv3")(x)))
        x = avg_pool(x, 2)
        for stage, (blocks, stride) in enumerate(zip(self.layers, (1, 2, 2, 2))):
            for i in range(blocks):
                x = Bottleneck(w * 2 ** stage, stride if i == 0 else 1, self.train, self.dtype,
                               name=f"layer{stage + 1}_{i}")(x)
        return AttentionPool(self.num_heads, self.embed_dim, self.dtype, self.attention, name="attnpool")(x)
