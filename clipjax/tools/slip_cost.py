"""SLIP's train-step cost relative to CLIP's on one config: the same model and batch, CLIP alone vs CLIP +
loss.ssl_scale * NT-Xent on the two simclr views (the image tower then runs on 3B images and the SimCLR head on
2B), timed in interleaved repeats on random device-resident batches (the input pipeline is not timed).

python -m clipjax.tools.slip_cost --config configs/small.py [--steps 5 --repeats 3 --hidden 4096]
"""
import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from clipjax import sharding, train
from clipjax.tools.batches import random_batch
from clipjax.tools.benchmark import timed_run

FLAGS = flags.FLAGS


def slip_variant(config, hidden: int):
    """The config with SLIP on: simclr views, ssl_scale 1, head hidden width `hidden` (SLIP: 4096)."""
    slip = config.copy_and_resolve_references()
    slip.data.augment = "simclr"
    slip.loss.ssl_scale = 1.0
    slip.loss.ssl_hidden_dim = hidden
    return slip


def prepare(config, rng: np.random.Generator):
    """(compiled step, state, device batch) of `config` on all devices."""
    trainer = train.Trainer(config)
    state = trainer.init_state(config.batch_size)
    host = random_batch(config, rng)
    if config.data.augment == "simclr":
        b, h = config.batch_size, config.data.image_size
        host["views"] = rng.integers(0, 256, (b, 2, h, h, 3), dtype=np.uint8)
    batch = sharding.global_batch(host, trainer.mesh)
    compiled = trainer.step_fn.lower(state, batch).compile()
    state, _ = compiled(state, batch)
    jax.block_until_ready(state)
    return compiled, state, batch


def main(argv):
    del argv
    config = FLAGS.config
    rng = np.random.default_rng(0)
    runs = {"clip": prepare(config, rng), "slip": prepare(slip_variant(config, FLAGS.hidden), rng)}
    best = {k: float("inf") for k in runs}
    for _ in range(FLAGS.repeats):  # interleaved, best of each
        for name, (compiled, state, batch) in runs.items():
            state, s = timed_run(compiled, state, batch, FLAGS.steps)
            runs[name] = (compiled, state, batch)
            best[name] = min(best[name], s)
    print(f"devices {jax.device_count()} x {jax.devices()[0].device_kind}, batch {config.batch_size}, "
          f"image {config.data.image_size} px, SLIP head hidden {FLAGS.hidden}")
    print(f"CLIP step {best['clip'] * 1e3:.1f} ms, SLIP step {best['slip'] * 1e3:.1f} ms, "
          f"SLIP / CLIP = {best['slip'] / best['clip']:.2f}x")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=False)
    flags.DEFINE_integer("steps", 5, "Timed steps per measurement (after one compile/warm-up step).")
    flags.DEFINE_integer("repeats", 3, "Interleaved measurements; the best of each is reported.")
    flags.DEFINE_integer("hidden", 4096, "SimCLR head hidden width (SLIP: 4096).")
    flags.mark_flag_as_required("config")
    app.run(main)
