"""Global contrastive losses with per-sample moving-average estimators: SogCLR, iSogCLR, FastCLIP v0-v3.

Notation: global batch B = n * b split over n devices along the batch axes; e1 = zimg, e2 = ztxt [B, D], unit
norm; tau temperature. For anchor i (its positive excluded from the sum and subtracted in the exponent):
  g1_i = 1/(B-1) sum_{j != i} exp((e1_i.e2_j - e1_i.e2_i) / tau1_i)      (image anchor vs all texts)
  g2_i = 1/(B-1) sum_{j != i} exp((e1_j.e2_i - e1_i.e2_i) / tau2_i)      (text anchor vs all images)
Objectives (mean over the dataset, estimated on the batch):
  GCL    (sogclr, fastclip_v0, v1): F = tau/n sum_i [log(eps+g1_i) + log(eps+g2_i)]
  RGCL   (isogclr, fastclip_v2):    F = 1/n sum_i tau1_i (log(eps+g1_i) + rho) + tau2_i (log(eps+g2_i) + rho)
  RGCL-g (fastclip_v3):             F = tau/n sum_i [log(eps+g1_i) + log(eps+g2_i)] + 2 rho tau
Estimator: every sample keeps u1_i, u2_i (stored as log u, indexed by its global dataset index, persistent):
  u_i <- (1 - gamma) u_i + gamma g_i   for the samples of the batch; u that is 0 (never seen), inf or NaN -> g_i,
and the gradient of F is estimated with the UPDATED u held constant:
  grad F ~ 1/B sum_i w_i [grad g1_i / (eps+u1_i) + grad g2_i / (eps+u2_i)]   (+ the temperature terms below),
with w_i = tau_i (the objective's prefactor) except for fastclip_v2, whose reference code (Optimization-AI/fast_clip,
FastCLIPLossIndividual.forward) weights every anchor by 1; the original iSogCLR code weights by tau_i.
Everything is computed in log space (log g by logsumexp, ratios g/(eps+u) as exp(log g - log(eps+u))), so the
exp(2/tau) ~ e^200 range of g at tau = 0.01 never overflows in float32 (features arrive as float32). The reference
implementations keep a per-sample running max ("bound") for the same purpose; the arithmetic is the same.
Gradients here are twice those of the FastCLIP reference code's loss (it averages the image and text terms;
iSogCLR's code sums them, as here); AdamW is insensitive to that constant factor (up to its eps).

Temperatures (see VARIANTS):
  fixed      (sogclr, fastclip_v1): tau = exp(-logit_scale) of the model, kept constant (frozen in optim.py).
  model      (fastclip_v0): the model's logit_scale, updated with the model (OpenCLIP-style): its gradient is the
             surrogate's with the prefactor tau held fixed, tau/B sum_i dg_i/dtau / (eps+u_i), i.e. OpenCLIP's
             cross-entropy temperature gradient with u in place of the batch g, times tau.
  own        (fastclip_v3): the model's logit_scale = log(1/tau) with its own AdamW (optim.temperature_optimizer).
             tau_grad = 'formula': the estimator of dF/dtau = 1/B sum_i [log(eps+u1_i) + log(eps+u2_i)
             + tau (dg1_i/dtau / (eps+u1_i) + dg2_i/dtau / (eps+u2_i))] + 2 rho.
             tau_grad = 'reference' (the published runs; fast_clip FastCLIPLoss.forward with multiply_tau): tau is
             live in both its local and its remote pairwise terms, so the tau g'/(eps+u) part counts twice, and the
             log term is log u:  1/B sum_i [log u1_i + log u2_i + 2 tau (dg1_i/dtau / (eps+u1_i)
             + dg2_i/dtau / (eps+u2_i))] + 2 rho.
  per_sample (isogclr, fastclip_v2): tau1_i, tau2_i in the per-sample state, moved with the estimated gradient
             dF_i/dtau_i = log(eps+u_i) + rho + tau_i dg_i/dtau_i / (eps+u_i) (iSogCLR: log u_i in place of
             log(eps+u_i)), clipped to +-grad_clip, then tau kept in [tau_min, tau_max]:
             fastclip_v2 (fast_clip FastCLIPLossIndividual.local): Adam with the model optimiser's betas and eps,
               both betas 0 during epoch 0 and bias corrections 1 - beta^(epoch+1) (epoch, not a per-sample count);
             isogclr (iSogCLR SogCLR_DRO_Loss.forward): m <- (1 - beta_u) m + beta_u grad, tau <- tau - tau_lr m.

Communication (FastCLIP): features are all-gathered WITHOUT gradient (no reduce-scatter in the backward pass); the
updated log(eps+u) (and per-sample tau) are all-gathered (O(B) scalars); each device's surrogate is
  (its anchors vs all negatives) + (all anchors vs its negatives, weighted by 1/(eps+u) of the anchor),
where in the first part only the local anchors (and their positives) carry gradient and in the second only the
local negatives do. Every term exp((e_a.e_c - e_a.e_p)/tau) of the exact surrogate then depends on each of its
live variables in exactly one place, so sum over devices of the local gradients == the exact estimator's gradient;
the parameter gradients are then all-reduced once, as for any data-parallel loss.

Per-sample state: a dict of [N] arrays (N = data_size, the largest global index + 1), replicated when
N <= shard_above, else padded to a multiple of the device count and split by index range over the batch axes
(device k owns indices [k*N/n, (k+1)*N/n)). `lookup` reads the batch's entries, `scatter` writes the batch's new
values (for an index repeated within a batch the last occurrence wins).
"""
import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from clipjax import config as config_lib
from clipjax.losses import registry

