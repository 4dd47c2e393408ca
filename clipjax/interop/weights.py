"""Parameter mapping between clipjax and the two PyTorch CLIP layouts: OpenCLIP (`open_clip.CLIP` state dict) and
Hugging Face (`transformers.CLIPModel` state dict). Pure numpy: no torch needed to convert.

clipjax params are handled flat, '/'-joined ('image/encoder/block0/attn/query/kernel' -> array). Per block:
  clipjax            OpenCLIP (resblocks.i.)          Hugging Face (layers.i.)
  ln1, ln2           ln_1, ln_2                       layer_norm1, layer_norm2
  attn/query|key|value  attn.in_proj_weight/bias (q;k;v)  self_attn.q_proj|k_proj|v_proj
  attn/out           attn.out_proj                    self_attn.out_proj
  mlp/fc1, mlp/fc2   mlp.c_fc, mlp.c_proj             mlp.fc1, mlp.fc2
Kernels are [in, out] (attention [in, heads, head_dim] / [heads, head_dim, out]); torch Linear weights are [out, in].

The image stem differs in two ways that are folded exactly (the embeddings are unchanged):
  - OpenCLIP/HF add position row 0 to the class token; clipjax's CLS has no position embedding:
    import: cls = class_embedding + pos[0], pos = pos[1:]; export: class_embedding = cls, pos[0] = 0.
  - clipjax's patch convolution has a bias, theirs has none: export adds the bias to every patch position row;
    import sets the bias to 0. So clipjax -> torch -> clipjax returns every parameter unchanged when the patch bias
    is 0 (any imported or freshly initialised model); otherwise the bias moves into the position embedding.
A 'sincos2d' position embedding (not a parameter in clipjax) is exported as the table it computes; on import it
becomes a learned ('learn') one.
A ResNet image tower (config.model.image_tower = 'resnet') maps to OpenCLIP's ModifiedResNet by
clipjax.interop.resnet_layout; its BN running statistics ride in the flat dict under 'batch_stats/'. Hugging Face's
CLIPModel has no ResNet.
"""
from __future__ import annotations

import numpy as np

from clipjax.interop import resnet_layout
from clipjax.models import scan_layout, vit as vit_lib
from clipjax.pytree import flatten

# ---------------------------------------------------------------------------------------------- flat trees


# ---------------------------------------------------------------------------------------------- layouts

