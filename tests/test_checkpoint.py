"""Damaged checkpoints: real Orbax checkpoints written by `Checkpointer`, then a truncated array file or a missing
metadata file in the latest step; fallback to the newest intact step, or a one-line refusal naming step and file."""
import glob
import logging
import os

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clipjax import checkpoint, config as config_lib

DEVICE = jax.sharding.SingleDeviceSharding(jax.devices()[0])


def tiny_state(step: int) -> dict:
    w = np.random.default_rng(step).normal(size=(32, 64)).astype(np.float32)  # stored out of line (not inlined)
    return {"w": jnp.asarray(w), "b": jnp.full((3,), step, jnp.float32), "step": jnp.int32(step)}


ABSTRACT = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=DEVICE), tiny_state(0))


def ckpt_config(**overrides):
    c = config_lib.default_config().checkpoint
    c.async_save = False
    c.update(overrides)
    return c


def data_iterator():
    return iter(grain.MapDataset.range(100).to_iter_dataset())


@pytest.fixture
def workdir(tmp_path):
    """Checkpoints of steps 1, 2, 3, each with the state and the position of a grain iterator (3 elements read per
    step)."""
    ckpt = checkpoint.Checkpointer(str(tmp_path), ckpt_config())
    it = data_iterator()
    for step in (1, 2, 3):
        for _ in range(3):
            next(it)
        ckpt.save(step, tiny_state(step), it)
    ckpt.close()
    return str(tmp_path)


def step_dir(workdir, step):
    return os.path.join(workdir, "checkpoints", str(step))


def array_file(workdir, step) -> str:
    """The largest OCDBT data file of a step: the one holding 'w'."""
    return max(glob.glob(os.path.join(step_dir(workdir, step), "state", "ocdbt.process_*", "d", "*")),
               key=os.path.getsize)


def truncate_array_file(workdir, step) -> str:
    path = array_file(workdir, step)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    return path


def restore_latest(workdir, **config):
    ckpt = checkpoint.Checkpointer(workdir, ckpt_config(**config))
    it = data_iterator()
    try:
        step, state = ckpt.restore_latest(ABSTRACT, it)
    finally:
        ckpt.close()
    return step, state, it


def assert_restored(step, state, it, expected):
    assert step == expected
    np.testing.assert_array_equal(np.asarray(state["w"]), np.asarray(tiny_state(expected)["w"]))
    assert int(state["step"]) == expected and next(it) == 3 * expected  # the iterator continues after the step


def test_intact_latest_restores(workdir):
    assert_restored(*restore_latest(workdir), expected=3)


@pytest.mark.parametrize("damage", ["truncated array file", "missing metadata"])
def test_damaged_latest_falls_back_to_the_older_step_with_a_warning(workdir, damage, caplog):
    if damage == "truncated array file":
        bad = truncate_array_file(workdir, 3)
    else:
        bad = os.path.join(step_dir(workdir, 3), "state", "_METADATA")
        os.remove(bad)
    with caplog.at_level(logging.WARNING):
        step, state, it = restore_latest(workdir)
    assert_restored(step, state, it, expected=2)
    warning = next(r.getMessage() for r in caplog.records if "damaged" in r.getMessage())
    assert "checkpoint step 3" in warning and bad in warning
    assert ("truncated" if damage == "truncated array file" else "missing") in warning
    moved = glob.glob(step_dir(workdir, 3) + ".corrupt.*")
    assert len(moved) == 1 and not os.path.exists(step_dir(workdir, 3))
    next(it), next(it)  # the resumed run reads on to where step 3 was, and can save step 3 again
    ckpt = checkpoint.Checkpointer(workdir, ckpt_config())
    ckpt.save(3, tiny_state(3), it)
    ckpt.close()
    assert_restored(*restore_latest(workdir), expected=3)


def test_corrupt_bytes_of_full_length_fall_back_naming_the_array_quietly(workdir, caplog, capfd):
    path = array_file(workdir, 3)
    with open(path, "r+b") as f:  # same size, so only reading the data finds it
        f.seek(os.path.getsize(path) // 3)
        f.write(bytes(os.path.getsize(path) // 3))
    with caplog.at_level(logging.WARNING):
        step, state, it = restore_latest(workdir)
    assert_restored(step, state, it, expected=2)
    warning = next(r.getMessage() for r in caplog.records if "damaged" in r.getMessage())
    assert "checkpoint step 3" in warning and 'restore failed' in warning and '"w/' in warning
    assert "Event loop is closed" not in capfd.readouterr().err


def test_refuse_raises_one_line_error_naming_step_and_file(workdir):
    bad = truncate_array_file(workdir, 3)
    with pytest.raises(checkpoint.CorruptCheckpointError) as e:
        restore_latest(workdir, on_corrupt="refuse")
    message = str(e.value)
    assert "\n" not in message and "step 3" in message and bad in message
    assert os.path.isdir(step_dir(workdir, 3))  # nothing moved


def test_read_only_falls_back_without_moving_anything(workdir):
    os.remove(os.path.join(step_dir(workdir, 3), "state", "_METADATA"))
    ckpt = checkpoint.Checkpointer(workdir, ckpt_config(), read_only=True)
    step, state = ckpt.restore_latest(ABSTRACT)
    ckpt.close()
    assert step == 2 and int(state["step"]) == 2 and os.path.isdir(step_dir(workdir, 3))


def test_no_intact_step_left_is_an_error_listing_each(workdir):
    bad = [truncate_array_file(workdir, step) for step in (1, 2, 3)]
    with pytest.raises(checkpoint.CorruptCheckpointError, match="no intact checkpoint") as e:
        restore_latest(workdir)
    assert "\n" not in str(e.value) and all(path in str(e.value) for path in bad)


def test_other_config_is_not_mistaken_for_damage(workdir):
    ckpt = checkpoint.Checkpointer(workdir, ckpt_config())
    other = {**ABSTRACT, "w": jax.ShapeDtypeStruct((8, 8), jnp.float32, sharding=DEVICE)}
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match=r"w: checkpoint \(32, 64\) vs config \(8, 8\)"):
        ckpt.restore_latest(other)
    ckpt.close()
    assert os.path.isdir(step_dir(workdir, 3))


def test_empty_workdir_has_no_step(tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path), ckpt_config())
    assert ckpt.restore_latest(ABSTRACT) == (None, None)
    ckpt.close()


def test_on_corrupt_is_validated():
    config = config_lib.default_config()
    config.checkpoint.on_corrupt = "ignore"
    with pytest.raises(ValueError, match="checkpoint.on_corrupt = 'ignore'"):
        checkpoint.validate(config)
