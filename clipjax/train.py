"""Train state, the pure train step, and the training loop (logging, evaluation, checkpoints, resume)."""
import functools
import json
import logging
import os
import time
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
import tqdm

from clipjax import (checkpoint, compile_cache, config as config_lib, distributed, finetune, host_memory, losses, optim,
                     pytree, sharding, token_reduction, validation, workdir as workdir_lib)
from clipjax.data import pipeline
from clipjax.data.device_prefetch import DevicePrefetch
from clipjax.evaluate.suite import SuiteEvaluator
from clipjax.metrics_writer import MetricWriter
from clipjax.models import clip, ssl_head


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes; one pytree, checkpointed whole."""
    step: jax.Array          # int32 []
    params: Any
    opt_state: Any
    rng: jax.Array           # uint32 [2]
    loss_state: Any          # per-sample loss estimators ({} for clip/siglip)
    nonfinite: jax.Array     # int32 []: consecutive skipped updates (non-finite loss or gradient)
    batch_stats: Any = flax.struct.field(default_factory=dict)  # BN running statistics (ResNet towers), else {}

    def eval_params(self):
        """What evaluators take: the params, or `clip.variables(params, batch_stats)` for a model with BN."""
        return clip.eval_params(self.params, self.batch_stats)


class NonFiniteLossError(RuntimeError):
    pass


def train_step(state: TrainState, batch: dict, *, model: nn.Module, tx: optax.GradientTransformation,
               loss_fn: losses.LossFn, lr_schedule: optax.Schedule, max_logit_scale: float,
               image_tokens: Callable[[jax.Array, int], jax.Array] | None = None
               ) -> tuple[TrainState, dict]:
    """One optimiser step. batch: image uint8 [B,H,W,3], tokens int32 [B,L], index int32 [B].
    `image_tokens(rng, B)` -> patch_keep int32 [B, K] masks image tokens (`token_reduction.patch_keep_fn`); None keeps all.
    A non-finite loss or gradient leaves params, optimiser and loss state unchanged and counts the skip.
    With batch statistics (a ResNet, model.batch_norm = 'train': `model` built with train=True) the running BN
    statistics in state.batch_stats are updated from this batch; frozen BN reads them and leaves them as they are."""
    rng, step_rng = jax.random.split(state.rng)
    patch_keep = None if image_tokens is None else image_tokens(tokens_rng(step_rng), batch["image"].shape[0])

    def objective(params):
        head_params = params.get(ssl_head.HEAD_KEY)  # SLIP's SimCLR head (loss.ssl_scale > 0), else None
        params = {k: v for k, v in params.items() if k != ssl_head.HEAD_KEY}
        args = (clip.variables(params, state.batch_stats), batch["image"], clip.text_input(batch), patch_keep)
        if state.batch_stats and model.image.train:
            out, updated = model.apply(*args, mutable=["batch_stats"])
            batch_stats = updated["batch_stats"]
        else:
            out, batch_stats = model.apply(*args), state.batch_stats
        if head_params is not None:
            out = {**out, **ssl_head.view_outputs(model, args[0], head_params, ssl_head.build_head_from(head_params),
                                                  batch["views"])}
        loss, metrics, loss_state = loss_fn(out, batch, state.loss_state, state.step)
        return loss, (metrics, loss_state, out, batch_stats)

    (loss, (metrics, loss_state, out, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    params = clamp_logit_scale(params, max_logit_scale)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    new_state = TrainState(
        step=state.step + 1, params=keep(params, state.params), opt_state=keep(opt_state, state.opt_state),
        rng=rng, loss_state=keep(loss_state, state.loss_state),
        nonfinite=jnp.where(finite, 0, state.nonfinite + 1), batch_stats=keep(batch_stats, state.batch_stats))
    metrics = {f"train/{k}": v for k, v in metrics.items()}
    metrics.update({"train/loss": loss, "train/grad_norm": grad_norm, "train/lr": lr_schedule(state.step),
                    "train/logit_scale": jnp.exp(out["logit_scale"]), "train/skipped": 1 - finite.astype(jnp.int32),
                    "train/nonfinite_in_row": new_state.nonfinite})
    return new_state, metrics


def tokens_rng(step_rng: jax.Array) -> jax.Array:
    """The key image token masking uses in a step (derived from the step's key, stream 1)."""
    return jax.random.fold_in(step_rng, 1)


def clamp_logit_scale(params, max_value: float):
    """Clip the log temperature to [0, max_value] (OpenCLIP/FLIP clamp t = exp(.) to [1, 100])."""
    if "logit_scale" not in params:
        return params
    return {**params, "logit_scale": jnp.clip(params["logit_scale"], 0.0, max_value)}


class Trainer:
    """Builds model, mesh, optimiser, sharded state and the jitted step from a config."""

    def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh | None = None):
        self.config = config
        self.mesh = mesh or sharding.make_mesh(config.mesh)
        validation.validate(config, self.mesh.size)
        self.model = clip.build_model(config.model, llm=clip.frozen_llm(config))
        self.train_model = clip.build_model(config.model, llm=self.model.llm, train=True)  # BN mode of the step
        self.total_steps = config_lib.resolve_total_steps(config)
        self.loss_fn = losses.make_loss(config, self.mesh)

    def _init_variables(self, rng) -> dict:
        """Boxed {'params': ..., ['batch_stats': ...]} of a fresh model."""
        h = self.config.model.image.image_size
        images = jnp.zeros((1, h, h, 3), jnp.uint8)
        variables = dict(self.model.init(rng, images, clip.dummy_text(self.config)))
        if self.config.loss.ssl_scale > 0:  # SLIP: the SimCLR head beside the CLIP params
            head = ssl_head.init_head(self.config, jax.random.fold_in(rng, 7))
            variables["params"] = {**variables["params"], ssl_head.HEAD_KEY: head}
        return variables

    def setup(self, data_size: int) -> TrainState:
        """Optimiser, shardings and the jitted step for a dataset whose largest global index is data_size - 1.
        Returns the abstract state (ShapeDtypeStructs carrying their shardings; nothing is allocated), which a
        checkpoint restores into directly, so a model that only fits sharded can be resumed and evaluated."""
        config, mesh = self.config, self.mesh
        repl = sharding.replicated(mesh)
        rng = jax.random.PRNGKey(config.seed)
        boxed_vars = jax.eval_shape(self._init_variables, jax.random.split(rng)[0])
        boxed = boxed_vars["params"]
        self.param_shardings = sharding.param_shardings(boxed, mesh)
        stats_shardings = sharding.param_shardings(boxed_vars.get("batch_stats", {}), mesh)
        # what evaluators take (TrainState.eval_params) and its shardings
        self.eval_shardings = clip.eval_params(self.param_shardings, stats_shardings)
        self.tx, self.lr_schedule = optim.make_optimizer(config, nn.meta.unbox(boxed))
        init_loss_state = lambda: losses.init_loss_state(config, data_size, mesh)  # noqa: E731

        def fresh(rng):
            params_rng, state_rng = jax.random.split(rng)
            variables = nn.meta.unbox(self._init_variables(params_rng))
            params = variables["params"]
            return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.tx.init(params),
                              rng=state_rng, loss_state=init_loss_state(), nonfinite=jnp.zeros((), jnp.int32),
                              batch_stats=variables.get("batch_stats", {}))

        abstract = jax.eval_shape(fresh, rng)
        opt_shardings = optax.tree_map_params(self.tx, lambda _, s: s, abstract.opt_state, self.param_shardings,
                                              transform_non_params=lambda _: repl,
                                              is_leaf=lambda x: isinstance(x, optax.MaskedNode))
        self.state_shardings = TrainState(
            step=repl, params=self.param_shardings, opt_state=opt_shardings, rng=repl, nonfinite=repl,
            batch_stats=stats_shardings,
            loss_state=jax.jit(init_loss_state).lower().compile().output_shardings)
        # The shardings are a prefix of the state: one sharding stands for an optax.MaskedNode (the empty state of a
        # multi_transform group), which is kept as it is.
        self.abstract = jax.tree.map(lambda s, x: x if isinstance(x, optax.MaskedNode) else
                                     jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), self.state_shardings, abstract)
        self._fresh = jax.jit(fresh, out_shardings=self.state_shardings)
        self.step_fn = jax.jit(
            sharding.in_mesh(functools.partial(
                train_step, model=self.train_model, tx=self.tx, loss_fn=self.loss_fn, lr_schedule=self.lr_schedule,
                max_logit_scale=config.loss.max_logit_scale, image_tokens=token_reduction.patch_keep_fn(config)),
                mesh),
            in_shardings=(self.state_shardings, self.batch_shardings()),
            out_shardings=(self.state_shardings, repl), donate_argnums=0)
        return self.abstract

    def init_state(self, data_size: int) -> TrainState:
        """Fresh state (`setup` first), created directly in its shardings (never materialised whole on one device)."""
        self.setup(data_size)
        state = self._fresh(jax.random.PRNGKey(self.config.seed))
        if self.model.llm is not None:  # online llm_adapter: the frozen LLM's weights from config.llm.folder
            state = state.replace(params={**state.params, "llm": load_frozen_llm(self.config, state.params["llm"])})
        host_memory.release_freed()
        return state

    def batch_shardings(self) -> dict:
        text = clip.text_key(self.config)
        return {"image": sharding.batch_sharding(self.mesh, 4),
                text: sharding.batch_sharding(self.mesh, 3 if text == "llm_tokens" else 2),
                "index": sharding.batch_sharding(self.mesh, 1),
                **({"views": sharding.batch_sharding(self.mesh, 5)} if self.config.data.augment == "simclr" else {})}


