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
