"""Grain input pipeline: source -> shard by process -> shuffle -> caption choice / decode / augment / tokenise
-> batch (bad samples skipped and counted) -> worker processes -> this process's share of the global batch.

Random-access sources (synthetic, CSV, ArrayRecord, TFDS) are shuffled globally per epoch; process p reads every
`process_count`-th position of that stream. Webdataset shards are read sequentially: a per-epoch shard order,
every `process_count`-th shard per process (and per grain worker), shuffled within windows (sources.TarShards).
So the processes together read each example of an epoch exactly once.

Randomness per example (caption choice, augmentation, text reduction) comes from (seed, epoch, global index)
alone, so an example is treated alike whatever the number of processes or workers, and restoring the iterator
state (Orbax, with the train state) continues exactly. Batches: image uint8 [b,H,W,3] (+ views uint8 [b,2,H,W,3] for
the 'simclr' preset), tokens int32 [b,L], index int32 [b].
"""
import dataclasses
import functools
import itertools
import os
from collections.abc import Iterable

import grain
import jax
from absl import logging
import ml_collections
import numpy as np

from clipjax import config as config_lib, llm_text
from clipjax.data import augment as augment_lib
from clipjax.data import captions as captions_lib
from clipjax.data import embedding_cache
from clipjax.data import quality, sources, synthetic
from clipjax.token_reduction import text as text_reduction
from clipjax.data.hf_tokenizer import get_tokenizer
from clipjax.data.tokenizer import ClipTokenizer
from clipjax.models import llm_loading

SOURCES = ("synthetic", "webdataset", "csv", "arrayrecord", "tfds")
SKIPPED_KEY = "_skipped"  # per-batch skip report travelling from the workers (SkipCountingBatch); popped by SkipCounter
_SKIP_RATE_WINDOW = 10_000  # the skip rate is checked over consecutive windows of this many samples
_STARTUP_SAMPLES = 16  # at start-up, one of this process's first samples must be usable


def tokenizer() -> ClipTokenizer:
    """The process's OpenAI BPE tokenizer (the instance `get_tokenizer('clip_bpe')` shares)."""
    return get_tokenizer("clip_bpe")


def _split(spec: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in spec.split(",") if s.strip())


def validate(config: ml_collections.ConfigDict) -> None:
    """config.data: a known source with a path, caption mode, augmentation preset and tokenizer."""
    d = config.data
    require = lambda ok, key, what: config_lib.require(ok, config, key, what)  # noqa: E731
    require(d.name in SOURCES, "data.name", f"one of {SOURCES}")
    require(d.name == "synthetic" or d.path, "data.path", f"the location of the {d.name!r} data")
    require(d.caption_mode in captions_lib.MODES, "data.caption_mode", f"one of {captions_lib.MODES}")
    require(d.augment in augment_lib.PRESETS, "data.augment", f"one of {augment_lib.PRESETS}")
    require(d.tokenizer == "clip_bpe" or os.path.isdir(d.tokenizer), "data.tokenizer",
            "'clip_bpe' or a local Hugging Face tokenizer directory")
    require(d.num_epochs == -1 or d.num_epochs > 0, "data.num_epochs", "-1 (forever) or a positive count")
    require(d.max_image_pixels > 0, "data.max_image_pixels", "a positive pixel count")
    require(d.device_prefetch >= 1, "data.device_prefetch", "a count >= 1 of batches on device (1: no overlap)")
    require(0 <= d.max_skip_rate < 1, "data.max_skip_rate", "a fraction in [0, 1) of samples that may be skipped")
    require(d.text_length >= 3, "data.text_length", "at least 3 (SOT, one token, EOT)")
    require(0 <= d.caption_noise <= 1 and (d.caption_noise == 0 or d.name == "synthetic"), "data.caption_noise",
            "a fraction in [0, 1], for the built-in world (data.name = 'synthetic') only")
    require(d.world in synthetic.WORLDS, "data.world", f"a built-in world, one of {synthetic.WORLDS}")
    quality.validate(config)


