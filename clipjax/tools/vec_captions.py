"""VeCLIP visual-enriched captions (arXiv 2310.07699 Sec. 3): for every image of a dataset, (1) a vision-language
model describes the image (transformers' image-text-to-text models such as LLaVA; PyTorch, greedy), then (2) the
Flax LLM fuses the AltText and that description into one caption with a few-shot fusion prompt (KV-cache decoder).

python -m clipjax.tools.vec_captions --config CFG --vlm /models/llava-1.5-7b-hf --llm /models/Llama-2-7b-hf \
    --output /data/vec [--vlm_prompt "..."] [--vlm_max_new_tokens 40] [--examples 3] [--temperature 0] \
    [--max_new_tokens 77] [--context 512] [--batch_size 32] [--chunk 1024] [--seed 0] [--rows N]

Fusion prompt: clipjax/tools/assets/fusion_examples.json (written for this project): an instruction, --examples
"AltText: A | Image: D => fused" pairs drawn per row, then "AltText: caption | Image: description =>"; the answer is
parsed as the rewrite tool's (clipjax.tools.rewrite_prompt). An image that fails to decode or is missing is
skipped by the VLM and counted; the row keeps its original caption, as does a fused answer that is empty, an echo
or never ended.

Output: OUTPUT/header.json, OUTPUT/chunks/NNNNNN.json (committed atomically; resume, process split and refusal of
another run's folder as clipjax.tools.rewrite), and once complete OUTPUT/vec.txt (line i = the VeC of row i),
OUTPUT/vlm.txt (the VLM's descriptions, '' for skipped images) and OUTPUT/summary.json. Train on a CSV index with
--config.data.rewrite_files=OUTPUT/vec.txt --config.data.caption_mode=veclip --config.data.veclip_field=rewrite_1.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from clipjax.data import chunked_files, embedding_cache as ec, pipeline, sources
from clipjax.models import llm_loading
from clipjax.tools import rewrite, rewrite_prompt as rp

FLAGS = flags.FLAGS
FUSION_FILE = os.path.join(os.path.dirname(__file__), "assets", "fusion_examples.json")
VLM_PROMPT = "Describe the image concisely, in less than 20 words."
REASONS = ("bad_image", *rp.REASONS)


def fusion_pool() -> dict:
    with open(FUSION_FILE, encoding="utf-8") as f:
        return json.load(f)


def folder_fingerprint(folder: str) -> str:
    """sha256 of a model folder's JSON files plus the names and sizes of its other files."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            h.update(open(path, "rb").read() if name.endswith(".json") else f"{name}:{os.path.getsize(path)}".encode())
    return h.hexdigest()[:16]


def row_image(source, row: int):
    """The row's image as a PIL RGB image, or None when it is missing or fails to decode."""
    from PIL import Image
    try:
        image = source[row]["image"]
        if isinstance(image, np.ndarray):
            return Image.fromarray(image).convert("RGB")
        if image is None:
            return None
        with Image.open(io.BytesIO(image)) as im:
            return im.convert("RGB")
    except (sources.BadSample, OSError, ValueError, SyntaxError):
        return None


class Describer:
    """Step 1: a transformers image-text-to-text model, greedy, left-padded batches; `describe(images) -> texts`."""

    def __init__(self, folder: str, prompt: str, max_new_tokens: int, dtype: str = "float32"):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"--vlm {folder!r}: no such folder (a Hugging Face image-text-to-text model "
                                    "folder, e.g. llava-1.5-7b-hf)")
        import torch
        import transformers
        self.torch = torch
        self.processor = transformers.AutoProcessor.from_pretrained(folder, local_files_only=True)
        self.processor.tokenizer.padding_side = "left"
        self.model = transformers.AutoModelForImageTextToText.from_pretrained(
            folder, local_files_only=True, dtype=getattr(torch, dtype)).eval()
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device)
        self.max_new_tokens = max_new_tokens
        if getattr(self.processor, "chat_template", None):
            self.text = self.processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
                add_generation_prompt=True)
        else:
            self.text = f"{getattr(self.processor, 'image_token', '<image>')} {prompt}"

    def describe(self, images: list) -> list[str]:
        if not images:
            return []
        inputs = self.processor(images=images, text=[self.text] * len(images), return_tensors="pt", padding=True)
        with self.torch.inference_mode():
            out = self.model.generate(**inputs.to(self.device), max_new_tokens=self.max_new_tokens, do_sample=False)
        texts = self.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return [rp.one_line(t.strip().partition("\n")[0]) for t in texts]


