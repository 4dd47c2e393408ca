"""Loss registry: `make_loss(config, mesh)` returns the train step's loss for `config.loss.name`.

A loss maps (model outputs, batch, loss_state, step) -> (scalar loss, metrics dict, new loss_state); loss_state
holds per-sample estimators of losses that need them (FastCLIP) and is {} otherwise.
"""
from collections.abc import Callable

import jax
import ml_collections

from clipjax.losses import contrastive

LossFn = Callable[[dict, dict, dict, jax.Array], tuple[jax.Array, dict, dict]]


def make_loss(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> LossFn:
    name = config.loss.name
    if name == "clip":
        fn = contrastive.sharded(contrastive.softmax_loss, mesh)

        def loss(out, batch, loss_state, step):
            value, metrics = fn(out["zimg"], out["ztxt"], out["logit_scale"])
            return value, metrics, loss_state
    elif name == "siglip":
        fn = contrastive.sharded(contrastive.sigmoid_loss, mesh)

        def loss(out, batch, loss_state, step):
            value, metrics = fn(out["zimg"], out["ztxt"], out["logit_scale"], out["logit_bias"])
            return value, metrics, loss_state
    else:
        raise ValueError(f"config.loss.name = {name!r}: expected one of 'clip', 'siglip'")
    return loss


def init_loss_state(config: ml_collections.ConfigDict, data_size: int, mesh: jax.sharding.Mesh) -> dict:
    """Per-sample loss state for a dataset whose largest global index is data_size - 1, placed on `mesh` in its
    sharding ({} for clip/siglip)."""
    del config, data_size, mesh
    return {}
