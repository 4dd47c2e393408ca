"""GCL-family losses against re-derived computations of the reference code's behaviour (not only the formulas):
FastCLIP (Optimization-AI/fast_clip src/fast_clip/loss.py, src/training/scheduler.py, src/training/main.py) and
the original iSogCLR (zhqiu/contrastive-learning-iSogCLR bimodal_exps/models/losses.py). Every comparison is on
global arrays with plain jax/numpy (no shard_map); clipjax runs on 1 and 8 simulated devices."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from clipjax import config as config_lib, optim
from clipjax.losses import fastclip as F
from tests.test_fastclip import AXES, B, EPS, N, RHO, _features, _hp, _mesh, _np_state, _run, ref_g, ref_u

sg = jax.lax.stop_gradient
RANKS = 4  # ranks of the simulated reference run (its gradient does not depend on the count)


@functools.lru_cache(maxsize=None)
def _mesh_for(devices):
    if devices == 8:
        return _mesh()
    return jax.make_mesh((1, 1, 1), ("data", "fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 3,
                         devices=jax.devices()[:1])


# ---------------------------------------------------------------- re-derived reference computations

def fastclip_code_loss(e1, e2, logit_scale, u1, u2, *, tau1=None, tau2=None, ranks=RANKS):
    """FastCLIP's training loss on `ranks` simulated ranks, averaged over ranks as DDP averages the gradients.

    Rank k (b = B/ranks samples) computes, with the features gathered WITHOUT gradient (A1, A2) and its own live:
      loss1_a = sum_{j != a} exp((l_a.A_j - l_a.l'_a) s_a) / (B-1)           (its anchors vs all; 'local')
      loss2_a = sum_{j local, j != a} exp((A_a.l_j - A_a.A'_a) s_a) / (b (B-1)/B)   (all anchors vs its negatives)
      L_k = (mean_local(loss1/(u+eps)) + mean_all(loss2/(u_all+eps))) / 2     (both modalities summed)
    global temperature (fastclip_v3, multiply_tau): s = exp(logit_scale) live in BOTH parts and
      loss_k = L_k / sg(s) + rho / s + mean_local(log u1 + log u2) / 2 / s;
    per-sample temperatures (fastclip_v2, FastCLIPLossIndividual): s_a = 1/tau_a constant and loss_k = L_k.
    u1, u2 [B] are the updated estimates."""
    big_b = e1.shape[0]
    b = big_b // ranks
    a1, a2 = sg(e1), sg(e2)
    diag_all = jnp.sum(a1 * a2, axis=1)
    individual = tau1 is not None
    s = jnp.exp(logit_scale)
    s1 = 1.0 / tau1 if individual else jnp.full(big_b, s)
    s2 = 1.0 / tau2 if individual else jnp.full(big_b, s)
    total = 0.0
    for k in range(ranks):
        loc = slice(k * b, (k + 1) * b)
        l1, l2 = e1[loc], e2[loc]
        diag = jnp.sum(l1 * l2, axis=1)
        mask = 1.0 - jax.nn.one_hot(jnp.arange(b) + k * b, big_b)  # [b, B]
        loss1_im = jnp.sum(mask * jnp.exp((l1 @ a2.T - diag[:, None]) * s1[loc, None]), 1) / (big_b - 1)
        loss1_tt = jnp.sum(mask * jnp.exp((l2 @ a1.T - diag[:, None]) * s2[loc, None]), 1) / (big_b - 1)
        remote_norm = b * (big_b - 1) / big_b  # the reference's weight sum when its anchors outnumber the negatives
        loss2_im = jnp.sum(mask.T * jnp.exp((a1 @ l2.T - diag_all[:, None]) * s1[:, None]), 1) / remote_norm
        loss2_tt = jnp.sum(mask.T * jnp.exp((a2 @ l1.T - diag_all[:, None]) * s2[:, None]), 1) / remote_norm
        loss = (jnp.mean(loss1_im / (u1[loc] + EPS) + loss1_tt / (u2[loc] + EPS))
                + jnp.mean(loss2_im / (u1 + EPS) + loss2_tt / (u2 + EPS))) / 2
        if not individual:
            loss = loss / sg(s) + RHO / s + jnp.mean(jnp.log(u1[loc]) + jnp.log(u2[loc])) / 2 / s
        total = total + loss
    return total / ranks


def formula_surrogate(e1, e2, logit_scale, u1, u2):
    """fastclip_v3 with tau_grad='formula': tau/B sum [g1/(eps+u1) + g2/(eps+u2)] (prefactor held) plus
    tau (1/B sum [log(eps+u1) + log(eps+u2)] + 2 rho), whose gradient is the estimator of dF."""
    tau = jnp.exp(-logit_scale)
    g1, g2 = ref_g(e1, e2, tau, tau)
    value = sg(tau) * jnp.mean(g1 / (EPS + u1) + g2 / (EPS + u2))
    return value + tau * (jnp.mean(jnp.log(EPS + u1) + jnp.log(EPS + u2)) + 2 * RHO)


def isogclr_code_loss(e1, e2, tau1, tau2, u1, u2):
    """The original iSogCLR loss (SogCLR_DRO_Loss): mean_i 1/(B-1) sum_j sg(w_ij) d_ij + the same for the text
    anchors, d_ij = e1_i.e2_j - e1_i.e2_i unscaled, w_ij = exp(d_ij/tau_i)/(u_i+eps); its gradient is that of
    1/B sum_i tau_i g_i/(eps+u_i). The positive pair is excluded from the sum as everywhere in clipjax (the
    iSogCLR code adds it to g, where it only shifts u by 1/(B-1)); its d_ii = 0 carries no gradient either way."""
    s = e1 @ e2.T
    diag = jnp.diagonal(s)
    off = 1.0 - jnp.eye(s.shape[0])
    d_img, d_txt = s - diag[:, None], s - diag[None, :]
    w_img = sg(off * jnp.exp(d_img / tau1[:, None]) / (u1[:, None] + EPS))
    w_txt = sg(off * jnp.exp(d_txt / tau2[None, :]) / (u2[None, :] + EPS))
    return (jnp.mean(jnp.sum(w_img * d_img, 1)) + jnp.mean(jnp.sum(w_txt * d_txt, 0))) / (s.shape[0] - 1)


def rgcl_batch_objective(e1, e2, tau1, tau2):
    g1, g2 = ref_g(e1, e2, tau1, tau2)
    return float(jnp.mean(tau1 * (jnp.log(EPS + g1) + RHO) + tau2 * (jnp.log(EPS + g2) + RHO)))


def per_sample_tau_grad(e1, e2, tau1, tau2, u1, u2, plain_log):
    """dF_i/dtau_i = log(eps+u_i) (iSogCLR: log u_i) + rho + tau_i dg_i/dtau_i / (eps+u_i), per modality."""
    dg1 = jax.grad(lambda t: jnp.sum(ref_g(e1, e2, t, tau2)[0]))(tau1)
    dg2 = jax.grad(lambda t: jnp.sum(ref_g(e1, e2, tau1, t)[1]))(tau2)
    log = (lambda u: np.log(u)) if plain_log else (lambda u: np.log(EPS + u))  # noqa: E731
    return (log(u1) + RHO + np.asarray(tau1 * dg1) / (EPS + u1),
            log(u2) + RHO + np.asarray(tau2 * dg2) / (EPS + u2))


def _two_steps(name, hp, mesh, logit_scale=math.log(1 / 0.07)):
    """Step 0 (gamma 1) on indices 0..B-1, then a step in epoch 1 on B indices half seen before: returns the second
    step's (value, metrics, grads), its features and the updated u (linear, numpy) of its batch."""
    state = F.init_state(name, N, mesh, hp, AXES)
    e1, e2 = _features(20)
    index0 = np.arange(B, dtype=np.int32)
    _, _, state, _ = _run(name, hp, e1, e2, logit_scale, index0, state, step=0, mesh=mesh)
    tau0 = jnp.full(B, hp.tau_init) if F.VARIANTS[name].temperature == "per_sample" else jnp.exp(-logit_scale)
    g1, g2 = ref_g(e1, e2, tau0, tau0)
    u1, u2 = np.zeros(N, np.float32), np.zeros(N, np.float32)
    u1[index0], u2[index0] = g1, g2
    taus = {k: v for k, v in _np_state(state).items() if k.startswith("tau")}
    e1, e2 = _features(21)
    index = np.arange(B // 2, B // 2 + B, dtype=np.int32)
    value, metrics, _, grads = _run(name, hp, e1, e2, logit_scale, index, state, step=3, mesh=mesh)
    gamma = float(metrics["gamma"])
    assert gamma < 1.0
    t1 = taus["tau_img"][index] if taus else jnp.exp(-logit_scale)
    t2 = taus["tau_txt"][index] if taus else jnp.exp(-logit_scale)
    g1, g2 = ref_g(e1, e2, t1, t2)
    new_u1, new_u2 = ref_u(u1[index], np.asarray(g1), gamma), ref_u(u2[index], np.asarray(g2), gamma)
    return value, metrics, grads, (e1, e2), (new_u1, new_u2), (t1, t2)


def _close(got, want, rtol=2e-4):
    scale = float(np.max(np.abs(want)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-5 * scale)


# ---------------------------------------------------------------- item: fastclip_v3 temperature gradient

@pytest.mark.parametrize("tau_grad", ["reference", "formula"])
@pytest.mark.parametrize("devices", [1, 8])
def test_v3_temperature_gradient_modes(tau_grad, devices):
    """fastclip_v3, gamma < 1 with u from an earlier step: tau_grad='reference' gives twice the gradient of the
    FastCLIP code's loss (fast_clip src/fast_clip/loss.py FastCLIPLoss.local/forward with multiply_tau: tau live
    in both pairwise parts, log u), features and logit_scale alike; 'formula' gives the estimator of dF/dtau."""
    hp = _hp(tau_grad=tau_grad)
    ls = jnp.float32(math.log(1 / 0.07))
    _, _, grads, (e1, e2), (u1, u2), _ = _two_steps("fastclip_v3", hp, _mesh_for(devices), ls)
    code = jax.grad(fastclip_code_loss, argnums=(0, 1, 2))(e1, e2, ls, jnp.asarray(u1), jnp.asarray(u2))
    formula = jax.grad(formula_surrogate, argnums=(0, 1, 2))(e1, e2, ls, jnp.asarray(u1), jnp.asarray(u2))
    want = [2 * g for g in code] if tau_grad == "reference" else formula
    for got, w in zip(grads, want):
        _close(got, w)
    for a, b in zip(code[:2], formula[:2]):  # the feature gradients agree (up to the factor 2) ...
        _close(2 * a, b)
    assert abs(2 * float(code[2]) - float(formula[2])) > 0.05 * abs(float(formula[2]))  # ... the temperature's not


def test_v3_reference_gradient_on_rank_counts():
    """The simulated FastCLIP code's gradient is the same for 1, 2 and 4 ranks (so one clipjax result serves)."""
    e1, e2 = _features(22)
    u1 = jnp.linspace(0.5, 2.0, B)
    u2 = jnp.linspace(2.0, 0.7, B)
    ls = jnp.float32(math.log(1 / 0.05))
    grads = [jax.grad(functools.partial(fastclip_code_loss, ranks=r), argnums=(0, 1, 2))(e1, e2, ls, u1, u2)
             for r in (1, 2, 4)]
    for other in grads[1:]:
        for a, b in zip(other, grads[0]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- item: anchor weights of fastclip_v2 and isogclr

@pytest.mark.parametrize("name", ["fastclip_v2", "isogclr"])
@pytest.mark.parametrize("devices", [1, 8])
def test_per_sample_anchor_weights(name, devices):
    """fastclip_v2: twice the gradient of the FastCLIP code's loss (FastCLIPLossIndividual.forward: each anchor's
    term g_i/(u_i+eps) unweighted) and its value as the 'surrogate' metric; isogclr: the gradient of the original
    iSogCLR loss (SogCLR_DRO_Loss.forward: unscaled differences, i.e. terms weighted by tau_i). The value is the
    mini-batch RGCL objective F_B for both."""
    hp = _hp(tau_lr=0.02)
    value, metrics, grads, (e1, e2), (u1, u2), (t1, t2) = _two_steps(name, hp, _mesh_for(devices))
    assert float(jnp.std(t1)) > 0  # the first step moved the per-sample temperatures apart
    u1, u2 = jnp.asarray(u1), jnp.asarray(u2)
    if name == "fastclip_v2":
        fn = functools.partial(fastclip_code_loss, tau1=t1, tau2=t2)
        want = [2 * g for g in jax.grad(fn, argnums=(0, 1))(e1, e2, 0.0, u1, u2)]
        np.testing.assert_allclose(metrics["surrogate"], fn(e1, e2, 0.0, u1, u2), rtol=1e-5)
    else:
        want = jax.grad(isogclr_code_loss, argnums=(0, 1))(e1, e2, t1, t2, u1, u2)
    for got, w in zip(grads[:2], want):
        _close(got, w)
    assert float(grads[2]) == 0.0
    np.testing.assert_allclose(value, rgcl_batch_objective(e1, e2, t1, t2), rtol=1e-5)


# ---------------------------------------------------------------- item: per-sample temperature updates

def _adam_reference(tau, m, v, grad, epoch, hp):
    """FastCLIPLossIndividual.local's update: betas 0 in epoch 0, bias corrections by epoch + 1."""
    grad = np.clip(grad, -hp.tau_grad_clip, hp.tau_grad_clip)
    b1, b2 = (0.0, 0.0) if epoch == 0 else (hp.tau_b1, hp.tau_b2)
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad ** 2
    m_hat, v_hat = m / (1 - b1 ** (epoch + 1)), v / (1 - b2 ** (epoch + 1))
    return np.clip(tau - hp.tau_lr * m_hat / (np.sqrt(v_hat) + hp.tau_eps), hp.tau_min, hp.tau_max), m, v


def _momentum_reference(tau, m, grad, hp):
    """SogCLR_DRO_Loss.forward's update: u <- (1 - beta_u) u + beta_u clip(grad), tau <- tau - eta u."""
    m = (1 - hp.beta_u) * m + hp.beta_u * np.clip(grad, -hp.tau_grad_clip, hp.tau_grad_clip)
    return np.clip(tau - hp.tau_lr * m, hp.tau_min, hp.tau_max), m


@pytest.mark.parametrize("name", ["fastclip_v2", "isogclr"])
def test_per_sample_temperature_updates_over_epochs(name):
    """Three steps in epochs 0, 1, 2 on the same samples (8 devices): the stored tau and moments follow
    fast_clip src/fast_clip/loss.py FastCLIPLossIndividual.local (fastclip_v2: Adam with the model optimiser's
    beta2/eps, both betas 0 in epoch 0, bias correction by epoch + 1, log(u + eps)) or iSogCLR
    bimodal_exps/models/losses.py SogCLR_DRO_Loss.forward (isogclr: moving average beta_u, plain step, log u)."""
    adam = name == "fastclip_v2"
    hp = _hp(tau_lr=0.004 if adam else 0.001, tau_b1=0.8, tau_b2=0.98, tau_eps=1e-6, beta_u=0.9)
    state = F.init_state(name, N, _mesh(), hp, AXES)
    assert set(state) == set(F.state_keys(name)) and ("v_img" in state) == adam and "count" not in state
    index = np.arange(B, dtype=np.int32)
    tau = {k: np.full(B, hp.tau_init, np.float32) for k in ("img", "txt")}
    m = {k: np.zeros(B, np.float32) for k in tau}
    v = {k: np.zeros(B, np.float32) for k in tau}
    u = {k: np.zeros(B, np.float32) for k in tau}
    for step, epoch in ((0, 0), (3, 1), (5, 2)):
        e1, e2 = _features(30 + step)
        _, metrics, state, _ = _run(name, hp, e1, e2, 0.0, index, state, step=step)
        assert int(F.epoch_of(step, hp)) == epoch
        g1, g2 = ref_g(e1, e2, tau["img"], tau["txt"])
        gamma = float(metrics["gamma"])
        u = {"img": ref_u(u["img"], np.asarray(g1), gamma), "txt": ref_u(u["txt"], np.asarray(g2), gamma)}
        grads = dict(zip(("img", "txt"), per_sample_tau_grad(e1, e2, tau["img"], tau["txt"], u["img"], u["txt"],
                                                              plain_log=not adam)))
        for k in tau:
            if adam:
                tau[k], m[k], v[k] = _adam_reference(tau[k], m[k], v[k], grads[k], epoch, hp)
            else:
                tau[k], m[k] = _momentum_reference(tau[k], m[k], grads[k], hp)
        got = _np_state(state)
        for k in tau:
            np.testing.assert_allclose(got[f"tau_{k}"][:B], tau[k], rtol=1e-4, atol=1e-7)
            np.testing.assert_allclose(got[f"m_{k}"][:B], m[k], rtol=1e-4, atol=1e-5)
            if adam:
                np.testing.assert_allclose(got[f"v_{k}"][:B], v[k], rtol=1e-4, atol=1e-6)
    assert np.std(tau["img"]) > 0 and np.all(tau["img"] > hp.tau_min)  # moved, and not only by clipping


# ---------------------------------------------------------------- item: fastclip_v3 temperature optimiser

def _v3_config(**loss):
    c = config_lib.default_config()
    c.total_steps = 100
    c.loss.name = "fastclip_v3"
    c.optim.update(b1=0.8, b2=0.95, eps=1e-3)
    c.loss.update(tau_lr=0.02, tau_weight_decay=0.1, **loss)
    return c


def test_temperature_optimizer_rechecks_threshold_each_step():
    """optim.make_optimizer's 'temperature' group for fastclip_v3 follows fast_clip src/training/scheduler.py
    step_lr_thresh (lr / 3 at each step whose tau <= 0.03, no latch) with the AdamW of src/training/main.py (the
    model optimiser's betas and eps, decoupled weight decay) on logit_scale = log(1/tau)."""
    c = _v3_config()
    threshold = math.log(1 / c.loss.tau_lr_drop_below)
    params = {"w": {"kernel": jnp.ones((2, 2))}, "logit_scale": jnp.float32(threshold - 0.03)}
    tx, _ = optim.make_optimizer(c, params)
    state = tx.init(params)
    assert all(x.dtype != jnp.bool_ for x in jax.tree.leaves(state))  # no latch in the optimiser state
    p, m, v = float(params["logit_scale"]), 0.0, 0.0
    o, lc = c.optim, c.loss
    dropped = []
    for t, grad in enumerate([-1.0] * 5 + [1.0] * 10, start=1):  # tau falls below 0.03, then rises above it
        lr = lc.tau_lr / 3 if math.exp(-p) <= lc.tau_lr_drop_below else lc.tau_lr
        dropped.append(lr < lc.tau_lr)
        m = o.b1 * m + (1 - o.b1) * grad
        v = o.b2 * v + (1 - o.b2) * grad ** 2
        p = p - lr * lc.tau_weight_decay * p - lr * (m / (1 - o.b1 ** t)) / (math.sqrt(v / (1 - o.b2 ** t)) + o.eps)
        grads = {"w": {"kernel": jnp.zeros((2, 2))}, "logit_scale": jnp.float32(grad)}
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        np.testing.assert_allclose(float(params["logit_scale"]), p, rtol=1e-6)
    assert dropped[0] is False and True in dropped and dropped[-1] is False  # the full rate came back


def test_scale_where_at_least_is_stateless():
    tx = optim.scale_where_at_least(1.0, 0.5)
    assert tx.init({"a": jnp.zeros(())}) == optax.EmptyState()
    updates, _ = tx.update({"a": jnp.float32(2.0)}, optax.EmptyState(), {"a": jnp.float32(1.0)})
    assert float(updates["a"]) == 1.0
    updates, _ = tx.update({"a": jnp.float32(2.0)}, optax.EmptyState(), {"a": jnp.float32(0.99)})
    assert float(updates["a"]) == 2.0


# ---------------------------------------------------------------- config wiring

def test_hparams_come_from_the_config_only():
    """No dataclass defaults; hparams(config) reads the temperature Adam's betas/eps from config.optim and the
    new keys from config.loss; the removed keys are gone and validate names bad values."""
    with pytest.raises(TypeError):
        F.Hparams()  # noqa
    c = _v3_config()
    hp = F.hparams(c)
    assert (hp.tau_b1, hp.tau_b2, hp.tau_eps) == (0.8, 0.95, 1e-3)
    assert hp.tau_lr == c.loss.tau_lr and hp.tau_grad == "reference" and hp.beta_u == 0.9
    assert config_lib.default_config().loss.tau_grad == "reference"
    assert "tau_b1" not in c.loss and "tau_b2" not in c.loss
    F.validate(c)
    for key, bad in (("loss.tau_grad", "exact"), ("loss.isogclr_beta_u", 0.0), ("optim.b2", 1.0)):
        c = _v3_config()
        section, leaf = key.split(".")
        c[section][leaf] = bad
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            F.validate(c)
