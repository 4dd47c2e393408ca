"""GCL-family losses (SogCLR, iSogCLR, FastCLIP v0-v3) on 8 simulated devices against single-device formulas."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from clipjax.losses import fastclip as F

AXES = ("data", "fsdp")
B, D, N = 16, 8, 40  # global batch, feature dim, dataset size
EPS, RHO = 1e-14, 6.5


@functools.lru_cache(maxsize=None)
def _mesh(shape=(4, 2, 1)):
    return jax.make_mesh(shape, ("data", "fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 3)


def _features(seed, batch=B, dim=D):
    k1, k2 = jax.random.split(jax.random.key(seed))
    zimg = jax.random.normal(k1, (batch, dim))
    ztxt = zimg + 1.2 * jax.random.normal(k2, (batch, dim))
    norm = lambda x: x / jnp.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    return norm(zimg), norm(ztxt)


def _hp(**kw):
    base = dict(eps=EPS, rho=RHO, gamma_min=0.3, gamma_decay_epochs=2, batch_size=B, epoch_size=N, tau_init=0.03,
                tau_lr=0.05, tau_b1=0.9, tau_b2=0.98, tau_eps=1e-6, beta_u=0.9, tau_grad_clip=5.0, tau_min=0.01,
                tau_max=1.0, tau_grad="formula", shard_above=1 << 20)
    base.update(kw)
    return F.Hparams(**base)


# ---------------------------------------------------------------- single-device reference formulas (linear space)

def ref_g(e1, e2, tau1, tau2):
    """g1_i, g2_i [B] from global features; tau1, tau2 scalar or [B]."""
    s = e1 @ e2.T  # s_ij = e1_i . e2_j
    pos = jnp.diagonal(s)
    off = 1.0 - jnp.eye(s.shape[0])
    tau1 = jnp.broadcast_to(tau1, pos.shape)[:, None]
    tau2 = jnp.broadcast_to(tau2, pos.shape)[:, None]
    g1 = jnp.sum(off * jnp.exp((s - pos[:, None]) / tau1), 1) / (s.shape[0] - 1)
    g2 = jnp.sum(off * jnp.exp((s.T - pos[:, None]) / tau2), 1) / (s.shape[0] - 1)
    return g1, g2


def ref_u(u_old, g, gamma):
    """u <- (1-gamma) u + gamma g, reset to g where u is 0 / inf / nan."""
    fresh = (u_old == 0) | ~np.isfinite(u_old)
    return np.where(fresh, g, (1 - gamma) * u_old + gamma * g)


def ref_grads(name, e1, e2, logit_scale, u1, u2, tau1=None, tau2=None):
    """The exact estimator's gradient on one device with u held fixed: features and logit_scale (fastclip_v3's
    'formula' temperature gradient; fastclip_v2's terms unweighted, the others weighted by tau)."""
    obj = F.VARIANTS[name].objective
    temp = F.VARIANTS[name].temperature

    def surrogate(e1, e2, ls):
        tau = jnp.exp(-ls)
        t1, t2 = (tau1, tau2) if temp == "per_sample" else (tau, tau)
        g1, g2 = ref_g(e1, e2, t1, t2)
        pre1, pre2 = jax.lax.stop_gradient(t1), jax.lax.stop_gradient(t2)
        if not F.VARIANTS[name].weighted:
            pre1 = pre2 = 1.0
        s = jnp.mean(pre1 * g1 / (EPS + u1) + pre2 * g2 / (EPS + u2))
        if obj == "rgcl_g":  # dF/dtau = mean(log(eps+u1) + log(eps+u2)) + 2 rho + tau g'/(eps+u) terms
            s = s + tau * (jnp.mean(jnp.log(EPS + u1) + jnp.log(EPS + u2)) + 2 * RHO)
        return s

    return jax.grad(surrogate, argnums=(0, 1, 2))(e1, e2, logit_scale)


