"""Evaluation data from prepared TensorFlow Datasets (`tfds.data_source`, ArrayRecord; nothing is downloaded).

Images stay encoded until a batch needs them; they are decoded in threads and given the eval transform (shorter
side resized to the model's size, bicubic, centre crop: clipjax.data.augment 'eval'). An image that cannot be
decoded is reported (label -1) instead of stopping the evaluation.
"""
from __future__ import annotations

import concurrent.futures
import logging
import os

import numpy as np

from clipjax.data import augment, sources


class TfdsEvalSet:
    """Random access to the first `num_examples` (-1: all) records of a prepared TFDS split."""

    def __init__(self, name: str, *, data_dir: str, split: str, image_key: str, image_size: int,
                 num_examples: int = -1, where: str = "config.evals.suite"):
        import tensorflow_datasets as tfds
        self.name, self.image_key, self.where = name, image_key, where
        try:
            self.source = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False,
                                           decoders={image_key: tfds.decode.SkipDecoding()})
        except Exception as e:  # tfds raises several types for unknown or unprepared datasets
            raise FileNotFoundError(
                f"{where}: no prepared TFDS dataset {name!r} split {split!r} under data_dir {data_dir or '(default)'!r}."
                f" Prepare it once with tfds (e.g. `tfds build {name} --data_dir DIR`, manual_dir for ImageNet), "
                f"then point data_dir at it ({type(e).__name__}: {e})") from e
        self.features = self.source.dataset_info.features
        if image_key not in self.features:
            raise KeyError(f"{where}.image_key = {image_key!r}: dataset {name!r} has features {list(self.features)}")
        total = len(self.source)
        self.size = total if num_examples < 0 else min(num_examples, total)
        self.transform = augment.Augment("eval", image_size)
        self.workers = min(16, os.cpu_count() or 1)

    def __len__(self) -> int:
        return self.size

    def class_names(self, label_key: str) -> list[str] | None:
        feature = self.features[label_key] if label_key in self.features else None
        if feature is None:
            raise KeyError(f"{self.where}.label_key = {label_key!r}: dataset {self.name!r} has features "
                           f"{list(self.features)}")
        return list(getattr(feature, "names", None) or []) or None

    def records(self, ids) -> list[dict]:
        ids = [int(i) for i in ids]
        if hasattr(self.source, "__getitems__"):
            return list(self.source.__getitems__(ids))
        return [self.source[i] for i in ids]

    def field(self, record: dict, path: str):
        value = record
        for part in path.split("/"):
            if not isinstance(value, dict) or part not in value:
                raise KeyError(f"{self.where}: dataset {self.name!r} records have no field {path!r}")
            value = value[part]
        return value

    def decode(self, records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 [k, S, S, 3], ok bool [k]); undecodable images come back black with ok False (logged)."""
        def one(rec):
            try:
                return self.transform(rec[self.image_key], None)["image"], True
            except sources.BadSample as e:
                logging.warning("%s: skipping an undecodable image (%s)", self.name, e)
                return None, False

        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            out = list(pool.map(one, records))
        s = self.transform.size
        images = np.stack([img if ok else np.zeros((s, s, 3), np.uint8) for img, ok in out]) if out else \
            np.zeros((0, s, s, 3), np.uint8)
        return images, np.array([ok for _, ok in out], bool)

    def fetch_labelled(self, label_key: str):
        """`fetch(ids) -> (images, labels)` for Embedder.stream_images; label -1 marks an undecodable image."""
        def fetch(ids):
            recs = self.records(ids)
            images, ok = self.decode(recs)
            labels = np.array([int(self.field(r, label_key)) for r in recs], np.int32)
            return images, np.where(ok, labels, -1).astype(np.int32)
        return fetch

    def texts(self, path: str, limit: int = -1) -> list[list[str]]:
        """Every record's text list at `path` (e.g. 'captions/text'), first `limit` of each (-1: all); one pass
        over the split (images are not decoded)."""
        out = []
        for s in range(0, self.size, 512):
            for rec in self.records(range(s, min(self.size, s + 512))):
                value = self.field(rec, path)
                items = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
                items = [sources.to_text(x) for x in items]
                out.append(items if limit < 0 else items[:limit])
        return out
