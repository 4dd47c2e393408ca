"""Train-step benchmark: compile time, examples/s and model FLOPs utilisation, optionally side by side with a
minimal hand-written JAX step of the same model (to show the cost of clipjax's abstractions) or with OpenCLIP's
PyTorch step of the same model (interop extra), timed in interleaved pairs because shared machines are noisy.

python -m clipjax.tools.benchmark --config configs/small.py --baseline [--steps 20] [--config.batch_size=128]
python -m clipjax.tools.benchmark --config configs/small.py --openclip --repeats 6
python -m clipjax.tools.benchmark --config configs/small.py --framework openclip   # one framework per process:
                                                                                    # compare peak host memory
Batches are random device-resident arrays, so only the step is timed (the input pipeline has its own benchmark).
The last line is the process's peak resident host memory.
"""
import statistics
import time

import jax
import numpy as np
import optax
from absl import app, flags, logging
from ml_collections import config_flags

from clipjax import host_memory, optim, sharding, train
from clipjax.losses import contrastive
from clipjax.models import clip
from clipjax.tools.batches import random_batch

FLAGS = flags.FLAGS

PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "TPU v4": 275.0, "TPU v5 lite": 197.0,
               "TPU v5p": 459.0, "TPU v6 lite": 918.0}  # dense bf16


def time_steps(step, state, batch, steps: int, repeats: int) -> tuple[float, float, float, object]:
    """(compile seconds, XLA FLOPs per step, best seconds per step, state) for a jitted `step`."""
    compiled, compile_s, flops = compile_step(step, state, batch)
    best, state = best_time(compiled, state, batch, steps, repeats)
    return compile_s, flops, best, state


def compile_step(step, state, batch) -> tuple[object, float, float]:
    """(compiled step, compile seconds, XLA FLOPs per step) of a jitted `step`."""
    t0 = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    host_memory.release_freed()  # as the trainer does after its first step
    cost = compiled.cost_analysis()
    return compiled, compile_s, (cost[0] if isinstance(cost, list) else cost or {}).get("flops", 0.0)


def best_time(compiled, state, batch, steps: int, repeats: int) -> tuple[float, object]:
    """(best mean seconds per step over `repeats` runs of `steps` steps after one warm-up step, state)."""
    state, _ = timed_run(compiled, state, batch, 1)
    best = float("inf")
    for _ in range(repeats):
        state, seconds = timed_run(compiled, state, batch, steps)
        best = min(best, seconds)
    return best, state


def timed_run(compiled, state, batch, steps: int):
    """(state, mean seconds per step) of `steps` steps, waited for."""
    t0 = time.perf_counter()
    for _ in range(steps):
        state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    return state, (time.perf_counter() - t0) / steps


def paired_with_openclip(compiled, state, batch, host_batch, config, steps: int, repeats: int) -> None:
    """clipjax's `compiled` step vs OpenCLIP's examples/s on the same model and batch, in `repeats` interleaved
    pairs."""
    from clipjax.tools import openclip_step
    step, _ = openclip_step.build(config)
    images, tokens = openclip_step.torch_batch(host_batch)
    step(images, tokens)  # warm-up
    ratios = []
    for r in range(repeats):
        state, t_jax = timed_run(compiled, state, batch, steps)
        t_torch = openclip_step.seconds_per_step(step, images, tokens, steps)
        ratios.append(t_torch / t_jax)
        print(f"pair {r}: clipjax {t_jax * 1e3:.1f} ms/step, OpenCLIP {t_torch * 1e3:.1f} ms/step, "
              f"clipjax/OpenCLIP examples/s {ratios[-1]:.3f}", flush=True)
    print(f"clipjax/OpenCLIP examples/s: median {statistics.median(ratios):.3f} (range {min(ratios):.3f}-"
          f"{max(ratios):.3f}) over {repeats} pairs of {steps} steps")