def ref_batch_objective(name, e1, e2, logit_scale, tau1=None, tau2=None, prefactor_grad=True, weighted=True):
    """The mini-batch objective F_B (what the estimator reduces to with gamma = 1); weighted=False: RGCL's terms
    without the tau_i prefactor (fastclip_v2's feature gradient)."""
    obj = F.VARIANTS[name].objective
    tau = jnp.exp(-logit_scale)
    if obj == "rgcl":
        g1, g2 = ref_g(e1, e2, tau1, tau2)
        w1, w2 = (tau1, tau2) if weighted else (1.0, 1.0)
        return jnp.mean(w1 * (jnp.log(EPS + g1) + RHO) + w2 * (jnp.log(EPS + g2) + RHO))
    g1, g2 = ref_g(e1, e2, tau, tau)
    pre = tau if prefactor_grad else jax.lax.stop_gradient(tau)
    value = pre * jnp.mean(jnp.log(EPS + g1) + jnp.log(EPS + g2))
    return value + 2 * RHO * tau if obj == "rgcl_g" else value


# ---------------------------------------------------------------- helpers running the sharded loss

def _run(name, hp, e1, e2, logit_scale, index, state, step, mesh=None):
    """jit(value_and_grad) of the sharded loss -> (value, metrics, new_state, (g_img, g_txt, g_scale))."""
    mesh = mesh or _mesh()
    fn = F.make_loss(name, mesh, hp, AXES)
    batch = NamedSharding(mesh, P(AXES))
    e1, e2, index = jax.device_put((e1, e2, index), batch)

    @jax.jit
    def go(e1, e2, ls, index, state, step):
        def f(e1, e2, ls):
            value, metrics, new = fn(e1, e2, ls, index, state, step)
            return value, (metrics, new)
        (value, (metrics, new)), grads = jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)(e1, e2, ls)
        return value, metrics, new, grads

    return go(e1, e2, jnp.float32(logit_scale), index, state, jnp.int32(step))


def _np_state(state, n=N):
    return {k: np.asarray(v)[:n] for k, v in state.items()}


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("name", ["fastclip_v1", "fastclip_v0", "isogclr", "fastclip_v2", "fastclip_v3"])
def test_gradient_equals_exact_estimator(name):
    """8 devices, u from earlier steps: the gradient equals jax.grad of the one-device surrogate (u fixed; v3 with
    tau_grad='formula'), and the u update follows the formula (first-seen and repeated indices)."""
    hp = _hp()
    per_sample = F.VARIANTS[name].temperature == "per_sample"
    mesh = _mesh()
    state = F.init_state(name, N, mesh, hp, AXES)
    logit_scale = math.log(1 / 0.1)
    rng = np.random.default_rng(0)
    u1 = np.full(N, 0.0, np.float32)  # 0 = never seen
    u2 = np.full(N, 0.0, np.float32)
    taus = {k: np.asarray(v) for k, v in _np_state(state).items() if k.startswith("tau")}
    prev = np.zeros(0, np.int32)
    for step in range(2):
        e1, e2 = _features(step)
        index = rng.choice(N, B, replace=False).astype(np.int32)
        if step == 1:
            index[:5] = prev[:5]  # repeated indices, the rest mostly first seen
        value, metrics, state, grads = _run(name, hp, e1, e2, logit_scale, index, state, step=step * 3)
        gamma = float(metrics["gamma"])
        t1 = taus["tau_img"][index] if per_sample else None
        t2 = taus["tau_txt"][index] if per_sample else None
        tau = jnp.exp(-logit_scale)
        g1, g2 = ref_g(e1, e2, tau if t1 is None else t1, tau if t2 is None else t2)
        new_u1, new_u2 = ref_u(u1[index], np.asarray(g1), gamma), ref_u(u2[index], np.asarray(g2), gamma)
        got = _np_state(state)
        last = {int(j): i for i, j in enumerate(index)}  # stored: the last occurrence of a repeated index
        keys, rows = np.array(list(last)), np.array(list(last.values()))
        np.testing.assert_allclose(np.exp(got["log_u_img"][keys]), new_u1[rows], rtol=2e-5)
        np.testing.assert_allclose(np.exp(got["log_u_txt"][keys]), new_u2[rows], rtol=2e-5)
        unseen = np.setdiff1d(np.arange(N), np.concatenate([index, prev]))
        assert np.all(np.isneginf(got["log_u_img"][unseen]))
        want = ref_grads(name, e1, e2, jnp.float32(logit_scale), new_u1, new_u2, t1, t2)
        scale = max(float(jnp.max(jnp.abs(w))) for w in want[:2])
        for g, w in zip(grads[:2], want[:2]):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * scale)
        if F.VARIANTS[name].temperature in ("model", "own"):
            np.testing.assert_allclose(grads[2], want[2], rtol=1e-4)
        else:
            assert float(grads[2]) == 0.0
        u1[keys], u2[keys] = new_u1[rows], new_u2[rows]
        if per_sample:
            taus = {k: got[k] for k in ("tau_img", "tau_txt")}
        prev = index
    assert gamma < 1.0 and len(keys) < B  # step 2: gamma < 1 on the repeats, and a repeat within the batch
    assert np.isfinite(float(value)) and np.isfinite(float(metrics["surrogate"]))


