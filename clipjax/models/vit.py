"""Vision Transformer image tower.

images [B, H, W, 3] (uint8 or float in [0, 255]) -> normalise with the OpenAI CLIP mean/std on the [0, 1]
scale -> patch embedding (conv, kernel = stride = patch) -> + position embedding -> optional `patch_keep`
gather -> prepend CLS -> [LayerNorm 'ln_pre' if `ln_pre` (OpenAI/OpenCLIP)] -> pre-LN encoder + final LN -> pool
-> linear projection (no bias) -> [B, embed_dim].

Position embeddings: 'sincos2d' is fixed and recomputed for the input's grid (so any resolution works);
'learn' is a parameter [grid^2, width] (normal, std 0.02) for grid = image_size // patch_size, and the input
grid must match it. The CLS token has no position embedding.
Pooling of the encoder's tokens x [B, 1+N, W] (CLS first), each with the one final LayerNorm LN ('ln_final'):
  'tok'          LN(x)[:, 0], the CLS output.
  'gap'          mean_n LN(x)[:, 1:], patches only (OpenCLIP pool_type='avg').
  'gap_post_ln'  LN(mean_n x[:, 1:]): mean first, then LN (UCSC-VLAA/CLIPA clipa_jax/models/vit.py pool_type='gap';
                 OpenCLIP pool_type='avg' with final_ln_after_pool=True).
  'gap_with_cls' mean over all 1+N tokens of LN(x), CLS included (facebookresearch/flip models_flip.py,
                 img_avg_token=True).
  'map'          attention pooling of LN(x)[:, 1:] with a learned probe query, then a residual MLP (big_vision
                 MAPHead).
The parameter tree is the same for every pooling except 'map' (which adds 'map_head').
"""
import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np