def make_source(data_config: ml_collections.ConfigDict):
    """The random-access source named by `data_config.name` (raw records, see sources.py); webdataset is
    sequential and built by `make_train_dataset`. Missing or inconsistent files fail here, naming the file."""
    d = data_config
    if d.name == "synthetic":
        return sources.SyntheticRaw(d.size, d.image_size, caption_noise=d.caption_noise, world=d.world)
    if d.name == "csv":
        return sources.CsvSource(d.path, image_root=d.image_root, header=d.csv_header, path_column=d.csv_path_column,
                                 caption_column=d.csv_caption_column, separator=d.csv_separator,
                                 rewrite_files=_split(d.rewrite_files), caption_fields=_split(d.caption_fields))
    if d.name == "arrayrecord":
        return sources.ArrayRecordSource(d.path)
    if d.name == "tfds":
        return sources.TfdsSource(d.path, data_dir=d.tfds_data_dir, split=d.tfds_split, image_key=d.tfds_image_key,
                                  caption_key=d.tfds_caption_key, caption_fields=_split(d.caption_fields))
    raise ValueError(f"config.data.name = {d.name!r}: expected one of {SOURCES}")


def example_rng(seed: int, epoch: int, index: int, stream: int) -> np.random.Generator:
    """The generator of one (example, epoch) for one use (0 captions, 1 augmentation, 2 text reduction): Philox
    keyed by (seed, epoch, index, stream), distinct for index < 2^40 and epoch < 2^22 (cheap to create)."""
    key = ((epoch & 0x3FFFFF) << 42) | ((index & 0xFFFFFFFFFF) << 2) | stream
    return np.random.Generator(np.random.Philox(key=[seed & 0xFFFFFFFFFFFFFFFF, key]))


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A sample the transform could not use; counted by `SkipCountingBatch`. `detail` names the file and problem."""
    reason: str
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class TrainTransform:
    """Raw record -> {'image', ['views'], 'tokens' | 'text_embedding', 'index'} or Skipped(reason). With
    `text_embeddings` (an EmbeddingCache), the chosen caption's cached LLM embedding float32 [d] replaces its
    tokens: the caption mix picks a field, the cache row of that field and the example's index is read."""
    seed: int
    text_length: int
    chooser: captions_lib.CaptionChooser
    augment: augment_lib.Augment
    tokenizer: str = "clip_bpe"
    text_strategy: str = "truncate"  # config.tokens.text_strategy (see token_reduction.text)
    max_index: int = -1              # > 0: an index at or above it is a config error (config.data.size)
    debug: bool = False              # also return 'key' and the chosen 'caption' (clipjax.data.inspect)
    text_embeddings: embedding_cache.EmbeddingCache | None = None
    llm_folder: str = ""             # online llm_adapter: 'llm_tokens' int32 [3, llm_max_length] for this LLM
    llm_max_length: int = 0

    def __call__(self, raw: dict | sources.BadSample) -> dict | Skipped:
        if isinstance(raw, sources.BadSample):
            return Skipped(raw.reason, str(raw))
        index, epoch = int(raw["index"]), int(raw.get("epoch", 0))
        if 0 < self.max_index <= index:
            raise ValueError(f"sample {raw.get('key')!r} has index {index} >= config.data.size = {self.max_index}; "
                             "set config.data.size to the largest index + 1, or -1 to scan the shards")
        try:
            field, caption = self.chooser.choose(raw["captions"], example_rng(self.seed, epoch, index, 0))
            out = self.augment(raw["image"], example_rng(self.seed, epoch, index, 1))
        except sources.BadSample as e:
            return Skipped(e.reason, f"{raw.get('file', raw.get('key'))}: {e}")
        if self.text_embeddings is not None:
            out["text_embedding"] = self.embedding(field, index)
        elif self.llm_folder:
            out["llm_tokens"] = llm_tokens(self.llm_folder, caption, self.llm_max_length)
        else:
            out["tokens"] = self.tokens(caption, example_rng(self.seed, epoch, index, 2))
        out["index"] = np.int32(index)
        if self.debug:
            out.update(key=raw.get("key"), caption=caption)
        return out

    def embedding(self, field: str, index: int) -> np.ndarray:
        """float32 [d]: the cached embedding of caption `field` of example `index`."""
        cache = self.text_embeddings
        if field not in cache.fields:
            raise ValueError(f"config.data.caption_mode = {self.chooser.mode!r} chose caption field {field!r}, which "
                             f"the embedding cache {cache.folder} does not hold (it has {list(cache.fields)}); embed "
                             "it (embed_captions --fields) or narrow the mix (data.caption_mode, data.rewrite_fields)")
        return cache(field, index)

    def tokens(self, caption: str, rng: np.random.Generator) -> np.ndarray:
        """int32 [text_length]. Text token reduction (CLIPA) plugs in here, for the CLIP BPE tokenizer."""
        if self.tokenizer == "clip_bpe":
            return text_reduction.tokenize(tokenizer(), caption, self.text_length, self.text_strategy, rng)
        return get_tokenizer(self.tokenizer)(caption, self.text_length)[0]


