"""Side-car caption embeddings keyed by global dataset index (LLM2CLIP stage 2, arXiv 2411.04997 Sec. 3.2).

A frozen LLM embeds every caption field of a dataset once; training then reads the embeddings in place of token ids.
Layout of a cache folder:
  header.json            what made it: LLM folder and fingerprint, pooling, caption fields, source fingerprints,
                         rows (largest index + 1), width, dtype, rows per chunk
  FIELD/CHUNK.npy        float rows [chunk_rows, dim] of one field, row r = global index CHUNK * chunk + r
Chunks are written whole and atomically (temporary file + rename), so a killed writer leaves only complete chunks
and a rerun writes just the missing ones, in any process layout. A reader refuses a cache whose header differs
from what the run expects (another LLM, pooling or caption file: a stale cache) and one with missing chunks.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
from collections.abc import Sequence

import ml_collections
import numpy as np

from clipjax.data import chunked_files
from clipjax.data.chunked_files import HEADER


class CacheError(chunked_files.StaleOutput):
    """A cache that cannot serve this run: stale (made from other inputs) or half-written."""


@dataclasses.dataclass(frozen=True)
class Header:
    llm: str                         # the LLM folder
    llm_fingerprint: str             # sha256 of its config.json and weight file names and sizes
    pooling: str                     # e.g. 'mean' (caption tokens only)
    fields: tuple[str, ...]          # caption fields embedded, e.g. ('caption', 'rewrite_1')
    sources: tuple[tuple[str, str], ...]  # (caption source file, fingerprint) pairs
    size: int                        # rows: largest global index + 1
    dim: int                         # embedding width
    dtype: str = "float32"
    chunk: int = 4096                # rows per chunk file

    @property
    def num_chunks(self) -> int:
        return -(-self.size // self.chunk)

    def chunk_rows(self, chunk_id: int) -> int:
        return min(self.chunk, self.size - chunk_id * self.chunk)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Header:
        d = json.loads(text)
        return cls(**{**d, "fields": tuple(d["fields"]), "sources": tuple(tuple(s) for s in d["sources"])})


def file_fingerprint(path: str, content: bool = True) -> str:
    """sha256 of a file's bytes (`content`), or of its name and size (large shards)."""
    h = hashlib.sha256()
    if content:
        with open(path, "rb") as f:
            for block in iter(functools.partial(f.read, 1 << 20), b""):
                h.update(block)
    else:
        h.update(f"{os.path.basename(path)}:{os.path.getsize(path)}".encode())
    return h.hexdigest()[:16]


def llm_fingerprint(folder: str) -> str:
    """sha256 of an LLM folder's config.json plus the names and sizes of its weight files."""
    h = hashlib.sha256()
    with open(os.path.join(folder, "config.json"), "rb") as f:
        h.update(f.read())
    for name in sorted(os.listdir(folder)):
        if name.endswith((".safetensors", ".json")):
            h.update(f"{name}:{os.path.getsize(os.path.join(folder, name))}".encode())
    return h.hexdigest()[:16]


def source_fingerprints(data: ml_collections.ConfigDict) -> tuple[tuple[str, str], ...]:
    """What the captions come from: CSV index and rewrite files by content, ArrayRecord files by name and size,
    the built-in world and TFDS by their settings."""
    if data.name == "csv":
        files = [data.path, *filter(None, data.rewrite_files.split(","))]
        return tuple((os.path.abspath(f), file_fingerprint(f)) for f in files)
    if data.name == "arrayrecord":
        names = sorted(f for f in os.listdir(data.path) if not f.startswith("."))
        return tuple((os.path.join(data.path, f), file_fingerprint(os.path.join(data.path, f), content=False))
                     for f in names)
    if data.name == "synthetic":
        return (("synthetic", f"size={data.size}"),)
    if data.name == "tfds":
        return (("tfds", f"{data.path}:{data.tfds_split}:{data.tfds_caption_key}:{data.tfds_data_dir}"),)
    raise ValueError(f"config.data.name = {data.name!r}: embed_captions reads random-access sources (csv, "
                     "arrayrecord, tfds, synthetic); convert webdataset shards with python -m clipjax.data.convert")


def pooling_name(bidirectional: bool, max_length: int) -> str:
    """The header's pooling entry: mean over caption tokens, the attention, and the tokens per caption."""
    return f"mean,{'bidirectional' if bidirectional else 'causal'},max_length={max_length}"