def fusion_source(alt: str, description: str) -> str:
    return f"AltText: {alt} | Image: {description}"


def vec_chunk(describer: Describer, module, params, tokenizer, header: dict, pool: dict, source, start: int,
              size: int, chunk_id: int, rows_sharding: jax.sharding.Sharding | None = None) -> dict:
    """{'vec': [texts], 'vlm': [texts], 'replaced': {reason: count}} for rows start..start+size-1."""
    alts = [rewrite.row_caption(source, r) for r in range(start, start + size)]
    images = [row_image(source, r) for r in range(start, start + size)]
    good = [i for i, im in enumerate(images) if im is not None]
    vlm = [""] * size
    b = header["batch_size"]
    for s in range(0, len(good), b):
        for i, text in zip(good[s:s + b], describer.describe([images[i] for i in good[s:s + b]])):
            vlm[i] = text
    vec, replaced = list(alts), dict.fromkeys(REASONS, 0)
    replaced["bad_image"] = size - len(good)
    budget = header["context"] - header["max_new_tokens"]
    for s in range(0, len(good), b):
        rows, prompts, used = good[s:s + b], [], []
        for i in rows:
            rng = np.random.default_rng([header["seed"], start + i])
            ids, ex = rewrite.fit_prompt(tokenizer, pool, rp.draw_examples(pool, header["examples"], rng),
                                         fusion_source(alts[i], vlm[i]), budget, start + i)
            prompts.append(ids)
            used.append(ex)
        key = jax.random.fold_in(jax.random.key(header["seed"]), chunk_id * 1_000_003 + s)
        for j, (text, ended, _) in enumerate(rewrite.generate_batch(module, params, tokenizer, prompts, header, key,
                                                                            rows_sharding)):
            i = rows[j]
            answer, reason = rp.parse_answer(text, ended, alts[i], used[j], pool["instruction"])
            vec[i] = answer
            if reason:
                replaced[reason] += 1
    return {"vec": vec, "vlm": vlm, "replaced": replaced}


def assemble(output: str, header: dict) -> dict:
    vec, vlm, replaced = [], [], dict.fromkeys(REASONS, 0)
    for c in range(header["num_chunks"]):
        with open(rewrite.chunk_path(output, c), encoding="utf-8") as f:
            chunk = json.load(f)
        vec += chunk["vec"]
        vlm += chunk["vlm"]
        replaced = {r: replaced[r] + chunk["replaced"][r] for r in REASONS}
    for name, lines in (("vec.txt", vec), ("vlm.txt", vlm)):
        chunked_files.atomic_write(os.path.join(output, name), "".join(t + "\n" for t in lines).encode())
    summary = {"rows": header["rows"], "replaced": replaced,
               "replaced_fraction": sum(replaced.values()) / max(header["rows"], 1), "files": ["vec.txt", "vlm.txt"]}
    chunked_files.atomic_write(os.path.join(output, "summary.json"), json.dumps(summary, indent=2).encode())
    return summary


