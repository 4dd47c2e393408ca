"""Data sources for real image-text data: webdataset tar shards, CSV/TSV index + rewrite files, ArrayRecord
(written by `clipjax.data.convert`), TensorFlow Datasets, and the built-in synthetic world.

Every source yields *raw records*, the one format the pipeline's transform reads:
  {'index': int (global dataset index), 'key': str, 'image': encoded bytes | uint8 [H,W,3] | None,
   'captions': {field: str | bytes | None} ('caption' is the original / AltText), 'epoch': int (tar only),
   'file': str (tar 'SHARD:KEY', CSV the image path; where a skipped sample's message points)}
A problem with one sample raises `BadSample(reason)` (random access) or yields a `BadSample` (tar streams); the
pipeline skips and counts it. Problems with files or config (missing shard, rewrite files of unequal length)
raise at construction, naming the file.
"""
from __future__ import annotations

import csv
import glob
import json
import mmap
import os
import re
import struct
import tarfile
import zlib
from collections.abc import Iterator, Sequence

import grain
import numpy as np

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif")
SKIP_REASONS = ("bad_image", "too_large", "missing_image", "missing_caption", "bad_caption", "bad_row",
                "truncated_shard")
_RECORD_MAGIC = b"CJX1"


class BadSample(Exception):
    """One unusable sample; `reason` is one of SKIP_REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        assert reason in SKIP_REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# ----------------------------------------------------------------------------------------------- paths


def expand_braces(pattern: str) -> list[str]:
    """Shell-style brace expansion: 'a/{000..002}.tar' -> a/000.tar a/001.tar a/002.tar (zero padding kept),
    '{x,y}' -> alternatives; several (and nested) groups expand left to right."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if m is None:
        return [pattern]
    head, body, tail = pattern[:m.start()], m.group(1), pattern[m.end():]
    r = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if r:
        lo, hi = int(r.group(1)), int(r.group(2))
        width = len(r.group(1)) if r.group(1).startswith("0") else 0
        options = [str(i).zfill(width) for i in range(lo, hi + 1)]
    else:
        options = body.split(",")
    return [p for o in options for p in expand_braces(head + o + tail)]


def split_paths(spec: str | Sequence[str]) -> list[str]:
    """A comma/whitespace separated list (commas inside braces belong to the pattern) or a sequence of
    patterns -> expanded paths; a directory stands for its sorted *.tar files."""
    if isinstance(spec, str):
        parts, depth, cur = [], 0, ""
        for ch in spec:
            depth += ch == "{"
            depth -= ch == "}"
            if depth == 0 and (ch == "," or ch.isspace()):
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        spec = parts + [cur]
    paths = []
    for pattern in (s.strip() for s in spec):
        if not pattern:
            continue
        for p in expand_braces(pattern):
            if not _is_remote(p) and os.path.isdir(p):
                paths.extend(sorted(glob.glob(os.path.join(p, "*.tar"))))
            elif not _is_remote(p) and glob.has_magic(p):
                paths.extend(sorted(glob.glob(p)))
            else:
                paths.append(p)
    return paths


def _is_remote(path: str) -> bool:
    return "://" in path


def _epath(path: str):
    try:
        from etils import epath
    except ImportError as e:  # pragma: no cover - etils ships with grain
        raise ImportError(f"reading {path!r} needs etils (pip install etils[epath])") from e
    return epath.Path(path)


def open_file(path: str):
    """Binary file object for a local path or a remote URL (gs://, s3://, ... through etils.epath)."""
    return _epath(path).open("rb") if _is_remote(path) else open(path, "rb")


def check_files_exist(paths: Sequence[str], what: str) -> None:
    """Fail at start-up naming the first missing file."""
    if not paths:
        raise FileNotFoundError(f"{what}: no files matched")
    for p in paths:
        ok = _epath(p).exists() if _is_remote(p) else os.path.isfile(p)
        if not ok:
            raise FileNotFoundError(f"{what}: file {p!r} does not exist")


# ----------------------------------------------------------------------------------------------- webdataset


def _split_name(name: str) -> tuple[str, str]:
    """'dir/000123.jpg' -> ('dir/000123', 'jpg'): the key ends at the first dot of the base name."""
    d, base = os.path.split(name)
    stem, _, ext = base.partition(".")
    return os.path.join(d, stem) if d else stem, ext.lower()