@pytest.mark.parametrize("name", ["fastclip_v0", "isogclr", "fastclip_v2", "fastclip_v3"])
@pytest.mark.parametrize("devices", [1, 8])
def test_gamma_one_is_minibatch_objective(name, devices):
    """First visits (and gamma = 1 in epoch 0): u = g, so the value is F_B and the gradient is jax.grad(F_B), on 1 and 8 devices
    (fastclip_v2: F_B without the tau_i prefactors; fastclip_v3: tau_grad='formula')."""
    hp = _hp()
    mesh = _mesh() if devices == 8 else jax.make_mesh(
        (1, 1, 1), ("data", "fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 3, devices=jax.devices()[:1])
    state = F.init_state(name, N, mesh, hp, AXES)
    e1, e2 = _features(3)
    index = np.arange(B, dtype=np.int32) * 2
    ls = jnp.float32(math.log(1 / 0.05))
    value, metrics, _, grads = _run(name, hp, e1, e2, ls, index, state, step=0, mesh=mesh)
    # first visits: u = g whatever gamma is (isogclr's gamma is constant, the others' is 1 in epoch 0)
    assert float(metrics["gamma"]) == pytest.approx(hp.gamma_min if F.VARIANTS[name].gamma == "constant" else 1.0)
    temp = F.VARIANTS[name].temperature
    tau1 = tau2 = jnp.full(B, hp.tau_init) if temp == "per_sample" else None
    want_value = ref_batch_objective(name, e1, e2, ls, tau1, tau2)
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    want = jax.grad(functools.partial(ref_batch_objective, name, tau1=tau1, tau2=tau2, prefactor_grad=temp != "model",
                                      weighted=F.VARIANTS[name].weighted), argnums=(0, 1, 2))(e1, e2, ls)
    scale = max(float(jnp.max(jnp.abs(w))) for w in want[:2])
    for g, w in zip(grads[:2], want[:2]):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * scale)
    if temp in ("model", "own"):
        np.testing.assert_allclose(grads[2], want[2], rtol=1e-4)


def test_per_sample_temperature_adam_step():
    """fastclip_v2 in epoch 0: both betas are 0, so the new per-sample tau is tau - lr g/(|g| + eps) for the
    clipped dF_i/dtau_i (gamma = 1: u = g), m = g and v = g^2 (the later epochs: test_fastclip_reference)."""
    hp = _hp(tau_lr=0.01)
    name = "fastclip_v2"
    state = F.init_state(name, N, _mesh(), hp, AXES)
    e1, e2 = _features(4)
    index = np.arange(B, dtype=np.int32)
    _, _, state, _ = _run(name, hp, e1, e2, 0.0, index, state, step=0)
    tau0 = jnp.full(B, hp.tau_init)
    # dF/dtau_i of tau_i (log(eps + g_i(tau_i)) + rho), per anchor
    d1 = jax.grad(lambda t: jnp.sum(t * (jnp.log(EPS + ref_g(e1, e2, t, tau0)[0]) + RHO)))(tau0)
    d2 = jax.grad(lambda t: jnp.sum(t * (jnp.log(EPS + ref_g(e1, e2, tau0, t)[1]) + RHO)))(tau0)
    got = _np_state(state)
    for key, d in (("img", d1), ("txt", d2)):
        clipped = np.clip(np.asarray(d), -5, 5)
        # epoch 0: m_hat = m = g, v_hat = v = g^2 -> step = lr * g / (|g| + eps)
        want = np.clip(hp.tau_init - hp.tau_lr * clipped / (np.abs(clipped) + hp.tau_eps), hp.tau_min, hp.tau_max)
        np.testing.assert_allclose(got[f"tau_{key}"][index], want, rtol=1e-5)
        np.testing.assert_allclose(got[f"m_{key}"][index], clipped, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got[f"v_{key}"][index], clipped ** 2, rtol=1e-4, atol=1e-6)
        assert np.all(got[f"m_{key}"][B:] == 0) and np.all(got[f"tau_{key}"][B:] == hp.tau_init)
    assert "count" not in got


def test_sharded_and_replicated_state_same_trajectory():
    """Three steps with overlapping and repeated indices: index-range-sharded state == replicated state."""
    name = "fastclip_v2"
    runs = []
    for shard_above in (1 << 20, 0):
        hp = _hp(shard_above=shard_above)
        state = F.init_state(name, N, _mesh(), hp, AXES)
        assert F.is_sharded(state, hp) == (shard_above == 0)
        rng = np.random.default_rng(1)
        values, grads_all = [], []
        for step in range(3):
            e1, e2 = _features(10 + step)
            index = rng.choice(N, B, replace=False).astype(np.int32)
            index[-1] = index[0]  # a repeat within the batch: the last occurrence wins
            value, _, state, grads = _run(name, hp, e1, e2, 0.0, index, state, step=step * 3)
            values.append(float(value))
            grads_all.append(np.asarray(grads[0]))
        runs.append((values, grads_all, _np_state(state)))
    (v_r, g_r, s_r), (v_s, g_s, s_s) = runs
    np.testing.assert_allclose(v_s, v_r, rtol=1e-6)
    for a, b in zip(g_s, g_r):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for k in s_r:
        np.testing.assert_array_equal(s_s[k], s_r[k])


def test_sharded_state_layout():
    """Above the threshold the state is padded to the device count and split by index range."""
    hp = _hp(shard_above=10)
    state = F.init_state("fastclip_v3", 37, _mesh(), hp, AXES)
    x = state["log_u_img"]
    assert x.shape == (40,) and x.sharding.spec == P(AXES)
    assert sorted(s.data.shape[0] for s in x.addressable_shards) == [5] * 8
    assert F.init_state("fastclip_v3", 10, _mesh(), hp, AXES)["log_u_img"].sharding.spec == P()


def test_last_occurrence_and_gamma_schedule():
    keep = F.last_occurrence(jnp.array([3, 1, 3, 2, 1, 3]))
    np.testing.assert_array_equal(keep, [False, False, False, True, True, True])
    hp = _hp(gamma_min=0.2, gamma_decay_epochs=4, batch_size=10, epoch_size=100)
    gammas = [float(F.gamma_schedule(s, hp)) for s in (0, 9, 10, 20, 30, 39, 40, 400)]
    cos = lambda e: 0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * e / 4))  # noqa: E731
    np.testing.assert_allclose(gammas, [1, 1, cos(1), cos(2), cos(3), cos(3), 0.2, 0.2], rtol=1e-6)
    hp0 = _hp(gamma_min=0.9, gamma_decay_epochs=0, batch_size=10, epoch_size=100)
    assert [float(F.gamma_schedule(s, hp0)) for s in (9, 10)] == [1.0, pytest.approx(0.9)]
    # SogCLR / iSogCLR (Optimization-AI/iSogCLR bimodal_exps/models/losses.py): one constant gamma from step 0
    assert [float(F.gamma_schedule(s, hp, "constant")) for s in (0, 40)] == [pytest.approx(0.2)] * 2
    assert F.VARIANTS["sogclr"].gamma == F.VARIANTS["isogclr"].gamma == "constant"
    assert F.VARIANTS["fastclip_v1"].gamma == F.VARIANTS["fastclip_v3"].gamma == "cosine"


