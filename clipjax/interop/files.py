"""Reading and writing weights: PyTorch state dicts (safetensors without torch; .pt/.bin with torch) and clipjax
parameter checkpoints (orbax), each with its model config.

A converted clipjax model is a folder holding `model.json` (the `config.model` fields) and `state/` (an orbax
checkpoint of {'params': ...}); `config.init_from` accepts that folder as a checkpoint step folder
(clipjax.finetune), and `configs/from_converted.py:FOLDER` builds a config around it.
"""
from __future__ import annotations

import json
import os

import ml_collections
import numpy as np

from clipjax import pytree

STATE_DICT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "model.safetensors",
                    "open_clip_pytorch_model.bin", "pytorch_model.bin", "open_clip_pytorch_model.pth")


def find_weights_file(path: str) -> str:
    """`path` itself when it is a file, else the first known weights file inside the folder `path`."""
    if os.path.isfile(path):
        return path
    for name in STATE_DICT_NAMES:
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    raise FileNotFoundError(f"--input {path!r}: no weights file (expected a file or a folder with one of "
                            f"{STATE_DICT_NAMES})")


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    """A PyTorch state dict as float32 numpy arrays. safetensors files need no torch; pickled checkpoints (.pt,
    .pth, .bin) are read with `torch.load(weights_only=True)`, unwrapping 'state_dict' and a 'module.' prefix."""
    path = find_weights_file(path)
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file
        return {k: np.asarray(v, np.float32) for k, v in load_file(path).items()}
    torch = _torch()
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    out = {}
    for k, v in obj.items():
        if hasattr(v, "detach"):
            out[k[7:] if k.startswith("module.") else k] = v.detach().float().cpu().numpy()
    return out


def save_state_dict(state_dict: dict[str, np.ndarray], path: str) -> None:
    """Write float32 tensors to `path`: safetensors by extension '.safetensors' (no torch needed), else torch.save."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".safetensors"):
        from safetensors.numpy import save_file
        save_file({k: np.array(v, np.float32, order="C") for k, v in state_dict.items()}, path)
        return
    torch = _torch()
    torch.save({k: torch.from_numpy(np.array(v, np.float32)) for k, v in state_dict.items()}, path)


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("reading or writing .pt/.bin checkpoints needs PyTorch: pip install -e '.[interop]' "
                          "(or use .safetensors files, which need no torch)") from None
    return torch


# ---------------------------------------------------------------------------------------------- clipjax side


def save_clipjax(folder: str, params: dict, model: ml_collections.ConfigDict) -> None:
    """Write `folder/model.json` and `folder/state` ({'params': params}, orbax; a ResNet's flat 'batch_stats/...'
    entries go to {'batch_stats': ...} beside them, as in a training checkpoint's state)."""
    import orbax.checkpoint as ocp
    folder = os.path.abspath(folder)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "model.json"), "w") as f:
        f.write(model.to_json(indent=2, sort_keys=True))
    tree = pytree.unflatten({k: np.asarray(v, np.float32) for k, v in pytree.flatten(params).items()})
    item = {"params": tree}
    if "batch_stats" in tree:
        item["batch_stats"] = tree.pop("batch_stats")
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(os.path.join(folder, "state"), item, force=True)
    ckptr.wait_until_finished()


TRAIN_ONLY_PREFIXES = ("ssl_head/",)  # params of training-only branches (SLIP's SimCLR head), never exported


def load_clipjax(path: str) -> tuple[dict[str, np.ndarray], ml_collections.ConfigDict]:
    """(flat float32 params, `config.model`) from a converted folder, a training workdir (latest checkpoint and its
    config.json), its checkpoints folder or one step folder; blocks always unrolled (`model.scan` False)."""
    from clipjax import finetune
    from clipjax.models import scan_layout
    step_dir = finetune.resolve_step_dir(path)
    model = _find_model_config(path, step_dir)
    params = restore_params(step_dir)
    params = {k: v for k, v in params.items() if not k.startswith(TRAIN_ONLY_PREFIXES)}  # e.g. SLIP's head
    if scan_layout.is_scanned(params):  # a run with config.model.scan: converters use the unrolled blocks
        params = scan_layout.unstack_blocks(params)
        model.scan = False
    return params, model


def restore_params(step_dir: str) -> dict[str, np.ndarray]:
    """The 'params' subtree of the orbax item `step_dir/state`, as flat numpy arrays (no devices involved), plus
    its 'batch_stats' (a ResNet's BN running statistics) as flat 'batch_stats/...' entries when it has any."""
    import orbax.checkpoint as ocp
    state_dir = os.path.join(step_dir, "state")
    ckptr = ocp.PyTreeCheckpointer()
    meta = ckptr.metadata(state_dir)
    meta = getattr(meta, "item_metadata", meta)
    meta = getattr(meta, "tree", meta)
    if "params" not in meta:
        raise ValueError(f"{state_dir} holds no 'params'")
    import jax
    groups = ["params"] + (["batch_stats"] if meta.get("batch_stats") else [])
    item = {g: jax.tree.map(lambda m: np.zeros(tuple(m.shape), np.float32), dict(meta[g])) for g in groups}
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
    restored = ckptr.restore(state_dir, args=ocp.args.PyTreeRestore(item=item, restore_args=args,
                                                                    partial_restore=True))
    flat = pytree.flatten({**restored["params"], **({"batch_stats": restored["batch_stats"]}
                                                    if "batch_stats" in restored else {})})
    return {k: np.asarray(v, np.float32) for k, v in flat.items()}


def _find_model_config(path: str, step_dir: str) -> ml_collections.ConfigDict:
    """model.json next to the state (a converted folder) or the run's config.json (workdir above checkpoints/)."""
    candidates = [os.path.join(step_dir, "model.json")]
    folder = os.path.abspath(step_dir)
    for _ in range(3):
        candidates.append(os.path.join(folder, "config.json"))
        folder = os.path.dirname(folder)
    candidates.insert(1, os.path.join(os.path.abspath(path), "config.json"))
    for c in candidates:
        if os.path.isfile(c):
            with open(c) as f:
                data = json.load(f)
            return ml_collections.ConfigDict(data.get("model", data) if "image" not in data else data)
    raise FileNotFoundError(f"no model.json or config.json found for {path!r} (looked at {candidates})")