def load_frozen_llm(config: ml_collections.ConfigDict, fresh: dict) -> dict:
    """config.llm.folder's weights in the shardings (and tree: the lm_head an embedder never uses is left out) of
    the state's freshly initialised 'llm' params."""
    from clipjax.models import llm_loading
    _, loaded = llm_loading.from_pretrained(config.llm.folder, dtype=clip.DTYPES[config.llm.dtype])
    flat = pytree.flatten(loaded)
    return jax.tree_util.tree_map_with_path(
        lambda p, f: jax.device_put(flat[optim.path_str(p)].astype(f.dtype), f.sharding), fresh)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, stop_at: int | None = None
                       ) -> dict[str, float]:
    """Train for the configured steps in `workdir`, resuming from its latest intact checkpoint; returns final
    metrics. The workdir is locked for the run (a second run on it refuses to start). `stop_at`: leave after that
    step (checkpointed), as a preempted run would, without changing the schedule."""
    is_main = jax.process_index() == 0
    compile_cache.enable(config.compile_cache)
    with workdir_lib.acquire_lock(workdir, is_main):
        prepare_workdir(workdir, config, is_main)
        trainer = Trainer(config)
        data_iter, data_size = pipeline.make_train_iterator(config)
        abstract = trainer.setup(data_size)
        ckpt = checkpoint.Checkpointer(workdir, config.checkpoint)
        start, state = ckpt.restore_latest(abstract, data_iter)
        if start is not None:
            if not ckpt.has_data_state(start):  # written by another process count: continue the global stream
                data_iter, _ = pipeline.make_train_iterator(config, start_position=start * config.batch_size)
            message = f"resumed from step {start}: {os.path.join(ckpt.manager.directory, str(start))}"
            logging.warning(message)
            if is_main:
                print(message, flush=True)
        else:
            state = trainer.init_state(data_size)
            if config.init_from:  # a new stage of a multi-stage run: params from the earlier stage, all else fresh
                state = init_from(config, state, trainer.mesh)
        evaluator = SuiteEvaluator(config, trainer.model, trainer.mesh, trainer.eval_shardings,
                                   report_dir=workdir if is_main else None)
        writer = MetricWriter(workdir, enabled=is_main, resume_step=start or 0)
        batches = DevicePrefetch(data_iter, lambda b: sharding.global_batch(b, trainer.mesh),
                                 config.data.device_prefetch)
        final = _loop(config, trainer, state, batches, ckpt, evaluator, writer, start or 0, is_main, stop_at)
        writer.close()
        ckpt.close()
    return final