def test_nonfinite_u_is_reset_and_large_logits_are_finite():
    """u = inf / nan is reset to g; tau = 0.01 with opposed features (g ~ e^200) stays finite in log space."""
    log_u = jnp.array([jnp.inf, jnp.nan, -jnp.inf, 0.0])
    new = F.update_log_u(log_u, jnp.full(4, 2.0), jnp.float32(0.5))
    np.testing.assert_allclose(new, [2.0, 2.0, 2.0, np.log(0.5 + 0.5 * np.e ** 2)], rtol=1e-6)
    hp = _hp()
    e1, _ = _features(5)
    e2 = -e1  # positives at -1: every exponent (s_ij - s_ii)/tau is up to +200
    state = F.init_state("fastclip_v3", N, _mesh(), hp, AXES)
    value, metrics, state, grads = _run("fastclip_v3", hp, e1, e2, math.log(100.0),
                                        np.arange(B, dtype=np.int32), state, step=0)
    assert np.isfinite(float(value)) and float(metrics["log_u_mean"]) > 100
    assert all(np.all(np.isfinite(g)) for g in grads)


# ---------------------------------------------------------------- end to end through the Trainer

def _small_config(loss, **overrides):
    """configs/fastclip/tiny.py shrunk so each compile takes seconds: 64 examples, batch 16 (4 steps an epoch)."""
    from tests.helpers import load_config
    base = dict(loss__name=loss, total_steps=6, batch_size=16, data__image_size=16, data__text_length=8,
                data__size=64, model__embed_dim=32, log_every_steps=1, evals__every_steps=0, evals__num_examples=32,
                evals__batch_size=32, checkpoint__every_steps=3, progress_bar=False, optim__warmup_steps=1,
                loss__gamma_decay_epochs=1, loss__tau_lr=0.05)
    base.update(overrides)
    config = load_config("fastclip/tiny.py", **base)
    config.model.image.image_size = config.data.image_size
    config.model.text.context_length = config.data.text_length
    return config


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["sogclr", "isogclr", "fastclip_v0", "fastclip_v1", "fastclip_v2", "fastclip_v3"])
def test_trainer_runs_every_loss(loss):
    """A few steps past the first epoch (gamma < 1, indices seen again): finite loss, state filled, and the model's
    temperature moves only where the variant learns it."""
    from clipjax import sharding, train
    from clipjax.data import pipeline
    config = _small_config(loss)
    trainer = train.Trainer(config)
    it, size = pipeline.make_train_iterator(config, 0, 1)
    state = trainer.init_state(size)
    scale0 = float(state.params["logit_scale"])
    for _ in range(6):
        state, m = trainer.step_fn(state, sharding.global_batch(next(it), trainer.mesh))
        assert np.isfinite(float(m["train/loss"])) and int(m["train/skipped"]) == 0
    assert float(m["train/gamma"]) < 1.0
    log_u = np.asarray(state.loss_state["log_u_img"])
    assert np.all(np.isfinite(log_u[:size]))  # every example seen in the first epoch
    moved = abs(float(state.params["logit_scale"]) - scale0) > 1e-6
    assert moved == (F.VARIANTS[loss].temperature in ("model", "own"))
    if F.VARIANTS[loss].temperature == "per_sample":
        assert np.all(np.asarray(state.loss_state["m_img"])[:size] != 0)
        assert np.std(np.asarray(state.loss_state["tau_img"])[:size]) > 0


