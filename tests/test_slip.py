"""SLIP (arXiv 2112.12750): NT-Xent over the global batch against the one-device formula (values and gradients),
the simclr views, the train step with the SimCLR head on 1 and 8 devices, bad configs and export without the head."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from clipjax import checkpoint, losses, recipes, sharding, train, validation
from clipjax.data import pipeline
from clipjax.interop import files, weights
from clipjax.losses import ssl
from clipjax.models import ssl_head
from tests.test_train import small_config

BATCH_AXES = ("data", "fsdp")


@functools.lru_cache(maxsize=None)
def _mesh(shape):
    devices = jax.devices()[:int(np.prod(shape))]
    return jax.make_mesh(shape, ("data", "fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 3,
                         devices=devices)


def _views(key, n, d=12):
    k1, k2 = jax.random.split(key)
    a = jax.random.normal(k1, (n, d))
    return a, a + 0.8 * jax.random.normal(k2, (n, d))  # view b: a noisy copy of a (unnormalised)


@pytest.mark.parametrize("shape", [(1, 1, 1), (8, 1, 1), (2, 4, 1)], ids=lambda s: "x".join(map(str, s)))
def test_nt_xent_value_and_grad_match_one_device_formula(shape):
    mesh = _mesh(shape)
    a, b = _views(jax.random.key(0), 32)
    f = ssl.sharded_nt_xent(mesh, temperature=0.1, batch_axes=BATCH_AXES)
    a_s, b_s = jax.device_put((a, b), NamedSharding(mesh, P(BATCH_AXES)))
    (loss, metrics), grads = jax.jit(jax.value_and_grad(f, (0, 1), has_aux=True))(a_s, b_s)
    ref_loss, ref_grads = jax.value_and_grad(ssl.nt_xent_reference, (0, 1))(a, b, 0.1)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-7)
    assert float(jnp.max(jnp.abs(grads[0]))) > 1e-3  # a gradient that is really there
    assert 0.0 < float(metrics["ssl_accuracy"]) <= 1.0


def test_nt_xent_orders_matched_and_shuffled_views():
    a, b = _views(jax.random.key(1), 16, d=16)
    f = jax.jit(ssl.sharded_nt_xent(_mesh((8, 1, 1)), 0.1))  # one compile: every call below has [16, 16] inputs
    matched, m = f(a, b)
    shuffled, _ = f(a, b[::-1])
    perfect, mp = f(jnp.eye(16), jnp.eye(16))
    # orthonormal rows: positive logit 10, the 2N - 2 = 30 negatives 0
    np.testing.assert_allclose(perfect, np.log1p(30 * np.exp(-10.0)), atol=3e-6)
    assert float(mp["ssl_accuracy"]) == 1.0
    assert float(matched) < float(shuffled)
    # reference by hand for 2 rows: logits of row 0 of view a: [a0.b0, a0.b1, a0.a1] / tau, positive first
    x = np.array([[1.0, 0.0], [0.6, 0.8]])
    y = np.array([[0.8, 0.6], [0.0, 1.0]])
    want = []
    for q, same, other in ((x, x, y), (y, y, x)):
        for i in range(2):
            logits = np.concatenate([other @ q[i], np.delete(same @ q[i], i)]) / 0.5
            want.append(np.log(np.sum(np.exp(logits))) - logits[i])
    np.testing.assert_allclose(ssl.nt_xent_reference(x, y, 0.5), np.mean(want), rtol=1e-5)


def slip_config(**overrides):
    base = dict(data__augment="simclr", loss__ssl_scale=1.0, loss__ssl_hidden_dim=32, loss__ssl_out_dim=16,
                data__size=64)
    base.update(overrides)
    return small_config(**base)


def test_simclr_views_differ_from_each_other_and_the_clip_view():
    it, _ = pipeline.make_train_iterator(slip_config(), 0, 1)
    batch = next(it)
    views, image = batch["views"].astype(np.int32), batch["image"].astype(np.int32)
    assert views.shape == (16, 2, 16, 16, 3) and views.dtype == np.int32
    assert np.mean(np.abs(views[:, 0] - views[:, 1])) > 5
    assert np.mean(np.abs(views[:, 0] - image)) > 5


def _run(config, devices, n, start=None):
    """n steps from a fresh state, or from `start` (a host copy of one; no init to compile):
    (final state, host copy of the initial state, metrics)."""
    trainer = train.Trainer(config, sharding.make_mesh(config.mesh, devices))
    it, size = pipeline.make_train_iterator(config, 0, 1)
    if start is None:
        state = trainer.init_state(size)
    else:
        trainer.setup(size)
        state = jax.device_put(start, trainer.state_shardings)
    first = jax.device_get(state)  # the step donates the state
    metrics = []
    for _ in range(n):
        state, m = trainer.step_fn(state, sharding.global_batch(next(it), trainer.mesh))
        metrics.append({k: float(v) for k, v in m.items()})
    return state, first, metrics


@pytest.fixture(scope="module")
def slip_on_eight():
    """SLIP + CLIP, 2 steps on 8 devices: (config, state, initial state on the host, metrics)."""
    config = slip_config()
    return (config, *_run(config, jax.devices(), 2))


def test_slip_step_same_on_one_and_eight_devices(slip_on_eight):
    config, state8, first, m8 = slip_on_eight
    state1, _, m1 = _run(config, jax.devices()[:1], 2, start=first)  # the same start, one device
    for a, b in zip(m1, m8):
        np.testing.assert_allclose([a["train/loss"], a["train/ssl_loss"]], [b["train/loss"], b["train/ssl_loss"]],
                                   rtol=2e-4)
        np.testing.assert_allclose(a["train/loss"], a["train/image_text_loss"] + a["train/ssl_loss"], rtol=1e-5)
        assert a["train/ssl_loss"] > 0.1
    head0 = first.params[ssl_head.HEAD_KEY]
    head1 = jax.device_get(state1.params[ssl_head.HEAD_KEY])
    assert np.max(np.abs(head1["linear0"]["kernel"] - head0["linear0"]["kernel"])) > 0  # the head is trained
    np.testing.assert_allclose(head1["out"]["kernel"], jax.device_get(state8.params[ssl_head.HEAD_KEY])["out"]["kernel"],
                               rtol=2e-3, atol=1e-5)


def test_slip_term_adds_to_a_fastclip_loss():
    """The registry's loss for fastclip_v3 + ssl_scale 0.5 = FastCLIP's own value + 0.5 x NT-Xent of the views."""
    config = slip_config(loss__name="fastclip_v3", loss__ssl_scale=0.5)
    mesh = sharding.make_mesh(config.mesh, jax.devices())
    zimg, ztxt = (x / jnp.linalg.norm(x, axis=1, keepdims=True) for x in _views(jax.random.key(2), 16, 8))
    ssl_a, ssl_b = _views(jax.random.key(3), 16)
    out = {"zimg": zimg, "ztxt": ztxt, "logit_scale": jnp.log(10.0), "ssl_a": ssl_a, "ssl_b": ssl_b}
    batch = {"index": jnp.arange(16, dtype=jnp.int32)}
    state = losses.init_loss_state(config, 64, mesh)
    step = jnp.asarray(0, jnp.int32)
    total, m, _ = jax.jit(losses.make_loss(config, mesh))(out, batch, state, step)
    config.loss.ssl_scale = 0.0
    alone, _, _ = jax.jit(losses.make_loss(config, mesh))(out, batch, state, step)
    np.testing.assert_allclose(m["image_text_loss"], alone, rtol=1e-6)
    np.testing.assert_allclose(m["ssl_loss"], ssl.nt_xent_reference(ssl_a, ssl_b, 0.1), rtol=1e-5)
    np.testing.assert_allclose(total, alone + 0.5 * m["ssl_loss"], rtol=1e-6)


def test_ssl_without_simclr_views_is_refused():
    with pytest.raises(ValueError, match=r"config\.data\.augment = 'none'.*simclr.*loss\.ssl_scale"):
        validation.validate(slip_config(data__augment="none"))
    with pytest.raises(ValueError, match=r"config\.data\.augment = 'simclr'.*loss\.ssl_scale = 0"):
        validation.validate(slip_config(loss__ssl_scale=0.0))
    with pytest.raises(ValueError, match=r"config\.loss\.ssl_temperature"):
        validation.validate(slip_config(loss__ssl_temperature=0.0))


def test_export_leaves_the_head_out(tmp_path, slip_on_eight):
    config, state, _, _ = slip_on_eight
    train.prepare_workdir(str(tmp_path), config, True)  # a training workdir: config.json + checkpoints/1
    ckpt = checkpoint.Checkpointer(str(tmp_path), config.checkpoint)
    ckpt.save(1, state)
    ckpt.wait()
    ckpt.close()
    params, model = files.load_clipjax(str(tmp_path))
    assert params and not [k for k in params if k.startswith(ssl_head.HEAD_KEY)]
    state_dict = weights.to_torch_layout(params, model, "openclip")
    assert "visual.proj" in state_dict and not [k for k in state_dict if "ssl" in k]
    files.save_clipjax(str(tmp_path / "export"), params, model)
    again, _ = files.load_clipjax(str(tmp_path / "export"))
    assert sorted(again) == sorted(params)


@pytest.mark.parametrize("strategy", ["clip", "clip_aug", "flip", "slip"])
def test_scaling_down_cpu_twins_trace_a_step_at_equal_compute(strategy):
    """configs/scaling_down/tiny_*.py: a train step traces (SLIP with its views); steps x cost = CLIP's steps."""
    from tests.helpers import load_config
    config = load_config(f"scaling_down/tiny_{strategy}.py")
    cost = recipes.SCALING_DOWN_STRATEGIES[strategy]["cost"]
    assert config.total_steps * cost == load_config("scaling_down/tiny_clip.py").total_steps
    trainer = train.Trainer(config)
    abstract = trainer.setup(4096)
    b, h = config.batch_size, config.data.image_size
    batch = {"image": jax.ShapeDtypeStruct((b, h, h, 3), jnp.uint8),
             "tokens": jax.ShapeDtypeStruct((b, config.data.text_length), jnp.int32),
             "index": jax.ShapeDtypeStruct((b,), jnp.int32)}
    if strategy == "slip":
        batch["views"] = jax.ShapeDtypeStruct((b, 2, h, h, 3), jnp.uint8)
    _, metrics = jax.eval_shape(trainer.step_fn, abstract, batch)
    assert ("train/ssl_loss" in metrics) == (strategy == "slip")
