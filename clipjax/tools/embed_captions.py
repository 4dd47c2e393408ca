"""Embed every caption field of a dataset with a frozen LLM into a side-car cache (LLM2CLIP stage 2, arXiv
2411.04997 Sec. 3.2): mean-pooled last hidden states over the caption's own tokens, no instruction.

python -m clipjax.tools.embed_captions --config configs/tiny.py --llm /models/llama3-cc --output /data/emb \
    [--fields caption,rewrite_1] [--batch_size 64] [--max_length 77] [--chunk 4096] [--dtype bfloat16]

The dataset is the config's random-access source (csv, arrayrecord, tfds, the built-in world); rows are global
dataset indices. Work is split by chunks of rows over processes (chunk c goes to process c mod count) and, within a
process, each batch over its devices (config.mesh). Every chunk is written atomically (clipjax.data.embedding_cache),
so a killed run resumes where it stopped and its cache equals an uninterrupted run's. The header records the LLM
(folder and fingerprint), pooling, caption fields and the caption files' fingerprints: another LLM or caption file
is refused instead of mixed in. A progress bar shows captions/s.
"""
import os

import jax
import jax.numpy as jnp
import ml_collections
from absl import app, flags
from ml_collections import config_flags

from clipjax import llm_embed, sharding
from clipjax.data import chunked_files, embedding_cache as ec, pipeline, sources
from clipjax.models import llm_loading

FLAGS = flags.FLAGS


def chunk_captions(source, header: ec.Header, chunk_id: int) -> dict[str, list[str]]:
    """field -> the chunk's caption texts in row order; a missing field or undecodable text embeds as ''."""
    out = {f: [] for f in header.fields}
    for row in range(chunk_id * header.chunk, chunk_id * header.chunk + header.chunk_rows(chunk_id)):
        record = source[row]
        if int(record["index"]) != row:
            raise ValueError(f"row {row} of the source holds global index {record['index']}: embed_captions needs "
                             "sources whose index is the row (CSV, the built-in world, TFDS)")
        for f in header.fields:
            try:
                text = sources.to_text(record["captions"].get(f)) or ""
            except sources.BadSample:
                text = ""
            out[f].append(text)
    return out


def run(config: ml_collections.ConfigDict, llm_folder: str, output: str, fields: list[str], batch_size: int = 64,
        max_length: int = 77, chunk: int = 4096, dtype: str = "float32", cache_dtype: str = "float32",
        bidirectional: bool = True, progress_bar: bool = True) -> ec.Header:
    """Embed the missing chunks of this process's share; returns the cache header."""
    if not os.path.isdir(llm_folder):
        raise FileNotFoundError(f"--llm {llm_folder!r}: no such folder")
    source = pipeline.make_source(config.data)
    mesh = sharding.make_mesh(config.mesh, jax.local_devices())
    data_parallel = mesh.shape["data"] * mesh.shape["fsdp"]
    batch_size = -(-batch_size // data_parallel) * data_parallel
    module, params = llm_loading.from_pretrained(llm_folder, dtype=jnp.dtype(dtype), mesh=mesh,
                                                 causal=not bidirectional)
    tokenizer = llm_loading.load_tokenizer(llm_folder)
    header = ec.open_for_writing(output, ec.Header(
        llm=os.path.abspath(llm_folder), llm_fingerprint=ec.llm_fingerprint(llm_folder),
        pooling=ec.pooling_name(bidirectional, max_length),
        fields=tuple(fields), sources=ec.source_fingerprints(config.data), size=len(source), dim=module.config.hidden_size,
        dtype=cache_dtype, chunk=chunk))
    done = lambda c: all(os.path.exists(ec.chunk_path(output, f, c)) for f in header.fields)  # noqa: E731
    embed = llm_embed.make_embed_fn(module, params, mesh)

    def work(c):
        texts = chunk_captions(source, header, c)
        for f in header.fields:
            if not os.path.exists(ec.chunk_path(output, f, c)):
                vectors = llm_embed.embed_texts(embed, tokenizer, texts[f], batch_size, max_length)
                ec.write_chunk(output, header, f, c, vectors)

    chunked_files.run_chunks(header.num_chunks, done, lambda: work,
                             lambda c: header.chunk_rows(c) * len(header.fields), "caption", progress_bar)
    return header


def main(argv):
    header = chunked_files.tool_main(argv, lambda: run(
        FLAGS.config, FLAGS.llm, FLAGS.output, FLAGS.fields, FLAGS.batch_size, FLAGS.max_length, FLAGS.chunk,
        FLAGS.dtype, FLAGS.cache_dtype, FLAGS.bidirectional, FLAGS.progress_bar), FLAGS.output)
    if jax.process_index() == 0:
        print(f"{FLAGS.output}: {header.size} rows x {len(header.fields)} fields, width {header.dim}")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Config whose config.data names the dataset.", lock_config=False)
    flags.DEFINE_string("llm", None, "Hugging Face folder of the (caption-contrastive tuned) LLM.")
    flags.DEFINE_string("output", None, "Cache folder (created, or resumed when its header matches).")
    flags.DEFINE_list("fields", ["caption"], "Caption fields to embed (e.g. caption,rewrite_1,rewrite_2).")
    flags.DEFINE_integer("batch_size", 64, "Captions per forward pass in each process.")
    flags.DEFINE_integer("max_length", 77, "Tokens per caption (chat template included).")
    flags.DEFINE_integer("chunk", 4096, "Rows per cache file.")
    flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "LLM compute dtype.")
    flags.DEFINE_enum("cache_dtype", "float32", ["float32", "float16"], "Stored embedding dtype.")
    flags.DEFINE_bool("bidirectional", True, "Attention without the causal mask (LLM2Vec-adapted LLMs, as LLM2CLIP).")
    flags.DEFINE_bool("progress_bar", True, "Show a progress bar (process 0).")
    flags.mark_flags_as_required(["config", "llm", "output"])
    app.run(main)