@pytest.mark.slow
def test_checkpoint_round_trip_restores_sharded_state(tmp_path):
    """fastclip_v2 with index-range-sharded state: the checkpoint train_and_evaluate writes at step 3 restores (in
    its sharding) exactly the state of 3 in-memory steps (the loop's resume itself is tested in test_train)."""
    from clipjax import checkpoint, sharding, train
    from clipjax.data import pipeline
    config = _small_config("fastclip_v2", loss__shard_state_above=0)
    train.train_and_evaluate(config, str(tmp_path), stop_at=3)
    trainer = train.Trainer(config)
    it, size = pipeline.make_train_iterator(config, 0, 1)
    state = trainer.init_state(size)
    for _ in range(3):
        state, _ = trainer.step_fn(state, sharding.global_batch(next(it), trainer.mesh))
    ckpt = checkpoint.Checkpointer(str(tmp_path), config.checkpoint)
    restored = ckpt.restore(3, trainer.abstract)
    ckpt.close()
    log_u = restored.loss_state["log_u_img"]  # split by index range (a size-1 axis may be dropped from the spec)
    assert log_u.sharding.is_equivalent_to(NamedSharding(trainer.mesh, P(AXES)), log_u.ndim)
    assert not log_u.sharding.is_fully_replicated
    assert np.sum(np.isfinite(np.asarray(restored.loss_state["log_u_img"]))) == 3 * 16  # 3 batches seen
    for k in state.loss_state:
        np.testing.assert_array_equal(np.asarray(restored.loss_state[k]), np.asarray(state.loss_state[k]))
    for x, y in zip(jax.tree.leaves(restored.params), jax.tree.leaves(state.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6)
