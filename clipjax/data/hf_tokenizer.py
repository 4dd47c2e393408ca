"""Tokenisers by config name: 'clip_bpe' (OpenAI CLIP BPE, shipped) or a local Hugging Face tokenizer directory.

Both are called as `tok(texts, context_length) -> int32 [N, context_length]` and expose `vocab_size`; nothing is
downloaded (transformers is asked for local files only).
"""
from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np

from clipjax.data.tokenizer import ClipTokenizer


class HFTokenizer:
    """A transformers tokenizer loaded from `path`: special tokens added as the tokenizer defines them, padded
    with its pad id (0 when it has none) and truncated to `context_length`."""

    def __init__(self, path: str):
        if not os.path.isdir(path):
            raise FileNotFoundError(f"config.data.tokenizer = {path!r}: expected 'clip_bpe' or a directory holding a "
                                    "Hugging Face tokenizer (tokenizer.json / vocab files)")
        import transformers
        self.tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        self.vocab_size = len(self.tok)

    def __call__(self, texts: str | Sequence[str], context_length: int = 77) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        ids = self.tok(list(texts), truncation=True, max_length=context_length)["input_ids"]
        out = np.full((len(ids), context_length), self.pad_id, np.int32)
        for row, x in zip(out, ids):
            row[:len(x)] = x
        return out


@functools.cache
def get_tokenizer(name: str) -> ClipTokenizer | HFTokenizer:
    """One instance per process and name."""
    return ClipTokenizer() if name == "clip_bpe" else HFTokenizer(name)
