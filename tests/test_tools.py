"""Command-line tools run end to end on tiny shapes."""
import os
import subprocess
import sys

from tests.helpers import REPO


def test_benchmark_prints_step_and_baseline_ratio():
    proc = subprocess.run(
        [sys.executable, "-m", "clipjax.tools.benchmark", "--config", "configs/tiny.py", "--baseline",
         "--steps", "1", "--repeats", "1", "--config.batch_size=8", "--config.data.image_size=32",
         "--config.model.image.image_size=32"],
        cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "clipjax step: compile" in proc.stdout and "examples/s" in proc.stdout
    ratio = float(proc.stdout.split("ratio clipjax/minimal examples/s:")[1].split()[0])
    assert ratio > 0


def test_benchmark_token_settings_rows_carry_the_flop_ratios():
    """Interleaved token sweep on the tiny model: one row per setting; resolution 32 quarters the image tokens."""
    proc = subprocess.run(
        [sys.executable, "-m", "clipjax.tools.benchmark", "--config", "configs/tiny.py", "--steps", "1", "--repeats",
         "2", "--config.batch_size=8", "--token_settings=full,res=32,text=8"],
        cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()
            if line.split() and line.split()[0] in ("full", "res=32", "text=8")}
    assert rows["full"][:2] == ["65", "16"] and rows["res=32"][:2] == ["17", "16"] and rows["text=8"][:2] == ["65", "8"]
    assert float(rows["full"][3]) == 1.0 and float(rows["res=32"][4]) > 2 and float(rows["text=8"][4]) > 1
    assert all(float(r[3]) > 0 for r in rows.values())


def test_benchmark_times_a_resnet_with_its_batch_statistics():
    """A ResNet config (the Scaling-down RN twin at 32 px): the trainer's step and the minimal step both carry BN."""
    proc = subprocess.run(
        [sys.executable, "-m", "clipjax.tools.benchmark", "--config", "configs/scaling_down/tiny_tower_resnet_small.py",
         "--baseline", "--steps", "1", "--repeats", "1", "--config.batch_size=8", "--config.data.image_size=32",
         "--config.model.image.image_size=32"],
        cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "32px/resnet" in proc.stdout and "clipjax step: compile" in proc.stdout
    assert float(proc.stdout.split("ratio clipjax/minimal examples/s:")[1].split()[0]) > 0
