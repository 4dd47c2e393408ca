"""Train step and loop on 8 simulated devices: sharding equivalence, resume, bad input."""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clipjax import sharding, train
from clipjax.data import pipeline
from tests.helpers import load_config


def small_config(**overrides):
    """The tiny config shrunk further so each compile takes seconds."""
    base = dict(total_steps=20, batch_size=16, data__image_size=16, data__text_length=8, data__size=256,
                model__embed_dim=32, log_every_steps=1, evals__every_steps=0, evals__num_examples=32,
                evals__batch_size=32, checkpoint__every_steps=10, progress_bar=False, optim__warmup_steps=2)
    base.update(overrides)
    config = load_config("tiny.py", **base)
    config.model.image.image_size = config.data.image_size
    config.model.text.context_length = config.data.text_length
    return config


def run_steps(config, devices, n):
    trainer = train.Trainer(config, sharding.make_mesh(config.mesh, devices))
    it, size = pipeline.make_train_iterator(config, 0, 1)
    state = trainer.init_state(size)
    losses = []
    for _ in range(n):
        state, m = trainer.step_fn(state, sharding.global_batch(next(it), trainer.mesh))
        losses.append(float(m["train/loss"]))
    return trainer, state, np.array(losses)


def test_same_trajectory_single_device_data_parallel_and_fsdp():
    devices = jax.devices()
    _, _, ref = run_steps(small_config(mesh__data=1), devices[:1], 5)
    _, _, dp = run_steps(small_config(mesh__data=8), devices, 5)
    trainer, state, fsdp = run_steps(small_config(mesh__data=1, mesh__fsdp=8), devices, 5)
    assert ref[-1] < ref[0]  # it trains
    np.testing.assert_allclose(dp, ref, rtol=2e-5)
    np.testing.assert_allclose(fsdp, ref, rtol=2e-5)
    # FSDP really shards parameters and the optimiser's moments over the 8 devices.
    kernels = [x for p, x in jax.tree_util.tree_flatten_with_path(state.params)[0] if "kernel" in str(p)]
    assert all("fsdp" in str(k.sharding.spec) for k in kernels)
    per_device = sum(s.data.nbytes for x in jax.tree.leaves(state.opt_state) for s in x.addressable_shards
                     if s.device == devices[0])
    total = sum(x.nbytes for x in jax.tree.leaves(state.opt_state))
    assert per_device < total / 4


def _read_metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_resume_is_exact(tmp_path):
    config = small_config()
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    train.train_and_evaluate(config, straight)
    train.train_and_evaluate(config, split, stop_at=10)
    assert [r["step"] for r in _read_metrics(split) if "train/loss" in r][-1] == 10
    train.train_and_evaluate(config, split)
    losses = lambda d: {r["step"]: r["train/loss"] for r in _read_metrics(d) if "train/loss" in r}
    a, b = losses(straight), losses(split)
    assert sorted(a) == sorted(b) == list(range(1, 21))
    np.testing.assert_allclose([b[s] for s in range(11, 21)], [a[s] for s in range(11, 21)], rtol=1e-6)
    trainer = train.Trainer(config)
    params = []
    for d in (straight, split):
        from clipjax import checkpoint
        state = trainer.init_state(config.data.size)
        ckpt = checkpoint.Checkpointer(d, config.checkpoint)
        params.append(ckpt.restore(20, trainer.abstract).params)
        ckpt.close()
    for x, y in zip(jax.tree.leaves(params[0]), jax.tree.leaves(params[1])):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
    final = [r for r in _read_metrics(straight) if "eval/zeroshot_top1" in r]
    assert final and final[-1]["step"] == 20


def test_workdir_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        train.train_and_evaluate(small_config(), str(path))


def test_incompatible_checkpoint_names_parameters(tmp_path):
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(small_config(total_steps=2, checkpoint__every_steps=2), workdir)
    with pytest.raises(ValueError, match=r"does not match this config.*embed|proj|kernel"):
        train.train_and_evaluate(small_config(total_steps=4, model__embed_dim=16), workdir)