AxisName = str | tuple[str, ...]
sg = jax.lax.stop_gradient


@dataclasses.dataclass(frozen=True)
class Variant:
    objective: str          # 'gcl' | 'rgcl' | 'rgcl_g'
    temperature: str        # 'fixed' | 'model' | 'own' | 'per_sample'
    tau_update: str = ""    # per_sample: 'adam' (FastCLIP-v2) | 'momentum' (iSogCLR)
    weighted: bool = True   # surrogate terms weighted by the anchor's temperature (False: FastCLIP-v2)
    gamma: str = "cosine"   # 'cosine' (FastCLIP: 1 in epoch 0, then cosine) | 'constant' (SogCLR, iSogCLR code)


VARIANTS = {
    "sogclr": Variant("gcl", "fixed", gamma="constant"),
    "fastclip_v0": Variant("gcl", "model"),
    "fastclip_v1": Variant("gcl", "fixed"),
    "isogclr": Variant("rgcl", "per_sample", tau_update="momentum", gamma="constant"),
    "fastclip_v2": Variant("rgcl", "per_sample", tau_update="adam", weighted=False),
    "fastclip_v3": Variant("rgcl_g", "own"),
}
TAU_GRADS = ("reference", "formula")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Hparams:
    """The GCL-family settings; no defaults: the train path builds them with `hparams(config)` (the config's
    defaults are the only ones), tests and tools spell every field out."""
    eps: float                # epsilon inside log(eps + g)
    rho: float                # RGCL / RGCL-g constraint weight
    gamma_min: float          # moving-average weight after the decay
    gamma_decay_epochs: int   # E: epochs of cosine decay 1 -> gamma_min (after the first epoch at 1)
    batch_size: int           # global batch (for the epoch count)
    epoch_size: int           # examples per epoch (for the epoch count)
    tau_init: float           # per-sample temperature init (rgcl)
    tau_lr: float             # per-sample temperature learning rate (rgcl)
    tau_b1: float             # per-sample Adam (fastclip_v2): the model optimiser's b1, b2, eps
    tau_b2: float
    tau_eps: float
    beta_u: float             # isogclr: weight of the new gradient in m <- (1 - beta_u) m + beta_u grad
    tau_grad_clip: float      # per-sample temperature gradient clipped to +-this
    tau_min: float
    tau_max: float
    tau_grad: str             # fastclip_v3 temperature gradient: 'reference' | 'formula' (see the module docstring)
    shard_above: int          # state arrays longer than this are sharded by index range