def run(config: ml_collections.ConfigDict, vlm_folder: str, llm_folder: str, output: str,
        vlm_prompt: str = VLM_PROMPT, vlm_max_new_tokens: int = 40, examples: int = 3, temperature: float = 0.0,
        top_p: float = 1.0, max_new_tokens: int = 77, context: int = 512, batch_size: int = 32, chunk: int = 1024,
        seed: int = 0, rows: int = -1, dtype: str = "float32", progress_bar: bool = True) -> dict | None:
    """Caption this process's missing chunks; returns the summary once every chunk exists (else None)."""
    for flag, folder in (("--vlm", vlm_folder), ("--llm", llm_folder)):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{flag} {folder!r}: no such folder")
    if context <= max_new_tokens:
        raise ValueError(f"--context {context} must exceed --max_new_tokens {max_new_tokens}")
    pool = fusion_pool()
    mesh, rows_sharding, data_parallel = rewrite.local_mesh(config)
    batch_size = -(-batch_size // data_parallel) * data_parallel
    source = pipeline.make_source(config.data)
    rows = len(source) if rows < 0 else min(rows, len(source))
    header = {"tool": "vec_captions", "vlm": os.path.abspath(vlm_folder),
              "vlm_fingerprint": folder_fingerprint(vlm_folder),
              "llm": os.path.abspath(llm_folder), "llm_fingerprint": ec.llm_fingerprint(llm_folder),
              "sources": [list(s) for s in ec.source_fingerprints(config.data)], "rows": rows,
              "fusion_sha256": hashlib.sha256(json.dumps(pool, sort_keys=True).encode()).hexdigest()[:16],
              "vlm_prompt": vlm_prompt, "vlm_max_new_tokens": vlm_max_new_tokens, "examples": examples,
              "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens, "context": context,
              "batch_size": batch_size, "chunk": chunk, "seed": seed, "dtype": dtype, "num_chunks": -(-rows // chunk)}
    chunked_files.open_folder(output, header)
    os.makedirs(os.path.join(output, "chunks"), exist_ok=True)
    rows_in = lambda c: min(chunk, rows - c * chunk)  # noqa: E731

    def make_work():
        describer = Describer(vlm_folder, vlm_prompt, vlm_max_new_tokens, dtype)
        tokenizer = llm_loading.load_tokenizer(llm_folder)
        module, params = llm_loading.from_pretrained(llm_folder, dtype=jnp.dtype(dtype), mesh=mesh)

        def work(c):
            result = vec_chunk(describer, module, params, tokenizer, header, pool, source, c * chunk, rows_in(c), c,
                               rows_sharding)
            chunked_files.atomic_write(rewrite.chunk_path(output, c), json.dumps(result, ensure_ascii=False).encode())
        return work

    finished = chunked_files.run_chunks(header["num_chunks"], lambda c: os.path.exists(rewrite.chunk_path(output, c)),
                                        make_work, rows_in, "image", progress_bar)
    return assemble(output, header) if finished and jax.process_index() == 0 else None


def main(argv):
    t0 = time.perf_counter()
    summary = chunked_files.tool_main(argv, lambda: run(
        FLAGS.config, FLAGS.vlm, FLAGS.llm, FLAGS.output, FLAGS.vlm_prompt, FLAGS.vlm_max_new_tokens, FLAGS.examples,
        FLAGS.temperature, FLAGS.top_p, FLAGS.max_new_tokens, FLAGS.context, FLAGS.batch_size, FLAGS.chunk,
        FLAGS.seed, FLAGS.rows, FLAGS.dtype, FLAGS.progress_bar), FLAGS.output)
    if summary is None:
        return
    r = summary["replaced"]
    print(f"{FLAGS.output}: {summary['rows']} rows in {time.perf_counter() - t0:.1f} s; original caption kept for "
          f"{sum(r.values())} ({summary['replaced_fraction']:.1%}; "
          + ", ".join(f"{k} {v}" for k, v in r.items()) + ")")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Config whose config.data names the dataset.", lock_config=False)
    flags.DEFINE_string("vlm", None, "Hugging Face folder of an image-text-to-text model (e.g. LLaVA).")
    flags.DEFINE_string("llm", None, "Hugging Face folder of the causal LLM that fuses the captions.")
    flags.DEFINE_string("output", None, "Output folder (created, or resumed when its header matches).")
    flags.DEFINE_string("vlm_prompt", VLM_PROMPT, "Instruction given to the VLM with each image.")
    flags.DEFINE_integer("vlm_max_new_tokens", 40, "VLM tokens per description at most.")
    flags.DEFINE_integer("examples", 3, "Fusion example pairs per prompt.")
    flags.DEFINE_float("temperature", 0.0, "Fusion sampling temperature (0 = greedy).")
    flags.DEFINE_float("top_p", 1.0, "Fusion nucleus mass.")
    flags.DEFINE_integer("max_new_tokens", 77, "Fused caption tokens at most.")
    flags.DEFINE_integer("context", 512, "Fusion prompt + new tokens at most.")
    flags.DEFINE_integer("batch_size", 32, "Images (VLM) and prompts (LLM) per batch.")
    flags.DEFINE_integer("chunk", 1024, "Rows per committed chunk.")
    flags.DEFINE_integer("seed", 0, "Example draws and sampling keys.")
    flags.DEFINE_integer("rows", -1, "Caption only the first N rows (-1: all).")
    flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "VLM and LLM compute and weight dtype.")
    flags.DEFINE_bool("progress_bar", True, "Show a progress bar (process 0).")
    flags.mark_flags_as_required(["config", "vlm", "llm", "output"])
    app.run(main)
