"""Multi-process start-up on JAX's own distributed runtime, and preemption (SIGTERM) detection.

Processes find each other from explicit flags (`--coordinator_address --num_processes --process_id`), from the
JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID environment (Kubernetes manifests set these), or
from a cluster JAX detects itself (SLURM with more than one task, multi-worker TPU VMs). A single process needs
nothing. A process that stops heart-beating for `heartbeat_timeout_s` makes the others exit with an error.
"""
import os
import signal

import jax
from jax.experimental import multihost_utils


def detected_cluster() -> str | None:
    """Name of a multi-process environment JAX can initialise itself from, else None."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ:
        return "slurm"
    if "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
        return "tpu"
    return None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, local_device_ids: list[int] | None = None,
               num_cpu_devices: int = 0, heartbeat_timeout_s: int = 100, init_timeout_s: int = 300) -> bool:
    """Start the distributed runtime if this is a multi-process run; returns whether it did.
    `num_cpu_devices` > 0 simulates that many CPU devices in this process (tests, local launches)."""
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    num_processes = num_processes or int(os.environ.get("JAX_NUM_PROCESSES", "0")) or None
    if process_id is None and "JAX_PROCESS_ID" in os.environ:
        process_id = int(os.environ["JAX_PROCESS_ID"])
    if num_cpu_devices:
        jax.config.update("jax_num_cpu_devices", num_cpu_devices)
    explicit = coordinator_address is not None and num_processes and num_processes > 1
    if not explicit and detected_cluster() is None:
        _install_sigterm_flag()
        return False
    if jax.config.jax_platforms in ("cpu",) or os.environ.get("JAX_PLATFORMS") == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = dict(local_device_ids=local_device_ids, heartbeat_timeout_seconds=heartbeat_timeout_s,
                  initialization_timeout=init_timeout_s)
    if explicit:
        if process_id is None:
            raise ValueError("--process_id (or JAX_PROCESS_ID) is required with --coordinator_address")
        jax.distributed.initialize(coordinator_address, num_processes, process_id, **kwargs)
    else:
        jax.distributed.initialize(**kwargs)
    return True


_SIGTERM = {"received": False}


def _install_sigterm_flag() -> None:
    """Single process: SIGTERM only sets a flag; the loop checkpoints at the next step boundary and exits."""
    def handler(signum, frame):
        _SIGTERM["received"] = True
    signal.signal(signal.SIGTERM, handler)


def preemption_requested(step: int) -> bool:
    """True (on every process at the same step) once any process has received SIGTERM. Multi-process runs use
    JAX's preemption sync manager, which the distributed runtime registers for SIGTERM."""
    if jax.process_count() > 1:
        return multihost_utils.reached_preemption_sync_point(step)
    return _SIGTERM["received"]
