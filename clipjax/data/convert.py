"""Convert the configured data source to ArrayRecord (random access, exact global shuffle) or webdataset shards.

python -m clipjax.data.convert --config CFG --output DIR [--format arrayrecord|webdataset]
    [--examples_per_shard 10000] [--max_examples N] [--image_format jpg|png] [--jpeg_quality 95]

Every record keeps the image bytes as they are (synthetic images are encoded), all caption fields and the global
index. ArrayRecord output: DIR/data-NNNNN.array_record + DIR/meta.json ({num_records, size, caption_fields,
skipped}); webdataset output: DIR/NNNNN.tar in img2dataset layout (KEY.jpg, KEY.txt, KEY.json with key, index and
the other caption fields; KEY = the 9-digit index). Samples without an image or a usable original caption are
skipped and counted; images are not decoded here (bad ones are skipped at training time).
"""
from __future__ import annotations

import collections
import io
import json
import os
import tarfile
from collections.abc import Iterator

import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags
from PIL import Image

from clipjax.data import pipeline, sources


def raw_records(config: ml_collections.ConfigDict) -> Iterator[dict | sources.BadSample]:
    """Raw records of the configured source in file / index order."""
    d = config.data
    if d.name == "webdataset":
        paths = sources.split_paths(d.path)
        sources.check_files_exist(paths, f"config.data.path = {d.path!r}")
        for path in paths:
            yield from sources.read_tar(path, pipeline._split(d.caption_fields))
        return
    source = pipeline.make_source(d)
    for i in range(len(source)):
        try:
            yield source[i]
        except sources.BadSample as e:
            yield e


def encode_image(image, image_format: str = "jpg", quality: int = 95) -> tuple[bytes, str]:
    """(bytes, extension): encoded bytes pass through (extension from their header), arrays are encoded."""
    if isinstance(image, np.ndarray):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG" if image_format == "jpg" else "PNG", quality=quality)
        return buf.getvalue(), image_format
    head = bytes(image[:12])
    ext = ("png" if head.startswith(b"\x89PNG") else "webp" if head[8:12] == b"WEBP" else
           "gif" if head.startswith(b"GIF") else "bmp" if head.startswith(b"BM") else "jpg")
    return bytes(image), ext


def clean_record(raw) -> tuple[dict | None, str | None]:
    """(record with str captions, None) or (None, skip reason)."""
    if isinstance(raw, sources.BadSample):
        return None, raw.reason
    if raw.get("image") is None or len(raw["image"]) == 0:
        return None, "missing_image"
    captions = {}
    for name, value in raw["captions"].items():
        try:
            text = sources.to_text(value)
        except sources.BadSample:
            if name == "caption":
                return None, "bad_caption"
            continue
        if text is not None:
            captions[name] = text
    if not captions.get("caption", "").strip():
        return None, "missing_caption"
    return {**raw, "captions": captions}, None


class _TarWriter:
    def __init__(self, path: str):
        self.tar = tarfile.open(path, "w")

    def write(self, record: dict, image: bytes, ext: str) -> None:
        key = f"{record['index']:09d}"
        meta = {"key": key, "index": int(record["index"]), "source_key": record["key"],
                **{k: v for k, v in record["captions"].items() if k != "caption"}}
        for name, data in ((f"{key}.{ext}", image), (f"{key}.txt", record["captions"]["caption"].encode()),
                           (f"{key}.json", json.dumps(meta, ensure_ascii=False).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            self.tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self.tar.close()


class _ArrayRecordWriter:
    def __init__(self, path: str):
        from array_record.python.array_record_module import ArrayRecordWriter
        self.writer = ArrayRecordWriter(path, "group_size:1")

    def write(self, record: dict, image: bytes, ext: str) -> None:
        del ext
        self.writer.write(sources.encode_record(record["index"], record["key"], record["captions"], image))

    def close(self) -> None:
        self.writer.close()


def convert(config: ml_collections.ConfigDict, output: str, fmt: str = "arrayrecord",
            examples_per_shard: int = 10000, max_examples: int = -1, image_format: str = "jpg",
            jpeg_quality: int = 95) -> dict:
    """Write the converted dataset to `output`; returns the summary also written to meta.json."""
    if fmt not in ("arrayrecord", "webdataset"):
        raise ValueError(f"--format {fmt!r}: expected 'arrayrecord' or 'webdataset'")
    os.makedirs(output, exist_ok=True)
    writer_cls, pattern = ((_ArrayRecordWriter, "data-{:05d}.array_record") if fmt == "arrayrecord"
                           else (_TarWriter, "{:05d}.tar"))
    skipped, fields = collections.Counter(), set()
    n, largest, writer = 0, -1, None
    for raw in raw_records(config):
        if 0 <= max_examples <= n:
            break
        record, reason = clean_record(raw)
        if record is None:
            skipped[reason] += 1
            continue
        if n % examples_per_shard == 0:
            if writer:
                writer.close()
            writer = writer_cls(os.path.join(output, pattern.format(n // examples_per_shard)))
        image, ext = encode_image(record["image"], image_format, jpeg_quality)
        writer.write(record, image, ext)
        fields.update(record["captions"])
        largest = max(largest, int(record["index"]))
        n += 1
    if writer:
        writer.close()
    meta = {"format": f"clipjax-{fmt}-1", "num_records": n, "size": largest + 1, "caption_fields": sorted(fields),
            "skipped": dict(skipped)}
    with open(os.path.join(output, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    return meta


FLAGS = flags.FLAGS


def main(argv):
    del argv
    meta = convert(FLAGS.config, FLAGS.output, FLAGS.format, FLAGS.examples_per_shard, FLAGS.max_examples,
                   FLAGS.image_format, FLAGS.jpeg_quality)
    print(json.dumps(meta))


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Config whose config.data names the input.", lock_config=True)
    flags.DEFINE_string("output", None, "Output directory.")
    flags.DEFINE_enum("format", "arrayrecord", ["arrayrecord", "webdataset"], "Output format.")
    flags.DEFINE_integer("examples_per_shard", 10000, "Records per output file.")
    flags.DEFINE_integer("max_examples", -1, "Stop after this many records (-1: all).")
    flags.DEFINE_enum("image_format", "jpg", ["jpg", "png"], "Encoding of images that arrive decoded (synthetic).")
    flags.DEFINE_integer("jpeg_quality", 95, "JPEG quality for encoded arrays.")
    flags.mark_flags_as_required(["config", "output"])
    app.run(main)
