"""clipjax.tools.rewrite and clipjax.tools.vec_captions on the built-in world with tiny random models, plus generation
speed of the Flax KV-cache decoder against transformers' `generate` on that model and one batch of real prompts.

python -m clipjax.tools.rewrite_tiny --root /tmp/rewrite_tiny [--rows 256] [--vec_rows 64] [--repeats 5]
(--repeats is clipjax.tools.llm_benchmark's flag)
-> ROOT/llm (random 2-layer Llama, word-level tokenizer over the world's captions and the example pools),
   ROOT/rewrites (the rewrite tool's folder: rewrite_1..4.txt, summary.json), ROOT/vlm (random tiny LLaVA, needs
   torch) and ROOT/vec (vec_captions' folder: vec.txt, vlm.txt, summary.json). Prints the fallback counts and
   tokens/s of both decoders (greedy, no eos, same prompts; median of interleaved repeats; tokens compared).
A random model writes random words: the fallback fraction shows the parser at work, not rewrite quality.
"""
import os
import statistics

import jax
import numpy as np
from absl import app, flags

from clipjax import config as config_lib, llm_text
from clipjax.data import sources
from clipjax.models import llm, llm_loading
from clipjax.tools import rewrite, rewrite_prompt as rp, vec_captions
from clipjax.tools.llm_benchmark import timed
from clipjax.tools.tiny_models import save_random_llm, save_random_vlm

FLAGS = flags.FLAGS
POOLS = ("descriptive", "concise", "scene", "object")


def world_texts(size: int) -> list[str]:
    raw = sources.SyntheticRaw(size, 16)
    texts = [raw[i]["captions"]["caption"] for i in range(size)] + [rp.ARROW]
    for pool in [*rp.builtin_pools().values(), vec_captions.fusion_pool()]:
        texts += [pool["instruction"], *(x for pair in pool["pairs"] for x in pair)]
    return texts + ["AltText:", "|", "Image:", vec_captions.VLM_PROMPT]


def generation_speed(folder: str, ids: np.ndarray, mask: np.ndarray, new_tokens: int, repeats: int) -> dict:
    """tokens/s of llm.generate and transformers' generate (greedy, eos off) on left-padded ids [B, P]."""
    import torch
    import transformers
    hf = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
    hf.generation_config.eos_token_id = None
    module, params = llm_loading.from_pretrained(folder)
    t_ids, t_mask = torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)

    def ours():
        return np.asarray(llm.generate(module, params, ids, mask, max_new_tokens=new_tokens))

    @torch.inference_mode()
    def theirs():
        out = hf.generate(t_ids, attention_mask=t_mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                          do_sample=False, pad_token_id=0, eos_token_id=None)
        return out[:, ids.shape[1]:].numpy()

    compile_s = timed(ours)
    same = float((ours() == theirs()).mean())
    times = {"flax": [], "torch": []}
    for _ in range(repeats):
        times["flax"].append(timed(ours))
        times["torch"].append(timed(theirs))
    n = ids.shape[0] * new_tokens
    return {"flax_tokens_per_s": n / statistics.median(times["flax"]),
            "torch_tokens_per_s": n / statistics.median(times["torch"]), "flax_compile_s": compile_s,
            "same_greedy_tokens": same, "torch_threads": torch.get_num_threads()}


def main(argv):
    del argv
    root = FLAGS.root
    folder = os.path.join(root, "llm")
    if not os.path.exists(os.path.join(folder, "config.json")):
        save_random_llm(folder, world_texts(512))
    config = config_lib.tiny_config()
    settings = dict(max_new_tokens=FLAGS.max_new_tokens, context=256, batch_size=FLAGS.batch_size, chunk=64,
                    rows=FLAGS.rows)
    summary = rewrite.run(config, folder, os.path.join(root, "rewrites"), list(POOLS), **settings)
    r = summary["replaced"]
    print(f"built-in world: {summary['rows']} rows x {len(POOLS)} pools; replaced by the original "
          f"{sum(r.values())}/{summary['rewrites']} = {summary['replaced_fraction']:.3f} (empty {r['empty']}, "
          f"echo {r['echo']}, overlong {r['overlong']}); files in {os.path.join(root, 'rewrites')}")
    if FLAGS.vec_rows > 0:
        vlm = os.path.join(root, "vlm")
        if not os.path.exists(os.path.join(vlm, "config.json")):
            save_random_vlm(vlm, world_texts(512))
        v = vec_captions.run(config, vlm, folder, os.path.join(root, "vec"),
                             **(settings | {"rows": FLAGS.vec_rows, "vlm_max_new_tokens": 12}))
        r = v["replaced"]
        print(f"vec_captions: {v['rows']} rows; original caption kept {sum(r.values())}/{v['rows']} = "
              f"{v['replaced_fraction']:.3f} (" + ", ".join(f"{k} {n}" for k, n in r.items()) + f"); files in "
              f"{os.path.join(root, 'vec')}")
    tokenizer = llm_loading.load_tokenizer(folder)
    source, pool = rewrite.pipeline.make_source(config.data), rp.load_pool(POOLS[0])
    prompts = []
    for row in range(FLAGS.batch_size):
        examples = rp.draw_examples(pool, 3, np.random.default_rng([0, 0, row]))
        caption = rewrite.row_caption(source, row)
        prompts.append(tokenizer(rp.build_prompt(pool["instruction"], examples, caption))["input_ids"])
    width = max(map(len, prompts))
    ids = llm_text.left_pad(prompts, width, rewrite.pad_id(tokenizer))
    mask = llm_text.left_pad([[1] * len(p) for p in prompts], width, 0)
    s = generation_speed(folder, ids, mask, FLAGS.max_new_tokens, FLAGS.repeats)
    print(f"generation, {ids.shape[0]} prompts x {width} slots, {FLAGS.max_new_tokens} new tokens, greedy "
          f"(backend {jax.default_backend()}, torch threads {s['torch_threads']}): flax KV cache "
          f"{s['flax_tokens_per_s']:.1f} tokens/s, transformers generate {s['torch_tokens_per_s']:.1f} tokens/s, "
          f"ratio {s['flax_tokens_per_s'] / s['torch_tokens_per_s']:.2f}x; flax compile {s['flax_compile_s']:.1f} s; "
          f"same greedy tokens {s['same_greedy_tokens']:.3f}")


if __name__ == "__main__":
    flags.DEFINE_string("root", "/tmp/rewrite_tiny", "Folder for the tiny LLM and the rewrites.")
    flags.DEFINE_integer("rows", 256, "Rows of the built-in world to rewrite.")
    flags.DEFINE_integer("batch_size", 32, "Prompts per batch (rewrite and speed comparison).")
    flags.DEFINE_integer("vec_rows", 64, "Rows for vec_captions (0: skip; needs torch).")
    flags.DEFINE_integer("max_new_tokens", 32, "New tokens per rewrite.")
    app.run(main)
