"""Quality vs quantity on the built-in world ("Scaling (down) CLIP", arXiv 2404.08197 section 3), at CPU scale:

1. a scoring CLIP (configs/tiny.py) trained on clean pairs (caption_noise 0) stands in for an external model;
2. `clipjax.tools.score` scores the pairs of the same images with caption_noise = --noise;
3. tiny CLIP is trained at equal steps on all the noisy pairs and on the top --keep fraction by score
   (config.data.filter), over --seeds seeds each; the built-in eval's mean zero-shot accuracy and retrieval R@1
   are reported as mean +- standard deviation (over seeds), with the share of noisy pairs in each training set.

python -m clipjax.tools.quality_study --workdir /tmp/quality [--steps 300 --size 4096 --noise 0.5 --keep 0.5]
"""
import json
import os
import statistics

import numpy as np
from absl import app, flags

from clipjax import config as config_lib, train
from clipjax.data import quality, synthetic
from clipjax.tools import score

FLAGS = flags.FLAGS


def tiny(steps: int, size: int, seed: int, noise: float = 0.0):
    c = config_lib.tiny_config()
    c.total_steps, c.seed, c.data.size, c.data.caption_noise = steps, seed, size, noise
    c.optim.warmup_steps = max(1, steps // 20)
    c.evals.every_steps, c.checkpoint.every_steps, c.log_every_steps = 0, steps, max(1, steps // 4)
    c.progress_bar = False
    return c


def headline(metrics: dict) -> dict:
    """Mean zero-shot top-1 over the built-in class sets and mean image/text retrieval R@1."""
    r1 = [metrics[k] for k in ("eval/retrieval_i2t_r1", "eval/retrieval_t2i_r1") if k in metrics]
    return {"zeroshot_top1": float(metrics.get("eval/zeroshot_top1", float("nan"))),
            "retrieval_r1": float(np.mean(r1)) if r1 else float("nan")}


def noisy_share(size: int, noise: float, rows) -> float:
    src = synthetic.SyntheticSource("train", size=size, image_size=64, caption_noise=noise)
    return float(np.mean([src.is_noisy(int(i)) for i in rows]))


def main(argv):
    del argv
    wd, steps, size, noise, keep = FLAGS.workdir, FLAGS.steps, FLAGS.size, FLAGS.noise, FLAGS.keep
    os.makedirs(wd, exist_ok=True)
    scorer = os.path.join(wd, "scorer")
    train.train_and_evaluate(tiny(FLAGS.scorer_steps, size, seed=100), scorer)
    scores_dir = os.path.join(wd, "scores")
    score.run(tiny(steps, size, 0, noise), scorer, scores_dir, batch_size=256, chunk=2048, progress_bar=False)
    _, _, scores = quality.read_scores(scores_dir)
    results = {}
    for name in ("all", f"top{keep:g}"):
        runs = []
        for seed in range(FLAGS.seeds):
            c = tiny(steps, size, seed, noise)
            if name != "all":
                c.data.filter.scores, c.data.filter.top_fraction = scores_dir, keep
            m = train.train_and_evaluate(c, os.path.join(wd, f"{name}_seed{seed}"))
            runs.append({**headline(m), **{k: v for k, v in m.items() if k.startswith("eval/")}})
        rows = (np.arange(size) if name == "all" else quality.kept_rows(c, scores))
        results[name] = {"runs": runs, "pairs": len(rows), "noisy_share": noisy_share(size, noise, rows)}
        for key in ("zeroshot_top1", "retrieval_r1"):
            vals = [r[key] for r in runs]
            results[name][key] = (statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0)
    with open(os.path.join(wd, "quality_study.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"built-in world, {size} pairs, caption_noise {noise}, tiny CLIP {steps} steps x batch 64, "
          f"{FLAGS.seeds} seeds; scorer: tiny CLIP {FLAGS.scorer_steps} steps on clean pairs")
    for name, r in results.items():
        print(f"{name:>8}: {r['pairs']} pairs ({r['noisy_share']:.1%} noisy)  zero-shot top-1 "
              f"{r['zeroshot_top1'][0]:.4f} +- {r['zeroshot_top1'][1]:.4f}  retrieval R@1 "
              f"{r['retrieval_r1'][0]:.4f} +- {r['retrieval_r1'][1]:.4f}")


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "Folder for the scorer, scores and runs.")
    flags.DEFINE_integer("steps", 300, "Train steps of each compared run (equal for both subsets).")
    flags.DEFINE_integer("scorer_steps", 300, "Train steps of the scoring model (clean pairs).")
    flags.DEFINE_integer("size", 4096, "Pairs in the built-in training set.")
    flags.DEFINE_float("noise", 0.5, "data.caption_noise of the compared runs.")
    flags.DEFINE_float("keep", 0.5, "data.filter.top_fraction of the filtered runs.")
    flags.DEFINE_integer("seeds", 3, "Seeds per subset.")
    flags.mark_flag_as_required("workdir")
    app.run(main)
