"""Losses, one registry (`registry.REGISTRY`, filled by the modules imported here): `config.loss.name` ->
`LossSpec` (train-step loss, per-sample state, temperature group, config checks)."""
import jax
import ml_collections

from clipjax import config as config_lib
from clipjax.losses import contrastive, fastclip, ssl  # noqa: F401  (each registers its losses)
from clipjax.losses.registry import REGISTRY, LossFn, LossSpec, get  # noqa: F401


def make_loss(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> LossFn:
    """The train step's loss for `config.loss.name` (+ loss.ssl_scale * SLIP's NT-Xent when that is > 0)."""
    loss_fn = get(config.loss.name).make(config, mesh)
    return ssl.with_ssl(loss_fn, config, mesh) if config.loss.ssl_scale > 0 else loss_fn


def init_loss_state(config: ml_collections.ConfigDict, data_size: int, mesh: jax.sharding.Mesh) -> dict:
    """Per-sample loss state for a dataset whose largest global index is data_size - 1, placed on `mesh` in its
    sharding ({} for losses without one)."""
    return get(config.loss.name).init_state(config, data_size, mesh)


def validate(config: ml_collections.ConfigDict) -> None:
    """config.loss: a registered name, and the keys that loss reads; SLIP's keys."""
    get(config.loss.name).validate(config)
    validate_ssl(config)


def validate_ssl(config: ml_collections.ConfigDict) -> None:
    """loss.ssl_scale > 0 needs the two extra views of data.augment = 'simclr' and a ViT image tower, and the
    'simclr' preset is only for it."""
    loss, require = config.loss, lambda ok, key, what: config_lib.require(ok, config, key, what)  # noqa: E731
    require(loss.ssl_scale >= 0, "loss.ssl_scale", "a weight >= 0 (0: no SLIP term; SLIP uses 1.0)")
    require(loss.ssl_temperature > 0, "loss.ssl_temperature", "a temperature > 0 (SLIP: 0.1)")
    require(loss.ssl_hidden_dim > 0 and loss.ssl_out_dim > 0, "loss.ssl_hidden_dim",
            "positive head sizes (loss.ssl_hidden_dim, loss.ssl_out_dim; SLIP: 4096, 256)")
    if loss.ssl_scale > 0:
        require(config.data.augment == "simclr", "data.augment",
                f"'simclr' with loss.ssl_scale = {loss.ssl_scale} > 0: SLIP's term needs the preset's two extra "
                f"views (set data.augment = 'simclr', or loss.ssl_scale = 0)")
        require(config.model.get("image_tower", "vit") == "vit", "model.image_tower",
                "'vit' with loss.ssl_scale > 0 (SLIP's head reads a ViT's pooled features)")
    else:
        require(config.data.augment != "simclr", "data.augment",
                "a preset other than 'simclr' with loss.ssl_scale = 0: its two extra views are only read by SLIP's "
                "term (set loss.ssl_scale > 0, e.g. 1.0)")
