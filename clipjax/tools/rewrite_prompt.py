"""Prompts and answer parsing of LaCLIP's in-context caption rewriting (arXiv 2305.20088 Sec. 3.1).

A pool is {'instruction': str, 'pairs': [[source, target], ...]}. The prompt for one caption is

    INSTRUCTION\n\nSRC_1 => TGT_1\n\n ... SRC_m => TGT_m\n\nCAPTION =>

with m example pairs drawn without replacement from the pool. The answer is the text generated after the final
'=>': its first line, cut before any further '=>' (the model starting a new pair); an empty answer, one that echoes
the caption or an example, or one that never ended (no newline, eos or '=>' within the token budget) is replaced by
the original caption and counted under that reason.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

POOLS_FILE = os.path.join(os.path.dirname(__file__), "assets", "rewrite_pools.json")
REASONS = ("empty", "echo", "overlong")
ARROW = "=>"


def builtin_pools() -> dict[str, dict]:
    with open(POOLS_FILE, encoding="utf-8") as f:
        return json.load(f)


def load_pool(spec: str) -> dict:
    """A pool by built-in name (descriptive, concise, scene, object) or from a file: JSON {'instruction', 'pairs'}
    or text with one 'source => target' pair a line (instruction: the descriptive pool's)."""
    pools = builtin_pools()
    if spec in pools:
        return pools[spec]
    if not os.path.isfile(spec):
        raise FileNotFoundError(f"--pools: {spec!r} is neither a built-in pool ({', '.join(pools)}) nor a file")
    with open(spec, encoding="utf-8") as f:
        text = f.read()
    if spec.endswith(".json"):
        pool = json.loads(text)
        if not isinstance(pool, dict) or not isinstance(pool.get("instruction"), str) or "pairs" not in pool:
            raise ValueError(f"--pools {spec}: expected a JSON object with 'instruction' and 'pairs'")
    else:
        pairs = []
        for n, line in enumerate(filter(str.strip, text.splitlines()), 1):
            src, arrow, tgt = line.partition(ARROW)
            if not arrow or not src.strip() or not tgt.strip():
                raise ValueError(f"--pools {spec} line {n}: expected 'source => target'")
            pairs.append([src.strip(), tgt.strip()])
        pool = {"instruction": pools["descriptive"]["instruction"], "pairs": pairs}
    if len(pool["pairs"]) < 1 or any(len(p) != 2 for p in pool["pairs"]):
        raise ValueError(f"--pools {spec}: expected at least one [source, target] pair")
    return pool


def draw_examples(pool: dict, num: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """`num` pairs (at most the pool's size) drawn without replacement."""
    pairs = pool["pairs"]
    return [tuple(pairs[i]) for i in rng.permutation(len(pairs))[:min(num, len(pairs))]]


def build_prompt(instruction: str, examples: Sequence[tuple[str, str]], caption: str) -> str:
    blocks = [instruction.strip(), *(f"{s} {ARROW} {t}" for s, t in examples), f"{caption.strip()} {ARROW}"]
    return "\n\n".join(blocks)


def one_line(text: str) -> str:
    return " ".join(text.split())


def parse_answer(generated: str, ended: bool, caption: str, examples: Sequence[tuple[str, str]],
                 instruction: str = "") -> tuple[str, str | None]:
    """(rewrite, None), or (original caption, reason) with reason in REASONS. `ended`: an eos was generated."""
    first, newline, _ = generated.lstrip("\n").partition("\n")
    answer, arrow, _ = first.partition(ARROW)
    answer = one_line(answer)
    if instruction and answer.lower().startswith(one_line(instruction).lower()):
        answer = answer[len(one_line(instruction)):].strip()
    original = one_line(caption)
    if not answer:
        return original, "empty"
    echoes = {original.lower(), *(one_line(x).lower() for pair in examples for x in pair)}
    if answer.lower() in echoes:
        return original, "echo"
    if not (ended or newline or arrow):
        return original, "overlong"
    return answer, None