def state_keys(name: str) -> tuple[str, ...]:
    """Per-sample arrays of a variant: log u for each modality (+ temperatures and their optimiser moments: m for
    isogclr's moving average, m and v for fastclip_v2's Adam)."""
    keys = ("log_u_img", "log_u_txt")
    if VARIANTS[name].temperature == "per_sample":
        keys += ("tau_img", "tau_txt", "m_img", "m_txt")
    if VARIANTS[name].tau_update == "adam":
        keys += ("v_img", "v_txt")
    return keys


def _initial(key: str, tau_init: float) -> float:
    if key.startswith("log_u"):
        return -jnp.inf  # u = 0: never seen
    return tau_init if key.startswith("tau") else 0.0


def init_state(name: str, data_size: int, mesh: Mesh, hp: Hparams,
               batch_axes: Sequence[str] = ("data", "fsdp")) -> dict[str, jax.Array]:
    """Fresh per-sample state, created in its sharding: [N] replicated if N <= hp.shard_above, else
    [ceil(N/n)*n] split over `batch_axes` (n = their device count)."""
    axes = tuple(batch_axes)
    n = math.prod(mesh.shape[a] for a in axes)
    sharded = data_size > hp.shard_above
    size = -(-data_size // n) * n if sharded else data_size
    out = NamedSharding(mesh, P(axes) if sharded else P())
    state = {}
    for key in state_keys(name):
        value = _initial(key, hp.tau_init)
        state[key] = jax.jit(lambda v=value: jnp.full((size,), v, jnp.float32), out_shardings=out)()
    return state


def is_sharded(state: dict, hp: Hparams) -> bool:
    """Static: replicated arrays have N <= shard_above entries, sharded ones were created longer."""
    return next(iter(state.values())).shape[0] > hp.shard_above


def lookup(state: dict[str, jax.Array], index: jax.Array, mesh: Mesh, sharded: bool,
           batch_axes: Sequence[str] = ("data", "fsdp")) -> dict[str, jax.Array]:
    """state[k][index] for every k: index int [B] split over the batch axes -> dict of [B], split the same way.
    Sharded state: each device reads the entries of the gathered batch indices it owns and a reduce-scatter
    (psum_scatter, O(B) scalars) returns every device its own rows."""
    axes = tuple(batch_axes)

    def body(state, index):
        if not sharded:
            return {k: x[index] for k, x in state.items()}
        all_index = jax.lax.all_gather(index, axes, tiled=True)  # [B]
        shard = next(iter(state.values())).shape[0]
        local = all_index - jax.lax.axis_index(axes) * shard
        owned = (local >= 0) & (local < shard)
        local = jnp.clip(local, 0, shard - 1)
        return {k: jax.lax.psum_scatter(jnp.where(owned, x[local], jnp.zeros((), x.dtype)), axes, tiled=True)
                for k, x in state.items()}

    spec = {k: P(axes) if sharded else P() for k in state}
    return jax.shard_map(body, mesh=mesh, in_specs=(spec, P(axes)), out_specs={k: P(axes) for k in state})(
        state, index)


def last_occurrence(index: jax.Array) -> jax.Array:
    """bool [B]: True where index[i] does not occur again later in the batch (so the last write wins)."""
    order = jnp.argsort(index, stable=True)
    ordered = index[order]
    last = jnp.append(ordered[1:] != ordered[:-1], True)
    return jnp.zeros(index.shape, bool).at[order].set(last)


def scatter(state: dict[str, jax.Array], index: jax.Array, values: dict[str, jax.Array], mesh: Mesh,
            sharded: bool, batch_axes: Sequence[str] = ("data", "fsdp")) -> dict[str, jax.Array]:
    """state[k][index] = values[k] (index, values [B] split over the batch axes); keys absent from `values` keep
    their state. The (index, value) pairs are all-gathered (O(B) scalars) and each device writes the entries it
    holds: all of them (replicated state, the same writes on every device) or those of its index range."""
    axes = tuple(batch_axes)
    keys = tuple(values)

    def body(state, index, values):
        all_index = jax.lax.all_gather(index, axes, tiled=True)
        all_values = jax.lax.all_gather(values, axes, tiled=True)
        shard = next(iter(state.values())).shape[0]
        local = all_index - jax.lax.axis_index(axes) * shard if sharded else all_index
        ok = last_occurrence(all_index) & (local >= 0) & (local < shard)
        target = jnp.where(ok, local, shard)  # out of range: dropped
        return {k: (x.at[target].set(all_values[k].astype(x.dtype), mode="drop") if k in keys else x)
                for k, x in state.items()}

    spec = {k: P(axes) if sharded else P() for k in state}
    # Replicated state: every device applies the same gathered writes, so the output is replicated; the
    # varying-type check cannot see that through all_gather, hence check_vma=False (nothing here is differentiated).
    return jax.shard_map(body, mesh=mesh, in_specs=(spec, P(axes), {k: P(axes) for k in keys}), out_specs=spec,
                         check_vma=sharded)(state, index, values)


def epoch_of(step: jax.Array, hp: Hparams) -> jax.Array:
    """float32 epoch of `step`: floor(step * batch_size / epoch_size) (an epoch boundary may shift by a step at
    2^24 steps)."""
    return jnp.floor(jnp.asarray(step, jnp.float32) * (hp.batch_size / hp.epoch_size))


def gamma_schedule(step: jax.Array, hp: Hparams, kind: str = "cosine") -> jax.Array:
    """gamma for the epoch e of `step`: 'constant' gamma_min throughout; 'cosine' 1 in epoch 0, then
    gamma_min + (1 - gamma_min)(1 + cos(pi e / E))/2 for e < E, gamma_min from epoch E on (E = 0: gamma_min from
    epoch 1)."""
    if kind == "constant":
        return jnp.full((), hp.gamma_min, jnp.float32)
    epoch = epoch_of(step, hp)
    if hp.gamma_decay_epochs <= 0:
        return jnp.where(epoch < 1, 1.0, hp.gamma_min).astype(jnp.float32)
    e = jnp.minimum(epoch, hp.gamma_decay_epochs) / hp.gamma_decay_epochs
    return (hp.gamma_min + (1.0 - hp.gamma_min) * 0.5 * (1.0 + jnp.cos(jnp.pi * e))).astype(jnp.float32)


def update_log_u(log_u: jax.Array, log_g: jax.Array, gamma: jax.Array) -> jax.Array:
    """log of u <- (1-gamma) u + gamma g, in log space; u = 0 (log u = -inf), inf or NaN is reset to g."""
    mixed = jnp.logaddexp(jnp.log1p(-gamma) + log_u, jnp.log(gamma) + log_g)
    return jnp.where(jnp.isfinite(log_u), mixed, log_g)


def _dots(a: jax.Array, b: jax.Array) -> jax.Array:
    """a @ b.T in float32 at HIGHEST precision: [m, D] x [n, D] -> [m, n]."""
    return jnp.dot(a, b.T, precision=jax.lax.Precision.HIGHEST)


def gcl_core(zimg: jax.Array, ztxt: jax.Array, tau_img: jax.Array, tau_txt: jax.Array, log_u_img: jax.Array,
             log_u_txt: jax.Array, gamma: jax.Array, *, objective: str, eps: float, rho: float,
             axis_name: AxisName, weighted: bool = True, remote_tau_live: bool = False,
             log_eps: bool = True) -> tuple[jax.Array, dict, dict]:
    """One step of the GCL-family estimator, INSIDE shard_map over the batch axes `axis_name`.

    Args: zimg, ztxt [b, D] local features (unit norm); tau_img, tau_txt: scalar global temperature (replicated;
      live for the 'model' and 'own' temperatures, stop-gradient it for 'fixed') or [b] per-sample temperatures
      of the local anchors; log_u_img, log_u_txt [b] stored log u of the local samples; gamma scalar.
      weighted: the surrogate's terms carry the anchor's tau as prefactor (else 1).
      remote_tau_live: a scalar tau is live also in the all-anchors-vs-local-negatives part (the FastCLIP
      reference's temperature gradient; else only the local anchors' terms carry it, each term once).
      log_eps: the temperature gradients' log term is log(eps+u) (else log u).
    Returns: (value, metrics, new) where value's VALUE is the true mini-batch objective F_B and its GRADIENT is
      the estimator's (value = sg(F_B) + S - sg(S), S the summed surrogate); metrics are replicated scalars
      ('surrogate' the estimator's surrogate value, 'log_u_mean', 'u_mean', 'tau', 'accuracy_i2t/t2i');
      new: [b] arrays 'log_u_img', 'log_u_txt' (the updated estimates) and, for per-sample temperatures,
      'grad_tau_img', 'grad_tau_txt' (the estimated dF_i/dtau_i, not clipped).
    """
    b = zimg.shape[0]
    n = jax.lax.axis_size(axis_name)
    big_b = n * b
    per_sample = jnp.ndim(tau_img) == 1
    e1, e2 = zimg.astype(jnp.float32), ztxt.astype(jnp.float32)
    all1 = jax.lax.all_gather(sg(e1), axis_name, tiled=True)  # [B, D], no gradient: no reduce-scatter
    all2 = jax.lax.all_gather(sg(e2), axis_name, tiled=True)
    m1 = _dots(e1, all2)  # [b, B] local images x all texts; transposed: all text anchors x local images
    m2 = _dots(e2, all1)  # [b, B] local texts x all images; transposed: all image anchors x local texts
    pos = jnp.sum(e1 * e2, axis=1)  # [b] live
    rows = jax.lax.axis_index(axis_name) * b + jnp.arange(b)  # global batch position of the local samples
    self_mask = jnp.arange(big_b)[None, :] == rows[:, None]  # [b, B]
    log_nm1 = math.log(big_b - 1)
    t1 = jnp.broadcast_to(jnp.asarray(tau_img, jnp.float32), (b,))
    t2 = jnp.broadcast_to(jnp.asarray(tau_txt, jnp.float32), (b,))
    c1, c2 = sg(t1), sg(t2)  # the temperatures as constants
    pre1, pre2 = (c1, c2) if weighted else (jnp.ones_like(c1), jnp.ones_like(c2))  # surrogate weights

    # Local anchors vs all negatives (anchor and positive live, negatives constant).
    d1 = m1 - pos[:, None]
    d2 = m2 - pos[:, None]
    z1 = jnp.where(self_mask, -jnp.inf, d1 / t1[:, None])
    z2 = jnp.where(self_mask, -jnp.inf, d2 / t2[:, None])
    log_g1 = jax.nn.logsumexp(z1, axis=1) - log_nm1  # [b]
    log_g2 = jax.nn.logsumexp(z2, axis=1) - log_nm1
    new_u1 = update_log_u(log_u_img, sg(log_g1), gamma)
    new_u2 = update_log_u(log_u_txt, sg(log_g2), gamma)
    log_w1 = jnp.logaddexp(math.log(eps), new_u1)  # log(eps + u), constant
    log_w2 = jnp.logaddexp(math.log(eps), new_u2)
    log_term1, log_term2 = (log_w1, log_w2) if log_eps else (new_u1, new_u2)  # temperature gradients' log term
    local_part = jnp.sum(pre1 * jnp.exp(log_g1 - log_w1) + pre2 * jnp.exp(log_g2 - log_w2))

    # All anchors vs local negatives (only the local negatives live), weighted by the anchors' 1/(eps+u).
    gather = lambda x: jax.lax.all_gather(x, axis_name, tiled=True)  # noqa: E731
    all_w1, all_w2, all_pos = gather(log_w1), gather(log_w2), gather(sg(pos))
    if per_sample:
        all_t1, all_t2, all_pre1, all_pre2 = gather(c1), gather(c2), gather(pre1), gather(pre2)
    else:
        live1, live2 = (t1, t2) if remote_tau_live else (c1, c2)
        all_t1, all_t2 = jnp.broadcast_to(live1[0], (big_b,)), jnp.broadcast_to(live2[0], (big_b,))
        all_pre1, all_pre2 = jnp.broadcast_to(pre1[0], (big_b,)), jnp.broadcast_to(pre2[0], (big_b,))
    self_t = self_mask.T  # [B, b]

    def negatives_part(scores, all_t, all_pre, all_w):
        z = jnp.where(self_t, -jnp.inf, (scores - all_pos[:, None]) / all_t[:, None])
        return jnp.sum(all_pre[:, None] * jnp.exp(z - log_nm1 - all_w[:, None]))

    remote_part = (negatives_part(m2.T, all_t1, all_pre1, all_w1)
                   + negatives_part(m1.T, all_t2, all_pre2, all_w2))

    surrogate = local_part  # value of the estimator's surrogate (each anchor once)
    extra = 0.0
    if objective == "rgcl_g":  # d/dtau of tau (log terms + 2 rho), u constant; t1 = t2 = the global tau
        extra = t1[0] * (jnp.sum(sg(log_term1) + sg(log_term2)) / big_b + 2.0 * rho / n)
    grad_value = jax.lax.psum((local_part + remote_part) / big_b + extra, axis_name)
    surrogate = jax.lax.psum(surrogate / big_b + extra, axis_name)

    lg1, lg2 = jnp.logaddexp(math.log(eps), sg(log_g1)), jnp.logaddexp(math.log(eps), sg(log_g2))
    if objective == "rgcl":
        batch = jnp.sum(c1 * (lg1 + rho) + c2 * (lg2 + rho))
    else:
        batch = jnp.sum(c1 * lg1 + c2 * lg2)
        if objective == "rgcl_g":
            batch = batch + 2.0 * rho * c1[0] * b
    batch_loss = jax.lax.psum(batch, axis_name) / big_b
    value = batch_loss + grad_value - sg(grad_value)

    pmean = lambda x: jax.lax.pmean(x, axis_name)  # noqa: E731
    metrics = {
        "surrogate": surrogate,
        "batch_loss": batch_loss,
        "log_u_mean": pmean(jnp.mean(new_u1 + new_u2) / 2),
        "u_mean": pmean(jnp.mean(jnp.exp(new_u1) + jnp.exp(new_u2)) / 2),
        "tau": pmean(jnp.mean(c1 + c2) / 2),
        "accuracy_i2t": pmean(jnp.mean(jnp.argmax(m1, axis=1) == rows)),
        "accuracy_t2i": pmean(jnp.mean(jnp.argmax(m2, axis=1) == rows)),
    }
    new = {"log_u_img": new_u1, "log_u_txt": new_u2}
    if per_sample:
        # dF_i/dtau_i ~ log(eps+u_i) + rho + tau_i g_i'(tau_i)/(eps+u_i), with
        # tau g'(tau) = -(1/tau) 1/(B-1) sum_j d_ij exp(d_ij/tau) = -(g/tau) E_softmax(d/tau)[d].
        def tau_grad(z, d, log_g, log_w, log_term, t):
            mean_d = jnp.sum(jax.nn.softmax(z, axis=1) * jnp.where(self_mask, 0.0, d), axis=1)
            return sg(log_term + rho - jnp.exp(log_g - log_w) * mean_d / t)
        new["grad_tau_img"] = tau_grad(z1, d1, log_g1, log_w1, log_term1, t1)
        new["grad_tau_txt"] = tau_grad(z2, d2, log_g2, log_w2, log_term2, t2)
    return value, metrics, new


def tau_adam(tau, m, v, grad, epoch, hp: Hparams):
    """FastCLIP-v2's per-sample Adam step on tau (elementwise over [B]; fast_clip FastCLIPLossIndividual.local):
    grad clipped to +-tau_grad_clip; betas (tau_b1, tau_b2), both 0 during epoch 0; bias corrections
    1 - beta^(epoch+1); tau <- clip(tau - tau_lr m_hat / (sqrt(v_hat) + tau_eps), tau_min, tau_max).
    Returns (tau, m, v)."""
    grad = jnp.clip(grad, -hp.tau_grad_clip, hp.tau_grad_clip)
    first = epoch < 1
    b1 = jnp.where(first, 0.0, hp.tau_b1).astype(jnp.float32)
    b2 = jnp.where(first, 0.0, hp.tau_b2).astype(jnp.float32)
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad ** 2
    t = epoch + 1.0
    m_hat = m / (1 - b1 ** t)
    v_hat = v / (1 - b2 ** t)
    tau = jnp.clip(tau - hp.tau_lr * m_hat / (jnp.sqrt(v_hat) + hp.tau_eps), hp.tau_min, hp.tau_max)
    return tau, m, v


def tau_momentum(tau, m, grad, hp: Hparams):
    """iSogCLR's per-sample temperature step (SogCLR_DRO_Loss.forward): m <- (1 - beta_u) m + beta_u clip(grad),
    tau <- clip(tau - tau_lr m, tau_min, tau_max). Returns (tau, m)."""
    grad = jnp.clip(grad, -hp.tau_grad_clip, hp.tau_grad_clip)
    m = (1 - hp.beta_u) * m + hp.beta_u * grad
    return jnp.clip(tau - hp.tau_lr * m, hp.tau_min, hp.tau_max), m


def make_loss(name: str, mesh: Mesh, hp: Hparams, batch_axes: Sequence[str] = ("data", "fsdp")
              ) -> Callable[..., tuple[jax.Array, dict, dict]]:
    """f(zimg, ztxt, logit_scale, index, state, step) -> (loss, metrics, new_state) for variant `name`.

    zimg, ztxt [B, D] and index int [B] are split over `batch_axes`; logit_scale = log(1/tau) scalar; state from
    `init_state`; step the optimiser step (for gamma). The loss's value is the mini-batch objective, its gradient
    the estimator's (see gcl_core); metrics add 'gamma'.
    """
    variant = VARIANTS[name]
    axes = tuple(batch_axes)
    per_sample = variant.temperature == "per_sample"
    reference_tau = variant.objective == "rgcl_g" and hp.tau_grad == "reference"
    log_eps = not (reference_tau or variant.tau_update == "momentum")  # reference v3 and iSogCLR: log u

    def loss(zimg, ztxt, logit_scale, index, state, step):
        gamma = gamma_schedule(step, hp, variant.gamma)
        sharded = is_sharded(state, hp)
        old = lookup(state, index, mesh, sharded, axes)
        if per_sample:
            taus, tau_spec = (old["tau_img"], old["tau_txt"]), P(axes)
        else:
            log_scale = jnp.asarray(logit_scale, jnp.float32)
            tau = jnp.exp(-(sg(log_scale) if variant.temperature == "fixed" else log_scale))
            taus, tau_spec = (tau, tau), P()
        core = lambda *a: gcl_core(*a, objective=variant.objective, eps=hp.eps, rho=hp.rho,  # noqa: E731
                                   axis_name=axes, weighted=variant.weighted, remote_tau_live=reference_tau,
                                   log_eps=log_eps)
        new_spec = {"log_u_img": P(axes), "log_u_txt": P(axes)}
        if per_sample:
            new_spec.update(grad_tau_img=P(axes), grad_tau_txt=P(axes))
        value, metrics, new = jax.shard_map(
            core, mesh=mesh, in_specs=(P(axes), P(axes), tau_spec, tau_spec, P(axes), P(axes), P()),
            out_specs=(P(), P(), new_spec))(zimg, ztxt, *taus, old["log_u_img"], old["log_u_txt"], gamma)
        updates = {"log_u_img": new["log_u_img"], "log_u_txt": new["log_u_txt"]}
        epoch = epoch_of(step, hp)
        for mod in ("img", "txt") if per_sample else ():
            tau, m, grad = old[f"tau_{mod}"], old[f"m_{mod}"], new[f"grad_tau_{mod}"]
            if variant.tau_update == "adam":
                tau, m, v = tau_adam(tau, m, old[f"v_{mod}"], grad, epoch, hp)
                updates[f"v_{mod}"] = v
            else:
                tau, m = tau_momentum(tau, m, grad, hp)
            updates.update({f"tau_{mod}": tau, f"m_{mod}": m})
        new_state = scatter(state, index, updates, mesh, sharded, axes)
        return value, {**metrics, "gamma": gamma}, new_state

    return loss


def hparams(config: ml_collections.ConfigDict) -> Hparams:
    """The GCL-family settings of `config.loss` (temperatures bounded to [1/exp(max_logit_scale), 1]); the
    per-sample Adam takes the model optimiser's b1, b2, eps (config.optim), as the FastCLIP reference does."""
    lc, o = config.loss, config.optim
    return Hparams(
        eps=lc.eps, rho=lc.rho, gamma_min=lc.gamma_min, gamma_decay_epochs=lc.gamma_decay_epochs,
        batch_size=config.batch_size, epoch_size=config.data.size, tau_init=lc.tau_init, tau_lr=lc.tau_lr,
        tau_b1=o.b1, tau_b2=o.b2, tau_eps=o.eps, beta_u=lc.isogclr_beta_u, tau_grad_clip=lc.tau_grad_clip,
        tau_min=math.exp(-lc.max_logit_scale), tau_max=1.0, tau_grad=lc.tau_grad, shard_above=lc.shard_state_above)


def validate(config: ml_collections.ConfigDict) -> None:
    """config.loss keys of the GCL family (and config.optim's b1, b2, eps where the temperature optimiser uses
    them: fastclip_v2, fastclip_v3)."""
    lc, o, tau_min = config.loss, config.optim, math.exp(-config.loss.max_logit_scale)
    require = lambda ok, key, what: config_lib.require(ok, config, key, what)  # noqa: E731
    require(config.batch_size >= 2, "batch_size", f"at least 2 for loss '{lc.name}' (negatives per anchor)")
    require(lc.eps > 0, "loss.eps", "a positive float")
    require(0.0 <= lc.gamma_min <= 1.0, "loss.gamma_min", "a value in [0, 1]")
    require(lc.gamma_decay_epochs >= 0, "loss.gamma_decay_epochs", "a non-negative integer")
    require(tau_min <= lc.tau_init <= 1.0, "loss.tau_init", f"a temperature in [{tau_min:.3g}, 1]")
    require(lc.tau_lr > 0, "loss.tau_lr", "a positive float")
    require(lc.tau_grad_clip > 0, "loss.tau_grad_clip", "a positive float")
    require(lc.tau_grad in TAU_GRADS, "loss.tau_grad", f"one of {TAU_GRADS}")
    require(0.0 < lc.isogclr_beta_u <= 1.0, "loss.isogclr_beta_u", "a weight in (0, 1]")
    require(lc.shard_state_above >= 0, "loss.shard_state_above", "a non-negative number of elements")
    if lc.name in ("fastclip_v2", "fastclip_v3"):
        what = f"in [0, 1) (loss '{lc.name}' uses it for its temperature Adam too)"
        require(0.0 <= o.b1 < 1.0, "optim.b1", what)
        require(0.0 <= o.b2 < 1.0, "optim.b2", what)
        require(o.eps > 0, "optim.eps", f"a positive float (loss '{lc.name}' uses it for its temperature Adam)")


def _spec(name: str) -> registry.LossSpec:
    def make(config, mesh):
        fn = make_loss(name, mesh, hparams(config))
        return lambda out, batch, loss_state, step: fn(out["zimg"], out["ztxt"], out["logit_scale"],
                                                        batch["index"], loss_state, step)

    group = {"model": "trained", "own": "temperature"}.get(VARIANTS[name].temperature, "frozen")
    return registry.LossSpec(
        name, make, temperature=group, validate=validate,
        init_state=lambda config, data_size, mesh: init_state(name, data_size, mesh, hparams(config)))


for _name in VARIANTS:
    registry.register(_spec(_name))
