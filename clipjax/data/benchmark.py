"""Input-pipeline throughput: examples/s end to end (read, decode, augment, caption choice, tokenise, batch) at
several worker counts, measured side by side in one run.

python -m clipjax.data.benchmark --config configs/data/wds_bench.py [--workers 0,1,2] [--batches 20]

Workers 0 runs the pipeline in this process (one core); N > 0 uses N grain worker processes. Each measurement
skips the first `--warmup` batches (worker start-up, file cache) and times the next `--batches`. Besides wall-clock
examples/s it prints examples per CPU-second of this process and its workers (psutil), the per-core rate that
holds on a machine shared with other jobs.
"""
import json
import time

from absl import app, flags
from ml_collections import config_flags

from clipjax.data import pipeline

FLAGS = flags.FLAGS


def cpu_seconds() -> float | None:
    """User + system CPU seconds of this process and its live children (None without psutil)."""
    try:
        import psutil
    except ImportError:
        return None
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def measure(config, workers: int, warmup: int, batches: int) -> tuple[float, float | None]:
    """(examples per wall second, examples per CPU second) of `make_train_iterator` with `workers` workers."""
    config = config.copy_and_resolve_references()
    config.data.num_workers = workers
    it, _ = pipeline.make_train_iterator(config, 0, 1)
    for _ in range(warmup):
        next(it)
    c0, t0 = cpu_seconds(), time.perf_counter()
    for _ in range(batches):
        next(it)
    wall, c1 = time.perf_counter() - t0, cpu_seconds()
    n = batches * config.batch_size
    if hasattr(it, "close"):
        it.close()
    return n / wall, (n / (c1 - c0) if c0 is not None else None)


def main(argv):
    del argv
    config = FLAGS.config
    counts = [int(w) for w in FLAGS.workers.split(",")]
    results = {}
    for w in counts:
        rate, per_cpu = measure(config, w, FLAGS.warmup, FLAGS.batches)
        results[w] = rate, per_cpu
        print(json.dumps({"workers": w, "examples_per_sec": round(rate, 1),
                          "examples_per_sec_per_worker": round(rate / max(1, w), 1),
                          "examples_per_cpu_sec": per_cpu and round(per_cpu, 1),
                          "image_size": config.data.image_size, "augment": config.data.augment,
                          "interpolation": config.data.interpolation, "source": config.data.name}), flush=True)
    base = results[counts[0]][0]
    print(f"workers  examples/s  per worker  per CPU-second  speed-up vs workers={counts[0]}")
    for w, (r, c) in results.items():
        print(f"{w:7d}  {r:10.1f}  {r / max(1, w):10.1f}  {c or float('nan'):14.1f}  {r / base:6.2f}x")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Config whose config.data is benchmarked.", lock_config=True)
    flags.DEFINE_string("workers", "0,1,2", "Comma-separated worker counts to measure.")
    flags.DEFINE_integer("batches", 20, "Timed batches per measurement.")
    flags.DEFINE_integer("warmup", 3, "Untimed batches first.")
    flags.mark_flags_as_required(["config"])
    app.run(main)
