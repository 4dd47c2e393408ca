"""Optimiser: optax chain with weight-decay mask, schedules, gradient clipping and frozen parameter groups."""
import math
import re

import jax
import jax.numpy as jnp
import ml_collections
import optax

from clipjax import config as config_lib, losses


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


OPTIMIZERS = ("adamw", "lamb", "lion")
SCHEDULES = ("cosine", "constant", "cooldown")


def validate(config: ml_collections.ConfigDict) -> None:
    """config.optim: a known optimiser and schedule, a positive lr, a warm-up no longer than the run."""
    o, total = config.optim, config_lib.resolve_total_steps(config)
    require = lambda ok, key, what: config_lib.require(ok, config, key, what)  # noqa: E731
    require(o.name in OPTIMIZERS, "optim.name", f"one of {OPTIMIZERS}")
    require(o.schedule in SCHEDULES, "optim.schedule", f"one of {SCHEDULES}")
    if o.lr_per_256 > 0:
        require(config_lib.resolve_lr(config) > 0, "optim.lr_per_256", "a positive learning rate per 256 examples")
    else:
        require(o.lr > 0, "optim.lr", "a positive learning rate (or optim.lr_per_256 > 0)")
    require(0 <= o.warmup_steps <= total, "optim.warmup_steps", f"between 0 and the run's {total} steps")
    require(0 <= o.cooldown_steps <= total, "optim.cooldown_steps", f"between 0 and the run's {total} steps")
    require(0.0 <= o.end_lr_ratio <= 1.0, "optim.end_lr_ratio", "a fraction in [0, 1]")
    require(o.weight_decay >= 0, "optim.weight_decay", "a non-negative float")
    require(0 < o.layer_decay <= 1, "optim.layer_decay", "a factor in (0, 1] (1 = no layer-wise decay)")


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
    labels = frozen_labels(params, o.freeze)
    if "llm" in params:  # the online LLM2CLIP text encoder is frozen
        labels = {**labels, "llm": jax.tree.map(lambda _: "frozen", params["llm"])}
    if o.freeze and "trained" not in jax.tree.leaves(labels):
        raise ValueError(f"config.optim.freeze = {o.freeze!r} freezes every parameter")
    group = losses.get(config.loss.name).temperature  # the loss's optimiser group for logit_scale
    if group != "trained" and "logit_scale" in params:
        labels = {**labels, "logit_scale": group}
    used = set(jax.tree.leaves(labels))
    if used != {"trained"}:
        groups = {"trained": tx, "frozen": optax.set_to_zero(), "temperature": temperature_optimizer(config)}
        tx = optax.multi_transform({k: v for k, v in groups.items() if k in used}, labels)
    if o.layer_decay < 1:
        tx = optax.chain(tx, scale_by_tree(layer_decay_scales(params, o.layer_decay)))
    return tx, lr


IMAGE_EMBEDDINGS = ("cls", "pos_embedding", "patch_embed", "ln_pre")  # layer 0 of the image tower


def layer_decay_scales(params, decay: float):
    """Per-leaf update multipliers of layer-wise lr decay on the image tower (BEiT arXiv 2106.08254 Sec. 2.5;
    LLM2CLIP arXiv 2411.04997 Sec. 4.1 uses 0.85): with L blocks, layer i gets decay^(L+1-i), where the patch/position
    embeddings are i = 0, block k is i = k+1, and the rest of the tower (final norm, pooling, projection) i = L+1.
    Parameters outside the image tower get 1."""
    paths = [path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    blocks = {int(m.group(1)) for p in paths if p.startswith("image/") and (m := re.search(r"/block(\d+)/", p))}
    if not blocks:
        raise ValueError("config.optim.layer_decay < 1 needs an image tower of numbered blocks (ViT 'blockN'); "
                         "found none")
    depth = max(blocks) + 1

    def layer(path: str) -> int:
        parts = path.split("/")
        if parts[0] != "image":
            return depth + 1
        block = re.search(r"/block(\d+)/", path)
        if block:
            return int(block.group(1)) + 1
        return 0 if parts[1] in IMAGE_EMBEDDINGS else depth + 1

    return jax.tree_util.tree_map_with_path(lambda p, _: float(decay ** (depth + 1 - layer(path_str(p)))), params)


def scale_by_tree(scales) -> optax.GradientTransformation:
    """Multiply each update leaf by its constant in `scales` (a tree of floats shaped like the params)."""

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, s: u * jnp.asarray(s, u.dtype), updates, scales), state

    return optax.GradientTransformation(init, update)


def temperature_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """FastCLIP-v3's temperature update (the reference's 'step_thresh' lr schedule): AdamW on log(1/tau) with the
    model optimiser's betas and eps (optim.b1, b2, eps) at the constant lr `loss.tau_lr`, divided by 3 at every
    step whose tau (before the update) is <= `loss.tau_lr_drop_below`; checked anew each step, so the full rate
    returns if tau rises again. The bounds tau in [exp(-loss.max_logit_scale), 1] are the train step's clamp of
    logit_scale to [0, max_logit_scale]."""
    lc, o = config.loss, config.optim
    return optax.chain(
        optax.adamw(lc.tau_lr, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=lc.tau_weight_decay),
        scale_where_at_least(math.log(1.0 / lc.tau_lr_drop_below), 1.0 / 3.0))


def scale_where_at_least(threshold: float, factor: float) -> optax.GradientTransformation:
    """Multiply the updates by `factor` at a step whose (pre-update) parameters include a value >= threshold.
    Stateless: a pure function of the current parameters (state optax.EmptyState())."""

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("scale_where_at_least needs the parameters")
        hit = jnp.any(jnp.stack([jnp.any(p >= threshold) for p in jax.tree.leaves(params)]))
        return jax.tree.map(lambda u: jnp.where(hit, factor * u, u), updates), state

    return optax.GradientTransformation(init, update)