OPENCLIP = {
    "image_prefix": "visual.", "image_blocks": "visual.transformer.resblocks.{}.",
    "text_prefix": "", "text_blocks": "transformer.resblocks.{}.",
    "cls": "visual.class_embedding", "pos": "visual.positional_embedding", "conv": "visual.conv1.weight",
    "ln_pre": "visual.ln_pre.", "ln_post": "visual.ln_post.", "image_proj": "visual.proj",
    "token_embed": "token_embedding.weight", "text_pos": "positional_embedding", "ln_final": "ln_final.",
    "text_proj": "text_projection", "proj_transposed": False,
    "ln1": "ln_1.", "ln2": "ln_2.", "fc1": "mlp.c_fc.", "fc2": "mlp.c_proj.", "out": "attn.out_proj.",
}
HF = {
    "image_prefix": "vision_model.", "image_blocks": "vision_model.encoder.layers.{}.",
    "text_prefix": "text_model.", "text_blocks": "text_model.encoder.layers.{}.",
    "cls": "vision_model.embeddings.class_embedding", "pos": "vision_model.embeddings.position_embedding.weight",
    "conv": "vision_model.embeddings.patch_embedding.weight",
    "ln_pre": "vision_model.pre_layrnorm.", "ln_post": "vision_model.post_layernorm.",
    "image_proj": "visual_projection.weight", "token_embed": "text_model.embeddings.token_embedding.weight",
    "text_pos": "text_model.embeddings.position_embedding.weight", "ln_final": "text_model.final_layer_norm.",
    "text_proj": "text_projection.weight", "proj_transposed": True,
    "ln1": "layer_norm1.", "ln2": "layer_norm2.", "fc1": "mlp.fc1.", "fc2": "mlp.fc2.", "out": "self_attn.out_proj.",
}
LAYOUTS = {"openclip": OPENCLIP, "hf": HF}
# buffers some checkpoints carry that are not parameters
IGNORED_KEYS = ("attn_mask", "position_ids")


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _block_to_torch(p: dict, src: str, dst: str, lay: dict, out: dict) -> None:
    """One clipjax block (flat params under `src`) -> torch names under `dst`."""
    for name in ("ln1", "ln2"):
        out[dst + lay[name] + "weight"] = p[f"{src}{name}/scale"]
        out[dst + lay[name] + "bias"] = p[f"{src}{name}/bias"]
    qkv = []
    for name in ("query", "key", "value"):
        k = p[f"{src}attn/{name}/kernel"]                                  # [W, H, D]
        qkv.append((k.reshape(k.shape[0], -1).T, p[f"{src}attn/{name}/bias"].reshape(-1)))
    if lay is OPENCLIP:
        out[dst + "attn.in_proj_weight"] = np.concatenate([w for w, _ in qkv], 0)
        out[dst + "attn.in_proj_bias"] = np.concatenate([b for _, b in qkv], 0)
    else:
        for (w, b), name in zip(qkv, ("q_proj", "k_proj", "v_proj")):
            out[f"{dst}self_attn.{name}.weight"], out[f"{dst}self_attn.{name}.bias"] = w, b
    k = p[f"{src}attn/out/kernel"]                                         # [H, D, W]
    out[dst + lay["out"] + "weight"] = k.reshape(-1, k.shape[-1]).T
    out[dst + lay["out"] + "bias"] = p[f"{src}attn/out/bias"]
    for name in ("fc1", "fc2"):
        out[dst + lay[name] + "weight"] = p[f"{src}mlp/{name}/kernel"].T
        out[dst + lay[name] + "bias"] = p[f"{src}mlp/{name}/bias"]


def _block_from_torch(sd: dict, src: str, dst: str, lay: dict, heads: int, out: dict) -> None:
    """Torch names under `src` -> one clipjax block under `dst`; pops what it uses from `sd`."""
    for name in ("ln1", "ln2"):
        out[f"{dst}{name}/scale"] = sd.pop(src + lay[name] + "weight")
        out[f"{dst}{name}/bias"] = sd.pop(src + lay[name] + "bias")
    if lay is OPENCLIP:
        w, b = sd.pop(src + "attn.in_proj_weight"), sd.pop(src + "attn.in_proj_bias")
        width = w.shape[1]
        qkv = [(w[i * width:(i + 1) * width], b[i * width:(i + 1) * width]) for i in range(3)]
    else:
        qkv = [(sd.pop(f"{src}self_attn.{n}.weight"), sd.pop(f"{src}self_attn.{n}.bias"))
               for n in ("q_proj", "k_proj", "v_proj")]
    for (w, b), name in zip(qkv, ("query", "key", "value")):
        width = w.shape[1]
        out[f"{dst}attn/{name}/kernel"] = w.T.reshape(width, heads, -1)
        out[f"{dst}attn/{name}/bias"] = b.reshape(heads, -1)
    w = sd.pop(src + lay["out"] + "weight")
    out[f"{dst}attn/out/kernel"] = w.T.reshape(heads, -1, w.shape[0])
    out[f"{dst}attn/out/bias"] = sd.pop(src + lay["out"] + "bias")
    for name in ("fc1", "fc2"):
        out[f"{dst}mlp/{name}/kernel"] = sd.pop(src + lay[name] + "weight").T
        out[f"{dst}mlp/{name}/bias"] = sd.pop(src + lay[name] + "bias")


