"""LLM text tower benchmark: clipjax's Flax decoder vs transformers' PyTorch model, measured side by side.

python -m clipjax.tools.llm_benchmark [--repeats 5]   # embedding captions/s and greedy-generation tokens/s
python -m clipjax.tools.llm_benchmark --memory        # Llama-3-8B embedding forward: compiled memory, max batch

Default: a random Llama (hidden 256, 4 layers, 8 heads / 4 KV heads, vocab 8192) is saved as a Hugging Face folder
and loaded by both libraries. Embedding = forward without logits + mean pool over a left-padded batch of 32 x 32
tokens; generation = greedy decoding of 32 new tokens after 8 left-padded prompts of 16 slots (the two libraries'
tokens are compared). Repeats interleave the four measurements; the median is printed.
--memory: Llama-3-8B shapes (LlmConfig built in code, no weights) in bfloat16, embedding forward compiled from
abstract shapes at `--memory_batch` x 77 tokens; prints XLA's memory analysis and the largest power-of-two batch
whose arguments + temporaries + outputs fit `--memory_limit_gb`.
"""
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from clipjax.models import llm, llm_loading

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 5, "Interleaved measurements of each side.")
flags.DEFINE_bool("memory", False, "Instead: memory analysis of the Llama-3-8B embedding forward.")
flags.DEFINE_integer("memory_batch", 1024, "--memory: batch whose memory analysis is printed.")
flags.DEFINE_float("memory_limit_gb", 80.0, "--memory: device memory for the largest-batch search.")

LLAMA3_8B = llm.LlmConfig(model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                          num_layers=32, num_heads=32, num_kv_heads=8, head_dim=128, rms_norm_eps=1e-5,
                          rope_theta=500000.0, max_position_embeddings=8192)