from clipjax.models.layers import Attention, Dtype, Encoder, Mlp, dense_init, layer_norm, logical, zeros

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def sincos_2d(grid_h: int, grid_w: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
    """Fixed 2-D sin-cos position embedding, [grid_h * grid_w, width] float32, row-major over (row y, column x).

    big_vision's convention (google-research/big_vision big_vision/models/vit.py `posemb_sincos_2d`, also
    UCSC-VLAA/CLIPA clipa_jax/models/vit.py): channels are [sin(x w), cos(x w), sin(y w), cos(y w)], each block
    width/4 wide, with x the column, y the row and w_k = temperature^(-k / (width/4 - 1)), k = 0 .. width/4 - 1.
    """
    if width % 4 or width < 8:
        raise ValueError(f"sincos_2d needs a width divisible by 4 and at least 8, got {width}")
    omega = 1.0 / temperature ** (np.arange(width // 4, dtype=np.float64) / (width // 4 - 1))
    y, x = np.mgrid[:grid_h, :grid_w]
    xw, yw = x.reshape(-1, 1) * omega, y.reshape(-1, 1) * omega
    return np.concatenate([np.sin(xw), np.cos(xw), np.sin(yw), np.cos(yw)], axis=1).astype(np.float32)


def normalise_images(images: jax.Array) -> jax.Array:
    """[B, H, W, 3] in [0, 255] -> (x / 255 - mean) / std, float32."""
    x = images.astype(jnp.float32) / 255.0
    return (x - jnp.asarray(CLIP_MEAN)) / jnp.asarray(CLIP_STD)


class MapHead(nn.Module):
    """Multihead attention pooling: a learned probe attends over x [B, N, W]; then y + Mlp(LN(y)) -> [B, W]."""
    mlp_dim: int
    num_heads: int
    dtype: Dtype = jnp.float32
    attention: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        probe = self.param("probe", logical(nn.initializers.xavier_uniform(), "cls", "embed"), (1, x.shape[-1]))
        probe = jnp.broadcast_to(probe.astype(self.dtype)[None], (x.shape[0], 1, x.shape[-1]))
        y = Attention(self.num_heads, self.dtype, self.attention, name="attn")(probe, x)
        y = y + Mlp(self.mlp_dim, self.dtype, name="mlp")(layer_norm(self.dtype, "ln")(y))
        return y[:, 0]


def mean_of_patches(x: jax.Array) -> jax.Array:
    """[B, 1+N, W] -> [B, W]: mean over the N patch tokens (the CLS token at position 0 left out)."""
    return jnp.mean(x[:, 1:], axis=1)


class VisionTransformer(nn.Module):
    """ViT tower; fields mirror `sizes.vit` plus embed_dim, dtype (compute), remat, attention and scan
    (`clipjax.models.layers.Encoder`)."""
    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    patch_size: int
    image_size: int
    pos_emb: str
    pool: str
    embed_dim: int
    ln_pre: bool = False
    dtype: Dtype = jnp.float32
    remat: str = "none"
    attention: str = "auto"
    scan: bool = False

    @nn.compact
    def __call__(self, images: jax.Array, patch_keep: jax.Array | None = None) -> jax.Array:
        """images [B, H, W, 3] in [0, 255]; patch_keep int32 [B, K] indices into the N = (H/p)(W/p) patches
        (row-major) or None for all. Returns unnormalised features [B, embed_dim] in `dtype`."""
        p = self.patch_size
        x = normalise_images(images).astype(self.dtype)
        x = nn.Conv(self.width, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype,
                    kernel_init=logical(nn.initializers.lecun_normal(), "patch_h", "patch_w", "channels", "embed"),
                    bias_init=logical(zeros, "embed"), name="patch_embed")(x)
        b, gh, gw, _ = x.shape
        x = x.reshape(b, gh * gw, self.width)
        if self.pos_emb == "sincos2d":
            pos = jnp.asarray(sincos_2d(gh, gw, self.width))
        elif self.pos_emb == "learn":
            grid = self.image_size // p
            if (gh, gw) != (grid, grid):
                raise ValueError(f"learned position embedding is for a {grid}x{grid} grid (image_size "
                                 f"{self.image_size}, patch {p}) but the images give {gh}x{gw}")
            pos = self.param("pos_embedding", logical(nn.initializers.normal(0.02), "pos", "embed"),
                             (grid * grid, self.width))
        else:
            raise ValueError(f"pos_emb {self.pos_emb!r}: expected 'sincos2d' or 'learn'")
        x = x + pos.astype(self.dtype)[None]
        if patch_keep is not None:
            x = jnp.take_along_axis(x, patch_keep[..., None].astype(jnp.int32), axis=1)
        cls = self.param("cls", logical(zeros, "cls", "embed"), (1, self.width))
        x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype)[None], (b, 1, self.width)), x], axis=1)
        if self.ln_pre:
            x = layer_norm(self.dtype, "ln_pre")(x)
        encoder = dict(depth=self.depth, mlp_dim=self.mlp_dim, num_heads=self.num_heads, dtype=self.dtype,
                       remat=self.remat, attention=self.attention, scan=self.scan, name="encoder")
        if self.pool == "gap_post_ln":   # the mean comes before the encoder's final LayerNorm
            x = Encoder(**encoder, pool_before_norm=mean_of_patches)(x)
        else:
            x = Encoder(**encoder)(x)
            if self.pool == "tok":
                x = x[:, 0]
            elif self.pool == "gap":
                x = mean_of_patches(x)
            elif self.pool == "gap_with_cls":
                x = jnp.mean(x, axis=1)
            elif self.pool == "map":
                x = MapHead(self.mlp_dim, self.num_heads, self.dtype, self.attention, name="map_head")(x[:, 1:])
            else:
                raise ValueError(f"pool {self.pool!r}: expected 'tok', 'gap', 'gap_post_ln', 'gap_with_cls' or "
                                 "'map'")
        return nn.Dense(self.embed_dim, use_bias=False, dtype=self.dtype,
                        kernel_init=logical(dense_init, "embed", "proj"), name="proj")(x)
