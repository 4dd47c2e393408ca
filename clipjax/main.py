"""Command line: python -m clipjax.main --config configs/NAME.py --workdir DIR [--mode train|eval]
[--config.key=value ...]."""
import json
import jax
from absl import app, flags, logging
from ml_collections import config_flags

from clipjax import config as config_lib, train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/NAME.py[:arg]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl, TensorBoard and config.json.")
flags.DEFINE_enum("mode", "train", ["train", "eval"], "train: train (resuming from the workdir's latest "
                  "checkpoint) and evaluate; eval: evaluate the latest checkpoint and write a JSON report.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # library INFO chatter (Orbax) hides the progress bar
    config = FLAGS.config
    config_lib.validate(config, jax.device_count())
    if FLAGS.mode == "train":
        metrics = train.train_and_evaluate(config, FLAGS.workdir)
    else:
        metrics = train.evaluate_checkpoint(config, FLAGS.workdir)
    if jax.process_index() == 0:
        print(json.dumps({k: round(v, 4) for k, v in sorted(metrics.items()) if k.startswith("eval/")}))


if __name__ == "__main__":
    app.run(main)