@dataclasses.dataclass(frozen=True)
class _LoadAndTransform:
    """(epoch, position in the source) -> transformed example (random-access sources)."""
    source: object
    transform: TrainTransform

    def __call__(self, epoch_and_position: tuple[int, int]):
        epoch, position = epoch_and_position
        try:
            raw = self.source[position]
        except sources.BadSample as e:
            return Skipped(e.reason, str(e))
        return self.transform({**raw, "epoch": epoch})


@dataclasses.dataclass(frozen=True)
class _WithEpoch:
    size: int

    def __call__(self, position: int, element):
        return position // self.size, element


class SkipCountingBatch(grain.IterDataset):
    """Batches of `batch_size` good examples (stacked; a trailing partial batch is dropped); each batch carries
    SKIPPED_KEY: {'counts': int64 [len(SKIP_REASONS)] samples skipped while it was filled, 'examples': str
    [len(SKIP_REASONS)] the first skip's detail per reason ('' if none), 'read': int64 [] samples read}. Skips are
    also reported in batches of that report only: at the end of a finite stream, and every `batch_size` skips while
    no good example is held."""

    def __init__(self, parent: grain.IterDataset, batch_size: int):
        super().__init__(parent)
        self.batch_size = batch_size

    def __iter__(self):
        return _SkipCountingBatchIterator(self._parent.__iter__(), self.batch_size)


class _SkipCountingBatchIterator(grain.DatasetIterator):
    def __init__(self, parent: grain.DatasetIterator, batch_size: int):
        super().__init__(parent)
        self.batch_size = batch_size

    def __next__(self) -> dict:
        rows, counts, examples = [], np.zeros(len(sources.SKIP_REASONS), np.int64), [""] * len(sources.SKIP_REASONS)
        while len(rows) < self.batch_size:
            x = next(self._parent, None)
            if x is None:  # end of a finite stream: report the last skips in a batch without rows
                if counts.any():
                    return _skip_report(counts, examples, len(rows))
                raise StopIteration
            if isinstance(x, Skipped):
                i = sources.SKIP_REASONS.index(x.reason)
                counts[i] += 1
                examples[i] = examples[i] or x.detail
                if not rows and counts.sum() >= self.batch_size:  # no rows held: the state stays exact
                    return _skip_report(counts, examples, 0)
            else:
                rows.append(x)
        return {**{k: np.stack([r[k] for r in rows]) for k in rows[0]}, **_skip_report(counts, examples, len(rows))}

    def get_state(self) -> dict:
        return self._parent.get_state()

    def set_state(self, state: dict) -> None:
        self._parent.set_state(state)


