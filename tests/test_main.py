"""The command line end to end: `python -m clipjax.main` with the tiny config on the built-in dataset."""
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO


def run_main(*args, check=True):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "clipjax.main", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1200)
    if check and proc.returncode:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.mark.slow
def test_tiny_trains_far_above_chance_then_evaluates(tmp_path):
    workdir = str(tmp_path / "tiny")
    run_main("--config", "configs/tiny.py", "--workdir", workdir, "--config.total_steps=300",
             "--config.evals.every_steps=0", "--config.progress_bar=False")
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    final = [r for r in rows if "eval/zeroshot_top1" in r][-1]
    assert final["step"] == 300
    assert final["eval/zeroshot_colour_top1"] > 0.5       # chance 1/8
    assert final["eval/retrieval_t2i_r5"] > 5 * 5 / 512    # chance 5 of 512 images
    assert any("train/examples_per_sec" in r for r in rows)
    assert os.path.isdir(os.path.join(workdir, "tensorboard")) and os.listdir(os.path.join(workdir, "tensorboard"))
    assert json.load(open(os.path.join(workdir, "config.json")))["total_steps"] == 300
    run_main("--config", "configs/tiny.py", "--workdir", workdir, "--mode", "eval",
             "--config.total_steps=300")
    report = json.load(open(os.path.join(workdir, "eval_300.json")))
    assert report["step"] == 300
    assert report["eval/zeroshot_colour_top1"] == pytest.approx(final["eval/zeroshot_colour_top1"], abs=1e-6)


def test_unknown_key_fails_at_startup_naming_it(tmp_path):
    proc = run_main("--config", "configs/tiny.py", "--workdir", str(tmp_path), "--config.optim.learning_rate=1",
                    check=False)
    assert proc.returncode != 0 and "learning_rate" in proc.stderr


def test_wrong_type_fails_at_startup_naming_it(tmp_path):
    proc = run_main("--config", "configs/tiny.py", "--workdir", str(tmp_path), "--config.batch_size=many",
                    check=False)
    assert proc.returncode != 0 and "batch_size" in proc.stderr


def test_eval_without_checkpoint_fails_clearly(tmp_path):
    proc = run_main("--config", "configs/tiny.py", "--workdir", str(tmp_path), "--mode", "eval", check=False)
    assert proc.returncode != 0 and "no checkpoint" in proc.stderr
