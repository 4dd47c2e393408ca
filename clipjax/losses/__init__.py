"""Losses, one registry (`registry.REGISTRY`, filled by the modules imported here): `config.loss.name` ->
`LossSpec` (train-step loss, per-sample state, temperature group, config checks)."""
import jax
import ml_collections

from clipjax.losses import contrastive, fastclip  # noqa: F401  (each registers its losses)
from clipjax.losses.registry import REGISTRY, LossFn, LossSpec, get  # noqa: F401


def make_loss(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> LossFn:
    """The train step's loss for `config.loss.name`."""
    return get(config.loss.name).make(config, mesh)


def init_loss_state(config: ml_collections.ConfigDict, data_size: int, mesh: jax.sharding.Mesh) -> dict:
    """Per-sample loss state for a dataset whose largest global index is data_size - 1, placed on `mesh` in its
    sharding ({} for losses without one)."""
    return get(config.loss.name).init_state(config, data_size, mesh)


def validate(config: ml_collections.ConfigDict) -> None:
    """config.loss: a registered name, and the keys that loss reads."""
    get(config.loss.name).validate(config)
