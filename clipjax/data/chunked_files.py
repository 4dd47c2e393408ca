"""Output folders of the offline caption tools (embed_captions, rewrite, vec_captions): a dataset's rows are cut into
chunks, each chunk's output is committed whole and atomically, and a header.json records what made the folder.

- `atomic_write`: temporary file + os.replace, so a killed writer leaves a chunk whole or absent, never half.
- `open_folder`: create the folder with its header, or resume one whose header is equal; a header that differs is
  refused (`StaleOutput` naming every field that differs), so outputs of two runs are never mixed.
- `process_chunks`: chunk c belongs to process c mod process_count (`jax.process_index/count`); the not yet done are
  this process's work, so a rerun after a kill, in any process layout, does only what is missing.
- `progress`: the tqdm bar of process 0 (items/s and ETA).
- `run_chunks`: the loop of every such tool: this process's missing chunks, each done whole, under one bar.
- `tool_main`: the shared start of their `main` (no stray arguments, jax.distributed set up).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

import jax
import tqdm
from absl import app

from clipjax import distributed

HEADER = "header.json"


class StaleOutput(ValueError):
    """An output folder made from other inputs or settings than this run's."""


def atomic_write(path: str, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def header_diff(found: dict, expected: dict, keys: Iterable[str]) -> list[str]:
    """'key: folder X vs this run Y' for every key whose values differ."""
    return [f"{k}: folder {found.get(k)!r} vs this run {expected.get(k)!r}" for k in keys
            if found.get(k) != expected.get(k)]


def check_same(folder: str, found: dict, expected: dict, keys: Iterable[str], noun: str = "output",
               error: type[ValueError] = StaleOutput) -> None:
    """`error` naming every differing key unless the header found in `folder` matches this run's on `keys`."""
    diff = header_diff(found, expected, keys)
    if diff:
        raise error(f"{os.path.join(folder, HEADER)} was made from other inputs (stale {noun}; delete it or point "
                    f"to another folder):\n  " + "\n  ".join(diff))


def read_header(folder: str) -> dict | None:
    path = os.path.join(folder, HEADER)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def open_folder(folder: str, header: dict, noun: str = "output", error: type[ValueError] = StaleOutput) -> None:
    """Create `folder` with `header` (JSON-able), or resume it when its header is equal on every key (else `error`).
    A non-empty folder without a header is refused too: it holds files of something else."""
    found = read_header(folder)
    if found is not None:
        check_same(folder, found, json.loads(json.dumps(header)), sorted(set(found) | set(header)), noun, error)
        return
    if os.path.isdir(folder) and os.listdir(folder):
        raise error(f"{folder} holds files but no {HEADER}: not an output folder of this tool; point to an empty or "
                    f"new folder")
    os.makedirs(folder, exist_ok=True)
    atomic_write(os.path.join(folder, HEADER), json.dumps(header, indent=2, sort_keys=True).encode())


def process_chunks(num_chunks: int, done: Callable[[int], bool], process_index: int | None = None,
                   process_count: int | None = None) -> list[int]:
    """This process's chunks still to do: c with c mod process_count == process_index and not done(c)."""
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    return [c for c in range(index, num_chunks, count) if not done(c)]


def progress(total: int, unit: str, enabled: bool = True) -> tqdm.tqdm:
    """Progress bar of process 0 (rate and ETA); a silent one elsewhere or when not `enabled`."""
    return tqdm.tqdm(total=total, unit=unit, disable=not (enabled and jax.process_index() == 0), dynamic_ncols=True,
                     smoothing=0.1)


def run_chunks(num_chunks: int, done: Callable[[int], bool], make_work: Callable[[], Callable[[int], None]],
               units: Callable[[int], int], unit: str, progress_bar: bool = True,
               process: tuple[int, int] | None = None) -> bool:
    """Do this process's missing chunks (`process_chunks`; `process`: (index, count), default jax's): `make_work()`
    is called once, only when there is a chunk to do (loading a model only then), and its result is called on each
    chunk c, which must leave done(c) true; the bar counts units(c) per chunk. Returns whether every chunk of every
    process is done now."""
    mine = process_chunks(num_chunks, done, *(process or (None, None)))
    if mine:
        work = make_work()
        bar = progress(sum(units(c) for c in mine), unit, progress_bar)
        for c in mine:
            work(c)
            bar.update(units(c))
        bar.close()
    return all(done(c) for c in range(num_chunks))


def tool_main(argv: list[str], run: Callable[[], Any], output: str) -> Any:
    """A chunked tool's `main`: refuse positional arguments, set up jax.distributed, return `run()`; a None result
    (chunks of other processes still missing) is announced by process 0."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    distributed.initialize()
    result = run()
    if result is None and jax.process_index() == 0:
        print(f"{output}: chunks of other processes still missing; rerun to finish and assemble")
    return result
