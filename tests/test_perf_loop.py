"""The train loop's input double buffering (clipjax.data.device_prefetch) and the persistent compilation cache
(clipjax.compile_cache), on the real pipeline and real processes."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from clipjax import config as config_lib, validation
from clipjax.data import pipeline
from clipjax.data.device_prefetch import DevicePrefetch
from tests.test_train import small_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("depth", [1, 3])
def test_prefetch_state_is_that_of_the_batches_handed_out(depth):
    """Batches are drawn `depth` ahead, yet the saved state resumes at the first batch not handed out."""
    config = small_config(batch_size=8, data__size=64)
    raw, _ = pipeline.make_train_iterator(config, 0, 1)
    put_calls = []
    batches = DevicePrefetch(raw, lambda b: put_calls.append(1) or b, depth)
    taken = [next(batches) for _ in range(2)]
    assert len(put_calls) == 2 + depth - 1  # the batches waiting on device were already put
    state = json.loads(batches.get_state())
    resumed, _ = pipeline.make_train_iterator(config, 0, 1)
    resumed.set_state(state)
    expected = next(batches)
    got = next(resumed)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    assert not np.array_equal(taken[1]["image"], expected["image"])
    assert batches.skipped == raw.skipped  # attributes of the wrapped iterator pass through


def test_prefetch_of_a_finite_iterator_hands_out_every_batch():
    class Finite:
        def __init__(self):
            self.i = 0

        def __next__(self):
            if self.i == 5:
                raise StopIteration
            self.i += 1
            return self.i

        def get_state(self):
            return {"i": self.i}

    batches = DevicePrefetch(Finite(), lambda b: b * 10, 2)
    assert list(batches) == [10, 20, 30, 40, 50] and json.loads(batches.get_state()) == {"i": 5}
    with pytest.raises(ValueError, match="prefetch depth 0"):
        DevicePrefetch(Finite(), lambda b: b, 0)


def test_bad_prefetch_and_cache_keys_are_named():
    for key, value in (("data.device_prefetch", 0), ("compile_cache.min_compile_secs", -1.0)):
        config = config_lib.tiny_config()
        section, leaf = key.split(".")
        config[section][leaf] = value
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            validation.validate(config, 1)


_RUN = """
import json, sys
import jax
from jax import monitoring
events = []
monitoring.register_event_listener(lambda name, **kw: events.append(name))
from clipjax import train
from tests.test_train import small_config
config = small_config(total_steps=2, checkpoint__every_steps=2)
config.compile_cache.dir = sys.argv[1]
config.compile_cache.min_compile_secs = 0.0
train.train_and_evaluate(config, sys.argv[2])
print(json.dumps({"hits": events.count("/jax/compilation_cache/cache_hits"),
                  "misses": events.count("/jax/compilation_cache/cache_misses")}))
"""


def test_restarted_run_loads_its_programs_from_the_cache(tmp_path):
    """Two processes train the same config in fresh workdirs: the first fills the cache folder, the second compiles
    nothing that the first stored (every lookup hits)."""
    cache = str(tmp_path / "cache")

    def run(workdir):
        out = subprocess.run([sys.executable, "-c", _RUN, cache, str(tmp_path / workdir)], cwd=REPO, check=True,
                             capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}).stdout
        return json.loads(out.strip().splitlines()[-1])

    first = run("a")
    entries = set(os.listdir(cache))
    assert first["misses"] > 0 and entries, first
    second = run("b")
    assert second["misses"] == 0 and second["hits"] == first["hits"] + first["misses"], (first, second)
    assert set(os.listdir(cache)) == entries


def test_gpu_check_runs_its_parts_on_cpu_and_records_failures(tmp_path):
    """--tiny runs the one-shot GPU script end to end on CPU; an unknown part is refused by name."""
    out = str(tmp_path / "check.json")
    cmd = [sys.executable, "-m", "clipjax.tools.gpu_check", "--tiny", "--parts", "b16,llm", "--steps", "1",
           "--repeats", "1", "--out", out]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    with open(out) as f:
        report = json.load(f)
    assert report["tiny"] and set(report["parts"]) == {"b16", "llm"}
    b16 = report["parts"]["b16"]
    assert b16["unrolled"]["examples_per_s"] > 0 and b16["scan"]["examples_per_s"] > 0
    assert b16["scan"]["gflop_per_step"] == b16["unrolled"]["gflop_per_step"] > 0  # analytic, whatever the layout
    assert report["parts"]["llm"]["captions_per_s"] > 0
    bad = subprocess.run(cmd[:5] + ["b16,warp"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode != 0 and "warp" in bad.stderr


@pytest.mark.parametrize("imports", ["jax, clipjax", "clipjax, jax"])
def test_importing_clipjax_turns_on_the_threefry_gpu_kernel(imports):
    """A fresh process, JAX imported before or after clipjax: `import clipjax` alone sets JAX's flag (GPU init
    compiles in seconds, not minutes)."""
    code = f"import {imports}; print(jax.config.jax_threefry_gpu_kernel_lowering)"
    env = {k: v for k, v in os.environ.items() if k != "JAX_THREEFRY_GPU_KERNEL_LOWERING"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "True"