def init_from(config: ml_collections.ConfigDict, state: TrainState, mesh: jax.sharding.Mesh) -> TrainState:
    """`state` with the params (and a ResNet's BN running statistics, when the image tower is taken) of
    config.init_from (clipjax.finetune)."""
    state = state.replace(params=finetune.init_params_from(config.init_from, state.params, mesh,
                                                           config.init_text_pos, config.init_from_keys))
    groups = [k.strip() for k in config.init_from_keys.split(",") if k.strip()]
    if state.batch_stats and (not groups or "image" in groups):
        state = state.replace(batch_stats=finetune.init_batch_stats_from(config.init_from, state.batch_stats, mesh))
    return state


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict, is_main: bool) -> None:
    """Save the resolved config in `workdir` (created and locked by `workdir.acquire_lock`)."""
    if is_main:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def _loop(config, trainer, state, batches, ckpt, evaluator, writer, start, is_main, stop_at):
    """Steps start+1 .. end on `batches` (a DevicePrefetch: global batches already on device). The host reads
    device values only at log steps, plus the previous step's two non-finite flags each step, read after this
    step and the next batch are already queued, so the device never waits for the host."""
    total, batch_size = trainer.total_steps, config.batch_size
    end = min(total, stop_at or total)
    bar = tqdm.tqdm(total=total, initial=start, disable=not (is_main and config.progress_bar), unit="step",
                    dynamic_ncols=True)
    watch = NonFiniteWatch(config.max_nonfinite_in_row, ckpt)
    final, pending, previous = {}, [], None
    t_last, n_last = time.perf_counter(), start
    for step in range(start + 1, end + 1):
        state, metrics = trainer.step_fn(state, next(batches))
        if step == start + 1:
            host_memory.release_freed()  # the step's compilation temporaries
        if previous is not None:  # the previous step's flags, read while this step runs (no device stall)
            watch.update(*previous)
            watch.check()
        previous = (step, metrics)
        pending.append(metrics)
        last = step == end
        if step % config.log_every_steps == 0 or last:
            watch.update(*previous)
            previous = None
            m = {k: float(v) for k, v in jax.device_get(pending[-1]).items()}
            pending = []
            now = time.perf_counter()
            m["train/examples_per_sec"] = (step - n_last) * batch_size / (now - t_last)
            m["train/skipped_total"] = watch.skipped_total
            m.update(pipeline.data_metrics(batches))  # bad input samples skipped so far (data/skipped_*)
            t_last, n_last = now, step
            writer.write(step, m)
            bar.set_postfix(loss=f"{m['train/loss']:.4f}", ex_s=f"{m['train/examples_per_sec']:.0f}")
            watch.check()
            final.update(m)
        bar.update(1)
        if evaluator.due(step, total):  # each config.evals entry at its own cadence, all at the end
            m = {f"eval/{k}": v for k, v in evaluator(state.eval_params(), step, total).items()}
            writer.write(step, m)
            final.update(m)
            if is_main:
                bar.write(f"step {step}: " + json.dumps({k: round(v, 4) for k, v in m.items()}))
        preempted = distributed.preemption_requested(step)
        if step % config.checkpoint.every_steps == 0 or last or preempted:
            ckpt.save(step, state, batches)
        if preempted:
            ckpt.wait()
            if is_main:
                bar.write(f"SIGTERM received: saved a checkpoint at step {step} and stopped; run the same command "
                          f"to resume.")
            break
    bar.close()
    ckpt.wait()
    if start >= total:
        final = {f"eval/{k}": v for k, v in evaluator(state.eval_params()).items()}
    return final


