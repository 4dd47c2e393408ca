"""OpenAI CLIP byte-level BPE tokenizer (vocabulary of 49408), reimplemented without torch.

Pipeline per text: ftfy fix -> HTML unescape (twice) -> collapse whitespace -> strip -> lower-case ->
regex pre-tokenisation -> UTF-8 bytes mapped to printable unicode -> BPE with a `</w>` end-of-word marker.
Ids match OpenAI's / OpenCLIP's `SimpleTokenizer` exactly.
"""
from __future__ import annotations

import gzip
import html
import importlib.resources
from collections.abc import Sequence

import ftfy
import numpy as np
import regex

_NUM_MERGES = 49152 - 256 - 2  # merges kept from the file: 48894
_SOT, _EOT = "<start_of_text>", "<end_of_text>"
_PATTERN = regex.compile(
    r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
    regex.IGNORECASE,
)
_WHITESPACE = regex.compile(r"\s+")
_CACHE_SIZE = 1 << 18  # words; the cache is emptied when it reaches this size


def byte_to_unicode() -> dict[int, str]:
    """Bijection byte -> printable unicode char: printable Latin-1 bytes map to themselves, the other
    68 bytes to code points 256, 257, ... in byte order. Insertion order (printable bytes first) is the
    order of the first 256 vocabulary entries."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def clean_text(text: str, lower: bool = True) -> str:
    """ftfy fix, HTML unescape twice, collapse whitespace runs to one space, strip, lower-case (if `lower`)."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    text = _WHITESPACE.sub(" ", text).strip()
    return text.lower() if lower else text


def _load_merges() -> list[tuple[str, str]]:
    path = importlib.resources.files("clipjax") / "assets" / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    return [tuple(line.split()) for line in lines[1 : _NUM_MERGES + 1]]  # line 0 is a version header


class ClipTokenizer:
    """CLIP BPE tokenizer. `__call__` gives `[SOT] + ids + [EOT]` rows zero-padded to `context_length`."""

    vocab_size = 49408
    sot_id = 49406
    eot_id = 49407
    pad_id = 0

    def __init__(self) -> None:
        self._byte_enc = byte_to_unicode()
        self._byte_dec = {c: b for b, c in self._byte_enc.items()}
        merges = _load_merges()
        symbols = list(self._byte_enc.values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [_SOT, _EOT]
        assert len(vocab) == self.vocab_size, len(vocab)
        self._encoder = {tok: i for i, tok in enumerate(vocab)}
        self._decoder = vocab
        self._ranks = {pair: r for r, pair in enumerate(merges)}
        self._cache: dict[str, tuple[str, ...]] = {}

    def _bpe(self, word: str) -> tuple[str, ...]:
        """Split one pre-token (already byte-mapped) into BPE symbols: repeatedly merge every
        non-overlapping occurrence (left to right) of the lowest-ranked adjacent pair. Cached per word."""
        if word in self._cache:
            return self._cache[word]
        if word in (_SOT, _EOT):
            return (word,)
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            ranked = [(self._ranks.get(p, _NUM_MERGES), p) for p in zip(parts, parts[1:])]
            rank, (first, second) = min(ranked)
            if rank == _NUM_MERGES:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[word] = tuple(parts)
        return self._cache[word]

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without SOT/EOT."""
        ids = []
        for piece in _PATTERN.findall(clean_text(text)):
            mapped = "".join(self._byte_enc[b] for b in piece.encode("utf-8"))
            ids.extend(self._encoder[s] for s in self._bpe(mapped))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Inverse of `encode` up to cleaning: each `</w>` becomes a space (so words end with one);
        special tokens come out as their text, invalid UTF-8 as U+FFFD."""
        data = bytes(self._byte_dec[c] for i in ids for c in self._decoder[int(i)])
        return data.decode("utf-8", errors="replace").replace("</w>", " ")

    def __call__(self, texts: str | Sequence[str], context_length: int = 77) -> np.ndarray:
        """int32 [N, context_length]: `[SOT] + encode(t) + [EOT]`, zero padded; an over-long row is cut to
        `context_length` with EOT as its last token."""
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), context_length), np.int32)
        for row, text in zip(out, texts):
            ids = [self.sot_id, *self.encode(text)][: context_length - 1] + [self.eot_id]
            row[: len(ids)] = ids
        return out
