"""Orbax checkpoints of the train state together with the data iterator's state (exact mid-epoch resume), and
resuming from the newest intact one when the latest is damaged (`Checkpointer.restore_latest`, `find_damage`)."""
import glob
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
import tensorstore as ts
from jax.experimental import multihost_utils

from clipjax import config as config_lib

ON_CORRUPT = ("fallback", "refuse")


class CorruptCheckpointError(RuntimeError):
    """A checkpoint step with a missing or damaged file; the message (one line) names the step and the file."""


class IncompatibleCheckpointError(ValueError):
    """A checkpoint written by a config of other shapes."""


def validate(config: ml_collections.ConfigDict) -> None:
    """config.checkpoint: a positive cadence and a known policy for a damaged latest step."""
    require = lambda ok, key, what: config_lib.require(ok, config, key, what)  # noqa: E731
    require(config.checkpoint.every_steps > 0, "checkpoint.every_steps", "a positive number of steps")
    require(config.checkpoint.on_corrupt in ON_CORRUPT, "checkpoint.on_corrupt", f"one of {ON_CORRUPT}")


class Checkpointer:
    """Asynchronous, keep-N checkpoints in WORKDIR/checkpoints; each step holds items 'state' (the train state
    pytree) and 'data' (the grain iterator's state, one JSON file per process). `read_only` (evaluation): create
    nothing and leave damaged steps where they are."""

    def __init__(self, workdir: str, ckpt_config: ml_collections.ConfigDict, read_only: bool = False):
        self.on_corrupt, self.read_only = ckpt_config.on_corrupt, read_only
        options = ocp.CheckpointManagerOptions(
            max_to_keep=ckpt_config.keep, enable_async_checkpointing=ckpt_config.async_save, create=not read_only)
        self.manager = ocp.CheckpointManager(
            os.path.join(os.path.abspath(workdir), "checkpoints"), options=options,
            item_handlers={"state": ocp.StandardCheckpointHandler(), "data": grain.checkpoint.CheckpointHandler()})

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_iterator=None) -> None:
        items = {"state": ocp.args.StandardSave(state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)

    def restore_latest(self, abstract_state, data_iterator=None) -> tuple[int | None, Any]:
        """(step, state) of the newest intact checkpoint, the iterator restored in place; (None, None) when there
        is none. A damaged step (`find_damage`, or a failing restore) is named in one line: with on_corrupt =
        'fallback' in a warning, the step moved aside to STEP.corrupt.TIME (unless read-only) and the next older
        one tried; with 'refuse', or when no intact step is left, in a CorruptCheckpointError."""
        _ignore_abandoned_reads()
        damaged = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            problem = find_damage(self.step_dir(step))
            if problem is None:
                try:
                    return step, self.restore(step, abstract_state, data_iterator)
                except IncompatibleCheckpointError:
                    raise
                except Exception as e:  # noqa: BLE001 - any other failure means the files cannot be read back
                    cause = e  # the innermost error (tensorstore's) names the array and its database
                    while cause.__cause__ is not None:
                        cause = cause.__cause__
                    problem = f"{self.step_dir(step)}: restore failed ({_first_line(cause)})"
            damaged.append(f"step {step} ({problem})")
            if self.on_corrupt == "refuse":
                self.close()
                raise CorruptCheckpointError(
                    f"checkpoint step {step} is damaged: {problem}; set config.checkpoint.on_corrupt='fallback' to "
                    f"resume from the newest intact step, or move {self.step_dir(step)} away")
            logging.warning("checkpoint step %d is damaged: %s; trying the step before it%s", step, problem,
                            "" if self.read_only else f" (moved aside to {self._set_aside(step)})")
        if damaged:
            self.close()
            raise CorruptCheckpointError(f"no intact checkpoint in {self.manager.directory}: {'; '.join(damaged)}; "
                                         f"move them away to start afresh")
        return None, None

    def step_dir(self, step: int) -> str:
        return os.path.join(self.manager.directory, str(step))

    def _set_aside(self, step: int) -> str:
        """Rename a damaged step's directory (process 0) so that Orbax ignores it and the run can save it anew."""
        target = f"{self.step_dir(step)}.corrupt.{time.strftime('%Y%m%dT%H%M%S')}"
        if jax.process_index() == 0:
            os.rename(self.step_dir(step), target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"clipjax: checkpoint {step} set aside")
        self.manager.reload()
        return target

    def restore(self, step: int, abstract_state, data_iterator=None):
        """Restore onto `abstract_state` (ShapeDtypeStructs carrying shardings); fails (IncompatibleCheckpointError)
        with the list of mismatched parameters if the checkpoint was written by a config of other shapes. The
        iterator is restored in place."""
        check_compatible(self.manager.item_metadata(step)["state"], abstract_state, step)
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None and self.has_data_state(step):
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        elif data_iterator is not None:
            logging.warning("checkpoint %d holds no data-iterator state for %d processes (written by another "
                            "process count); the input pipeline is repositioned from the step", step,
                            jax.process_count())
        return self.manager.restore(step, args=ocp.args.Composite(**items))["state"]

    def has_data_state(self, step: int) -> bool:
        """Whether step's checkpoint has this process's iterator state (same process count as the writer)."""
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        return os.path.exists(os.path.join(self.step_dir(step), "data", name))

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def check_compatible(saved_metadata, abstract_state, step: int) -> None:
    """Raise IncompatibleCheckpointError naming every leaf whose saved shape differs from the target, or that is
    missing."""
    saved = _shapes(saved_metadata)
    wanted = _shapes(abstract_state)
    problems = [f"{k}: checkpoint {saved.get(k, 'missing')} vs config {v}"
                for k, v in wanted.items() if saved.get(k) != v]
    if problems:
        shown = "\n  ".join(problems[:20])
        raise IncompatibleCheckpointError(f"checkpoint at step {step} does not match this config ({len(problems)} "
                                          f"parameters differ); was it written by another config?\n  {shown}")


def _shapes(tree) -> dict[str, tuple[int, ...]]:
    """'params/image/cls' -> shape for every array-like leaf (dataclass fields and dict keys alike)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
    return {"/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path): tuple(x.shape)
            for path, x in leaves if hasattr(x, "shape")}


def find_damage(step_dir: str) -> str | None:
    """'FILE: what is wrong' for the first missing or damaged file of a step written by `Checkpointer` (the state's
    metadata, every file its OCDBT database references, the iterator states), or None when all are in place."""
    metadata = os.path.join(step_dir, "state", "_METADATA")
    for path in [metadata, *sorted(glob.glob(os.path.join(step_dir, "data", "*.json")))]:
        try:
            with open(path) as f:
                json.load(f)
        except FileNotFoundError:
            return f"{path}: missing"
        except (OSError, ValueError) as e:
            return f"{path}: unreadable ({_first_line(e)})"
    return _ocdbt_damage(os.path.join(step_dir, "state"))


def _ocdbt_damage(directory: str) -> str | None:
    """Walk the OCDBT database in `directory` (manifest, then b-tree nodes) and check that every file it references
    holds the referenced byte range; reads only the tree, not the array data."""
    base = ts.KvStore.open({"driver": "file", "path": directory + "/"}).result()
    try:
        nodes = [ts.ocdbt.dump(base).result()]
    except Exception as e:  # noqa: BLE001 - tensorstore reports a missing or damaged manifest in several types
        return f"{os.path.join(directory, 'manifest.ocdbt')}: unreadable ({_first_line(e)})"
    while nodes:
        for location in _locations(nodes.pop()):
            kind, prefix, name, offset, length = location.split(":")
            path, end = os.path.join(directory, prefix + name), int(offset) + int(length)
            if not os.path.isfile(path):
                return f"{path}: missing"
            if os.path.getsize(path) < end:
                return f"{path}: truncated ({os.path.getsize(path)} of at least {end} bytes)"
            if kind != "value":
                try:
                    nodes.append(ts.ocdbt.dump(base, location).result())
                except Exception as e:  # noqa: BLE001
                    return f"{path}: unreadable ({_first_line(e)})"
    return None


def _locations(node) -> Iterator[str]:
    """Every 'KIND:PREFIX:FILE:OFFSET:LENGTH' reference (value, b-tree or version node) in a dumped OCDBT node."""
    if isinstance(node, (dict, list)):
        for child in node.values() if isinstance(node, dict) else node:
            yield from _locations(child)
    elif isinstance(node, str) and node.startswith(("value:", "btreenode:", "versionnode:")):
        yield node


def _ignore_abandoned_reads() -> None:
    """Drop (process-wide, once) the reports a failed Orbax restore leaves behind: it closes its event loop with
    tensorstore reads in flight, whose callbacks then raise 'Event loop is closed' and whose coroutines are
    abandoned, each printed through sys.unraisablehook (hundreds of lines after the one-line report here)."""
    previous = sys.unraisablehook
    if getattr(previous, "drops_abandoned_reads", False):
        return

    def hook(unraisable):
        code = getattr(unraisable.object, "cr_code", None)
        if not (str(unraisable.exc_value) == "Event loop is closed" or code and "orbax" in code.co_filename):
            previous(unraisable)

    hook.drops_abandoned_reads = True
    sys.unraisablehook = hook


def _first_line(error: Exception) -> str:
    return next(iter(str(error).splitlines()), type(error).__name__)[:300]
