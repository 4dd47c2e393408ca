"""Start-up, checkpoint save and restore times for a config (the numbers a preemptible run cares about).

python -m clipjax.tools.checkpoint_timing --config configs/clip/vit_b16.py [--workdir /tmp/ckpt_timing]
Start-up = mesh + model + sharded state creation + compiling the train step; save = the blocking part of an
async save and its total until committed; restore = reading the latest checkpoint back into the shardings.
"""
import shutil
import tempfile
import time

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from clipjax import checkpoint, sharding, train
from clipjax.tools.batches import random_batch

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Scratch directory (default: a temporary one, removed afterwards).")


def main(argv):
    del argv
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    config = FLAGS.config
    workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="clipjax_ckpt_")
    t0 = time.perf_counter()
    trainer = train.Trainer(config)
    state = trainer.init_state(data_size=config.batch_size)
    batch = sharding.global_batch(random_batch(config, np.random.default_rng(0)), trainer.mesh)
    compiled = trainer.step_fn.lower(state, batch).compile()
    state, _ = compiled(state, batch)
    jax.block_until_ready(state)
    startup = time.perf_counter() - t0
    ckpt = checkpoint.Checkpointer(workdir, config.checkpoint)
    nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
    t0 = time.perf_counter()
    ckpt.save(1, state)
    blocking = time.perf_counter() - t0
    ckpt.wait()
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    restored = ckpt.restore(1, trainer.abstract)
    jax.block_until_ready(restored)
    restore = time.perf_counter() - t0
    ckpt.close()
    print(f"state {nbytes / 2**20:.1f} MiB on {jax.device_count()} x {jax.devices()[0].device_kind}: "
          f"start-up (build + compile + 1 step) {startup:.2f} s, save {blocking:.2f} s blocking / {total:.2f} s "
          f"committed, restore {restore:.2f} s")
    if not FLAGS.workdir:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
