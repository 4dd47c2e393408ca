"""LaCLIP caption rewriting (arXiv 2305.20088 Sec. 3.1): every caption of a dataset rewritten K times by a local
Hugging Face LLM with in-context examples, on clipjax's Flax decoder and its KV-cache sampler.

python -m clipjax.tools.rewrite --config configs/tiny.py --llm /models/llama-7b --output /data/rewrites \
    [--pools descriptive,concise,scene,object] [--examples 3] [--temperature 0.9] [--top_p 0.95] \
    [--max_new_tokens 77] [--context 512] [--batch_size 32] [--chunk 1024] [--seed 0] [--rows N]

The dataset is the config's random-access source (CSV index, ArrayRecord, TFDS, the built-in world); row i is global
index i. Rewrite k uses pool k of --pools (a built-in name or a file; a name may repeat for more draws): its
instruction, --examples "source => target" pairs drawn per caption, then "caption =>" (clipjax.tools.rewrite_prompt).
Prompts are left-padded into batches; a prompt longer than --context minus --max_new_tokens drops examples until
it fits (a caption that alone does not fit is an error naming the row).

Output: OUTPUT/header.json (what made the folder: LLM, source, pools, sampling; a rerun with other settings is
refused), OUTPUT/chunks/NNNNNN.json (rows of one chunk, committed atomically: a killed run resumes where it stopped
and ends with the same files as an uninterrupted one), and, once every chunk exists, OUTPUT/rewrite_1..K.txt (line
i rewrites row i: `config.data.rewrite_files` of a CSV index) and OUTPUT/summary.json (fallback counts). Chunks are
split over processes (chunk c to process c mod count); sampling keys depend on (seed, rewrite, chunk, batch) only.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from jax.sharding import NamedSharding, PartitionSpec as P

from clipjax import llm_text, sharding
from clipjax.data import chunked_files, embedding_cache as ec, pipeline, sources
from clipjax.models import llm, llm_loading
from clipjax.tools import rewrite_prompt as rp

FLAGS = flags.FLAGS
BUCKET = 32  # prompt widths are rounded up to a multiple of this (fewer compilations)


def row_caption(source, row: int) -> str:
    """The original caption of `row` as text; a non-UTF-8 or missing caption is an error naming the row."""
    if isinstance(source, sources.CsvSource):  # the index line only: no image read
        try:
            line = source.lines[row].decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{source.lines.path}: row {row} is not UTF-8 text") from None
        cells = next(csv.reader([line], delimiter=source.sep), [])
        text = cells[source.caption_col] if len(cells) > source.caption_col else None
    else:
        record = source[row]
        if int(record["index"]) != row:
            raise ValueError(f"row {row} of the source holds global index {record['index']}: rewrite needs sources "
                             "whose index is the row (CSV, ArrayRecord from convert, TFDS, the built-in world)")
        try:
            text = sources.to_text(record["captions"].get("caption"))
        except sources.BadSample:
            raise ValueError(f"row {row}: the caption is not UTF-8 text") from None
    if text is None or not text.strip():
        raise ValueError(f"row {row}: no caption to rewrite")
    return " ".join(text.split())


def fit_prompt(tokenizer, pool: dict, examples: list, caption: str, budget: int, row: int) -> tuple[list[int], list]:
    """Token ids of the prompt, dropping examples from the front until it has at most `budget` tokens."""
    while True:
        ids = tokenizer(rp.build_prompt(pool["instruction"], examples, caption))["input_ids"]
        if len(ids) <= budget:
            return ids, examples
        if not examples:
            raise ValueError(f"row {row}: the caption alone makes a {len(ids)}-token prompt, more than --context "
                             f"minus --max_new_tokens = {budget}; raise --context or shorten the caption")
        examples = examples[1:]


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else llm_text.eos_id(tokenizer)


def generate_batch(module, params, tokenizer, prompts: list[list[int]], header: dict, key: jax.Array,
                   sharding: jax.sharding.Sharding | None = None) -> list[tuple[str, bool, int]]:
    """(decoded new text, ended with eos, generated tokens) per prompt; the batch is filled up to
    header['batch_size'] with copies of the first prompt, left-padded to a multiple of BUCKET slots and placed
    on `sharding` (rows split over the mesh's data axes)."""
    b, n = header["batch_size"], header["max_new_tokens"]
    eos, pad = llm_text.eos_id(tokenizer), pad_id(tokenizer)
    full = prompts + [prompts[0]] * (b - len(prompts))  # one compilation per prompt width
    width = llm_text.padded_width(map(len, full), header["context"] - n, BUCKET)
    ids = llm_text.left_pad(full, width, pad)
    mask = llm_text.left_pad([[1] * len(p) for p in full], width, 0)
    if sharding is not None:
        ids, mask = jax.device_put(ids, sharding), jax.device_put(mask, sharding)
    new = np.asarray(llm.generate(module, params, ids, mask, max_new_tokens=n, temperature=header["temperature"],
                                  top_p=header["top_p"], rng=key, eos_token_id=eos, pad_token_id=pad))
    out = []
    for row in new[:len(prompts)].tolist():
        ended = eos in row
        row = row[:row.index(eos)] if ended else row
        out.append((tokenizer.decode(row, skip_special_tokens=True), ended, len(row) + ended))
    return out


def rewrite_chunk(module, params, tokenizer, header: dict, pools: list[dict], captions: list[str], start: int,
                  chunk_id: int, sharding: jax.sharding.Sharding | None = None) -> dict:
    """{'rewrites': [[K texts] per row], 'replaced': {reason: count}, 'tokens': generated token count}."""
    b, budget = header["batch_size"], header["context"] - header["max_new_tokens"]
    out = [[None] * len(pools) for _ in captions]
    replaced, tokens = dict.fromkeys(rp.REASONS, 0), 0
    for k, pool in enumerate(pools):
        for s in range(0, len(captions), b):
            rows = range(s, min(s + b, len(captions)))
            prompts, used = [], []
            for r in rows:
                rng = np.random.default_rng([header["seed"], k, start + r])
                ids, ex = fit_prompt(tokenizer, pool, rp.draw_examples(pool, header["examples"], rng), captions[r],
                                     budget, start + r)
                prompts.append(ids)
                used.append(ex)
            key = jax.random.fold_in(jax.random.fold_in(jax.random.key(header["seed"]), k), chunk_id * 1_000_003 + s)
            for j, (text, ended, n) in enumerate(generate_batch(module, params, tokenizer, prompts, header, key,
                                                                    sharding)):
                r = rows[j]
                tokens += n
                out[r][k], reason = rp.parse_answer(text, ended, captions[r], used[j], pool["instruction"])
                if reason:
                    replaced[reason] += 1
    return {"rewrites": out, "replaced": replaced, "tokens": tokens}


def chunk_path(output: str, c: int) -> str:
    return os.path.join(output, "chunks", f"{c:06d}.json")


def assemble(output: str, header: dict) -> dict:
    """rewrite_1..K.txt (line i = row i) and summary.json from the chunk files; returns the summary."""
    k_total = len(header["pools"])
    lines = [[] for _ in range(k_total)]
    replaced, tokens = dict.fromkeys(rp.REASONS, 0), 0
    for c in range(header["num_chunks"]):
        with open(chunk_path(output, c), encoding="utf-8") as f:
            chunk = json.load(f)
        for row in chunk["rewrites"]:
            for k in range(k_total):
                lines[k].append(row[k])
        replaced = {r: replaced[r] + chunk["replaced"][r] for r in rp.REASONS}
        tokens += chunk["tokens"]
    for k in range(k_total):
        chunked_files.atomic_write(os.path.join(output, f"rewrite_{k + 1}.txt"),
                                   "".join(line + "\n" for line in lines[k]).encode())
    total = header["rows"] * k_total
    summary = {"rows": header["rows"], "rewrites": total, "replaced": replaced,
               "replaced_fraction": sum(replaced.values()) / max(total, 1), "generated_tokens": tokens,
               "files": [f"rewrite_{k + 1}.txt" for k in range(k_total)]}
    chunked_files.atomic_write(os.path.join(output, "summary.json"), json.dumps(summary, indent=2).encode())
    return summary


def local_mesh(config) -> tuple[jax.sharding.Mesh, jax.sharding.Sharding, int]:
    """(mesh over this process's devices from config.mesh, batch-rows sharding, rows per batch multiple)."""
    mesh = sharding.make_mesh(config.mesh, jax.local_devices())
    data_axes = ("data", "fsdp")
    return mesh, NamedSharding(mesh, P(data_axes)), mesh.shape["data"] * mesh.shape["fsdp"]


def make_header(config, llm_folder: str, pools: list[str], pool_data: list[dict], rows: int, **settings) -> dict:
    chunk = settings["chunk"]
    digest = hashlib.sha256(json.dumps(pool_data, sort_keys=True).encode()).hexdigest()[:16]
    return {"tool": "rewrite", "llm": os.path.abspath(llm_folder), "llm_fingerprint": ec.llm_fingerprint(llm_folder),
            "sources": [list(s) for s in ec.source_fingerprints(config.data)], "rows": rows, "pools": pools,
            "pools_sha256": digest, "num_chunks": -(-rows // chunk), **settings}


def run(config: ml_collections.ConfigDict, llm_folder: str, output: str, pools: list[str], examples: int = 3,
        temperature: float = 0.9, top_p: float = 0.95, max_new_tokens: int = 77, context: int = 512,
        batch_size: int = 32, chunk: int = 1024, seed: int = 0, rows: int = -1, dtype: str = "float32",
        progress_bar: bool = True) -> dict | None:
    """Rewrite this process's missing chunks; returns the summary once every chunk exists (else None)."""
    if not os.path.isdir(llm_folder):
        raise FileNotFoundError(f"--llm {llm_folder!r}: no such folder (a Hugging Face model folder with "
                                "config.json, *.safetensors and a tokenizer)")
    if not pools:
        raise ValueError("--pools: expected at least one pool")
    if context <= max_new_tokens:
        raise ValueError(f"--context {context} must exceed --max_new_tokens {max_new_tokens}")
    pool_data = [rp.load_pool(p) for p in pools]
    mesh, rows_sharding, data_parallel = local_mesh(config)
    batch_size = -(-batch_size // data_parallel) * data_parallel
    source = pipeline.make_source(config.data)
    rows = len(source) if rows < 0 else min(rows, len(source))
    header = make_header(config, llm_folder, pools, pool_data, rows, examples=examples, temperature=temperature,
                         top_p=top_p, max_new_tokens=max_new_tokens, context=context, batch_size=batch_size,
                         chunk=chunk, seed=seed, dtype=dtype)
    chunked_files.open_folder(output, header)
    os.makedirs(os.path.join(output, "chunks"), exist_ok=True)
    rows_in = lambda c: min(chunk, rows - c * chunk)  # noqa: E731

    def make_work():
        tokenizer = llm_loading.load_tokenizer(llm_folder)
        module, params = llm_loading.from_pretrained(llm_folder, dtype=jnp.dtype(dtype), mesh=mesh)

        def work(c):
            captions = [row_caption(source, r) for r in range(c * chunk, c * chunk + rows_in(c))]
            result = rewrite_chunk(module, params, tokenizer, header, pool_data, captions, c * chunk, c,
                                   rows_sharding)
            chunked_files.atomic_write(chunk_path(output, c), json.dumps(result, ensure_ascii=False).encode())
        return work

    finished = chunked_files.run_chunks(header["num_chunks"], lambda c: os.path.exists(chunk_path(output, c)),
                                        make_work, lambda c: rows_in(c) * len(pools), "caption", progress_bar)
    return assemble(output, header) if finished and jax.process_index() == 0 else None


def main(argv):
    t0 = time.perf_counter()
    summary = chunked_files.tool_main(argv, lambda: run(
        FLAGS.config, FLAGS.llm, FLAGS.output, FLAGS.pools, FLAGS.examples, FLAGS.temperature, FLAGS.top_p,
        FLAGS.max_new_tokens, FLAGS.context, FLAGS.batch_size, FLAGS.chunk, FLAGS.seed, FLAGS.rows, FLAGS.dtype,
        FLAGS.progress_bar), FLAGS.output)
    if summary is None:
        return
    r = summary["replaced"]
    print(f"{FLAGS.output}: {summary['rows']} rows x {len(summary['files'])} rewrites in "
          f"{time.perf_counter() - t0:.1f} s; replaced by the original: {sum(r.values())}/{summary['rewrites']} "
          f"({summary['replaced_fraction']:.1%}; empty {r['empty']}, echo {r['echo']}, overlong {r['overlong']})")
    files = ",".join(os.path.join(FLAGS.output, f) for f in summary["files"])
    print(f"train with: --config.data.rewrite_files={files}")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Config whose config.data names the dataset.", lock_config=False)
    flags.DEFINE_string("llm", None, "Hugging Face folder of the causal LLM (config.json, safetensors, tokenizer).")
    flags.DEFINE_string("output", None, "Output folder (created, or resumed when its header matches).")
    flags.DEFINE_list("pools", ["descriptive", "concise", "scene", "object"],
                      "One rewrite per entry: a built-in pool name or a pool file (.json or 'source => target' lines).")
    flags.DEFINE_integer("examples", 3, "Example pairs per prompt, drawn without replacement per caption.")
    flags.DEFINE_float("temperature", 0.9, "Sampling temperature (0 = greedy).")
    flags.DEFINE_float("top_p", 0.95, "Nucleus mass.")
    flags.DEFINE_integer("max_new_tokens", 77, "Generated tokens per rewrite at most.")
    flags.DEFINE_integer("context", 512, "Prompt + new tokens at most.")
    flags.DEFINE_integer("batch_size", 32, "Prompts per generate call in each process.")
    flags.DEFINE_integer("chunk", 1024, "Rows per committed chunk.")
    flags.DEFINE_integer("seed", 0, "Example draws and sampling keys.")
    flags.DEFINE_integer("rows", -1, "Rewrite only the first N rows (-1: all).")
    flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "LLM compute and weight dtype.")
    flags.DEFINE_bool("progress_bar", True, "Show a progress bar (process 0).")
    flags.mark_flags_as_required(["config", "llm", "output"])
    app.run(main)
