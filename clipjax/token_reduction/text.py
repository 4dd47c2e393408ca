"""Text token reduction (CLIPA): tokenise a caption to at most `text_length` tokens by one of four strategies.

Convention: the caption's BPE ids (no SOT/EOT) are reduced to m = text_length - 2 ids, then the row is
`[SOT] + kept + [EOT]`, zero padded to text_length; a caption of at most m ids is kept whole. So 'truncate'
equals the tokenizer's own cut, and SOT/EOT (which the text tower pools on) are always present.
  truncate  the first m ids.
  random    a uniformly random subset of m ids, in their original order.
  block     a uniformly random contiguous span of m ids.
  syntax    ids ranked by their word's part of speech (noun < adjective < verb < other, `pos_lexicon`); the m
            best-ranked kept, ties broken left to right (stable sort), original order restored.
Random draws use the numpy Generator the pipeline passes (grain's per-example rng), so they are reproducible
and differ per epoch.
"""
import functools

import numpy as np

from clipjax.token_reduction import pos_lexicon
from clipjax.data import tokenizer as tokenizer_lib

TEXT_STRATEGIES = ("truncate", "random", "block", "syntax")


def keep_positions(n: int, m: int, strategy: str, rng: np.random.Generator | None = None,
                   ranks: np.ndarray | None = None) -> np.ndarray:
    """Sorted positions (int64 [min(n, m)]) of the n tokens kept by `strategy`; `ranks` [n] for 'syntax'."""
    if strategy not in TEXT_STRATEGIES:
        raise ValueError(f"text token strategy {strategy!r}: expected one of {TEXT_STRATEGIES}")
    if n <= m:
        return np.arange(n)
    if strategy == "truncate":
        return np.arange(m)
    if strategy == "random":
        return np.sort(rng.choice(n, m, replace=False))
    if strategy == "block":
        start = int(rng.integers(0, n - m + 1))
        return np.arange(start, start + m)
    return np.sort(np.argsort(np.asarray(ranks), kind="stable")[:m])


@functools.lru_cache(maxsize=1 << 18)
def _word_ids(tok: tokenizer_lib.ClipTokenizer, word: str) -> tuple[int, ...]:
    return tuple(tok.encode(word))


def encode_with_ranks(tok: tokenizer_lib.ClipTokenizer, caption: str) -> tuple[list[int], list[int]]:
    """BPE ids of `caption` (same as `tok.encode`) and, per id, the POS rank of the word it belongs to."""
    words = tokenizer_lib._PATTERN.findall(tokenizer_lib.clean_text(caption))
    ids, ranks = [], []
    for word, rank in zip(words, pos_lexicon.word_ranks(words)):
        pieces = _word_ids(tok, word)
        ids.extend(pieces)
        ranks.extend([rank] * len(pieces))
    return ids, ranks


def tokenize(tok: tokenizer_lib.ClipTokenizer, caption: str, text_length: int, strategy: str = "truncate",
             rng: np.random.Generator | None = None) -> np.ndarray:
    """int32 [text_length]: `[SOT] + reduce(ids, text_length - 2) + [EOT]`, zero padded."""
    if strategy == "syntax":
        ids, ranks = encode_with_ranks(tok, caption)
    else:
        ids, ranks = tok.encode(caption), None
    keep = keep_positions(len(ids), text_length - 2, strategy, rng, None if ranks is None else np.asarray(ranks))
    row = np.zeros(text_length, np.int32)
    kept = [tok.sot_id, *(ids[i] for i in keep), tok.eot_id]
    row[:len(kept)] = kept
    return row
