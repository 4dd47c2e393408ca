"""The whole LLM2CLIP chain at CPU scale on the built-in world, next to plain CLIP with the same budget:

  1. clm   a tiny Llama trained from scratch on the built-in captions     (configs/llm2clip/tiny_lm.py)
  2. mntp  LLM2Vec's masked next-token prediction, bidirectional, LoRA   (configs/llm2clip/tiny_mntp.py)
  3. cc    caption-contrastive LoRA fine-tuning                          (configs/llm2clip/tiny_cc.py)
  4. the frozen LLM embeds every caption field once                      (clipjax.tools.embed_captions)
  5. CLIP with the adapter text tower on those embeddings                (configs/llm2clip/tiny_clip.py)
  6. plain CLIP, same image tower, data, caption mix, batch and steps    (configs/tiny.py)

python -m clipjax.tools.llm2clip_tiny --root /tmp/llm2clip_tiny [--clip_steps 1000] [--seeds 0,1,2]
-> ROOT/{lm,mntp,cc,emb,clip_SEED,tiny_SEED}, ROOT/summary.json and a table of zero-shot top-1 and retrieval R@1.
Every step resumes (or is skipped when done), so rerunning after a kill continues. `--quick` shrinks every stage to
a few steps on a few images (a smoke test of the chain, not a measurement).
"""
import importlib.util
import json
import os
import time

import ml_collections
from absl import app, flags, logging

from clipjax import distributed, llm_train, train
from clipjax.tools import embed_captions

FIELDS = ("caption,phrasing_2,phrasing_3,phrasing_4,phrasing_5,phrasing_6,rewrite_1,rewrite_2,rewrite_3")
METRICS = ("eval/zeroshot_top1", "eval/zeroshot_shape_top1", "eval/zeroshot_colour_top1", "eval/zeroshot_count_top1",
           "eval/retrieval_i2t_r1", "eval/retrieval_t2i_r1")

FLAGS = flags.FLAGS
flags.DEFINE_string("root", "/tmp/llm2clip_tiny", "Folder of every stage's workdir and the summary.")
flags.DEFINE_string("configs", "configs", "The repository's configs folder.")
flags.DEFINE_integer("clip_steps", 0, "Steps of both CLIP runs (0: configs/tiny.py's).")
flags.DEFINE_list("seeds", ["0"], "CLIP seeds (each seed runs both CLIP variants).")
flags.DEFINE_bool("quick", False, "A few steps per stage on a few images (smoke test).")
flags.DEFINE_bool("progress_bar", True, "Progress bars of each stage.")


def load_config(configs: str, name: str) -> ml_collections.ConfigDict:
    """get_config() of CONFIGS/NAME."""
    spec = importlib.util.spec_from_file_location("clipjax_config", os.path.join(configs, name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def last_metrics(workdir: str) -> dict[str, float]:
    """The latest value of every metric in WORKDIR/metrics.jsonl (a finished run rerun logs nothing new)."""
    out = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            out.update(json.loads(line))
    return out


def shrink(c: ml_collections.ConfigDict, steps: int, size: int) -> ml_collections.ConfigDict:
    """--quick: `steps` steps on `size` built-in images, batch 16, no periodic work."""
    c.total_steps, c.batch_size, c.data.size = steps, 16, size
    c.optim.warmup_steps = 1
    c.checkpoint.every_steps = steps
    c.log_every_steps = steps
    if "llm" in c:
        c.llm.eval_examples, c.llm.eval_every_steps = 32, 0
    c.evals.every_steps, c.evals.num_examples = 0, 64
    return c


def run_chain(root: str, configs: str = "configs", clip_steps: int = 0, seeds=(0,), quick: bool = False,
              progress: bool = True) -> dict:
    """Runs (or resumes) every stage; returns {'clip_SEED' | 'tiny_SEED': final metrics, 'seconds': {...}}."""
    os.makedirs(root, exist_ok=True)
    small = (lambda c, steps: shrink(c, steps, 64)) if quick else (lambda c, steps: c)
    seconds, folder = {}, None
    for stage, name in (("lm", "tiny_lm.py"), ("mntp", "tiny_mntp.py"), ("cc", "tiny_cc.py")):
        c = small(load_config(configs, f"llm2clip/{name}"), 4)
        if folder:
            c.llm.folder = folder
        c.progress_bar = progress
        start = time.time()
        folder = llm_train.run(c, os.path.join(root, stage))["output"]
        seconds[stage] = time.time() - start

    def clip_config(name: str, seed: int) -> ml_collections.ConfigDict:
        c = small(load_config(configs, name), 4)
        c.seed, c.progress_bar = seed, progress
        if clip_steps > 0:
            c.total_steps = clip_steps
        if c.model.text_tower == "llm_adapter":
            c.llm.folder, c.data.text_embeddings = folder, os.path.join(root, "emb")
        return c

    start = time.time()
    emb_config = clip_config("llm2clip/tiny_clip.py", 0)
    embed_captions.run(emb_config, folder, emb_config.data.text_embeddings, FIELDS.split(","),
                       batch_size=256, max_length=emb_config.llm.max_length, progress_bar=progress)
    seconds["embed"] = time.time() - start
    results = {}
    for seed in seeds:
        for run, name in ((f"clip_{seed}", "llm2clip/tiny_clip.py"), (f"tiny_{seed}", "tiny.py")):
            start = time.time()
            train.train_and_evaluate(clip_config(name, int(seed)), os.path.join(root, run))
            results[run] = last_metrics(os.path.join(root, run))
            seconds[run] = time.time() - start
    results["seconds"] = seconds
    with open(os.path.join(root, "summary.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    return results


def table(results: dict, seeds) -> str:
    """Markdown rows: variant, then each metric's mean (and range over seeds)."""
    lines = ["| text tower | " + " | ".join(m.removeprefix("eval/") for m in METRICS) + " |",
             "|---" * (len(METRICS) + 1) + "|"]
    for variant, label in (("clip", "frozen tiny LLM + adapter"), ("tiny", "CLIP text transformer")):
        cells = []
        for m in METRICS:
            vals = [results[f"{variant}_{s}"][m] for s in seeds]
            mean = sum(vals) / len(vals)
            cells.append(f"{mean:.3f}" + (f" ({min(vals):.3f}-{max(vals):.3f})" if len(vals) > 1 else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    distributed.initialize()
    results = run_chain(FLAGS.root, FLAGS.configs, FLAGS.clip_steps, FLAGS.seeds, FLAGS.quick, FLAGS.progress_bar)
    print(table(results, FLAGS.seeds))
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in results["seconds"].items()))


if __name__ == "__main__":
    app.run(main)
