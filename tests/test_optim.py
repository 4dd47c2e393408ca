"""Optimiser pieces: decay mask, schedules, lr scaling, frozen groups."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from clipjax import config as config_lib, optim

PARAMS = {"img": {"Dense_0": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones(4)},
                  "LayerNorm_0": {"scale": jnp.ones(4)}, "pos_embedding": jnp.ones((3, 4))},
          "txt": {"token_embedding": {"embedding": jnp.ones((10, 4))}, "proj": {"kernel": jnp.ones((4, 2))}},
          "logit_scale": jnp.ones(())}


def test_decay_mask_only_weight_matrices():
    mask = optim.decay_mask(PARAMS)
    assert mask["img"]["Dense_0"] == {"kernel": True, "bias": False}
    assert not mask["img"]["LayerNorm_0"]["scale"] and not mask["img"]["pos_embedding"]
    assert not mask["txt"]["token_embedding"]["embedding"] and mask["txt"]["proj"]["kernel"]
    assert not mask["logit_scale"]


def _config(**optim_kw):
    c = config_lib.default_config()
    c.total_steps = 100
    c.optim.warmup_steps = 10
    c.optim.update(optim_kw)
    return c


def test_schedules():
    cos = optim.schedule(_config(lr=1.0))
    assert cos(0) == 0 and cos(10) == pytest.approx(1.0) and cos(55) == pytest.approx(0.5, abs=0.01)
    assert cos(100) == pytest.approx(0.0, abs=1e-6)
    const = optim.schedule(_config(lr=1.0, schedule="constant"))
    assert const(5) == pytest.approx(0.5) and const(99) == 1.0
    cool = optim.schedule(_config(lr=1.0, schedule="cooldown", cooldown_steps=20))
    assert cool(79) == 1.0 and cool(90) == pytest.approx(0.5) and cool(100) == pytest.approx(0.0)


def test_lr_per_256():
    c = _config(lr=5.0, lr_per_256=1e-3)
    c.batch_size = 1024
    assert config_lib.resolve_lr(c) == pytest.approx(4e-3)


def test_weight_decay_applies_to_kernels_only():
    tx, _ = optim.make_optimizer(_config(lr=0.0, weight_decay=0.5, warmup_steps=0, schedule="constant"), PARAMS)
    zero = jax.tree.map(jnp.zeros_like, PARAMS)
    tx_lr, _ = optim.make_optimizer(_config(lr=1.0, weight_decay=0.5, warmup_steps=0, schedule="constant"), PARAMS)
    updates, _ = tx_lr.update(zero, tx_lr.init(PARAMS), PARAMS)
    assert float(updates["img"]["Dense_0"]["kernel"][0, 0]) == pytest.approx(-0.5)
    assert float(updates["img"]["Dense_0"]["bias"][0]) == 0.0
    assert float(updates["logit_scale"]) == 0.0
    del tx


def test_frozen_groups_do_not_move():
    c = _config(lr=1.0, freeze="^img/", warmup_steps=0, schedule="constant")
    tx, _ = optim.make_optimizer(c, PARAMS)
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
    assert all(float(jnp.abs(u).max()) == 0 for u in jax.tree.leaves(updates["img"]))
    assert float(jnp.abs(updates["txt"]["proj"]["kernel"]).max()) > 0
    with pytest.raises(ValueError, match="freezes every parameter"):
        optim.make_optimizer(_config(freeze="."), PARAMS)


@pytest.mark.parametrize("name", ["adamw", "lamb", "lion"])
def test_optimizers_reduce_quadratic(name):
    c = _config(name=name, lr=0.05, warmup_steps=0, schedule="constant", weight_decay=0.0)
    params = {"w": {"kernel": jnp.full((2, 2), 3.0)}}
    tx, _ = optim.make_optimizer(c, params)
    state = tx.init(params)
    for _ in range(20):
        grads = jax.tree.map(lambda p: 2 * p, params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    assert float(np.abs(params["w"]["kernel"]).max()) < 3.0
