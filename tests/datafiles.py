"""Real data files for the data tests: JPEG/PNG bytes, webdataset tar shards, CSV indexes, rewrite files."""
import functools
import io
import json
import os
import tarfile

import numpy as np
from PIL import Image

from clipjax import config as config_lib


def image_array(seed: int, h: int = 40, w: int = 48) -> np.ndarray:
    """A smooth random colour image (compresses like a photo, differs per seed)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    c = rng.uniform(0, 255, (3, 3))
    img = c[:, 0] + c[:, 1] * x[..., None] + c[:, 2] * y[..., None]
    return np.clip(img / 2, 0, 255).astype(np.uint8)


def encode(arr: np.ndarray, fmt: str = "JPEG", quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, quality=quality)
    return buf.getvalue()


def jpeg(seed: int, h: int = 40, w: int = 48) -> bytes:
    return encode(image_array(seed, h, w))


def caption_of(i: int) -> str:
    return f"a photo of item {i}"


def write_tar(path: str, members: list[tuple[str, bytes]]) -> str:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def sample_members(i: int, image: bytes | None = None, caption: bytes | None = None, rewrites: int = 2,
                   ext: str = "jpg") -> list[tuple[str, bytes]]:
    """img2dataset-style members of sample i (key = 9-digit i): KEY.jpg, KEY.txt, KEY.json with rewrites."""
    key = f"{i:09d}"
    meta = {"key": key, "url": f"http://x/{i}", "caption": caption_of(i),
            **{f"rewrite_{k + 1}": f"rewrite {k + 1} of item {i}" for k in range(rewrites)}}
    members = [(f"{key}.{ext}", jpeg(i) if image is None else image)]
    members.append((f"{key}.txt", caption_of(i).encode() if caption is None else caption))
    members.append((f"{key}.json", json.dumps(meta).encode()))
    return members


def write_shards(directory: str, num_shards: int, per_shard: int, start: int = 0) -> list[str]:
    """Clean shards; shard s holds samples start + s * per_shard + j."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for s in range(num_shards):
        members = [m for j in range(per_shard) for m in sample_members(start + s * per_shard + j)]
        paths.append(write_tar(os.path.join(directory, f"{s:05d}.tar"), members))
    return paths


def write_csv(directory: str, n: int, rewrites: int = 2, header: bool = False, sep: str = ",") -> tuple[str, list]:
    """Images img/i.jpg, index.csv ('path,caption' rows with a comma inside quotes) and K rewrite files."""
    os.makedirs(os.path.join(directory, "img"), exist_ok=True)
    lines = ["filepath" + sep + "title"] if header else []
    for i in range(n):
        with open(os.path.join(directory, "img", f"{i}.jpg"), "wb") as f:
            f.write(jpeg(i))
        lines.append(f"img/{i}.jpg{sep}\"{caption_of(i)}, indoors\"")
    path = os.path.join(directory, "index.tsv" if sep == "\t" else "index.csv")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    rewrite_files = []
    for k in range(rewrites):
        p = os.path.join(directory, f"rewrite_{k}.txt")
        with open(p, "w") as f:
            f.write("".join(f"rewrite {k + 1} of item {i}\n" for i in range(n)))
        rewrite_files.append(p)
    return path, rewrite_files


def data_config(name: str, path: str, **data_overrides):
    """Default config shrunk for data tests: 32 px, 16 tokens, batch 8; keyword arguments set config.data keys
    (and batch_size)."""
    c = config_lib.default_config()
    c.batch_size = 8
    c.data.name = name
    c.data.path = path
    c.data.image_size = 32
    c.data.text_length = 16
    c.data.augment = "clip"
    c.data.caption_mode = "original"
    c.lock()
    for k, v in data_overrides.items():
        if k == "batch_size":
            c.batch_size = v
        else:
            c.data[k] = v
    return c


@functools.cache
def _tfds_builder_class():
    import tensorflow_datasets as tfds

    class TinyCaptions(tfds.core.GeneratorBasedBuilder):
        """n JPEG images (yielded encoded) with two captions each."""
        VERSION = tfds.core.Version("1.0.0")
        code_path = None  # no checksums file to look up (tfds would need importlib_resources for a test package)

        def __init__(self, n: int = 6, **kwargs):
            self.n = n
            super().__init__(**kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "captions": tfds.features.Sequence({"text": tfds.features.Text()})}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i in range(self.n):
                yield i, {"image": io.BytesIO(jpeg(i)), "captions": {"text": [caption_of(i), f"another caption {i}"]}}

    return TinyCaptions


def build_tfds(data_dir: str, n: int = 6) -> str:
    """Prepare a real TFDS dataset 'tiny_captions' (ArrayRecord files) under data_dir; returns its name."""
    _tfds_builder_class()(n=n, data_dir=data_dir, file_format="array_record").download_and_prepare()
    return "tiny_captions"