def left_padded(rng: np.random.RandomState, batch: int, length: int, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Random ids [batch, length] with 1..length tokens per row, left-padded with 0, and their mask."""
    counts = rng.randint(1, length + 1, batch)
    mask = (np.arange(length)[None] >= length - counts[:, None]).astype(np.int64)
    return rng.randint(3, vocab, (batch, length)) * mask, mask


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def speed(folder: str, repeats: int) -> None:
    import torch
    import transformers
    hf = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
    module, params = llm_loading.from_pretrained(folder)
    vocab = module.config.vocab_size
    rng = np.random.RandomState(0)
    ids, mask = left_padded(rng, 32, 32, vocab)
    prompts, prompt_mask = left_padded(rng, 8, 16, vocab)
    new_tokens = 32

    embed = jax.jit(lambda p, i, m: llm.mean_pool(module.apply({"params": p}, i, m, return_logits=False)[
        "last_hidden"], m))
    t_ids, t_mask, t_prompts, t_pmask = map(torch.tensor, (ids, mask, prompts, prompt_mask))

    @torch.inference_mode()
    def hf_embed():
        h = hf.model(t_ids, attention_mask=t_mask).last_hidden_state
        return (h * t_mask[..., None]).sum(1) / t_mask.sum(1, keepdim=True)

    @torch.inference_mode()
    def hf_generate():
        out = hf.generate(t_prompts, attention_mask=t_pmask, max_new_tokens=new_tokens, do_sample=False,
                          pad_token_id=0, eos_token_id=None)
        return out[:, prompts.shape[1]:].numpy()

    ours_gen = lambda: np.asarray(llm.generate(module, params, prompts, prompt_mask, max_new_tokens=new_tokens))  # noqa
    hf.generation_config.eos_token_id = None
    compile_s = timed(lambda: (embed(params, ids, mask).block_until_ready(), ours_gen()))
    emb_diff = np.abs(np.asarray(embed(params, ids, mask)) - hf_embed().numpy()).max()
    same_tokens = bool((ours_gen() == hf_generate()).all())
    times = {k: [] for k in ("flax_embed", "torch_embed", "flax_generate", "torch_generate")}
    for _ in range(repeats):
        times["flax_embed"].append(timed(lambda: embed(params, ids, mask).block_until_ready()))
        times["torch_embed"].append(timed(hf_embed))
        times["flax_generate"].append(timed(ours_gen))
        times["torch_generate"].append(timed(hf_generate))
    t = {k: statistics.median(v) for k, v in times.items()}
    c = module.config
    print(f"model: random llama, hidden {c.hidden_size}, {c.num_layers} layers, {c.num_heads}/{c.num_kv_heads} heads, "
          f"vocab {c.vocab_size}; backend {jax.default_backend()}, torch threads {torch.get_num_threads()}")
    print(f"flax compile (embed + generate): {compile_s:.1f} s; embedding max |diff| {emb_diff:.1e}; "
          f"greedy tokens identical: {same_tokens}")
    print(f"embedding (32 x 32 tokens)  flax {32 / t['flax_embed']:9.1f} captions/s   "
          f"torch {32 / t['torch_embed']:9.1f} captions/s   ratio {t['torch_embed'] / t['flax_embed']:.2f}x")
    n = 8 * new_tokens
    print(f"generation (8 x 32 new)     flax {n / t['flax_generate']:9.1f} tokens/s     "
          f"torch {n / t['torch_generate']:9.1f} tokens/s     ratio {t['torch_generate'] / t['flax_generate']:.2f}x")


def embed_memory(module: llm.LlmDecoder, batch: int, length: int = 77):
    """XLA memory analysis of the jitted embedding forward (params as arguments) at [batch, length]."""
    abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32)))["params"]
    params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), abstract)
    tokens = jax.ShapeDtypeStruct((batch, length), jnp.int32)
    fn = jax.jit(lambda p, i, m: llm.mean_pool(module.apply({"params": p}, i, m, return_logits=False)[
        "last_hidden"], m))
    return fn.lower(params, tokens, tokens).compile().memory_analysis()


def memory(batch: int, limit_gb: float) -> None:
    """Print the memory analysis at `batch` and search powers of two for the largest batch within `limit_gb`.

    The CPU compiler runs bf16 matmuls in float32 and so holds a float32 copy of every weight among its
    temporaries; on CPU the batch-1 temporaries (that copy) are therefore subtracted to estimate an accelerator.
    """
    module = llm.LlmDecoder(LLAMA3_8B, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    cpu = jax.default_backend() == "cpu"
    weight_copy = embed_memory(module, 1).temp_size_in_bytes if cpu else 0

    def total(m) -> int:
        return m.argument_size_in_bytes + m.temp_size_in_bytes - weight_copy + m.output_size_in_bytes

    t0 = time.perf_counter()
    m = embed_memory(module, batch)
    print(f"Llama-3-8B bf16 embedding forward, {batch} x 77 tokens, no logits ({jax.default_backend()} compiler, "
          f"{time.perf_counter() - t0:.0f} s): arguments {m.argument_size_in_bytes / 1e9:.2f} GB, temporaries "
          f"{m.temp_size_in_bytes / 1e9:.2f} GB, outputs {m.output_size_in_bytes / 1e6:.1f} MB")
    if cpu:
        print(f"  CPU: temporaries hold a float32 weight copy ({weight_copy / 1e9:.2f} GB = batch-1 temporaries), "
              f"subtracted below; activations are measured in float32 too, so the estimate is high")
    print(f"  total {total(m) / 1e9:.2f} GB")
    limit, fits, b = limit_gb * 1e9, {batch: total(m)}, batch
    step = 2 if fits[b] <= limit else 0.5
    while b * step >= 1:
        b = int(b * step)
        fits[b] = total(embed_memory(module, b))
        print(f"  batch {b:6d}: total {fits[b] / 1e9:.2f} GB")
        if (fits[b] <= limit) != (step == 2):
            break
    best = max((k for k, v in fits.items() if v <= limit), default=None)
    print(f"largest power-of-two batch within {limit_gb:.0f} GB: {best}")


def main(argv):
    del argv
    if FLAGS.memory:
        memory(FLAGS.memory_batch, FLAGS.memory_limit_gb)
        return
    import torch
    import transformers
    config = transformers.LlamaConfig(vocab_size=8192, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                                      num_attention_heads=8, num_key_value_heads=4, initializer_range=0.1,
                                      pad_token_id=0)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        transformers.LlamaForCausalLM(config).save_pretrained(folder)
        speed(folder, FLAGS.repeats)


if __name__ == "__main__":
    app.run(main)
