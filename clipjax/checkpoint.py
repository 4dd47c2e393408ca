"""Orbax checkpoints of the train state together with the data iterator's state (exact mid-epoch resume)."""
import logging
import os

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp


class Checkpointer:
    """Asynchronous, keep-N checkpoints in WORKDIR/checkpoints; each step holds items 'state' (the train state
    pytree) and 'data' (the grain iterator's state, one JSON file per process)."""

    def __init__(self, workdir: str, ckpt_config: ml_collections.ConfigDict):
        options = ocp.CheckpointManagerOptions(
            max_to_keep=ckpt_config.keep, enable_async_checkpointing=ckpt_config.async_save, create=True)
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

    def restore(self, step: int, abstract_state, data_iterator=None):
        """Restore onto `abstract_state` (ShapeDtypeStructs carrying shardings); fails with the list of mismatched
        parameters if the checkpoint was written by a config of other shapes. The iterator is restored in place."""
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
        return os.path.exists(os.path.join(self.manager.directory, str(step), "data", name))

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def check_compatible(saved_metadata, abstract_state, step: int) -> None:
    """Raise ValueError naming every leaf whose saved shape differs from the target, or that is missing."""
    saved = _shapes(saved_metadata)
    wanted = _shapes(abstract_state)
    problems = [f"{k}: checkpoint {saved.get(k, 'missing')} vs config {v}"
                for k, v in wanted.items() if saved.get(k) != v]
    if problems:
        shown = "\n  ".join(problems[:20])
        raise ValueError(f"checkpoint at step {step} does not match this config ({len(problems)} parameters "
                         f"differ); was it written by another config?\n  {shown}")


def _shapes(tree) -> dict[str, tuple[int, ...]]:
    """'params/image/cls' -> shape for every array-like leaf (dataclass fields and dict keys alike)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
    return {"/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path): tuple(x.shape)
            for path, x in leaves if hasattr(x, "shape")}