def _key_index(key: str, shard: str) -> int:
    digits = os.path.basename(key)
    if not digits.isdigit():
        raise ValueError(f"shard {shard!r}: sample key {key!r} is not numeric; img2dataset keys (shard * 10^k + i) "
                         f"give the global index, so write shards with numeric keys (python -m clipjax.data.convert)")
    return int(digits)


def _wds_record(key: str, files: dict[str, bytes], shard: str, caption_fields: Sequence[str]) -> dict | BadSample:
    """img2dataset sample (KEY.jpg|png|webp, KEY.txt, KEY.json) -> raw record, or BadSample."""
    meta: dict = {}
    if "json" in files:
        try:
            meta = json.loads(files["json"])
        except (UnicodeDecodeError, json.JSONDecodeError):
            return BadSample("bad_caption", f"{shard}:{key}.json")
    captions: dict = {"caption": files.get("txt", meta.get("caption"))}
    for field in caption_fields:
        if field in files:
            captions[field] = files[field]
        elif isinstance(meta.get(field), str):
            captions[field] = meta[field]
    image = next((files[e] for e in IMAGE_EXTENSIONS if e in files), None)
    index = int(meta["index"]) if isinstance(meta.get("index"), int) else _key_index(key, shard)
    return {"index": index, "key": str(meta.get("key", key)), "image": image, "captions": captions,
            "file": f"{shard}:{key}"}


_TAR_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)


def _members(path: str) -> Iterator[tuple[str | None, bytes | BadSample]]:
    """(name, data) of the regular files of one tar, in order. On damage, a final (name, BadSample('truncated_shard')):
    name is the member whose data was cut, or None when a header is damaged or the end-of-archive marker is missing
    (tarfile stops silently at a cut header; the marker tells a complete archive from one cut between members)."""
    with open_file(path) as f:
        try:
            tar = tarfile.open(fileobj=f, mode="r|*")
        except _TAR_ERRORS as e:
            yield None, BadSample("truncated_shard", f"{path}: not a readable tar ({_first_line(e)})")
            return
        with tar:
            name = None
            try:
                while (member := tar.next()) is not None:
                    if member.isfile():
                        name = member.name
                        yield name, tar.extractfile(member).read()
                        name = None
                if tar.fileobj.read(tarfile.BLOCKSIZE) != bytes(tarfile.BLOCKSIZE):
                    raise tarfile.ReadError("no end-of-archive marker: the file is cut or a header is damaged")
            except _TAR_ERRORS as e:
                yield name, BadSample("truncated_shard", f"{path}: {_first_line(e)}")


def _first_line(error: Exception) -> str:
    return next(iter(str(error).splitlines()), type(error).__name__)


def _kinds(files: dict[str, bytes]) -> frozenset[str]:
    """The member extensions of a sample, every image format counted as 'image'."""
    return frozenset("image" if ext in IMAGE_EXTENSIONS else ext for ext in files)


def read_tar(path: str, caption_fields: Sequence[str] = ()) -> Iterator[dict | BadSample]:
    """Samples of one tar shard in file order (members of a sample are consecutive, as img2dataset writes them).
    A truncated or corrupt shard yields every complete sample before the damage, then one
    BadSample('truncated_shard'). A sample is complete once a member of the next sample begins; when the damage
    hides what came next (a cut header or a missing end marker), once it has the members of the sample before it."""
    key, files, kinds = None, {}, None
    for name, data in _members(path):
        k, ext = _split_name(name) if name is not None else (None, "")
        if key is not None and (k != key if name is not None else _kinds(files) == kinds):
            yield _wds_record(key, files, path, caption_fields)
            key, files, kinds = None, {}, _kinds(files)
        if isinstance(data, BadSample):
            yield data
            return
        key = k
        files[ext] = data
    if key is not None:
        yield _wds_record(key, files, path, caption_fields)


def scan_max_index(paths: Sequence[str]) -> int:
    """Largest sample index over all shards, reading tar headers only (seeking over the data of local files)."""
    largest = -1
    for path in paths:
        try:
            with open_file(path) as f, tarfile.open(fileobj=f, mode="r:*" if not _is_remote(path) else "r|*") as tar:
                for member in tar:
                    key, _ = _split_name(member.name)
                    if member.isfile():
                        largest = max(largest, _key_index(key, path))
        except _TAR_ERRORS:
            continue  # a damaged shard is counted when it is read
    return largest


