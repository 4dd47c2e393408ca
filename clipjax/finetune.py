"""Multi-stage training: start a run's parameters from another run's checkpoint at other token counts.

CLIPA/FLIP pre-train at a small image size / short text / masked tokens, then fine-tune briefly at full size.
`config.init_from` names the earlier run (its workdir, its `checkpoints` folder, or one step folder); when the new
run's own workdir has no checkpoint yet, `init_params_from` replaces the fresh parameters with the checkpoint's,
adapting those whose shape depends on the token counts. The optimiser state, step and loss state stay fresh.
  - sin-cos image position embeddings are not parameters: the ViT recomputes them for the new grid.
  - a learned image position embedding [g0*g0, W] is resized bilinearly on its 2-D grid to [g1*g1, W].
  - the text position embedding [L0, W] (context_length rows) becomes [L1, W] by `config.init_text_pos`:
    'resize' (linear interpolation along positions), 'extend' (trained rows kept, rows beyond L0 from the fresh
    initialisation; cut to L1 if shorter) or 'reinit' (all rows fresh).
The blocks may be unrolled or scanned in either run (`clipjax.models.scan_layout`).
Any other difference (a parameter missing or another shape) is an error naming the parameters.
"""
import logging
import math
import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from clipjax import pytree
from clipjax.models import scan_layout

TEXT_POS_MODES = ("resize", "extend", "reinit")