def openclip_only(config, host_batch, steps: int, repeats: int) -> None:
    from clipjax.tools import openclip_step
    step, _ = openclip_step.build(config)
    images, tokens = openclip_step.torch_batch(host_batch)
    step(images, tokens)
    best = min(openclip_step.seconds_per_step(step, images, tokens, steps) for _ in range(repeats))
    print(f"OpenCLIP step: {best * 1e3:.1f} ms/step, {config.batch_size / best:.1f} examples/s")


def minimal_step(trainer, config):
    """A hand-written step of the same model: model.apply, global InfoNCE, optax AdamW; plain jax.jit. State:
    (params, optimiser state, BN running statistics: those of a ResNet, updated as the trainer's step does; else {})."""
    model = trainer.train_model
    tx = optax.adamw(1e-4, b1=config.optim.b1, b2=config.optim.b2, eps=config.optim.eps,
                     weight_decay=config.optim.weight_decay, mask=optim.decay_mask)

    def loss_fn(params, stats, batch):
        args = (clip.variables(params, stats), batch["image"], batch["tokens"])
        if stats and model.image.train:
            out, updated = model.apply(*args, mutable=["batch_stats"])
            stats = updated["batch_stats"]
        else:
            out = model.apply(*args)
        return contrastive.softmax_loss_reference(out["zimg"], out["ztxt"], out["logit_scale"]), stats

    @jax.jit
    def step(state, batch):
        params, opt_state, stats = state
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, stats), loss

    def init(params, stats):
        return params, tx.init(params), stats
    return step, init


def token_setting(config, setting: str):
    """A copy of `config` with one token setting applied: 'full', or '+'-joined res=PX, text=L,
    random|grid|block=KEEP_RATIO."""
    c = config.copy_and_resolve_references()
    for part in filter(lambda p: p and p != "full", setting.split("+")):
        key, _, value = part.partition("=")
        if key == "res":
            c.data.image_size = c.model.image.image_size = int(value)
        elif key == "text":
            c.data.text_length = int(value)
        elif key in ("random", "grid", "block"):
            c.tokens.image_strategy, c.tokens.image_keep_ratio = key, float(value)
        else:
            raise ValueError(f"--token_settings {setting!r}: expected full, res=, text=, random=, grid= or block=")
    return c


def token_sweep(config, settings: list[str], steps: int, repeats: int) -> None:
    """Train-step time of one model at each token setting, side by side: speed-up vs the first setting next to
    the ratio of analytic forward FLOPs per sample (image + text) and of XLA's FLOPs per step. All settings are
    compiled first, then timed round-robin `repeats` times (best of each), so load changes hit them alike."""
    from clipjax.tools import flops as flops_lib
    runs = []
    for setting in settings:
        c = token_setting(config, setting)
        trainer = train.Trainer(c)
        state = trainer.init_state(data_size=c.batch_size)
        batch = sharding.global_batch(random_batch(c, np.random.default_rng(0)), trainer.mesh)
        compiled, _, xla_flops = compile_step(trainer.step_fn, state, batch)
        state, _ = timed_run(compiled, state, batch, 1)
        runs.append([setting, flops_lib.analytic(c), xla_flops, compiled, state, batch, float("inf")])
    for _ in range(repeats):
        for run in runs:
            run[4], seconds = timed_run(run[3], run[4], run[5], steps)
            run[6] = min(run[6], seconds)
    rows = [(setting, f.image_tokens, f.text_tokens, best, f.total, xla_flops)
            for setting, f, xla_flops, *_, best in runs]
    print(f"device: {jax.device_count()} x {jax.devices()[0].device_kind}; batch {config.batch_size}")
    print(f"{'setting':<22}{'img tok':>8}{'txt tok':>8}{'ms/step':>10}{'speed-up':>10}{'FLOP ratio':>11}"
          f"{'XLA ratio':>10}")
    _, _, _, t0, f0, x0 = rows[0]
    for setting, n_img, n_txt, t, f, x in rows:
        print(f"{setting:<22}{n_img:>8}{n_txt:>8}{t * 1e3:>10.1f}{t0 / t:>10.2f}{f0 / f:>11.2f}"
              f"{(x0 / x if x else float('nan')):>10.2f}")