def _skip_report(counts: np.ndarray, examples: list[str], good: int) -> dict:
    return {SKIPPED_KEY: {"counts": counts, "examples": np.array(examples), "read": np.int64(good + counts.sum())}}


class SkipCounter(grain.IterDataset):
    """Outermost stage (main process): pops each batch's skip counts and keeps running totals, which are part of
    the iterator state (`iterator.skipped` -> {reason: count}); stops the run with `skip_rate_error` when more than
    `max_skip_rate` of a window of _SKIP_RATE_WINDOW samples were skipped."""

    def __init__(self, parent: grain.IterDataset, max_skip_rate: float):
        super().__init__(parent)
        self.max_skip_rate = max_skip_rate

    def __iter__(self):
        return _SkipCounterIterator(self._parent.__iter__(), self.max_skip_rate)


class _SkipCounterIterator(grain.DatasetIterator):
    def __init__(self, parent: grain.DatasetIterator, max_skip_rate: float):
        super().__init__(parent)
        self.max_skip_rate = max_skip_rate
        self.skipped = dict.fromkeys(sources.SKIP_REASONS, 0)
        self._new_window()

    def _new_window(self) -> None:
        self._seen, self._window = 0, np.zeros(len(sources.SKIP_REASONS), np.int64)
        self._examples = [""] * len(sources.SKIP_REASONS)

    def __next__(self) -> dict:
        while True:
            batch = dict(next(self._parent))
            report = batch.pop(SKIPPED_KEY)
            for reason, n in zip(sources.SKIP_REASONS, report["counts"]):
                self.skipped[reason] += int(n)
            self._window += report["counts"]
            self._seen += int(report["read"])
            self._examples = [old or str(new) for old, new in zip(self._examples, report["examples"])]
            if self._seen >= _SKIP_RATE_WINDOW:
                error = skip_rate_error(self._window, self._seen, self._examples, self.max_skip_rate)
                if error:
                    raise RuntimeError(error)
                self._new_window()
            if batch:
                return batch

    def get_state(self) -> dict:
        return {"parent": self._parent.get_state(), "skipped": dict(self.skipped)}

    def set_state(self, state: dict) -> None:
        self._parent.set_state(state["parent"])
        self.skipped = {r: int(state["skipped"].get(r, 0)) for r in sources.SKIP_REASONS}


def skip_rate_error(counts: np.ndarray, seen: int, examples: list[str], max_skip_rate: float) -> str | None:
    """The message that stops a run whose `seen` samples had counts [len(SKIP_REASONS)] skipped, a fraction above
    `max_skip_rate` (None if not): the rate, the most common reason, and an example (its file and problem)."""
    total = int(counts.sum())
    if total <= max_skip_rate * seen:
        return None
    top = int(np.argmax(counts))
    return (f"{total} of the last {seen} samples read were skipped ({total / seen:.0%} > config.data.max_skip_rate = "
            f"{max_skip_rate}), most as {sources.SKIP_REASONS[top]} ({int(counts[top])}), e.g. {examples[top]}; "
            f"check config.data (path, image_root, caption fields, max_image_pixels)")


def check_first_samples(examples: Iterable, what: str, n: int = _STARTUP_SAMPLES) -> None:
    """Start-up check of the data location: fail naming `what` and the first problem unless one of the first `n`
    transformed examples of this process's stream is usable (a wrong path would otherwise only be skipped)."""
    skipped = []
    for example in itertools.islice(examples, n):
        if not isinstance(example, Skipped):
            return
        skipped.append(example)
    found = (f"none of the first {len(skipped)} samples is usable; the first: {skipped[0].detail}" if skipped
             else "no samples found")
    raise ValueError(f"{what}: {found}")


