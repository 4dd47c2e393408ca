"""The two parameter layouts of a transformer tower's blocks, and conversion both ways.

Unrolled (config.model.scan = False): '<tower>/encoder/block{i}/<leaf>' for i in 0 .. depth-1, each of its own
shape. Scanned (scan = True, `nn.scan` in `clipjax.models.layers.Encoder`): '<tower>/encoder/blocks/<leaf>' with
the depth as a leading axis, so block i is `stacked[i]`. The conversion is exact (a stack / an index), so a
checkpoint of either layout starts a run of the other (`clipjax.finetune`), and the weight converters
(`clipjax.interop`) always read and write the unrolled layout.
"""
import re

import jax.numpy as jnp
import numpy as np

from clipjax import pytree

_BLOCK = re.compile(r"^(.*encoder)/block(\d+)/(.+)$")
_STACKED = re.compile(r"^(.*encoder)/blocks/(.+)$")


def is_scanned(params: dict) -> bool:
    """Whether `params` (nested or flat) hold any stacked 'encoder/blocks' subtree."""
    return any(_STACKED.match(p) for p in pytree.flatten(params))


def stack_blocks(flat: dict) -> dict:
    """Flat params, unrolled -> scanned: every '.../encoder/block{i}/x' (i = 0 .. depth-1, none missing) becomes
    '.../encoder/blocks/x' = stack over i. Other paths pass through."""
    out, groups = {}, {}
    for path, value in flat.items():
        m = _BLOCK.match(path)
        if m:
            groups.setdefault((m.group(1), m.group(3)), {})[int(m.group(2))] = value
        else:
            out[path] = value
    for (encoder, leaf), by_index in groups.items():
        if sorted(by_index) != list(range(len(by_index))):
            raise ValueError(f"{encoder}: blocks {sorted(by_index)} of '{leaf}' are not 0 .. depth-1")
        values = [by_index[i] for i in range(len(by_index))]
        xp = np if all(isinstance(v, np.ndarray) for v in values) else jnp
        out[f"{encoder}/blocks/{leaf}"] = xp.stack(values)
    return out


def unstack_blocks(flat: dict) -> dict:
    """Flat params, scanned -> unrolled: '.../encoder/blocks/x' [depth, ...] becomes '.../encoder/block{i}/x'."""
    out = {}
    for path, value in flat.items():
        m = _STACKED.match(path)
        if m:
            for i in range(value.shape[0]):
                out[f"{m.group(1)}/block{i}/{m.group(2)}"] = value[i]
        else:
            out[path] = value
    return out


def to_layout(params: dict, scanned: bool) -> dict:
    """`params` (nested or flat; returned in the same form) in the scanned or unrolled layout."""
    flat = pytree.flatten(params)
    is_flat = not any(hasattr(v, "items") for v in params.values())
    if is_scanned(flat) != scanned:
        flat = stack_blocks(flat) if scanned else unstack_blocks(flat)
    return flat if is_flat else pytree.unflatten(flat)