def resolve_step_dir(path: str) -> str:
    """The checkpoint step folder `path` names: a workdir (latest step of WORKDIR/checkpoints), a checkpoints
    folder (its latest step), or a step folder (holding the 'state' item)."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(os.path.join(path, "state")):
        return path
    folder = os.path.join(path, "checkpoints") if os.path.isdir(os.path.join(path, "checkpoints")) else path
    steps = sorted(int(d) for d in (os.listdir(folder) if os.path.isdir(folder) else [])
                   if d.isdigit() and os.path.isdir(os.path.join(folder, d, "state")))
    if not steps:
        raise FileNotFoundError(f"config.init_from = {path!r}: expected a workdir, its checkpoints folder or a "
                                "checkpoint step folder holding a saved 'state'; found no checkpoint there")
    return os.path.join(folder, str(steps[-1]))


def resize_image_pos(pos: jax.Array, num_patches: int) -> jax.Array:
    """Learned [g0*g0, W] -> [g1*g1, W] by bilinear resizing of the g0 x g0 grid (identity when g1 == g0)."""
    g0, g1 = math.isqrt(pos.shape[0]), math.isqrt(num_patches)
    if g0 * g0 != pos.shape[0] or g1 * g1 != num_patches:
        raise ValueError(f"image position embedding of {pos.shape[0]} -> {num_patches} rows: expected square grids")
    grid = pos.reshape(g0, g0, pos.shape[-1]).astype(jnp.float32)
    return jax.image.resize(grid, (g1, g1, pos.shape[-1]), "bilinear").reshape(g1 * g1, -1).astype(pos.dtype)


def resize_text_pos(pos: jax.Array, fresh: jax.Array, mode: str) -> jax.Array:
    """Text position embedding [L0, W] -> fresh.shape [L1, W] by `mode` (see module docstring)."""
    if mode == "resize":
        return jax.image.resize(pos.astype(jnp.float32), fresh.shape, "linear").astype(fresh.dtype)
    if mode == "extend":
        n = min(pos.shape[0], fresh.shape[0])
        return jnp.concatenate([pos[:n], fresh[n:]], axis=0).astype(fresh.dtype)
    if mode == "reinit":
        return fresh
    raise ValueError(f"config.init_text_pos = {mode!r}: expected one of {TEXT_POS_MODES}")


def adapt_params(loaded: dict, fresh: dict, text_pos: str = "resize") -> dict:
    """Checkpoint params `loaded` fitted to the new model's `fresh` params (same tree; only position embeddings
    may differ in shape). Returns a tree shaped like `fresh`."""
    b = pytree.flatten(fresh)
    a = scan_layout.to_layout(pytree.flatten(loaded), scan_layout.is_scanned(b))  # either block layout, exactly
    if set(a) != set(b):
        raise ValueError(f"config.init_from: checkpoint params differ from this model's: missing in checkpoint "
                         f"{sorted(set(b) - set(a))}, not in model {sorted(set(a) - set(b))}")
    out, bad = {}, []
    for path, new in b.items():
        old = a[path]
        if old.shape == new.shape:
            out[path] = old
        elif path == "image/pos_embedding":
            out[path] = resize_image_pos(old, new.shape[0])
        elif path == "image/attnpool/pos_embedding":  # ResNet: the mean token's row, then the grid
            out[path] = jnp.concatenate([old[:1], resize_image_pos(old[1:], new.shape[0] - 1)], axis=0)
        elif path == "text/pos_embedding" and old.shape[1:] == new.shape[1:]:
            out[path] = resize_text_pos(old, new, text_pos)
        else:
            bad.append(f"{path}: checkpoint {old.shape} vs model {new.shape}")
    if bad:
        raise ValueError("config.init_from: parameters of another shape (only position embeddings may differ):\n  "
                         + "\n  ".join(bad))
    return pytree.unflatten(out)


def load_params(step_dir: str, fresh_params: dict, mesh: jax.sharding.Mesh, groups=None) -> dict:
    """The 'params' subtree of the train state saved in `step_dir` (only its top-level `groups` when given):
    leaves whose shape matches `fresh_params` are restored straight into its shardings, the others (position
    embeddings of another size) replicated."""
    ckptr = ocp.PyTreeCheckpointer()
    state_dir = os.path.join(step_dir, "state")
    meta = ckptr.metadata(state_dir)
    meta = getattr(meta, "item_metadata", meta)
    meta = getattr(meta, "tree", meta)
    if "params" not in meta:
        raise ValueError(f"config.init_from: {state_dir} holds no 'params' (keys {sorted(meta)})")
    fresh = pytree.flatten(fresh_params)
    saved = {p: m for p, m in pytree.flatten(dict(meta["params"])).items()
             if groups is None or p.split("/")[0] in groups}
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def target(path):
        m = saved[path]
        f = fresh.get(path)
        sharding = f.sharding if f is not None and tuple(f.shape) == tuple(m.shape) else replicated
        return jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=sharding)

    item = pytree.unflatten({p: target(p) for p in saved})
    args = jax.tree.map(lambda s: ocp.ArrayRestoreArgs(sharding=s.sharding, global_shape=s.shape, dtype=s.dtype), item)
    restored = ckptr.restore(state_dir, args=ocp.args.PyTreeRestore(
        item={"params": item}, restore_args={"params": args}, partial_restore=True))
    return restored["params"]


def init_params_from(path: str, fresh_params: dict, mesh: jax.sharding.Mesh, text_pos: str = "resize",
                     keys: str = "") -> dict:
    """Params of the checkpoint `path` names, adapted to `fresh_params` and placed in their shardings. `keys`
    (config.init_from_keys, comma-separated top-level groups such as 'image') takes only those groups; the other
    parameters stay fresh (LLM2CLIP: a converted image tower next to a new text adapter)."""
    step_dir = resolve_step_dir(path)
    groups = [k.strip() for k in keys.split(",") if k.strip()] or list(fresh_params)
    unknown = sorted(set(groups) - set(fresh_params))
    if unknown:
        raise ValueError(f"config.init_from_keys = {keys!r}: {unknown} are not parameter groups of this model "
                         f"({sorted(fresh_params)})")
    wanted = {k: fresh_params[k] for k in groups}
    loaded = load_params(step_dir, wanted, mesh, groups)
    missing = sorted(set(groups) - set(loaded))
    if missing:
        raise ValueError(f"config.init_from: {step_dir} holds no parameter groups {missing}")
    params = adapt_params({k: loaded[k] for k in groups}, wanted, text_pos)
    params = jax.tree.map(lambda x, f: jax.device_put(x, f.sharding), params, wanted)
    logging.info("initialised parameters %s from %s", groups, step_dir)
    return {**fresh_params, **params}


def init_batch_stats_from(path: str, fresh_stats: dict, mesh: jax.sharding.Mesh) -> dict:
    """A ResNet's BN running statistics from the checkpoint or converted folder `path` names (its 'batch_stats'),
    in the shardings of `fresh_stats`; fails naming `path` when it has none or they do not fit."""
    from clipjax.interop import files
    flat = {k[len("batch_stats/"):]: v for k, v in files.restore_params(resolve_step_dir(path)).items()
            if k.startswith("batch_stats/")}
    want = pytree.flatten(fresh_stats)
    if set(flat) != set(want) or any(tuple(flat[k].shape) != tuple(want[k].shape) for k in want):
        raise ValueError(f"config.init_from: {path} holds no batch norm statistics matching this model "
                         f"({len(flat)} stored, {len(want)} needed); a ResNet needs its running statistics")
    return pytree.unflatten({k: jax.device_put(flat[k].astype(want[k].dtype), want[k].sharding) for k in want})
