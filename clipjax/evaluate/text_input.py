"""Eval texts (class prompts, captions) -> the text tower's input: token ids for the transformer text tower, or the
frozen LLM's caption embeddings for LLM2CLIP's adapter (arXiv 2411.04997), computed exactly as
`clipjax.tools.embed_captions` computed the training captions' (same LLM, attention, pooling and length)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from clipjax import llm_embed
from clipjax.data.hf_tokenizer import get_tokenizer
from clipjax.models import llm_loading


class LlmCaptionEmbedder:
    """`embedder(texts, context_length=None)` -> float32 [N, d]: mean-pooled LLM embeddings of `texts` (no
    instruction). The LLM is loaded onto `mesh` at the first call; each distinct text is embedded once."""

    def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, batch_size: int):
        self.folder, self.mesh = config.llm.folder, mesh
        self.max_length, self.bidirectional, self.dtype = config.llm.max_length, config.llm.bidirectional, config.llm.dtype
        data_parallel = mesh.shape["data"] * mesh.shape["fsdp"]
        self.batch_size = -(-batch_size // data_parallel) * data_parallel
        self._embed = self._tokenizer = None
        self._seen: dict[str, np.ndarray] = {}

    def _load(self) -> None:
        module, params = llm_loading.from_pretrained(self.folder, dtype=jnp.dtype(self.dtype), mesh=self.mesh,
                                                     causal=not self.bidirectional)
        self._embed = llm_embed.make_embed_fn(module, params, self.mesh)
        self._tokenizer = llm_loading.load_tokenizer(self.folder)

    def __call__(self, texts: list[str], context_length: int | None = None) -> np.ndarray:
        del context_length  # the LLM's own length, config.llm.max_length, applies
        new = list(dict.fromkeys(t for t in texts if t not in self._seen))
        if new:
            if self._embed is None:
                self._load()
            rows = llm_embed.embed_texts(self._embed, self._tokenizer, new, self.batch_size, self.max_length)
            self._seen.update(zip(new, rows))
        return np.stack([self._seen[t] for t in texts]) if texts else np.zeros((0, 0), np.float32)


def text_encoder(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, batch_size: int):
    """The callable `(texts, context_length) -> text tower input [N, ...]` of this run's text tower."""
    if config.model.get("text_tower", "transformer") == "llm_adapter":
        return LlmCaptionEmbedder(config, mesh, batch_size)
    return get_tokenizer(config.data.tokenizer)

