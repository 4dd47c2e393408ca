"""One-shot accelerator check: everything worth knowing about a new GPU in one prepared run, printed and written as
JSON (rewritten after each part). Each part is independent: one that fails is recorded with its error and the
others still run; the parts share one compiled ViT-B/16 step. On one H200 the full run took 411 s (b16 104 s,
clipa 80, openclip 29, llm 59, largest 139) before clipjax turned on JAX's threefry GPU kernel, which takes about
37 s of state init off each of the three unrolled B/16 configs and 39 s off llm (b16 then took 67 s, llm 20 s), so
a full run now takes about 4.5 minutes.

  python -m clipjax.tools.gpu_check --out gpu_check.json
  python -m clipjax.tools.gpu_check --parts b16,llm --out a.json   # some parts only
  python -m clipjax.tools.gpu_check --tiny              # the same parts at CPU-sized shapes (a smoke test)

Parts:
  b16      ViT-B/16 CLIP train step (bf16 compute, fp32 params), unrolled and with its blocks under nn.scan:
           init, compile and first-step s, examples/s and MFU at batch 256 (per device x devices); the other parts
           use the unrolled layout, the default and the faster one on GPU;
  largest  the largest batch whose compiled arguments + temporaries fit 90% of device memory (from XLA's memory
           analysis at two batch sizes), then run there: examples/s and MFU (last: the slowest part);
  clipa    CLIPA's B/16 setting (112 px, 16 tokens) at the same batch: speed-up over 224 px / 77 tokens next to the
           analytic FLOP ratio;
  openclip OpenCLIP's PyTorch step on the same model and batch (bf16 autocast), interleaved with clipjax's; skipped
           when the interop extra is missing;
  llm      frozen-LLM caption embedding throughput (a random Llama at 1B shapes, bf16, 256 captions x 77 tokens).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import statistics
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from clipjax import sharding, train
from clipjax.models import llm, sizes
from clipjax.tools import benchmark, compile_bench, flops as flops_lib
from clipjax.tools.batches import random_batch

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "gpu_check.json", "JSON report path.")
flags.DEFINE_bool("tiny", False, "CPU-sized shapes (micro towers, 32 px, batch 8): checks the script, not a GPU.")
flags.DEFINE_integer("steps", 10, "Timed steps per measurement.")
flags.DEFINE_integer("repeats", 3, "Measurements (interleaved pairs for openclip).")
flags.DEFINE_list("parts", ["b16", "clipa", "openclip", "llm", "largest"], "Parts to run.")
flags.DEFINE_float("memory_fraction", 0.9, "Fraction of device memory the largest batch may use.")


def model_config(batch: int, res: int | None = None, text_len: int | None = None, scan: bool = False):
    """ViT-B/16 CLIP at `res` px and `text_len` tokens (default 224 / 77; --tiny: a micro CLIP, 32 / 16), global
    batch `batch`, blocks under nn.scan or unrolled."""
    res, text_len = res or (32 if FLAGS.tiny else 224), text_len or (16 if FLAGS.tiny else 77)
    c = compile_bench.clip_config("B/16", 1, scan=scan)
    if FLAGS.tiny:
        c.model.image = sizes.vit("mu/8", image_size=res)
        c.model.text = sizes.text("mu", context_length=text_len)
        c.model.embed_dim = 32
    else:
        c.model.image.image_size = res
        c.model.text.context_length = text_len
    c.data.image_size, c.data.text_length = res, text_len
    c.batch_size = batch
    return c


def peak_tflops() -> float:
    kind = jax.devices()[0].device_kind
    return next((v for k, v in benchmark.PEAK_TFLOPS.items() if k in kind), 0.0)


@dataclasses.dataclass
class Run:
    """A compiled train step with its state and batch (device and host copies), and what timing it gave."""
    compiled: object
    state: object
    batch: dict
    host: dict
    result: dict


def run_config(config) -> Run:
    """Initialise, compile and time config's train step on a random batch. `result`: seconds of init (state
    creation, its compile included), compile and the first step (autotuning, allocation), then ms per step,
    examples/s, GFLOP per step and MFU (best of --repeats runs of --steps).

    FLOPs are analytic (3x the forward's: forward + backward), not XLA's cost analysis, which counts a scanned
    block's loop body once (ViT-B/16 at batch 256 under scan: 299 GFLOP by XLA's count, 31.6 TFLOP by the model's).
    """
    t0 = time.perf_counter()
    trainer = train.Trainer(config)
    state = jax.block_until_ready(trainer.init_state(data_size=config.batch_size))
    host = random_batch(config, np.random.default_rng(0))
    batch = sharding.global_batch(host, trainer.mesh)
    init_s = time.perf_counter() - t0
    compiled, compile_s, _ = benchmark.compile_step(trainer.step_fn, state, batch)
    state, first_step_s = benchmark.timed_run(compiled, state, batch, 1)
    per_step, state = benchmark.best_time(compiled, state, batch, FLAGS.steps, FLAGS.repeats)
    step_flops = 3 * flops_lib.analytic(config).total * config.batch_size
    peak = peak_tflops()
    result = dict(batch=config.batch_size, init_s=init_s, compile_s=compile_s, first_step_s=first_step_s,
                  ms_per_step=per_step * 1e3, examples_per_s=config.batch_size / per_step,
                  gflop_per_step=step_flops / 1e9,
                  mfu=step_flops / per_step / (peak * 1e12 * jax.device_count()) if peak else None)
    return Run(compiled, state, batch, host, result)


def time_config(config) -> dict:
    return run_config(config).result


def base_batch() -> int:
    """Global batch of the fixed-batch parts: 256 per device (--tiny: 8)."""
    return (8 if FLAGS.tiny else 256) * jax.device_count()


@functools.cache
def reference() -> Run:
    """ViT-B/16 at the base batch, unrolled: measured once, shared by every part that needs it (b16's unrolled
    row, clipa's full-size row, the memory slope of largest, openclip's clipjax side)."""
    return run_config(model_config(base_batch()))


def part_b16() -> dict:
    unrolled, scanned = reference().result, time_config(model_config(base_batch(), scan=True))
    return dict(unrolled=unrolled, scan=scanned, scan_step_time_ratio=scanned["ms_per_step"] / unrolled["ms_per_step"],
                scan_compile_ratio=scanned["compile_s"] / unrolled["compile_s"])


def device_bytes() -> float:
    stats = jax.devices()[0].memory_stats() or {}
    return float(stats.get("bytes_limit", 0)) or (2e9 if FLAGS.tiny else 80e9)


def part_largest() -> dict:
    """Largest batch by memory analysis (linear in the batch: the reference step's bytes and those of one more
    compile at half its batch), then a run there, backing off by 3/4 on OOM."""
    b = base_batch()
    used = [(m["argument_gb"] + m["temp_gb"]) * 1e9 for m in
            (compile_bench.compile_step(model_config(b // 2)), compile_bench.memory_gb(reference().compiled))]
    per_example = (used[1] - used[0]) / (b - b // 2)
    fixed = used[1] - per_example * b
    limit = FLAGS.memory_fraction * device_bytes()
    step = 8 * jax.device_count()
    batch = max(step, int((limit - fixed) / per_example) // step * step) if per_example > 0 else 4 * b
    if FLAGS.tiny:
        batch = min(batch, 4 * b)  # CPU: the memory is no limit worth running into
    estimate = dict(per_example_mb=per_example / 1e6, fixed_gb=fixed / 1e9, device_gb=device_bytes() / 1e9,
                    estimated_batch=batch)
    while True:
        try:
            return {**estimate, **time_config(model_config(batch))}
        except Exception as e:  # XLA's RESOURCE_EXHAUSTED: the estimate was optimistic
            if "RESOURCE_EXHAUSTED" not in str(e) or batch <= step:
                raise
            batch = max(step, int(batch * 0.75) // step * step)


def part_clipa() -> dict:
    res, text_len = (16, 8) if FLAGS.tiny else (112, 16)
    full, reduced = model_config(base_batch()), model_config(base_batch(), res, text_len)
    a, b = reference().result, time_config(reduced)
    return dict(full=a, clipa=b, speed_up=b["examples_per_s"] / a["examples_per_s"],
                flop_ratio=flops_lib.analytic(full).total / flops_lib.analytic(reduced).total)


def part_openclip() -> dict:
    import torch  # noqa: F401  (the interop extra)
    from clipjax.tools import openclip_step
    config, ref = model_config(base_batch()), reference()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    step, _ = openclip_step.build(config, device)
    images, tokens = openclip_step.torch_batch(ref.host, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    step(images, tokens)
    sync()
    pairs = []
    for _ in range(FLAGS.repeats):
        ref.state, t_jax = benchmark.timed_run(ref.compiled, ref.state, ref.batch, FLAGS.steps)
        t_torch = openclip_step.seconds_per_step(step, images, tokens, FLAGS.steps, sync)
        pairs.append((t_jax, t_torch))
    ratios = [t / j for j, t in pairs]
    return dict(batch=config.batch_size, torch_device=device, clipjax_ms=[j * 1e3 for j, _ in pairs],
                openclip_ms=[t * 1e3 for _, t in pairs], ratio_median=statistics.median(ratios))


def random_params(shapes):
    """N(0, 0.02) arrays of `shapes`' shapes and dtypes, drawn on device in one jitted call (throughput does not
    depend on the values; drawing them directly leaves flax's init, which traces the forward pass, out)."""
    leaves, treedef = jax.tree.flatten(shapes)

    @jax.jit
    def draw(key):
        keys = jax.random.split(key, len(leaves))
        return treedef.unflatten([(0.02 * jax.random.normal(k, x.shape)).astype(x.dtype) for k, x in zip(keys, leaves)])
    return draw(jax.random.key(0))


def part_llm() -> dict:
    if FLAGS.tiny:
        cfg = llm.LlmConfig(model_type="llama", vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=2,
                            num_heads=4, num_kv_heads=2, head_dim=16, rms_norm_eps=1e-5, rope_theta=10000.0,
                            max_position_embeddings=128)
        batch, length = 16, 16
    else:  # Llama-3.2-1B shapes
        cfg = llm.LlmConfig(model_type="llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                            num_layers=16, num_heads=32, num_kv_heads=8, head_dim=64, rms_norm_eps=1e-5,
                            rope_theta=500000.0, max_position_embeddings=8192)
        batch, length = 256, 77
    module = llm.LlmDecoder(cfg, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    ids = jnp.ones((batch, length), jnp.int32)
    mask = jnp.ones((batch, length), jnp.int32)
    t0 = time.perf_counter()
    params = jax.block_until_ready(random_params(jax.eval_shape(module.init, jax.random.key(0), ids, mask)["params"]))
    init_s = time.perf_counter() - t0
    embed = jax.jit(lambda p, i, m: llm.mean_pool(module.apply({"params": p}, i, m, return_logits=False)[
        "last_hidden"], m))
    t0 = time.perf_counter()
    embed(params, ids, mask).block_until_ready()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(FLAGS.repeats):
        t0 = time.perf_counter()
        for _ in range(FLAGS.steps):
            out = embed(params, ids, mask)
        out.block_until_ready()
        times.append((time.perf_counter() - t0) / FLAGS.steps)
    best = min(times)
    return dict(hidden=cfg.hidden_size, layers=cfg.num_layers, batch=batch, length=length, init_s=init_s,
                compile_s=compile_s, captions_per_s=batch / best, tokens_per_s=batch * length / best)


PARTS = {"b16": part_b16, "largest": part_largest, "clipa": part_clipa, "openclip": part_openclip, "llm": part_llm}


def main(argv):
    del argv
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    unknown = sorted(set(FLAGS.parts) - set(PARTS))
    if unknown:
        raise app.UsageError(f"--parts: unknown {unknown}; expected some of {list(PARTS)}")
    device = jax.devices()[0]
    report = dict(device=f"{jax.device_count()} x {device.device_kind}", backend=jax.default_backend(),
                  jax=jax.__version__, tiny=FLAGS.tiny, peak_tflops=peak_tflops() or None, parts={})
    print(f"device: {report['device']} ({report['backend']}), jax {jax.__version__}", flush=True)
    start = time.perf_counter()
    for name in FLAGS.parts:
        t0 = time.perf_counter()
        try:
            result = PARTS[name]()
        except Exception as e:  # one failed part must not lose the others' numbers
            result = dict(error=f"{type(e).__name__}: {e}".splitlines()[0][:500], trace=traceback.format_exc()[-2000:])
        result["seconds"] = time.perf_counter() - t0
        report["parts"][name] = result
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items() if k != "trace"}
        print(f"{name}: {json.dumps(shown)}", flush=True)
        with open(FLAGS.out, "w") as f:  # rewritten after every part: a killed run keeps what it measured
            json.dump(report, f, indent=2)
    print(f"total {time.perf_counter() - start:.0f} s; report: {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
