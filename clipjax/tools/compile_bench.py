"""Compile time and compiled memory of the train step of large CLIPs, from abstract shapes only (no parameter is
ever allocated, so G/14 is measured on a laptop).

  python -m clipjax.tools.compile_bench --models B/16,L/14,H/14,G/14 --scan both
  python -m clipjax.tools.compile_bench --memory --models B/16 --batch 256 --remat none,full,dots_saveable,dots_no_batch
  python -m clipjax.tools.compile_bench --memory --models L/14 --batch 64 --fsdp 8 --num_cpu_devices 8

Compile: seconds to trace + lower and to compile `Trainer.step_fn` (bf16 compute, OpenCLIP's tower sizes, 224 px,
77 tokens) with the blocks unrolled and under nn.scan. Memory: `compiled.memory_analysis()` per device (arguments =
state + batch, temporaries = activations and workspace), at two batch sizes; since both grow linearly in the batch
the largest batch per device under --hbm_gb follows. Figures are XLA:CPU's buffer assignment of the same program,
an estimate of what the GPU compiler assigns (fusion differs).
"""
import json
import time

import jax
from absl import app, flags, logging

from clipjax import config as config_lib, train
from clipjax.models import sizes

FLAGS = flags.FLAGS

# OpenCLIP: ViT variant -> (text tower, embedding width)
TOWERS = {"B": ("B", 512), "L": ("L", 768), "H": ("H", 1024), "G": ("G", 1280)}


def clip_config(variant: str, batch_per_device: int, scan: bool, remat: str = "none", fsdp: int = 1):
    """config of OpenCLIP's ViT-`variant` CLIP at 224 px / 77 tokens, bf16, AdamW, on all devices."""
    c = config_lib.default_config()
    text, embed = TOWERS[variant.split("/")[0]]
    c.model.image = sizes.vit(variant, image_size=224)
    c.model.text = sizes.text(text, context_length=77)
    c.model.embed_dim = embed
    c.model.dtype = "bfloat16"
    c.model.scan, c.model.remat = scan, remat
    c.data.image_size, c.data.text_length = 224, 77
    c.mesh.fsdp = fsdp
    c.batch_size = batch_per_device * jax.device_count()
    c.progress_bar = False
    return c


def abstract_batch(trainer: train.Trainer, config) -> dict:
    b, h, l = config.batch_size, config.data.image_size, config.data.text_length
    shapes = {"image": ((b, h, h, 3), "uint8"), "tokens": ((b, l), "int32"), "index": ((b,), "int32")}
    shardings = trainer.batch_shardings()
    return {k: jax.ShapeDtypeStruct(s, d, sharding=shardings[k]) for k, (s, d) in shapes.items()}


def compile_step(config) -> dict:
    """Lower and compile the step of `config` from abstract shapes: seconds and per-device bytes."""
    trainer = train.Trainer(config)
    t0 = time.perf_counter()
    abstract = trainer.setup(data_size=config.batch_size)
    lowered = trainer.step_fn.lower(abstract, abstract_batch(trainer, config))
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return dict(lower_s=t1 - t0, compile_s=t2 - t1, **memory_gb(compiled))


def memory_gb(compiled) -> dict:
    """XLA's per-device argument, temporary, output and aliased GB of a compiled step."""
    mem = compiled.memory_analysis()
    return dict(argument_gb=mem.argument_size_in_bytes / 1e9, temp_gb=mem.temp_size_in_bytes / 1e9,
                output_gb=mem.output_size_in_bytes / 1e9, alias_gb=mem.alias_size_in_bytes / 1e9)


