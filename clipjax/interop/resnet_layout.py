"""ResNet image tower <-> OpenCLIP `ModifiedResNet` state dict (open_clip modified_resnet.py names), numpy only.

Flat clipjax names ('/'-joined) and their OpenCLIP keys (prefix 'visual.'):
  image/conv{1,2,3}/kernel [kh, kw, in, out]        conv{1,2,3}.weight [out, in, kh, kw]
  image/bn{1,2,3}/scale|bias                        bn{1,2,3}.weight|bias
  batch_stats/image/bn{1,2,3}/mean|var              bn{1,2,3}.running_mean|running_var (+ num_batches_tracked)
  image/layer{s}_{i}/conv{1,2,3}, bn{1,2,3}         layer{s}.{i}.conv{1,2,3}, bn{1,2,3}
  image/layer{s}_{i}/downsample_conv, downsample_bn layer{s}.{i}.downsample.0, downsample.1
  image/attnpool/pos_embedding [HW + 1, C]           attnpool.positional_embedding
  image/attnpool/{query,key,value} [C, heads, d]     attnpool.{q,k,v}_proj [C, C] (torch [out, in])
  image/attnpool/out [heads, d, E]                  attnpool.c_proj [E, C]
BN running statistics travel in the same flat dict under 'batch_stats/'.
"""
from __future__ import annotations

import numpy as np

STATS = "batch_stats/"
PREFIX = "visual."


def _bn_names(img) -> list[tuple[str, str]]:
    """(clipjax name, OpenCLIP name) of every BatchNorm, without the 'image/' and 'visual.' prefixes."""
    names = [(f"bn{i}", f"bn{i}") for i in (1, 2, 3)]
    planes_in = img.width
    for s, blocks in enumerate(img.layers):
        planes = img.width * 2 ** s
        for i in range(blocks):
            ours, theirs = f"layer{s + 1}_{i}/", f"layer{s + 1}.{i}."
            names += [(ours + f"bn{k}", theirs + f"bn{k}") for k in (1, 2, 3)]
            if i == 0 and (s > 0 or planes_in != 4 * planes):
                names.append((ours + "downsample_bn", theirs + "downsample.1"))
        planes_in = 4 * planes
    return names


def _conv_names(img) -> list[tuple[str, str]]:
    """(clipjax, OpenCLIP) names of every conv, from the BN next to each."""
    return [(ours.replace("bn", "conv"), theirs.replace("bn", "conv").replace("downsample.1", "downsample.0"))
            for ours, theirs in _bn_names(img)]


def to_openclip(p: dict[str, np.ndarray], img) -> dict[str, np.ndarray]:
    """Flat clipjax params + 'batch_stats/' entries of a ResNet tower (config.model.image) -> 'visual.*' keys."""
    out = {}
    for ours, theirs in _conv_names(img):
        out[PREFIX + theirs + ".weight"] = p[f"image/{ours}/kernel"].transpose(3, 2, 0, 1)
    for ours, theirs in _bn_names(img):
        t = PREFIX + theirs + "."
        out[t + "weight"], out[t + "bias"] = p[f"image/{ours}/scale"], p[f"image/{ours}/bias"]
        out[t + "running_mean"] = p[f"{STATS}image/{ours}/mean"]
        out[t + "running_var"] = p[f"{STATS}image/{ours}/var"]
        out[t + "num_batches_tracked"] = np.zeros((), np.float32)
    a = PREFIX + "attnpool."
    out[a + "positional_embedding"] = p["image/attnpool/pos_embedding"]
    for ours, theirs in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
        k = p[f"image/attnpool/{ours}/kernel"]                                     # [C, heads, d]
        out[a + theirs + ".weight"] = k.reshape(k.shape[0], -1).T
        out[a + theirs + ".bias"] = p[f"image/attnpool/{ours}/bias"].reshape(-1)
    k = p["image/attnpool/out/kernel"]                                             # [heads, d, E]
    out[a + "c_proj.weight"] = k.reshape(-1, k.shape[-1]).T
    out[a + "c_proj.bias"] = p["image/attnpool/out/bias"]
    return out


def from_openclip(sd: dict[str, np.ndarray], img) -> dict[str, np.ndarray]:
    """Pops the 'visual.*' keys of a ModifiedResNet from `sd` -> flat clipjax params + 'batch_stats/' entries."""
    out = {}
    for ours, theirs in _conv_names(img):
        out[f"image/{ours}/kernel"] = sd.pop(PREFIX + theirs + ".weight").transpose(2, 3, 1, 0)
    for ours, theirs in _bn_names(img):
        t = PREFIX + theirs + "."
        out[f"image/{ours}/scale"], out[f"image/{ours}/bias"] = sd.pop(t + "weight"), sd.pop(t + "bias")
        out[f"{STATS}image/{ours}/mean"] = sd.pop(t + "running_mean")
        out[f"{STATS}image/{ours}/var"] = sd.pop(t + "running_var")
        sd.pop(t + "num_batches_tracked", None)
    a = PREFIX + "attnpool."
    out["image/attnpool/pos_embedding"] = sd.pop(a + "positional_embedding")
    heads = img.num_heads
    for ours, theirs in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
        w = sd.pop(a + theirs + ".weight")
        out[f"image/attnpool/{ours}/kernel"] = w.T.reshape(w.shape[1], heads, -1)
        out[f"image/attnpool/{ours}/bias"] = sd.pop(a + theirs + ".bias").reshape(heads, -1)
    w = sd.pop(a + "c_proj.weight")
    out["image/attnpool/out/kernel"] = w.T.reshape(heads, -1, w.shape[0])
    out["image/attnpool/out/bias"] = sd.pop(a + "c_proj.bias")
    return out