class TarShards(grain.IterDataset):
    """Sequential reader of webdataset shards: every epoch the shard list is permuted with (seed, epoch), this
    process takes every `process_count`-th shard (grain workers sub-slice further), and the concatenated stream
    is shuffled within consecutive windows of `window` samples (permutation from (seed, epoch, window number)).

    Iterator state is (epoch, shard position, sample offset) of the current window's start plus the number of
    samples already emitted from it, so a restore re-reads that window and continues exactly.
    """

    def __init__(self, paths: Sequence[str], *, seed: int, window: int, num_epochs: int, process_index: int = 0,
                 process_count: int = 1, caption_fields: Sequence[str] = ()):
        super().__init__()
        self.paths, self.seed, self.window, self.num_epochs = list(paths), seed, max(1, window), num_epochs
        self.caption_fields = tuple(caption_fields)
        self.slices = [slice(process_index, None, process_count)]

    def set_slice(self, sl: slice, sequential_slice: bool = False) -> None:
        """Grain worker slicing: each worker reads its own part of this process's shards."""
        del sequential_slice
        self.slices = self.slices + [sl]

    def epoch_shards(self, epoch: int) -> list[str]:
        order = np.random.default_rng([self.seed, epoch, 0x5A4D]).permutation(len(self.paths))
        shards = [self.paths[i] for i in order]
        for sl in self.slices:
            shards = shards[sl]
        return shards

    def __iter__(self) -> "_TarIterator":
        return _TarIterator(self)

    def __str__(self) -> str:
        return f"TarShards({len(self.paths)} shards, window={self.window}, slices={self.slices})"


class _TarIterator(grain.DatasetIterator):
    def __init__(self, ds: TarShards):
        super().__init__()
        self._ds = ds
        self._set(epoch=0, shard=0, offset=0, window_number=0, emitted=0)

    def _set(self, *, epoch, shard, offset, window_number, emitted):
        self._epoch, self._window_number, self._emitted = epoch, window_number, emitted
        self._start = (shard, offset)  # where the current window starts
        self._shards = self._ds.epoch_shards(epoch)
        self._cursor = [shard, offset]  # read position of the stream
        self._reader = None
        self._items: list = []
        self._order = None

    def _next_raw(self):
        """Next item of this epoch's stream, or None at its end."""
        while self._cursor[0] < len(self._shards):
            if self._reader is None:
                self._reader = read_tar(self._shards[self._cursor[0]], self._ds.caption_fields)
                for _ in range(self._cursor[1]):
                    next(self._reader, None)
            item = next(self._reader, None)
            if item is not None:
                self._cursor[1] += 1
                return item
            self._cursor, self._reader = [self._cursor[0] + 1, 0], None
        return None

    def _fill(self) -> None:
        self._items = []
        while len(self._items) < self._ds.window:
            item = self._next_raw()
            if item is None:
                break
            self._items.append(item)
        rng = np.random.default_rng([self._ds.seed, self._epoch, self._window_number, 0x57D])
        self._order = rng.permutation(len(self._items))

    def __next__(self):
        while True:
            if self._order is None:
                self._fill()
            if self._emitted < len(self._items):
                item = self._items[self._order[self._emitted]]
                self._emitted += 1
                if isinstance(item, dict):
                    item = {**item, "epoch": self._epoch}
                return item
            if len(self._items) < self._ds.window:  # the epoch's stream is exhausted
                if 0 < self._ds.num_epochs <= self._epoch + 1:
                    raise StopIteration
                self._set(epoch=self._epoch + 1, shard=0, offset=0, window_number=0, emitted=0)
            else:
                self._window_number += 1
                self._emitted, self._order, self._start = 0, None, tuple(self._cursor)

    def get_state(self) -> dict:
        return {"epoch": self._epoch, "shard": self._start[0], "offset": self._start[1],
                "window_number": self._window_number, "emitted": self._emitted}

    def set_state(self, state: dict) -> None:
        self._set(**{k: int(v) for k, v in state.items()})


# ----------------------------------------------------------------------------------------------- CSV / TSV


