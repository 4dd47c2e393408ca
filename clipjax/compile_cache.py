"""JAX's persistent compilation cache in a configurable folder, so a restarted or resumed run loads its compiled
train and eval steps from disk instead of compiling them again (config.compile_cache).

Entries are keyed by the computation, its shardings, the devices and the JAX/XLA versions, so one folder can be
shared by runs of different configs and by every host of a run (a shared file system).
"""
import os

import jax
import ml_collections
from jax.experimental.compilation_cache import compilation_cache

from clipjax import config as config_lib


def enable(cfg: ml_collections.ConfigDict) -> None:
    """Use `cfg.dir` ('' = off) as the cache, storing programs that took >= cfg.min_compile_secs to compile."""
    if not cfg.dir:
        return
    directory = os.path.abspath(os.path.expanduser(cfg.dir))
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(cfg.min_compile_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if jax.config.jax_compilation_cache_dir != directory:
        jax.config.update("jax_compilation_cache_dir", directory)
        compilation_cache.reset_cache()  # a cache opened earlier in this process would keep its old folder


def validate(config: ml_collections.ConfigDict) -> None:
    config_lib.require(config.compile_cache.min_compile_secs >= 0, config, "compile_cache.min_compile_secs",
                       "seconds >= 0")