def test_nonfinite_updates_are_skipped_then_stop(tmp_path):
    config = small_config(total_steps=10, max_nonfinite_in_row=3, model__logit_scale_init=float("nan"))
    with pytest.raises(train.NonFiniteLossError, match="3 consecutive non-finite"):
        train.train_and_evaluate(config, str(tmp_path / "run"))
    rows = _read_metrics(str(tmp_path / "run"))
    assert [r["train/skipped"] for r in rows] == [1, 1, 1]
    assert rows[-1]["train/skipped_total"] == 3


def test_nonfinite_is_checked_every_step_and_names_the_real_checkpoint(tmp_path, monkeypatch):
    """Non-finite losses from step 5 on, logging only every 100 steps: the run stops right after the third one
    and names the checkpoint written before the streak (step 4), not one written during it (step 6)."""
    make_loss = train.losses.make_loss

    def poisoned(config, mesh):
        fn = make_loss(config, mesh)

        def loss(out, batch, loss_state, step):
            value, metrics, loss_state = fn(out, batch, loss_state, step)
            return jnp.where(step >= 4, jnp.nan, value), metrics, loss_state
        return loss

    monkeypatch.setattr(train.losses, "make_loss", poisoned)
    config = small_config(total_steps=20, max_nonfinite_in_row=3, log_every_steps=100, checkpoint__every_steps=2)
    workdir = str(tmp_path / "run")
    with pytest.raises(train.NonFiniteLossError) as e:
        train.train_and_evaluate(config, workdir)
    assert "step 7: 3 consecutive non-finite" in str(e.value) and "since step 5" in str(e.value)
    assert f"step 4 ({os.path.join(workdir, 'checkpoints', '4')})" in str(e.value)


def test_nonfinite_stop_without_any_checkpoint_says_so(tmp_path):
    config = small_config(total_steps=10, max_nonfinite_in_row=2, model__logit_scale_init=float("nan"))
    with pytest.raises(train.NonFiniteLossError, match="no checkpoint was written before them"):
        train.train_and_evaluate(config, str(tmp_path / "run"))


def test_resume_says_so_and_metrics_do_not_repeat_steps(tmp_path, capsys):
    """A run killed after step 8 whose last checkpoint is step 5: the resumed run prints where it resumed and
    metrics.jsonl ends with each step exactly once."""
    config = small_config(total_steps=12, checkpoint__every_steps=5)
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(config, workdir, stop_at=8)
    shutil.rmtree(os.path.join(workdir, "checkpoints", "8"))  # as if killed before that checkpoint was written
    train.train_and_evaluate(config, workdir)
    assert f"resumed from step 5: {os.path.join(workdir, 'checkpoints', '5')}" in capsys.readouterr().out
    steps = [r["step"] for r in _read_metrics(workdir) if "train/loss" in r]
    assert steps == list(range(1, 13))


def test_resume_and_eval_restore_into_abstract_state(tmp_path, monkeypatch):
    """Resuming and evaluating never build a fresh train state (a model that only fits sharded must restore)."""
    config = small_config(total_steps=4, checkpoint__every_steps=2)
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(config, workdir, stop_at=2)

    def no_fresh_state(self, data_size):
        raise AssertionError("built a fresh state")
    monkeypatch.setattr(train.Trainer, "init_state", no_fresh_state)
    train.train_and_evaluate(config, workdir)
    assert "eval/zeroshot_top1" in train.evaluate_checkpoint(config, workdir)


def test_skipped_step_leaves_state_unchanged():
    config = small_config(model__logit_scale_init=float("nan"))
    trainer = train.Trainer(config)
    it, size = pipeline.make_train_iterator(config, 0, 1)
    state = trainer.init_state(size)
    before = jax.device_get(state.params)
    state, m = trainer.step_fn(state, sharding.global_batch(next(it), trainer.mesh))
    assert int(m["train/skipped"]) == 1 and int(state.nonfinite) == 1 and int(state.step) == 1
    for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(jax.device_get(state.params))):
        np.testing.assert_array_equal(x, y)
