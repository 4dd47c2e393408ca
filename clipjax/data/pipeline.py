"""Grain input pipeline: source -> global shuffle -> repeat -> process slice -> caption/tokenise -> batch.

Each process reads every `process_count`-th example of one global, per-epoch shuffled stream, so the processes
together read each example of an epoch exactly once. Batches carry uint8 images (normalised on the device),
int32 token ids and the int32 global dataset index of every example.
"""
import dataclasses
import functools

import grain
import jax
import ml_collections
import numpy as np

from clipjax.data import synthetic, text_reduction
from clipjax.data.tokenizer import ClipTokenizer


@functools.cache
def tokenizer() -> ClipTokenizer:
    return ClipTokenizer()


def make_source(data_config: ml_collections.ConfigDict, split: str = "train"):
    """Random-access source named by `data_config.name`."""
    if data_config.name != "synthetic":
        raise ValueError(f"config.data.name = {data_config.name!r}: expected 'synthetic'")
    size = data_config.size if split == "train" else None
    kwargs = {"size": size} if size else {}
    return synthetic.SyntheticSource(split=split, image_size=data_config.image_size, **kwargs)


def choose_caption(example: dict, mode: str, rng: np.random.Generator) -> str:
    """'original': the primary caption; 'mixed': uniform over all phrasings and rewrites (LaCLIP-style), a draw of
    fewer than 2 words falls back to the primary caption."""
    if mode == "original":
        return example["caption"]
    pool = list(example["captions"]) + list(example.get("rewrites", []))
    choice = pool[rng.integers(len(pool))]
    return choice if len(choice.split()) >= 2 else example["caption"]


@dataclasses.dataclass(frozen=True)
class TrainTransform(grain.transforms.RandomMap):
    """Example dict -> {'image': uint8 [H,W,3], 'tokens': int32 [L], 'index': int32}; caption drawn with the
    per-example rng grain derives from (seed, position in the stream), so it changes every epoch."""
    text_length: int
    caption_mode: str
    text_strategy: str = "truncate"  # config.tokens.text_strategy (see data.text_reduction)

    def random_map(self, example: dict, rng: np.random.Generator) -> dict:
        caption = choose_caption(example, self.caption_mode, rng)
        return {"image": np.asarray(example["image"], np.uint8),
                "tokens": text_reduction.tokenize(tokenizer(), caption, self.text_length, self.text_strategy, rng),
                "index": np.int32(example["index"])}


def make_train_iterator(config: ml_collections.ConfigDict, process_index: int | None = None,
                        process_count: int | None = None) -> tuple[grain.DatasetIterator, int]:
    """Infinite iterator of this process's batches (local batch = batch_size / process_count) and data_size
    (largest global index + 1)."""
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    if config.batch_size % pc:
        raise ValueError(f"config.batch_size = {config.batch_size}: expected a multiple of the {pc} processes")
    source = make_source(config.data, "train")
    ds = grain.MapDataset.source(source).seed(config.seed).shuffle().repeat(None)[pi::pc]
    ds = ds.random_map(TrainTransform(config.data.text_length, config.data.caption_mode,
                                      config.tokens.text_strategy))
    ds = ds.batch(config.batch_size // pc, drop_remainder=True)
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=max(2, config.data.prefetch)))
    if config.data.num_workers > 0:
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.data.num_workers))
    return iter(it_ds), len(source)


def load_eval_split(config: ml_collections.ConfigDict) -> dict:
    """Held-out examples of the built-in dataset as arrays: images uint8 [N,H,W,3], labels {set: int [N]},
    captions list[list[str]] (the first `evals.captions_per_image` phrasings of each image)."""
    source = make_source(config.data, "eval")
    examples = [source[i] for i in range(config.evals.num_examples)]
    k = config.evals.captions_per_image
    return {"images": np.stack([e["image"] for e in examples]),
            "labels": {name: np.array([e["labels"][name] for e in examples]) for name in examples[0]["labels"]},
            "captions": [list(e["captions"][:k]) for e in examples]}