def compile_table(models, scans) -> list[dict]:
    rows = []
    for variant in models:
        for scan in scans:
            r = compile_step(clip_config(variant, FLAGS.batch, scan))
            rows.append(dict(model=variant, scan=scan, **r))
            print(f"{variant:<6} scan={str(scan):<5} trace+lower {r['lower_s']:6.1f} s  "
                  f"compile {r['compile_s']:6.1f} s", flush=True)
    base = {s: next(r for r in rows if r["scan"] == s) for s in scans}
    print(f"\n{'model':<6}{'scan':>6}{'lower s':>9}{'compile s':>11}{'total s':>9}{'x first model':>15}")
    for r in rows:
        total, first = r["lower_s"] + r["compile_s"], base[r["scan"]]
        print(f"{r['model']:<6}{str(r['scan']):>6}{r['lower_s']:>9.1f}{r['compile_s']:>11.1f}{total:>9.1f}"
              f"{total / (first['lower_s'] + first['compile_s']):>15.2f}")
    return rows


def memory_table(models, remats, batch: int, fsdp: int, hbm_gb: float) -> list[dict]:
    """Per policy: memory at `batch` and `batch // 2` per device; bytes = a + b x batch gives the largest batch
    with argument + temporaries <= hbm_gb (arguments do not grow with the batch beyond the batch itself)."""
    rows = []
    print(f"{'model':<6}{'remat':<15}{'batch/dev':>10}{'args GB':>9}{'temp GB':>9}{'total GB':>10}"
          f"{'max batch/dev in ' + format(hbm_gb, 'g') + ' GB':>24}")
    for variant in models:
        for remat in remats:
            full = compile_step(clip_config(variant, batch, scan=True, remat=remat, fsdp=fsdp))
            half = compile_step(clip_config(variant, batch // 2, scan=True, remat=remat, fsdp=fsdp))
            used = lambda r: r["argument_gb"] + r["temp_gb"]  # noqa: E731
            per_example = (used(full) - used(half)) / (batch - batch // 2)
            fixed = used(full) - per_example * batch
            largest = int((hbm_gb - fixed) / per_example) if per_example > 0 else None
            rows.append(dict(model=variant, remat=remat, batch=batch, fsdp=fsdp, **full, per_example_gb=per_example,
                             fixed_gb=fixed, max_batch=largest))
            print(f"{variant:<6}{remat:<15}{batch:>10}{full['argument_gb']:>9.2f}{full['temp_gb']:>9.2f}"
                  f"{used(full):>10.2f}{largest if largest is not None else '-':>24}", flush=True)
    return rows


def main(argv):
    del argv
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if FLAGS.num_cpu_devices > 1:
        jax.config.update("jax_num_cpu_devices", FLAGS.num_cpu_devices)
    print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}; jax {jax.__version__}")
    if FLAGS.memory:
        rows = memory_table(FLAGS.models, FLAGS.remat, FLAGS.batch, FLAGS.fsdp, FLAGS.hbm_gb)
    else:
        scans = {"both": [False, True], "on": [True], "off": [False]}[FLAGS.scan]
        rows = compile_table(FLAGS.models, scans)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":  # flags only as a program: other tools import the helpers above
    flags.DEFINE_list("models", ["B/16", "L/14", "H/14", "G/14"], "ViT variants (text tower and width as OpenCLIP's).")
    flags.DEFINE_enum("scan", "both", ["both", "on", "off"], "Blocks under nn.scan, unrolled, or both side by side.")
    flags.DEFINE_integer("batch", 8, "Batch per device.")
    flags.DEFINE_bool("memory", False, "Report memory_analysis per --remat policy instead of compile time.")
    flags.DEFINE_list("remat", ["none"], "Remat policies (config.model.remat).")
    flags.DEFINE_integer("fsdp", 1, "FSDP axis size (the rest of the devices is data parallel).")
    flags.DEFINE_integer("num_cpu_devices", 1, "Simulated CPU devices.")
    flags.DEFINE_float("hbm_gb", 80.0, "Device memory for the largest-batch estimate.")
    flags.DEFINE_string("json", "", "Also write the rows to this JSON file.")
    app.run(main)