def data_metrics(iterator) -> dict[str, int]:
    """'data/skipped_<reason>' running totals (non-zero ones) and 'data/skipped_total' for the train log."""
    skipped = getattr(iterator, "skipped", {})
    out = {f"data/skipped_{r}": n for r, n in skipped.items() if n}
    out["data/skipped_total"] = sum(skipped.values())
    out.update(getattr(iterator, "filter_metrics", {}))  # config.data.filter: kept / total pairs
    return out


def make_transform(config: ml_collections.ConfigDict, max_index: int = -1, debug: bool = False) -> TrainTransform:
    d = config.data
    chooser = captions_lib.CaptionChooser(
        mode=d.caption_mode, rewrite_fields=_split(d.rewrite_fields), veclip_field=d.veclip_field,
        veclip_prob=d.veclip_prob,
        weights=captions_lib.parse_weights(d.caption_weights) if d.caption_mode == "weighted" else ())
    aug = augment_lib.Augment(d.augment, d.image_size, tuple(d.crop_scale), d.randaug_layers, d.randaug_magnitude,
                              d.max_image_pixels, d.interpolation, d.hflip)
    text_strategy = config.tokens.text_strategy if "tokens" in config else "truncate"
    if d.tokenizer != "clip_bpe":
        if text_strategy != "truncate":
            raise ValueError(f"config.tokens.text_strategy = {text_strategy!r} needs config.data.tokenizer = "
                             f"'clip_bpe' (got {d.tokenizer!r})")
        vocab = get_tokenizer(d.tokenizer).vocab_size
        if "model" in config and vocab > config.model.text.vocab_size:
            raise ValueError(f"config.data.tokenizer = {d.tokenizer!r} has {vocab} tokens: expected at most "
                             f"model.text.vocab_size = {config.model.text.vocab_size}")
    online = "model" in config and config.model.text_tower == "llm_adapter" and not d.text_embeddings
    return TrainTransform(config.seed, d.text_length, chooser, aug, d.tokenizer, text_strategy, max_index, debug,
                          open_text_embeddings(config), config.llm.folder if online else "", config.llm.max_length)


@functools.lru_cache(maxsize=4)
def _llm_tokenizer(folder: str):
    return llm_loading.load_tokenizer(folder)


def llm_tokens(folder: str, caption: str, max_length: int) -> np.ndarray:
    """int32 [3, max_length]: (ids, attention mask, pooling mask) of `caption` for the LLM in `folder`, encoded as
    clipjax.tools.embed_captions encodes (chat template, left padding with eos, no instruction)."""
    return np.concatenate(llm_text.encode_for_embedding(_llm_tokenizer(folder), [caption], max_length=max_length))


def open_text_embeddings(config: ml_collections.ConfigDict) -> embedding_cache.EmbeddingCache | None:
    """The caption embedding cache `config.data.text_embeddings` ('' = None), refused (CacheError naming the
    header's differences) unless config.llm.folder made it with this run's pooling from this run's captions."""
    folder = config.data.text_embeddings
    if not folder:
        return None
    cache = embedding_cache.EmbeddingCache(folder)
    embedding_cache.check_serves(folder, cache.header, embedding_cache.llm_fingerprint(config.llm.folder),
                                 embedding_cache.pooling_name(config.llm.bidirectional, config.llm.max_length),
                                 embedding_cache.source_fingerprints(config.data))
    return cache


