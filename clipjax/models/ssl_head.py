"""SLIP's SimCLR branch on the image tower (arXiv 2112.12750 section 3; facebookresearch/SLIP models.py
`_build_mlp`): the trunk's pooled features (a ViT's pooled token after its final LayerNorm, before the CLIP
projection) -> Linear(width->hidden) -> BN -> ReLU -> Linear(hidden->hidden) -> BN -> ReLU -> Linear(hidden->out).

The head's parameters live beside the CLIP model's, as params['ssl_head'] (HEAD_KEY); the CLIP model never reads
them and every export leaves them out. Its BatchNorm always normalises with the statistics of the current batch
(train mode) and keeps no running statistics: the head exists only in training. Under `jax.jit` the batch is
the global array, so the statistics are over the global batch (SLIP's SyncBatchNorm) on any mesh.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from clipjax.models.vit import VisionTransformer

HEAD_KEY = "ssl_head"


class BatchNormNoStats(nn.Module):
    """(x - mean_batch) / sqrt(var_batch + eps) * scale + bias over the leading axis of x [B, F]."""
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],))
        bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],))
        x = x.astype(jnp.float32)
        mean = jnp.mean(x, axis=0)
        var = jnp.mean(jnp.square(x - mean), axis=0)
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * scale + bias


class SimCLRHead(nn.Module):
    """features [B, width] -> [B, out_dim] float32 (unnormalised; the loss normalises)."""
    hidden_dim: int = 4096
    out_dim: int = 256

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(jnp.float32)
        for i in range(2):
            x = nn.Dense(self.hidden_dim, name=f"linear{i}")(x)
            x = nn.relu(BatchNormNoStats(name=f"bn{i}")(x))
        return nn.Dense(self.out_dim, name="out")(x)


def build_head(config: ml_collections.ConfigDict) -> SimCLRHead:
    return SimCLRHead(hidden_dim=int(config.loss.ssl_hidden_dim), out_dim=int(config.loss.ssl_out_dim))


def build_head_from(params: dict) -> SimCLRHead:
    """The head whose parameters are `params` (sizes read from their shapes)."""
    return SimCLRHead(hidden_dim=params["linear0"]["kernel"].shape[1], out_dim=params["out"]["kernel"].shape[1])


def pooled_image_features(model: nn.Module, variables: dict, images: jax.Array) -> jax.Array:
    """images [B, H, W, 3] -> the image tower's pooled features [B, width]: the input of its projection 'proj'
    (read with a method interceptor, so the tower's code and parameters stay as they are)."""
    seen = []

    def grab_proj_input(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name == "__call__" and module.name == "proj" and isinstance(module.parent,
                                                                                       VisionTransformer):
            seen.append(args[0])
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(grab_proj_input):
        model.apply(variables, images, method=lambda m, x: m.image(x))
    if len(seen) != 1:
        raise ValueError(f"SLIP's head reads a ViT image tower's pooled features; found {len(seen)} ViT projections")
    return seen[0]


def view_outputs(model: nn.Module, variables: dict, head_params: dict, head: SimCLRHead, views: jax.Array
                 ) -> dict[str, jax.Array]:
    """views uint8 [B, 2, H, W, 3] -> {'ssl_a', 'ssl_b'} [B, out_dim]: the head on each view's pooled features
    (the tower runs once on the 2B images; the head's BN statistics are per view, as in SLIP)."""
    b = views.shape[0]
    feats = pooled_image_features(model, variables, views.reshape(b * 2, *views.shape[2:]))
    feats = feats.reshape(b, 2, feats.shape[-1])
    apply = lambda x: head.apply({"params": head_params}, x)  # noqa: E731
    return {"ssl_a": apply(feats[:, 0]), "ssl_b": apply(feats[:, 1])}


def init_head(config: ml_collections.ConfigDict, rng: jax.Array) -> dict:
    """Fresh head params for the image tower's width."""
    width = int(config.model.image.width)
    return build_head(config).init(rng, jnp.zeros((2, width), jnp.float32))["params"]
