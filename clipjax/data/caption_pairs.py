"""Caption data of LLM2CLIP stage 1 (arXiv 2411.04997): tables of captions per image and the (query, document,
hard negative) triples of caption-contrastive training, drawn as a pure function of (seed, step).

Sources: the built-in world (`clipjax.data.synthetic`: per image six phrasings and three paraphrases; its shortest
phrasing is the short caption, its longest the long one) or a CSV of caption pairs with a header naming columns
`short` and `long` (e.g. an image's alt-text and a dense re-caption). Plain-text files (one text a line) feed the
language-modelling stages only.
"""
import csv
import dataclasses
import logging
import os
from collections.abc import Sequence

import ml_collections
import numpy as np

from clipjax.data.synthetic import SyntheticSource

PAIR_KINDS = ("short_long", "paraphrase")


@dataclasses.dataclass(frozen=True)
class CaptionTable:
    """Captions of N images: short[i], long[i]; `phrasings[i]` / `rewrites[i]` (built-in world only) list the
    image's phrasings and paraphrases for 'paraphrase' pairs."""
    short: list[str]
    long: list[str]
    phrasings: list[list[str]] | None = None
    rewrites: list[list[str]] | None = None

    def __len__(self) -> int:
        return len(self.short)

    def texts(self) -> list[str]:
        """Every caption once (language-modelling text)."""
        if self.phrasings is None:
            return [*self.short, *self.long]
        return [t for p, r in zip(self.phrasings, self.rewrites) for t in (*p, *r)]

    def select(self, rows: slice) -> "CaptionTable":
        pick = lambda x: None if x is None else x[rows]  # noqa: E731
        return CaptionTable(self.short[rows], self.long[rows], pick(self.phrasings), pick(self.rewrites))


def builtin_table(split: str, size: int, image_size: int = 64, seed: int = 0) -> CaptionTable:
    """The built-in world's captions of images 0..size-1 of `split` (the same captions the CLIP pipeline sees at
    this image size and seed)."""
    source = SyntheticSource(split, size, image_size, seed)
    phrasings, rewrites = [], []
    for i in range(size):
        item = source[i]
        phrasings.append(item["captions"])
        rewrites.append(item["rewrites"])
    return CaptionTable([min(p, key=len) for p in phrasings], [max(p, key=len) for p in phrasings],
                        phrasings, rewrites)


def read_pairs_csv(path: str) -> CaptionTable:
    """Caption pairs from a CSV whose header names columns `short` and `long` (other columns ignored). A row with
    an empty caption is skipped and counted (logged); a missing file or column fails naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"caption-pair CSV {path!r} does not exist")
    short, long, skipped = [], [], 0
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"short", "long"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: the header must name columns 'short' and 'long'; missing {sorted(missing)}, "
                             f"found {reader.fieldnames}")
        for row in reader:
            s, t = (row.get("short") or "").strip(), (row.get("long") or "").strip()
            if s and t:
                short.append(s)
                long.append(t)
            else:
                skipped += 1
    if skipped:
        logging.warning("%s: skipped %d rows with an empty caption", path, skipped)
    if not short:
        raise ValueError(f"{path}: no caption pairs")
    return CaptionTable(short, long)


def read_texts(path: str) -> list[str]:
    """Language-modelling texts: both captions of every row of a pairs CSV, or the non-empty lines of a text file."""
    if path.endswith(".csv"):
        return read_pairs_csv(path).texts()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"text file {path!r} does not exist")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def epoch_rows(n: int, batch: int, seed: int, step: int) -> np.ndarray:
    """Rows [batch] of 0-based `step`: consecutive slices of a per-epoch permutation of range(n) (epoch e
    shuffled with (seed, e)); the stream wraps across epochs, so every row is seen once per epoch."""
    positions = step * batch + np.arange(batch)
    epochs, within = np.divmod(positions, n)
    out = np.empty(batch, np.int64)
    for e in np.unique(epochs):
        perm = np.random.default_rng((seed, int(e))).permutation(n)
        out[epochs == e] = perm[within[epochs == e]]
    return out


def draw_triples(table: CaptionTable, rows: np.ndarray, rng: np.random.Generator,
                 kinds: Sequence[str] = ("short_long",)) -> dict[str, list]:
    """One (query, document, negative) per row: a pair of captions of the row's image (kind drawn uniformly from
    `kinds`: 'short_long' = its short and long caption, 'paraphrase' = a phrasing and a paraphrase), a coin flip
    picking which is the query; the hard negative is the caption of the document's type (short / long, or
    phrasing / paraphrase) of another random image. Returns {'query', 'document', 'negative': [str],
    'to_long': [bool] (the query is the shorter caption)}."""
    unknown = set(kinds) - set(PAIR_KINDS)
    if unknown or not kinds:
        raise ValueError(f"pair kinds {sorted(kinds)}: expected a non-empty subset of {PAIR_KINDS}")
    if "paraphrase" in kinds and table.phrasings is None:
        raise ValueError("'paraphrase' pairs need the built-in world's paraphrases (a CSV gives short/long only)")
    n = len(table)
    if n < 2:
        raise ValueError("caption triples need at least 2 images")
    out = {"query": [], "document": [], "negative": [], "to_long": []}
    for row in rows:
        kind = kinds[int(rng.integers(len(kinds)))]
        other = (int(row) + 1 + int(rng.integers(n - 1))) % n
        if kind == "short_long":
            views = lambda i: (table.short[i], table.long[i])  # noqa: E731
        else:
            views = lambda i: (table.phrasings[i][int(rng.integers(len(table.phrasings[i])))],  # noqa: E731
                               table.rewrites[i][int(rng.integers(len(table.rewrites[i])))])
        pair, flip = views(int(row)), int(rng.integers(2))
        query, document = pair[flip], pair[1 - flip]
        out["query"].append(query)
        out["document"].append(document)
        out["negative"].append(views(other)[1 - flip])
        out["to_long"].append(len(query) <= len(document))
    return out


def load_stage_data(config: ml_collections.ConfigDict) -> tuple:
    """(train, held-out) data of a `clipjax.llm_train` stage (config.llm): caption lists for clm / mntp,
    CaptionTables for cc. Built-in: data.size training images and llm.eval_examples images of the eval split;
    files: a seeded random llm.eval_examples rows (texts for clm / mntp) held out."""
    c = config.llm
    if c.data == "builtin":
        train = builtin_table("train", config.data.size, config.data.image_size)
        held = builtin_table("eval", c.eval_examples, config.data.image_size)
        return (train, held) if c.stage == "cc" else (train.texts(), held.texts()[:c.eval_examples])
    if c.stage == "cc":
        table = read_pairs_csv(c.data)
        order = np.random.default_rng(config.seed).permutation(len(table))
        if len(table) <= c.eval_examples:
            raise ValueError(f"config.llm.data = {c.data!r}: {len(table)} pairs, not more than the "
                             f"llm.eval_examples = {c.eval_examples} held out")
        pick = lambda idx: CaptionTable([table.short[i] for i in idx], [table.long[i] for i in idx])  # noqa: E731
        return pick(order[c.eval_examples:]), pick(order[:c.eval_examples])
    texts = [t for path in c.data.split(",") for t in read_texts(path)]
    order = np.random.default_rng(config.seed).permutation(len(texts))
    return [texts[i] for i in order[c.eval_examples:]], [texts[i] for i in order[:c.eval_examples]]
