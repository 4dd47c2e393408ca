"""Score every image-caption pair of a dataset with a CLIP model: the cosine of the image's and its primary caption's
embeddings, written as a side-car scores folder keyed like the data (clipjax.data.quality), which
`config.data.filter` then reads to train on the best-scored pairs ("Scaling (down) CLIP", arXiv 2404.08197 sec. 3).

python -m clipjax.tools.score --config configs/tiny.py --model /runs/clip --output /data/scores \
    [--batch_size 256] [--chunk 8192] [--config.data.caption_noise=0.5]

--model: a training workdir (its latest checkpoint), a step folder, or a converted folder
(python -m clipjax.tools.convert_weights); the model's own image and text sizes are used. The dataset is the
config's random-access source (csv, arrayrecord, tfds, the built-in world). Images get the 'eval' preprocessing
(centre crop, resize), captions the model's tokenizer length. Rows are cut into chunks; chunk c goes to process
c mod count, each chunk is written atomically, so a killed run resumes where it stopped; the header records the data
and model, and another dataset or model is refused instead of mixed in. A progress bar shows pairs/s.
"""
import os

import jax
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from clipjax import pytree, sharding
from clipjax.data import chunked_files, pipeline, quality
from clipjax.interop import files
from clipjax.models import clip

FLAGS = flags.FLAGS


def scoring_config(config: ml_collections.ConfigDict, model_cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The data config that feeds the scoring model: its image size and text length, 'eval' images, the primary
    caption ('original'), no filter."""
    c = config.copy_and_resolve_references()
    c.data.image_size = int(model_cfg.image.image_size)
    c.data.text_length = int(model_cfg.text.context_length)
    c.data.augment, c.data.hflip, c.data.caption_mode, c.data.crop_scale = "eval", False, "original", ()
    c.data.filter.scores = ""
    c.model = model_cfg
    return c


def load_model(path: str):
    """(CLIP module, params) of a workdir, step folder or converted folder."""
    flat, model_cfg = files.load_clipjax(path)
    return clip.build_model(model_cfg), pytree.unflatten(flat), model_cfg


def make_score_fn(model, mesh: jax.sharding.Mesh):
    """jitted (params, images uint8 [B,H,W,3], tokens int32 [B,L]) -> cosine float32 [B], batch split over the
    mesh's data axes."""
    batch = sharding.batch_sharding(mesh, 1)

    def score(params, images, tokens):
        out = model.apply({"params": params}, images, tokens)
        return (out["zimg"] * out["ztxt"]).sum(-1)

    return jax.jit(score, out_shardings=batch)


def chunk_batches(source, transform, rows: range, batch_size: int):
    """Yield (keys, images [b,H,W,3], tokens [b,L]) of `rows`; a record the transform skips scores as -inf."""
    for start in range(rows.start, rows.stop, batch_size):
        keys, images, tokens, bad = [], [], [], []
        for row in range(start, min(start + batch_size, rows.stop)):
            record = source[row]
            ex = transform(record)
            keys.append(str(record.get("key", row)) if isinstance(record, dict) else str(row))
            if isinstance(ex, pipeline.Skipped):
                bad.append(len(keys) - 1)
                ex = None
            images.append(None if ex is None else ex["image"])
            tokens.append(None if ex is None else ex["tokens"])
        good = next((i for i, x in enumerate(images) if x is not None), None)
        if good is None:
            raise ValueError(f"rows {start}..{start + len(keys) - 1}: no usable sample to score")
        images = np.stack([images[good] if x is None else x for x in images])
        tokens = np.stack([tokens[good] if x is None else x for x in tokens])
        yield keys, images, tokens, bad


def run(config: ml_collections.ConfigDict, model_path: str, output: str, batch_size: int = 256, chunk: int = 8192,
        progress_bar: bool = True, process: tuple[int, int] | None = None) -> dict:
    """Score this process's missing chunks (`process`: (index, count), default jax's); returns the folder header."""
    model, params, model_cfg = load_model(model_path)
    cfg = scoring_config(config, model_cfg)
    source = pipeline.make_source(cfg.data)
    header = {"data": quality.data_fingerprint(config.data, len(source)), "model": os.path.abspath(model_path),
              "chunk": int(chunk), "size": len(source)}
    chunked_files.open_folder(output, header, noun="scores", error=quality.ScoresMismatch)
    mesh = sharding.make_mesh(cfg.mesh, jax.local_devices())
    n_data = mesh.shape["data"] * mesh.shape["fsdp"]
    batch_size = -(-batch_size // n_data) * n_data
    params = jax.device_put(params, sharding.replicated(mesh))
    score = make_score_fn(model, mesh)
    transform = pipeline.make_transform(cfg)
    rows_of = lambda c: range(c * chunk, min((c + 1) * chunk, len(source)))  # noqa: E731

    def work(c):
        keys, scores = [], []
        for k, images, tokens, bad in chunk_batches(source, transform, rows_of(c), batch_size):
            n = len(k)
            pad = (-n) % n_data
            images = np.concatenate([images, np.repeat(images[:1], pad, 0)])
            tokens = np.concatenate([tokens, np.repeat(tokens[:1], pad, 0)])
            s = np.asarray(jax.device_get(score(params, images, tokens)))[:n].astype(np.float32)
            s[bad] = -np.inf
            keys.extend(k)
            scores.append(s)
        quality.write_chunk(output, c, keys, np.concatenate(scores))

    chunked_files.run_chunks(quality.num_chunks(len(source), chunk),
                             lambda c: os.path.exists(quality.chunk_path(output, c)), lambda: work,
                             lambda c: len(rows_of(c)), "pair", progress_bar, process)
    return header


def main(argv):
    header = chunked_files.tool_main(argv, lambda: run(FLAGS.config, FLAGS.model, FLAGS.output, FLAGS.batch_size,
                                                       FLAGS.chunk, FLAGS.progress_bar), FLAGS.output)
    if jax.process_index() == 0:
        print(f"{FLAGS.output}: scores of {header['size']} pairs (model {header['model']})")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Config whose config.data names the dataset.", lock_config=False)
    flags.DEFINE_string("model", None, "Training workdir, step folder or converted folder of the scoring model.")
    flags.DEFINE_string("output", None, "Scores folder (created, or resumed when its header matches).")
    flags.DEFINE_integer("batch_size", 256, "Pairs per forward pass in each process.")
    flags.DEFINE_integer("chunk", 8192, "Rows per scores file.")
    flags.DEFINE_bool("progress_bar", True, "Show a progress bar (process 0).")
    flags.mark_flags_as_required(["config", "model", "output"])
    app.run(main)
