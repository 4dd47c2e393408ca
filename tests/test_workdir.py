"""The workdir lock: a second run refuses to start naming the holder; a killed holder does not block; records of
other hosts count while their heartbeat is recent; two real `clipjax.main` runs on one workdir."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from clipjax import workdir as workdir_lib
from tests.helpers import REPO


def record(path) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def wait_for(condition, proc, timeout=300):
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"the process ended early:\n{proc.communicate()[1][-3000:]}"
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def test_second_lock_fails_naming_the_holder_until_released(tmp_path):
    d = str(tmp_path)
    lock = workdir_lib.acquire_lock(d, is_main=True)
    with pytest.raises(workdir_lib.WorkdirLockedError) as e:
        workdir_lib.acquire_lock(d, is_main=True)
    message = str(e.value)
    assert repr(d) in message and f"host {socket.gethostname()}, pid {os.getpid()}" in message
    assert os.path.join(d, workdir_lib.LOCK_NAME) in message  # what to delete if the holder is gone
    workdir_lib.acquire_lock(d, is_main=False).release()  # other processes of the run take nothing
    lock.release()
    with workdir_lib.acquire_lock(d, is_main=True):
        pass


def test_lock_of_a_sigkilled_process_does_not_block(tmp_path):
    d = str(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from clipjax import workdir; workdir.acquire_lock({d!r}, True); "
                               "import time; time.sleep(600)"], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (record(os.path.join(d, workdir_lib.LOCK_NAME)) or {}).get("pid") == holder.pid, holder)
        with pytest.raises(workdir_lib.WorkdirLockedError, match=f"pid {holder.pid}"):
            workdir_lib.acquire_lock(d, is_main=True)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert record(os.path.join(d, workdir_lib.LOCK_NAME))["pid"] == holder.pid  # its record is left behind
    workdir_lib.acquire_lock(d, is_main=True).release()


def test_record_of_another_host_counts_while_its_heartbeat_is_recent(tmp_path):
    d = str(tmp_path)
    path = os.path.join(d, workdir_lib.LOCK_NAME)
    with open(path, "w") as f:  # written by a run on another host (flock may not reach across hosts)
        json.dump({"host": "node-17", "pid": 4242, "started": "2030-01-01T00:00:00+00:00"}, f)
    with pytest.raises(workdir_lib.WorkdirLockedError, match="host node-17, pid 4242"):
        workdir_lib.acquire_lock(d, is_main=True)
    old = time.time() - workdir_lib.STALE_AFTER_S - 10
    os.utime(path, (old, old))  # no heartbeat for longer than STALE_AFTER_S: that run is gone
    workdir_lib.acquire_lock(d, is_main=True).release()


def test_holder_keeps_its_record_fresh(tmp_path, monkeypatch):
    monkeypatch.setattr(workdir_lib, "HEARTBEAT_S", 0.05)
    path = os.path.join(tmp_path, workdir_lib.LOCK_NAME)
    with workdir_lib.acquire_lock(str(tmp_path), is_main=True):
        os.utime(path, (0, 0))
        time.sleep(0.5)
        assert time.time() - os.path.getmtime(path) < 5
    assert os.path.getsize(path) == 0  # released: the record is cleared


def test_without_flock_a_dead_pid_on_this_host_is_stale(tmp_path, monkeypatch):
    def no_flock(fd, op):
        raise OSError(37, "No locks available")
    monkeypatch.setattr(workdir_lib.fcntl, "flock", no_flock)
    d = str(tmp_path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = os.path.join(d, workdir_lib.LOCK_NAME)
    for pid, alive in ((os.getppid(), True), (int(gone.stdout), False)):
        with open(path, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": pid, "started": "-"}, f)
        if alive:
            with pytest.raises(workdir_lib.WorkdirLockedError, match=f"pid {pid}"):
                workdir_lib.acquire_lock(d, is_main=True)
        else:
            workdir_lib.acquire_lock(d, is_main=True).release()


@pytest.mark.slow
def test_two_main_runs_on_one_workdir_the_second_refuses(tmp_path):
    small = ["--config", "configs/tiny.py", "--workdir", str(tmp_path), "--config.batch_size=16",
             "--config.data.image_size=16", "--config.model.image.image_size=16", "--config.model.image.patch_size=4",
             "--config.data.text_length=8", "--config.model.text.context_length=8", "--config.evals.every_steps=0",
             "--config.total_steps=100000", "--config.checkpoint.every_steps=100000", "--config.progress_bar=False",
             "--config.log_every_steps=1"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    first = subprocess.Popen([sys.executable, "-m", "clipjax.main", *small], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    short = ["--config.total_steps=2", "--config.optim.warmup_steps=1", "--config.evals.num_examples=32"]
    try:
        wait_for(lambda: os.path.exists(tmp_path / "metrics.jsonl"), first)  # the first run is training
        second = subprocess.run([sys.executable, "-m", "clipjax.main", *small, *short], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=600)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert second.returncode != 0
    assert "is in use by another run" in second.stderr and f"pid {first.pid}" in second.stderr
