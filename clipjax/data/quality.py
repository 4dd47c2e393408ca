"""Data quality by image-text similarity ("Scaling (down) CLIP", arXiv 2404.08197 section 3: subsets of the pairs
a CLIP model scores highest): a side-car scores folder, written by `clipjax.tools.score`, and the training subset
`config.data.filter` keeps from it.

Scores folder: header.json {'data': the dataset's fingerprint (name, path, size, image size, caption noise),
'model': the scoring model's path, 'chunk': rows per file, 'size': rows}, and scores_CCCCC.npz per chunk of rows
(`chunked_files`: atomic, resumable, split over processes) with 'key' (str [n], the source's record keys) and
'score' (float32 [n], cosine of the L2-normalised image and primary-caption embeddings, in [-1, 1]).

config.data.filter: scores (the folder), top_fraction (keep the ceil(f N) highest-scored rows) or min_score (keep
rows with score >= it); one of the two. Ties at the cut are broken by the lower row first (deterministic).
"""
from __future__ import annotations

import functools
import math
import os

import ml_collections
import numpy as np

from clipjax import config as config_lib
from clipjax.data import chunked_files

CHUNK_FILE = "scores_{:05d}.npz"


class ScoresMismatch(ValueError):
    """A scores folder made for other data than the config's."""


def data_fingerprint(data: ml_collections.ConfigDict, size: int) -> dict:
    """What identifies the scored rows: source name, path, row count, image size, caption noise."""
    return {"name": data.name, "path": os.path.abspath(data.path) if data.path else "", "size": int(size),
            "image_size": int(data.image_size), "caption_noise": float(data.get("caption_noise", 0.0))}


def chunk_path(folder: str, chunk_id: int) -> str:
    return os.path.join(folder, CHUNK_FILE.format(chunk_id))


def num_chunks(size: int, chunk: int) -> int:
    return -(-size // chunk)


def write_chunk(folder: str, chunk_id: int, keys: list[str], scores: np.ndarray) -> None:
    import io
    buf = io.BytesIO()
    np.savez(buf, key=np.asarray(keys, dtype=str), score=np.asarray(scores, np.float32))
    chunked_files.atomic_write(chunk_path(folder, chunk_id), buf.getvalue())


def read_scores(folder: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """(header, keys str [N], scores float32 [N]) of a complete scores folder (error naming a missing chunk)."""
    header = chunked_files.read_header(folder)
    if header is None:
        raise FileNotFoundError(f"config.data.filter.scores = {folder!r}: no {chunked_files.HEADER} there (write the "
                                f"scores with python -m clipjax.tools.score)")
    keys, scores = [], []
    for c in range(num_chunks(header["size"], header["chunk"])):
        path = chunk_path(folder, c)
        if not os.path.exists(path):
            raise FileNotFoundError(f"config.data.filter.scores = {folder!r}: {os.path.basename(path)} is missing "
                                    f"(an unfinished scoring run: rerun python -m clipjax.tools.score to complete it)")
        with np.load(path) as f:
            keys.append(f["key"])
            scores.append(f["score"])
    return header, np.concatenate(keys), np.concatenate(scores).astype(np.float32)


def enabled(config: ml_collections.ConfigDict) -> bool:
    return bool(config.data.filter.scores)


def validate(config: ml_collections.ConfigDict) -> None:
    """config.data.filter: off (scores '') or a scores folder with exactly one of top_fraction / min_score."""
    f = config.data.filter
    require = lambda ok, key, what: config_lib.require(ok, config, key, what)  # noqa: E731
    if not f.scores:
        require(f.top_fraction == 0 and f.min_score is None, "data.filter.scores",
                "a scores folder (python -m clipjax.tools.score) when data.filter.top_fraction or min_score is set")
        return
    require(os.path.isfile(os.path.join(f.scores, chunked_files.HEADER)), "data.filter.scores",
            "a scores folder written by python -m clipjax.tools.score (no header.json there)")
    require(config.data.name != "webdataset", "data.name",
            "a random-access source (csv, arrayrecord, tfds, synthetic) with data.filter: webdataset shards are "
            "read in order; filter them when writing the shards")
    require((f.top_fraction > 0) != (f.min_score is not None), "data.filter.top_fraction",
            "exactly one of data.filter.top_fraction (in (0, 1]) and data.filter.min_score")
    require(0 <= f.top_fraction <= 1, "data.filter.top_fraction", "a fraction in (0, 1] of the pairs to keep")


def check_matches(config: ml_collections.ConfigDict, source, header: dict, keys: np.ndarray) -> None:
    """ScoresMismatch unless the scores were made for this source: the same fingerprint and the record keys of a
    spread of rows (first, last and 14 between) equal to the stored keys."""
    folder = config.data.filter.scores
    expected = data_fingerprint(config.data, len(source))
    diff = chunked_files.header_diff(header.get("data", {}), expected, sorted(expected))
    if diff:
        raise ScoresMismatch(f"config.data.filter.scores = {folder!r} was computed for other data than "
                             f"config.data:\n  " + "\n  ".join(diff))
    for row in sorted({int(r) for r in np.linspace(0, len(source) - 1, 16)} if len(source) else set()):
        key = str(source[row].get("key", ""))
        if key != str(keys[row]):
            raise ScoresMismatch(f"config.data.filter.scores = {folder!r}: row {row} is keyed {str(keys[row])!r} "
                                 f"there but {key!r} in config.data (scores of another dataset or order)")


def kept_rows(config: ml_collections.ConfigDict, scores: np.ndarray) -> np.ndarray:
    """Sorted rows int64 [K] that config.data.filter keeps; ValueError naming the key when it keeps none."""
    f = config.data.filter
    if f.min_score is not None:
        rows = np.flatnonzero(scores >= f.min_score)
        if not len(rows):
            raise ValueError(f"config.data.filter.min_score = {f.min_score}: keeps none of the {len(scores)} pairs "
                             f"(the highest score is {float(np.max(scores)) if len(scores) else float('nan'):.4f})")
        return rows
    k = math.ceil(f.top_fraction * len(scores))
    if k == 0:
        raise ValueError(f"config.data.filter.top_fraction = {f.top_fraction}: keeps none of the {len(scores)} pairs")
    order = np.lexsort((np.arange(len(scores)), -scores))  # highest first, lower row first among ties
    return np.sort(order[:k])


@functools.lru_cache(maxsize=4)
def _cached(folder: str, mtime: float):
    del mtime
    return read_scores(folder)


def load_and_filter(config: ml_collections.ConfigDict, source) -> tuple[np.ndarray, dict]:
    """(kept rows of `source`, data metrics {'data/filter_kept', 'data/filter_total', 'data/filter_min_kept_score'})
    after checking the scores folder matches the source."""
    folder = config.data.filter.scores
    header, keys, scores = _cached(folder, os.path.getmtime(os.path.join(folder, chunked_files.HEADER)))
    check_matches(config, source, header, keys)
    rows = kept_rows(config, scores)
    return rows, {"data/filter_kept": len(rows), "data/filter_total": len(scores),
                  "data/filter_min_kept_score": float(np.min(scores[rows]))}


class Subset:
    """The rows `rows` of a random-access source; records keep their own 'index' and `size` is the source's, so
    per-sample state (FastCLIP) and config.data.size still address the whole dataset."""

    def __init__(self, source, rows: np.ndarray):
        self.source, self.rows = source, np.asarray(rows, np.int64)
        self.size = getattr(source, "size", len(source))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.source[int(self.rows[int(i)])]