class NonFiniteWatch:
    """Counts skipped (non-finite) updates from every step's metrics and stops the run after
    `max_in_row` in a row, naming the last checkpoint written before the streak began."""

    def __init__(self, max_in_row: int, ckpt: checkpoint.Checkpointer):
        self.max_in_row, self.ckpt = max_in_row, ckpt
        self.skipped_total = self.in_row = self.step = 0

    def update(self, step: int, metrics: dict) -> None:
        """Read one step's flags (blocks until that step has run)."""
        skipped, self.in_row = (int(x) for x in jax.device_get((metrics["train/skipped"],
                                                                 metrics["train/nonfinite_in_row"])))
        self.skipped_total += skipped
        self.step = step

    def check(self) -> None:
        """Raise NonFiniteLossError once the streak reaches the limit."""
        if self.in_row < self.max_in_row:
            return
        step, in_row = self.step, self.in_row
        self.ckpt.wait()
        first_bad = step - in_row + 1
        good = [s for s in self.ckpt.manager.all_steps() if s < first_bad]
        where = (f"the last checkpoint before them is step {max(good)} "
                 f"({os.path.join(self.ckpt.manager.directory, str(max(good)))})" if good else
                 "no checkpoint was written before them")
        raise NonFiniteLossError(
            f"step {step}: {in_row} consecutive non-finite losses/gradients since step {first_bad} (limit "
            f"config.max_nonfinite_in_row={self.max_in_row}); those updates were skipped and {where}. Lower "
            f"optim.lr or check the data.")


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Run every config.evals entry on the latest checkpoint in `workdir` (or, when it has none, on the params
    `config.init_from` names, e.g. converted OpenCLIP weights, as step 0); writes WORKDIR/eval_STEP.json (metrics,
    plus per-class tables under 'per_class') and returns the metrics."""
    compile_cache.enable(config.compile_cache)
    trainer = Trainer(config)
    abstract = trainer.setup(config.data.size)
    ckpt = checkpoint.Checkpointer(workdir, config.checkpoint, read_only=True)  # beside a running training
    step, state = ckpt.restore_latest(abstract)
    if step is None and config.init_from:
        step = 0
        state = trainer.init_state(config.data.size)
        state = init_from(config, state, trainer.mesh)
    elif step is None:
        raise FileNotFoundError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')} (and no config.init_from)")
    evaluator = SuiteEvaluator(config, trainer.model, trainer.mesh, trainer.eval_shardings)
    metrics = {f"eval/{k}": v for k, v in evaluator(state.eval_params()).items()}
    if jax.process_index() == 0:
        report = {"step": step, **metrics}
        if evaluator.tables:
            report["per_class"] = evaluator.tables
        os.makedirs(workdir, exist_ok=True)  # a new workdir when evaluating converted weights
        with open(os.path.join(workdir, f"eval_{step}.json"), "w") as f:
            json.dump(report, f, indent=2)
    ckpt.close()
    return metrics