class LineFile:
    """Random access to the lines of a text file through a memory map (picklable: workers map it again)."""

    def __init__(self, path: str, skip: int = 0):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"file {path!r} does not exist")
        self.path = path
        with open(path, "rb") as f:
            data = np.fromfile(f, np.uint8)
        ends = np.flatnonzero(data == 10)
        starts = np.concatenate([[0], ends + 1])
        if len(data) and data[-1] != 10:
            ends = np.concatenate([ends, [len(data)]])
        else:
            starts = starts[:-1]
        self.starts, self.ends = starts[skip:].astype(np.int64), ends[skip:].astype(np.int64)
        self._map = None

    def __len__(self) -> int:
        return len(self.starts)

    def __getstate__(self):
        return {**self.__dict__, "_map": None}

    def __getitem__(self, i: int) -> bytes:
        if self._map is None:
            with open(self.path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.path.getsize(self.path) else b""
        return bytes(self._map[self.starts[i]:self.ends[i]]).rstrip(b"\r")


class CsvSource:
    """Rows of a CSV/TSV index (`path,caption`, with or without header; columns by name or position) with
    images under `image_root`, plus K rewrite files (line i = rewrite of row i) as fields rewrite_1..K.
    Rows must not span lines. Index = row number."""

    def __init__(self, path: str, *, image_root: str = "", header: bool = False, path_column: str = "0",
                 caption_column: str = "1", separator: str = "", rewrite_files: Sequence[str] = (),
                 caption_fields: Sequence[str] = ()):
        self.sep = separator or ("\t" if path.endswith((".tsv", ".tsv.txt")) else ",")
        self.lines = LineFile(path, skip=int(header))
        with open(path, encoding="utf-8", errors="replace") as f:
            names = next(csv.reader([f.readline().rstrip("\r\n")], delimiter=self.sep)) if header else []

        def column(c: str, key: str) -> int:
            if c.isdigit():
                return int(c)
            if c not in names:
                raise ValueError(f"config.data.{key} = {c!r}: no such column in the header of {path!r} ({names})")
            return names.index(c)
        self.path_col, self.caption_col = column(path_column, "csv_path_column"), column(caption_column,
                                                                                          "csv_caption_column")
        self.extra_cols = {f: column(f, "caption_fields") for f in caption_fields}
        self.image_root = image_root
        self.rewrites = [LineFile(p) for p in rewrite_files]
        for p, r in zip(rewrite_files, self.rewrites):
            if len(r) != len(self.lines):
                raise ValueError(f"rewrite file {p!r} has {len(r)} lines but the index {path!r} has "
                                 f"{len(self.lines)} rows: line i must rewrite row i (config.data.rewrite_files)")

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        try:
            row = next(csv.reader([self.lines[i].decode("utf-8")], delimiter=self.sep))
        except UnicodeDecodeError:
            raise BadSample("bad_caption", f"row {i} is not UTF-8") from None
        except csv.Error as e:
            raise BadSample("bad_row", f"row {i}: {e}") from None
        if len(row) <= max(self.path_col, self.caption_col, *self.extra_cols.values()):
            raise BadSample("bad_row" if row else "missing_caption", f"row {i} has {len(row)} columns")
        image_path = os.path.join(self.image_root, row[self.path_col])
        try:
            with open_file(image_path) as f:
                image = f.read()
        except (FileNotFoundError, IsADirectoryError):
            raise BadSample("missing_image", image_path) from None
        captions = {"caption": row[self.caption_col], **{f: row[c] for f, c in self.extra_cols.items()}}
        for k, r in enumerate(self.rewrites):
            captions[f"rewrite_{k + 1}"] = r[i]
        return {"index": i, "key": row[self.path_col], "image": image, "captions": captions, "file": image_path}


# ----------------------------------------------------------------------------------------------- ArrayRecord


def encode_record(index: int, key: str, captions: dict[str, str], image: bytes) -> bytes:
    """Converter record: magic, uint32 header length, JSON header {index, key, captions}, encoded image."""
    header = json.dumps({"index": int(index), "key": key, "captions": captions}, ensure_ascii=False).encode()
    return _RECORD_MAGIC + struct.pack("<I", len(header)) + header + image


def decode_record(data: bytes) -> dict:
    if data[:4] != _RECORD_MAGIC:
        raise BadSample("bad_row", "not a clipjax record")
    (n,) = struct.unpack("<I", data[4:8])
    header = json.loads(data[8:8 + n])
    return {"index": header["index"], "key": header["key"], "image": data[8 + n:], "captions": header["captions"]}


class ArrayRecordSource:
    """Records written by `python -m clipjax.data.convert --format arrayrecord`: a directory (or pattern) of
    *.array_record files and the converter's meta.json (dataset size = largest index + 1)."""

    def __init__(self, path: str):
        directory = path if os.path.isdir(path) else os.path.dirname(split_paths(path)[0] if path else "")
        paths = sorted(glob.glob(os.path.join(path, "*.array_record"))) if os.path.isdir(path) else split_paths(path)
        check_files_exist(paths, f"config.data.path = {path!r}")
        meta_path = os.path.join(directory, "meta.json")
        if not os.path.isfile(meta_path):
            raise FileNotFoundError(f"{meta_path!r} does not exist: ArrayRecord data must be written by "
                                    f"python -m clipjax.data.convert")
        with open(meta_path) as f:
            self.meta = json.load(f)
        self.source = grain.sources.ArrayRecordDataSource(paths)
        if len(self.source) != self.meta["num_records"]:
            raise ValueError(f"{meta_path!r} lists {self.meta['num_records']} records, the files hold "
                             f"{len(self.source)}")
        self.size = int(self.meta["size"])

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict:
        return decode_record(self.source[int(i)])


# ----------------------------------------------------------------------------------------------- TFDS


class TfdsSource:
    """A prepared TensorFlow Datasets split read with `tfds.data_source` (random access, nothing downloaded);
    images stay encoded (decoded by the pipeline). `caption_key` is a '/'-path into the features; a list of
    captions gives fields caption, caption_2, ... Index = record index."""

    def __init__(self, name: str, *, data_dir: str, split: str, image_key: str, caption_key: str,
                 caption_fields: Sequence[str] = ()):
        import tensorflow_datasets as tfds
        if not name:
            raise ValueError("config.data.path: expected a TFDS dataset name (e.g. 'coco_captions')")
        try:
            self.source = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False,
                                           decoders={image_key: tfds.decode.SkipDecoding()})
        except Exception as e:  # tfds raises several types for unknown or unprepared datasets
            raise FileNotFoundError(f"config.data.path = {name!r}: no prepared TFDS dataset of that name and split "
                                    f"{split!r} under config.data.tfds_data_dir = {data_dir!r} ({e})") from e
        self.image_key, self.caption_key, self.caption_fields = image_key, caption_key, tuple(caption_fields)

    def __len__(self) -> int:
        return len(self.source)

    @staticmethod
    def _get(features, path: str):
        for part in path.split("/"):
            if not isinstance(features, dict) or part not in features:
                return None
            features = features[part]
        return features

    def __getitem__(self, i: int) -> dict:
        ex = self.source[int(i)]
        caps = self._get(ex, self.caption_key)
        captions = {}
        if isinstance(caps, (list, tuple, np.ndarray)):
            for k, c in enumerate(caps):
                captions["caption" if k == 0 else f"caption_{k + 1}"] = c
        else:
            captions["caption"] = caps
        for field in self.caption_fields:
            captions[field] = self._get(ex, field)
        return {"index": int(i), "key": str(i), "image": self._get(ex, self.image_key), "captions": captions}


# ----------------------------------------------------------------------------------------------- synthetic


class SyntheticRaw:
    """The built-in world as raw records: fields caption (primary phrasing), phrasing_2..6, rewrite_1..3."""

    def __init__(self, size: int, image_size: int, seed: int = 0, caption_noise: float = 0.0, world: str = "v1"):
        from clipjax.data import synthetic
        self.source = synthetic.SyntheticSource("train", size=size, image_size=image_size, seed=seed,
                                                caption_noise=caption_noise, world=world)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict:
        ex = self.source[int(i)]
        captions = {"caption": ex["captions"][0]}
        captions.update({f"phrasing_{k + 2}": c for k, c in enumerate(ex["captions"][1:])})
        captions.update({f"rewrite_{k + 1}": c for k, c in enumerate(ex["rewrites"])})
        return {"index": ex["index"], "key": ex["key"], "image": ex["image"], "captions": captions}


def to_text(value) -> str | None:
    """Caption field -> str; bytes must be UTF-8 (BadSample('bad_caption') otherwise); None stays None."""
    if value is None:
        return None
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise BadSample("bad_caption", repr(bytes(value)[:40])) from None
    return value if isinstance(value, str) else str(value)