def to_torch_layout(params: dict, model_cfg, layout: str) -> dict[str, np.ndarray]:
    """clipjax params (nested or flat) + `config.model` -> float32 numpy state dict in `layout` ('openclip'|'hf')."""
    lay = LAYOUTS[layout]
    # a flat dict passes through flatten unchanged; scanned blocks ([depth, ...]) are unrolled first
    p = {k: _f32(v) for k, v in scan_layout.unstack_blocks(flatten(params)).items()}
    img, txt = model_cfg.image, model_cfg.text
    out: dict[str, np.ndarray] = {}
    if _is_resnet(model_cfg, layout):
        out.update(resnet_layout.to_openclip(p, img))
    else:
        _vit_to_torch(p, img, lay, out)
    _text_to_torch(p, txt, lay, out)
    return {k: np.array(v, np.float32, order="C") for k, v in out.items()}  # (ascontiguousarray makes 0-d 1-d)


def _is_resnet(model_cfg, layout: str) -> bool:
    if model_cfg.get("image_tower", "vit") != "resnet":
        return False
    if layout != "openclip":
        raise ValueError(f"a ResNet image tower (config.model.image_tower = 'resnet') has no {layout!r} layout; "
                         "use 'openclip'")
    return True


def _vit_to_torch(p: dict, img, lay: dict, out: dict) -> None:
    """The ViT image tower's flat params -> torch names in `out`."""
    grid = img.image_size // img.patch_size
    pos = p["image/pos_embedding"] if img.pos_emb == "learn" else vit_lib.sincos_2d(grid, grid, img.width)
    out[lay["cls"]] = p["image/cls"].reshape(-1)
    out[lay["pos"]] = np.concatenate([np.zeros((1, img.width), np.float32), pos + p["image/patch_embed/bias"]], 0)
    out[lay["conv"]] = p["image/patch_embed/kernel"].transpose(3, 2, 0, 1)   # [p,p,3,W] -> [W,3,p,p]
    if img.ln_pre:
        out[lay["ln_pre"] + "weight"], out[lay["ln_pre"] + "bias"] = p["image/ln_pre/scale"], p["image/ln_pre/bias"]
    _encoder_to_torch(p, "image", img.depth, ("image_blocks", "ln_post", "image_proj"), lay, out)


def _text_to_torch(p: dict, txt, lay: dict, out: dict) -> None:
    """Text tower, logit scale and bias -> torch names in `out`."""
    out[lay["token_embed"]] = p["text/token_embed/embedding"]
    out[lay["text_pos"]] = p["text/pos_embedding"]
    _encoder_to_torch(p, "text", txt.depth, ("text_blocks", "ln_final", "text_proj"), lay, out)
    out["logit_scale"] = p["logit_scale"].reshape(())
    if "logit_bias" in p:
        out["logit_bias"] = p["logit_bias"].reshape(())


def _encoder_to_torch(p: dict, tower: str, depth: int, keys: tuple[str, str, str], lay: dict, out: dict) -> None:
    """A transformer tower's ('image' or 'text') blocks, final LayerNorm and projection -> torch names in `out`;
    `keys`: the layout's entries naming those three."""
    blocks, ln, proj = (lay[k] for k in keys)
    for i in range(depth):
        _block_to_torch(p, f"{tower}/encoder/block{i}/", blocks.format(i), lay, out)
    out[ln + "weight"], out[ln + "bias"] = p[f"{tower}/encoder/ln_final/scale"], p[f"{tower}/encoder/ln_final/bias"]
    kernel = p[f"{tower}/proj/kernel"]
    out[proj] = kernel.T if lay["proj_transposed"] else kernel