def check_serves(folder: str, found: Header, llm_fingerprint: str, pooling: str,
                 sources: tuple[tuple[str, str], ...]) -> None:
    """CacheError unless the cache at `folder` was made by this LLM, with this pooling, from these caption sources
    (a training run's check; the run's class prompts are embedded the same way)."""
    check_header(folder, found, dataclasses.replace(found, llm_fingerprint=llm_fingerprint, pooling=pooling,
                                                    sources=tuple(tuple(s) for s in sources)))


def chunk_path(folder: str, field: str, chunk_id: int) -> str:
    return os.path.join(folder, field, f"{chunk_id:06d}.npy")


def open_for_writing(folder: str, header: Header) -> Header:
    """Create the cache folder with `header`, or resume one whose header is identical (else CacheError)."""
    path = os.path.join(folder, HEADER)
    if os.path.exists(path):
        check_header(folder, read_header(folder), header)
        return header
    os.makedirs(folder, exist_ok=True)
    for field in header.fields:
        os.makedirs(os.path.join(folder, field), exist_ok=True)
    chunked_files.atomic_write(path, header.to_json().encode())
    return header


def missing_chunks(folder: str, header: Header, field: str) -> list[int]:
    return [c for c in range(header.num_chunks) if not os.path.exists(chunk_path(folder, field, c))]


def write_chunk(folder: str, header: Header, field: str, chunk_id: int, rows: np.ndarray) -> None:
    """Atomically write chunk `chunk_id` of `field`: rows [chunk_rows(chunk_id), dim]."""
    want = (header.chunk_rows(chunk_id), header.dim)
    if rows.shape != want:
        raise ValueError(f"chunk {chunk_id} of {field!r}: rows of shape {rows.shape}, expected {want}")
    buf = io.BytesIO()
    np.save(buf, np.asarray(rows, header.dtype))
    chunked_files.atomic_write(chunk_path(folder, field, chunk_id), buf.getvalue())


def read_header(folder: str) -> Header:
    path = os.path.join(folder, HEADER)
    if not os.path.exists(path):
        raise CacheError(f"{folder}: no {HEADER}; make the cache with python -m clipjax.tools.embed_captions")
    with open(path) as f:
        return Header.from_json(f.read())


def check_header(folder: str, found: Header, expected: Header) -> None:
    """CacheError naming every header field (other than size) that differs: a cache made from other inputs."""
    chunked_files.check_same(folder, dataclasses.asdict(found), dataclasses.asdict(expected),
                             ("llm_fingerprint", "pooling", "fields", "sources", "size", "dim", "dtype", "chunk"),
                             noun="cache", error=CacheError)


class EmbeddingCache:
    """Read side: `cache(field, index)` -> float32 [dim]. Checks on opening that every chunk is present."""

    def __init__(self, folder: str, expected: Header | None = None, fields: Sequence[str] | None = None):
        self.folder, self.header = folder, read_header(folder)
        if expected is not None:
            check_header(folder, self.header, expected)
        self.fields = tuple(fields) if fields is not None else self.header.fields
        unknown = sorted(set(self.fields) - set(self.header.fields))
        if unknown:
            raise CacheError(f"{folder}: no embeddings of caption fields {unknown} (it has {self.header.fields})")
        for field in self.fields:
            missing = missing_chunks(folder, self.header, field)
            if missing:
                raise CacheError(f"{folder}: half-written cache, {len(missing)} of {self.header.num_chunks} chunks "
                                 f"of {field!r} missing (first {chunk_path(folder, field, missing[0])}); rerun "
                                 f"python -m clipjax.tools.embed_captions to finish it")

    @functools.lru_cache(maxsize=64)
    def _chunk(self, field: str, chunk_id: int) -> np.ndarray:
        return np.load(chunk_path(self.folder, field, chunk_id), mmap_mode="r")

    def __call__(self, field: str, index: int) -> np.ndarray:
        if not 0 <= index < self.header.size:
            raise IndexError(f"index {index} outside the cache's {self.header.size} rows ({self.folder})")
        chunk_id, row = divmod(int(index), self.header.chunk)
        return np.asarray(self._chunk(field, chunk_id)[row], np.float32)