def main(argv):
    del argv
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    config = FLAGS.config
    if FLAGS.token_settings:
        token_sweep(config, FLAGS.token_settings, FLAGS.steps, FLAGS.repeats)
        return
    rng = np.random.default_rng(0)
    host_batch = random_batch(config, rng)
    if FLAGS.framework == "openclip":
        openclip_only(config, host_batch, FLAGS.steps, FLAGS.repeats)
        print(f"peak host memory: {host_memory.peak_gb():.2f} GB")
        return
    trainer = train.Trainer(config)
    state = trainer.init_state(data_size=config.batch_size)
    batch = sharding.global_batch(host_batch, trainer.mesh)
    compiled, compile_s, flops = compile_step(trainer.step_fn, state, batch)
    per_step, state = best_time(compiled, state, batch, FLAGS.steps, FLAGS.repeats)
    kind = jax.devices()[0].device_kind
    peak = FLAGS.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in kind), 0.0)
    print(f"device: {jax.device_count()} x {kind}; batch {config.batch_size}; "
          f"image {config.data.image_size}px/{config.model.image.get('patch_size', config.model.image_tower)}, "
          f"text {config.data.text_length}")
    print(f"clipjax step: compile {compile_s:.2f} s, {per_step * 1e3:.1f} ms/step, "
          f"{config.batch_size / per_step:.1f} examples/s, {flops / 1e9:.1f} GFLOP/step (XLA)")
    if peak:
        print(f"MFU: {flops / per_step / (peak * 1e12 * jax.device_count()):.1%} of {peak:.0f} TFLOP/s per device")
    if FLAGS.baseline:
        params, stats = jax.device_get((state.params, state.batch_stats))
        step, init = minimal_step(trainer, config)
        device_batch = jax.device_put(host_batch, jax.devices()[0])
        del state
        base_compile, _, base_step, _ = time_steps(step, init(*jax.device_put((params, stats), jax.devices()[0])),
                                                   device_batch, FLAGS.steps, FLAGS.repeats)
        print(f"minimal step: compile {base_compile:.2f} s, {base_step * 1e3:.1f} ms/step, "
              f"{config.batch_size / base_step:.1f} examples/s")
        print(f"ratio clipjax/minimal examples/s: {base_step / per_step:.3f}")
    elif FLAGS.openclip:
        paired_with_openclip(compiled, state, batch, host_batch, config, FLAGS.steps, FLAGS.repeats)
    print(f"peak host memory: {host_memory.peak_gb():.2f} GB")


if __name__ == "__main__":  # flags only as a program: other tools import the helpers above
    config_flags.DEFINE_config_file("config", None, "Config file to benchmark.", lock_config=True)
    flags.DEFINE_integer("steps", 20, "Timed steps per measurement (after one compile/warm-up step).")
    flags.DEFINE_integer("repeats", 3, "Measurements; the best is reported.")
    flags.DEFINE_bool("baseline", False, "Also time a minimal hand-written step (1 device, no shard_map, no mesh).")
    flags.DEFINE_bool("openclip", False, "Also time OpenCLIP's PyTorch step of the same model, interleaved with "
                      "clipjax's.")
    flags.DEFINE_enum("framework", "clipjax", ["clipjax", "openclip"], "Time only this framework's step (run one "
                      "process per framework to compare peak host memory).")
    flags.DEFINE_float("peak_tflops", 0.0, "Peak accelerator TFLOP/s for MFU (0: look up by device kind).")
    flags.DEFINE_list("token_settings", [], "Time one model at several token settings, e.g. "
                      "'full,res=32,random=0.25,grid=0.25,block=0.25,text=8' ('+' joins several changes: "
                      "res=32+text=8); prints speed-up vs the first setting next to the analytic FLOP ratio (clipjax.tools.flops).")
    flags.mark_flags_as_required(["config"])
    app.run(main)