def make_train_dataset(config: ml_collections.ConfigDict, process_index: int, process_count: int,
                       batch_size: int | None = None, debug: bool = False, start_position: int = 0
                       ) -> tuple[grain.IterDataset, int]:
    """This process's dataset of transformed examples (unbatched when `batch_size` is None; Skipped markers
    included) and data_size (largest global index + 1). `debug` adds each example's key and chosen caption.
    `start_position` > 0 starts random-access sources at that position of the global stream (a checkpoint
    restored onto another process count; exact unless samples were skipped); webdataset restarts.
    Fails (`check_first_samples`) unless one of the first examples of this process is usable."""
    d = config.data
    what = f"config.data.path = {d.path!r}" + (f" with image_root = {d.image_root!r}" if d.name == "csv" else "")
    epochs = None if d.num_epochs < 0 else d.num_epochs
    if d.name == "webdataset":
        paths = sources.split_paths(d.path)
        sources.check_files_exist(paths, f"config.data.path = {d.path!r}")
        workers = max(1, d.num_workers)
        if len(paths) < process_count * workers:
            raise ValueError(f"config.data.path: {len(paths)} shards cannot feed {process_count} processes x "
                             f"{workers} workers (config.data.num_workers); write more, smaller shards")
        size = d.size if d.size > 0 else sources.scan_max_index(paths) + 1
        window = d.shuffle_buffer if d.shuffle_buffer > 0 else (1000 if d.shuffle_buffer < 0 else 1)
        if start_position:
            logging.warning("webdataset cannot seek to position %d of the stream: its epoch restarts",
                            start_position)
        ds = sources.TarShards(paths, seed=config.seed, window=window, num_epochs=d.num_epochs,
                               process_index=process_index, process_count=process_count,
                               caption_fields=_split(d.caption_fields))
        transform = make_transform(config, size if d.size > 0 else -1, debug)
        check_first_samples((transform(r) for s in ds.epoch_shards(0) for r in sources.read_tar(s, ds.caption_fields)),
                            what)
        ds = ds.map(transform)
    else:
        source = make_source(d)
        size = getattr(source, "size", len(source))
        if quality.enabled(config):  # config.data.filter: the best-scored rows only
            source = quality.Subset(source, quality.load_and_filter(config, source)[0])
        ds = grain.MapDataset.range(len(source))
        if d.shuffle_buffer != 0:
            ds = ds.shuffle(seed=config.seed)
        ds = ds.repeat(epochs).map_with_index(_WithEpoch(len(source)))[start_position + process_index::process_count]
        ds = ds.map(_LoadAndTransform(source, make_transform(config, debug=debug)))
        check_first_samples((ds[i] for i in range(len(ds))), what)
        ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=max(2, d.prefetch)))
    if batch_size is not None:
        ds = SkipCountingBatch(ds, batch_size)
    return ds, size


def make_train_iterator(config: ml_collections.ConfigDict, process_index: int | None = None,
                        process_count: int | None = None, start_position: int = 0
                        ) -> tuple[grain.DatasetIterator, int]:
    """Iterator of this process's batches (local batch = batch_size / process_count; endless unless
    config.data.num_epochs > 0) and data_size (largest global index + 1). `iterator.skipped` counts bad samples."""
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    if config.batch_size % pc:
        raise ValueError(f"config.batch_size = {config.batch_size}: expected a multiple of the {pc} processes")
    ds, size = make_train_dataset(config, pi, pc, config.batch_size // pc, start_position=start_position)
    if config.data.num_workers > 0:
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.data.num_workers,
                                                         per_worker_buffer_size=max(1, config.data.prefetch)))
    iterator = iter(SkipCounter(ds, config.data.max_skip_rate))
    if quality.enabled(config):  # reported by data_metrics
        iterator.filter_metrics = quality.load_and_filter(config, make_source(config.data))[1]
    return iterator, size


def load_eval_split(config: ml_collections.ConfigDict) -> dict:
    """Held-out examples of the built-in dataset as arrays: images uint8 [N,H,W,3], labels {set: int [N]},
    captions list[list[str]] (the first `evals.captions_per_image` phrasings of each image)."""
    source = synthetic.SyntheticSource(split="eval", image_size=config.data.image_size, world=config.data.world)
    examples = [source[i] for i in range(config.evals.num_examples)]
    k = config.evals.captions_per_image
    return {"images": np.stack([e["image"] for e in examples]),
            "labels": {name: np.array([e["labels"][name] for e in examples]) for name in examples[0]["labels"]},
            "captions": [list(e["captions"][:k]) for e in examples]}