def from_torch_layout(state_dict: dict, model_cfg, layout: str) -> dict[str, np.ndarray]:
    """Numpy state dict in `layout` -> flat clipjax params for `config.model` (image pos_emb must be 'learn').
    Fails naming the keys that are missing or left over."""
    lay = LAYOUTS[layout]
    sd = {k: _f32(v) for k, v in state_dict.items() if k.rsplit(".", 1)[-1] not in IGNORED_KEYS}
    if layout == "openclip" and any(k.startswith("text.") for k in sd):  # CustomTextCLIP keeps the tower under text.
        sd = {k[5:] if k.startswith("text.") else k: v for k, v in sd.items()}
    img, txt = model_cfg.image, model_cfg.text
    resnet = _is_resnet(model_cfg, layout)
    if not resnet and img.pos_emb != "learn":
        raise ValueError("importing needs config.model.image.pos_emb = 'learn' (the checkpoint stores a table)")
    out: dict[str, np.ndarray] = {}
    try:
        if resnet:
            out.update(resnet_layout.from_openclip(sd, img))
        else:
            _vit_from_torch(sd, img, lay, out)
        _text_from_torch(sd, txt, lay, out)
    except KeyError as e:
        what = (f"ResNet layers {tuple(img.layers)}" if resnet else f"image depth {img.depth}, ln_pre {img.ln_pre}")
        raise ValueError(f"{layout} state dict: missing {e.args[0]!r} needed by this model config "
                         f"({what}, text depth {txt.depth})") from None
    if sd:
        raise ValueError(f"{layout} state dict: {len(sd)} entries this model config does not use, e.g. "
                         f"{sorted(sd)[:8]} (wrong --model / model config?)")
    return out


def _vit_from_torch(sd: dict, img, lay: dict, out: dict) -> None:
    """Pops the ViT image tower's torch entries from `sd` into flat clipjax names in `out`."""
    pos = sd.pop(lay["pos"])
    out["image/cls"] = (sd.pop(lay["cls"]) + pos[0]).reshape(1, -1)
    out["image/pos_embedding"] = pos[1:]
    conv = sd.pop(lay["conv"])
    out["image/patch_embed/kernel"] = conv.transpose(2, 3, 1, 0)
    out["image/patch_embed/bias"] = np.zeros((conv.shape[0],), np.float32)
    if img.ln_pre:
        out["image/ln_pre/scale"] = sd.pop(lay["ln_pre"] + "weight")
        out["image/ln_pre/bias"] = sd.pop(lay["ln_pre"] + "bias")
    _encoder_from_torch(sd, "image", img.depth, img.num_heads, ("image_blocks", "ln_post", "image_proj"), lay, out)


def _text_from_torch(sd: dict, txt, lay: dict, out: dict) -> None:
    """Pops the text tower, logit scale and bias from `sd` into flat clipjax names in `out`."""
    out["text/token_embed/embedding"] = sd.pop(lay["token_embed"])
    out["text/pos_embedding"] = sd.pop(lay["text_pos"])
    _encoder_from_torch(sd, "text", txt.depth, txt.num_heads, ("text_blocks", "ln_final", "text_proj"), lay, out)
    out["logit_scale"] = sd.pop("logit_scale").reshape(())
    if "logit_bias" in sd:
        out["logit_bias"] = sd.pop("logit_bias").reshape(())


def _encoder_from_torch(sd: dict, tower: str, depth: int, num_heads: int, keys: tuple[str, str, str], lay: dict,
                        out: dict) -> None:
    """Pops a transformer tower's blocks, final LayerNorm and projection from `sd` into flat clipjax names under
    `tower` in `out` (the inverse of `_encoder_to_torch`)."""
    blocks, ln, proj = (lay[k] for k in keys)
    for i in range(depth):
        _block_from_torch(sd, blocks.format(i), f"{tower}/encoder/block{i}/", lay, num_heads, out)
    out[f"{tower}/encoder/ln_final/scale"] = sd.pop(ln + "weight")
    out[f"{tower}/encoder/ln_final/bias"] = sd.pop(ln + "bias")
    kernel = sd.pop(proj)
    out[f"{tower}/proj/kernel"] = kernel.T if lay["proj_transposed"] else kernel


def check_shapes(params: dict[str, np.ndarray], expected: dict) -> None:
    """Compare flat `params` with the flat shapes of a freshly built model; fail listing every difference."""
    want = {k: tuple(v.shape) for k, v in flatten(expected).items()}
    got = {k: tuple(np.shape(v)) for k, v in params.items()}
    bad = [f"{k}: converted {got.get(k, 'missing')} vs model {want.get(k, 'missing')}"
           for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)]
    if bad:
        raise ValueError("converted parameters do not fit the model config:\n  " + "\n  ".join(bad[:20]))
