"""Command line: python -m clipjax.main --config configs/NAME.py --workdir DIR [--mode train|eval]
[--config.key=value ...]."""
import json
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from clipjax import checkpoint, distributed, train, validation, workdir

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/NAME.py[:arg]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl, TensorBoard and config.json.")
flags.DEFINE_enum("mode", "train", ["train", "eval"], "train: train (resuming from the workdir's latest "
                  "checkpoint) and evaluate; eval: evaluate the latest checkpoint and write a JSON report.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 for multi-process runs "
                    "(default: $JAX_COORDINATOR_ADDRESS, or detected from SLURM / TPU VM).")
flags.DEFINE_integer("num_processes", None, "Number of processes (default: $JAX_NUM_PROCESSES or detected).")
flags.DEFINE_integer("process_id", None, "This process's index (default: $JAX_PROCESS_ID or detected).")
flags.DEFINE_list("local_device_ids", None, "Accelerator ids this process uses (e.g. one GPU per process).")
flags.DEFINE_integer("num_cpu_devices", 0, "Simulate this many CPU devices in this process (0: platform default).")
flags.DEFINE_integer("heartbeat_timeout", 100, "Seconds without a heartbeat after which a process counts as lost "
                     "and the others exit with an error.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # library INFO chatter (Orbax) hides the progress bar
    distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                           [int(i) for i in FLAGS.local_device_ids] if FLAGS.local_device_ids else None,
                           FLAGS.num_cpu_devices, FLAGS.heartbeat_timeout)
    config = FLAGS.config
    validation.validate(config, jax.device_count())
    try:
        if FLAGS.mode == "train":
            metrics = train.train_and_evaluate(config, FLAGS.workdir)
        else:
            metrics = train.evaluate_checkpoint(config, FLAGS.workdir)
    except (workdir.WorkdirLockedError, checkpoint.CorruptCheckpointError) as e:  # one line, no trace
        sys.exit(f"error: {e}")
    if jax.process_index() == 0:
        print(json.dumps({k: round(v, 4) for k, v in sorted(metrics.items()) if k.startswith("eval/")}))


if __name__ == "__main__":
    app.run(main)
