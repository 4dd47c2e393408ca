"""Optimiser: optax chain with weight-decay mask, schedules, gradient clipping and frozen parameter groups."""
import re

import jax
import ml_collections
import optax

from clipjax import config as config_lib


def path_str(path) -> str:
    """'/'-joined parameter path, e.g. 'img/Transformer/block_0/mlp/Dense_0/kernel'."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def decay_mask(params):
    """True for weight matrices (leaves named 'kernel'); biases, norms, embeddings and temperatures are not decayed."""
    return jax.tree_util.tree_map_with_path(lambda p, x: path_str(p).endswith("kernel") and x.ndim >= 2, params)


def frozen_labels(params, pattern: str):
    """'frozen' for leaves whose path matches `pattern` (regex, searched), else 'trained'."""
    regex = re.compile(pattern) if pattern else None
    return jax.tree_util.tree_map_with_path(
        lambda p, _: "frozen" if regex and regex.search(path_str(p)) else "trained", params)


def schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warm-up to the peak lr, then cosine (to end_lr_ratio * peak), constant, or constant + linear cooldown."""
    peak, total = config_lib.resolve_lr(config), config_lib.resolve_total_steps(config)
    o = config.optim
    warmup = min(o.warmup_steps, total)
    if o.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total, warmup + 1), peak * o.end_lr_ratio)
    rise = optax.linear_schedule(0.0, peak, max(warmup, 1))
    if o.schedule == "constant":
        return optax.join_schedules([rise, optax.constant_schedule(peak)], [warmup])
    cooldown_start = max(total - o.cooldown_steps, warmup)
    return optax.join_schedules(
        [rise, optax.constant_schedule(peak), optax.linear_schedule(peak, 0.0, max(o.cooldown_steps, 1))],
        [warmup, cooldown_start])


def make_optimizer(config: ml_collections.ConfigDict, params) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The model optimiser (AdamW, LAMB or Lion) with decay mask, clipping and frozen groups; and its lr schedule."""
    o, lr = config.optim, schedule(config)
    mask = decay_mask
    if o.name == "adamw":
        opt = optax.adamw(lr, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay, mask=mask)
    elif o.name == "lamb":
        opt = optax.lamb(lr, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay, mask=mask)
    else:
        opt = optax.lion(lr, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay, mask=mask)
    chain = [optax.clip_by_global_norm(o.grad_clip_norm)] if o.grad_clip_norm > 0 else []
    tx = optax.chain(*chain, opt)
    if o.freeze:
        labels = frozen_labels(params, o.freeze)
        if "trained" not in jax.tree.leaves(labels):
            raise ValueError(f"config.optim.freeze = {o.freeze!r} freezes every parameter")
        tx = optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)
    return tx, lr
