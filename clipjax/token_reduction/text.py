"""Text token reduction (CLIPA): tokenise a caption to at most `text_length` tokens by one of four strategies.

Convention: the caption's BPE ids (no SOT/EOT) are reduced to m = text_length - 2 ids, then the row is
`[SOT] + kept + [EOT]`, zero padded to text_length; a caption of at most m ids is kept whole. So 'truncate'
equals the tokenizer's own cut, and SOT/EOT (which the text tower pools on) are always present.
  truncate  the first m ids.
  random    a uniformly random subset of m ids, in their original order.
  block     a uniformly random contiguous span of m ids.
  syntax    CLIPA's syntax masking (UCSC-VLAA/CLIPA clipa_torch/open_clip/tokenizer.py `syntax_mask_tokenize`): the
            caption's words, tagged in context with their raw capitalisation (`pos_lexicon`), are ranked noun <
            adjective < verb < other; the m best-ranked words are kept (ties left to right: stable sort) in their
            original order, and their BPE pieces cut to m ids. So whole words are chosen first; when the kept
            words have more than m pieces, the last pieces in caption order are lost, as when CLIPA re-tokenises
            the kept words and truncates.
Random draws use the numpy Generator the pipeline passes (grain's per-example rng), so they are reproducible
and differ per epoch.
"""
import functools

import numpy as np

from clipjax.data import tokenizer as tokenizer_lib
from clipjax.token_reduction import pos_lexicon

TEXT_STRATEGIES = ("truncate", "random", "block", "syntax")


def keep_positions(n: int, m: int, strategy: str, rng: np.random.Generator | None = None,
                   ranks: np.ndarray | None = None) -> np.ndarray:
    """Sorted positions (int64 [min(n, m)]) of the n tokens (for 'syntax': words) kept by `strategy`; `ranks` [n]
    for 'syntax'."""
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


def caption_words(caption: str) -> list[str]:
    """The caption's words, capitalisation kept: the CLIP tokenizer's pre-tokens of its cleaned text (ftfy, HTML
    unescape, whitespace collapsed, but not lower-cased), a run of adjacent digits joined into one number ('2019',
    one word as for NLTK's word_tokenize). Their BPE pieces, concatenated, are `tok.encode(caption)`."""
    words, end = [], -1
    for match in tokenizer_lib._PATTERN.finditer(tokenizer_lib.clean_text(caption, lower=False)):
        word = match.group()
        if word.isdigit() and match.start() == end and words[-1].isdigit():
            words[-1] += word
        else:
            words.append(word)
        end = match.end()
    return words


@functools.lru_cache(maxsize=1 << 18)
def _word_ids(tok: tokenizer_lib.ClipTokenizer, word: str) -> tuple[int, ...]:
    return tuple(tok.encode(word))


def tokenize(tok: tokenizer_lib.ClipTokenizer, caption: str, text_length: int, strategy: str = "truncate",
             rng: np.random.Generator | None = None) -> np.ndarray:
    """int32 [text_length]: `[SOT] + reduce(ids, text_length - 2) + [EOT]`, zero padded."""
    m = text_length - 2
    if strategy == "syntax":
        words = caption_words(caption)
        keep = keep_positions(len(words), m, strategy, ranks=np.asarray(pos_lexicon.word_ranks(words)))
        ids = [i for k in keep for i in _word_ids(tok, words[k])][:m]
    else:
        ids = tok.encode(caption)
        ids = [ids[i] for i in keep_positions(len(ids), m, strategy, rng)]
    row = np.zeros(text_length, np.int32)
    kept = [tok.sot_id, *ids, tok.eot_id]
    row[:len(kept)] = kept
    return row
