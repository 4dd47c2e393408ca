"""A frozen decoder LLM as caption embedder (LLM2CLIP stage 2, arXiv 2411.04997 Sec. 3.2): texts -> mean-pooled last
hidden states over each caption's own tokens (chat template, left padding with eos; `clipjax.llm_text`), batched
over a mesh. Used by `clipjax.tools.embed_captions` (the training captions) and by evaluation (class prompts), so
both are embedded alike."""
import functools

import jax
import numpy as np

from clipjax import llm_text, sharding
from clipjax.models import llm


def make_embed_fn(module, params, mesh: jax.sharding.Mesh):
    """(ids, attention_mask, pool_mask) int32 [B, T] -> float32 [B, D] mean-pooled caption embeddings."""
    batch = sharding.batch_sharding(mesh, 2)

    @functools.partial(jax.jit, in_shardings=(None, batch, batch, batch))
    def embed(params, ids, mask, pool):
        hidden = module.apply({"params": params}, ids, mask, return_logits=False)["last_hidden"]
        return llm.mean_pool(hidden, pool)

    return lambda ids, mask, pool: np.asarray(embed(params, ids, mask, pool))


def embed_texts(embed, tokenizer, texts: list[str], batch_size: int, max_length: int) -> np.ndarray:
    """float32 [len(texts), D]; the last batch is padded to batch_size (one compiled shape)."""
    out = []
    for start in range(0, len(texts), batch_size):
        part = texts[start:start + batch_size]
        ids, mask, pool = llm_text.encode_for_embedding(tokenizer, part + [""] * (batch_size - len(part)),
                                                        max_length=max_length)
        out.append(embed(ids, mask, pool)[:len(part)])
    return np.concatenate(out)
