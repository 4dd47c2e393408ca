"""Loss registry: `make_loss(config, mesh)` returns the train step's loss for `config.loss.name`.

A loss maps (model outputs, batch, loss_state, step) -> (scalar loss, metrics dict, new loss_state); loss_state
holds per-sample estimators of losses that need them (FastCLIP) and is {} otherwise.
"""
import math
from collections.abc import Callable

import jax
import ml_collections

from clipjax.losses import contrastive, fastclip

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
    elif name in fastclip.VARIANTS:
        fn = fastclip.make_loss(name, mesh, fastclip_hparams(config))

        def loss(out, batch, loss_state, step):
            return fn(out["zimg"], out["ztxt"], out["logit_scale"], batch["index"], loss_state, step)
    else:
        raise ValueError(f"config.loss.name = {name!r}: expected one of 'clip', 'siglip', "
                         f"{', '.join(map(repr, fastclip.VARIANTS))}")
    return loss


def fastclip_hparams(config: ml_collections.ConfigDict) -> fastclip.Hparams:
    """The GCL-family settings of `config.loss` (temperatures bounded to [1/exp(max_logit_scale), 1])."""
    lc = config.loss
    return fastclip.Hparams(
        eps=lc.eps, rho=lc.rho, gamma_min=lc.gamma_min, gamma_decay_epochs=lc.gamma_decay_epochs,
        batch_size=config.batch_size, epoch_size=config.data.size, tau_init=lc.tau_init, tau_lr=lc.tau_lr,
        tau_b1=lc.tau_b1, tau_b2=lc.tau_b2, tau_grad_clip=lc.tau_grad_clip,
        tau_min=math.exp(-lc.max_logit_scale), tau_max=1.0, shard_above=lc.shard_state_above)


def init_loss_state(config: ml_collections.ConfigDict, data_size: int, mesh: jax.sharding.Mesh) -> dict:
    """Per-sample loss state for a dataset whose largest global index is data_size - 1, placed on `mesh` in its
    sharding ({} for clip/siglip)."""
    if config.loss.name in fastclip.VARIANTS:
        return fastclip.init_state(config.loss.name, data_size, mesh, fastclip_hparams(config))
    return {}
