"""Start-up validation of a whole config: the schema (`config.check_keys`), then each subsystem's own section.

A wrong value fails here, before anything is built, with a message that names the key and what is expected.
"""
import ml_collections

from clipjax import checkpoint, compile_cache, config as config_lib, losses, optim, sharding, token_reduction
from clipjax.data import pipeline
from clipjax.evaluate import suite
from clipjax.models import clip


def validate(config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
    """Check every section; with `num_devices`, also that the batch splits over the mesh's data-parallel axes."""
    config_lib.check_keys(config)
    require = lambda ok, key, what: config_lib.require(ok, config, key, what)  # noqa: E731
    require(config.batch_size > 0, "batch_size", "a positive integer")
    require(config_lib.resolve_total_steps(config) > 0, "total_steps", "a positive integer")
    for check in (optim.validate, pipeline.validate, clip.validate, token_reduction.validate, losses.validate,
                  checkpoint.validate, suite.validate, compile_cache.validate):
        check(config)
    if num_devices is not None:
        data, fsdp, _ = sharding.mesh_shape(config.mesh, num_devices)
        require(config.batch_size % (data * fsdp) == 0, "batch_size",
                f"a multiple of the data-parallel size {data * fsdp} (mesh data={data} x fsdp={fsdp} of "
                f"{num_devices} devices)")
