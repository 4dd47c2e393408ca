"""Model configs across clipjax (`config.model`), OpenCLIP (model_cfg JSON) and Hugging Face (`CLIPConfig`).

What maps exactly (same embeddings): ViT with class-token ('tok'), mean-of-patches ('gap' = OpenCLIP 'avg' with
LayerNorm before pooling) or mean-then-LayerNorm ('gap_post_ln' = OpenCLIP 'avg' with `final_ln_after_pool`, the
CLIPA layout) pooling, with or without ln_pre, learned or fixed position embedding; causal text with EOT (argmax),
first or last-position pooling; bidirectional text (`no_causal_mask`) attending to padding (clipjax
`pad_mask=False`) with first or last-position (`pool_type='last'` = clipjax 'last_position') pooling, so OpenCLIP's
CLIPA configs convert exactly; exact GELU; logit scale and bias.
What maps only approximately (refused unless `allow_inexact`):
  - clipjax bidirectional text with `pad_mask=True` (OpenCLIP attends to padding) and clipjax text pool 'last' (the
    last non-pad token; OpenCLIP's 'last' is the last position). Equal only on inputs without padding;
  - OpenCLIP text `pool_type='eos'` (clipjax pools at the largest token id);
  - QuickGELU (OpenAI's original weights, `*-quickgelu` configs, HF `hidden_act='quick_gelu'`): clipjax uses GELU.
Not convertible: attentional pooling, clipjax 'gap_with_cls' (FLIP) and text 'mean' pooling, LayerScale, timm or
Hugging Face towers, custom attention blocks, CoCa.
"""
from __future__ import annotations

import json
import math
import os

import ml_collections

from clipjax.models import clip as clip_lib


class InexactConversion(ValueError):
    """The conversion would change the model's outputs; the message lists why."""


def _tower(width, depth, mlp_dim, heads, **extra) -> dict:
    return dict(width=width, depth=depth, mlp_dim=mlp_dim, num_heads=heads, **extra)


def _vision(size: int, layers: int, width: int, patch: int, head_width: int = 64, mlp_ratio: float = 4.0,
            clipa: bool = False) -> dict:
    cfg = dict(image_size=size, layers=layers, width=width, patch_size=patch, head_width=head_width,
               mlp_ratio=mlp_ratio)
    if clipa:
        cfg.update(no_ln_pre=True, pool_type="avg", final_ln_after_pool=True)
    return cfg


def _text(width: int, heads: int, layers: int, clipa: bool = False) -> dict:
    cfg = dict(context_length=77, vocab_size=49408, width=width, heads=heads, layers=layers)
    if clipa:
        cfg.update(context_length=32, vocab_size=32000, hf_tokenizer_name="bert-base-uncased", pool_type="last",
                   no_causal_mask=True)
    return cfg


# OpenCLIP model configs of the families this tool knows by name (sizes: OpenCLIP's model_configs, arXiv
# 2212.07143). Any other OpenCLIP config can be given as a JSON file (--model_config).
ARCHITECTURES: dict[str, dict] = {
    "ViT-B-32": dict(embed_dim=512, vision_cfg=_vision(224, 12, 768, 32), text_cfg=_text(512, 8, 12)),
    "ViT-B-16": dict(embed_dim=512, vision_cfg=_vision(224, 12, 768, 16), text_cfg=_text(512, 8, 12)),
    "ViT-L-14": dict(embed_dim=768, vision_cfg=_vision(224, 24, 1024, 14), text_cfg=_text(768, 12, 12)),
    "ViT-L-14-336": dict(embed_dim=768, vision_cfg=_vision(336, 24, 1024, 14), text_cfg=_text(768, 12, 12)),
    "ViT-H-14": dict(embed_dim=1024, vision_cfg=_vision(224, 32, 1280, 14, head_width=80),
                     text_cfg=_text(1024, 16, 24)),
    "ViT-bigG-14": dict(embed_dim=1280, vision_cfg=_vision(224, 48, 1664, 14, head_width=104, mlp_ratio=4.9231),
                        text_cfg=_text(1280, 20, 32)),
    "ViT-L-14-CLIPA": dict(embed_dim=768, vision_cfg=_vision(224, 24, 1024, 14, clipa=True),
                           text_cfg=_text(768, 12, 12, clipa=True)),
    "ViT-L-14-CLIPA-336": dict(embed_dim=768, vision_cfg=_vision(336, 24, 1024, 14, clipa=True),
                               text_cfg=_text(768, 12, 12, clipa=True)),
    "ViT-H-14-CLIPA": dict(embed_dim=1024, vision_cfg=_vision(224, 32, 1280, 14, head_width=80, clipa=True),
                           text_cfg=_text(1024, 16, 24, clipa=True)),
    "ViT-H-14-CLIPA-336": dict(embed_dim=1024, vision_cfg=_vision(336, 32, 1280, 14, head_width=80, clipa=True),
                               text_cfg=_text(1024, 16, 24, clipa=True)),
    "ViT-bigG-14-CLIPA": dict(embed_dim=1280, vision_cfg=_vision(224, 48, 1664, 14, head_width=104,
                                                                 mlp_ratio=4.9231, clipa=True),
                              text_cfg=_text(1280, 20, 32, clipa=True)),
    "ViT-bigG-14-CLIPA-336": dict(embed_dim=1280, vision_cfg=_vision(336, 48, 1664, 14, head_width=104,
                                                                     mlp_ratio=4.9231, clipa=True),
                                  text_cfg=_text(1280, 20, 32, clipa=True)),
}

_UNSUPPORTED_VISION = ("attentional_pool", "ls_init_value", "timm_model_name", "act_kwargs", "norm_kwargs", "qk_norm",
                       "scaled_cosine_attn", "scale_heads", "scale_attn_inner", "scale_attn", "scale_fc",
                       "layers_per_block", "output_tokens")
_UNSUPPORTED_TEXT = ("ls_init_value", "hf_model_name", "embed_cls", "proj_bias", "act_kwargs", "norm_kwargs",
                     "qk_norm", "scaled_cosine_attn", "scale_heads", "scale_attn_inner", "scale_attn", "scale_fc")


def _finish(notes: list[str], allow_inexact: bool, what: str) -> None:
    if notes and not allow_inexact:
        raise InexactConversion(f"{what} would not give the same embeddings:\n  - " + "\n  - ".join(notes) +
                                "\nPass --allow_inexact to convert anyway (parameters map one to one).")


def resolve_openclip_config(name: str = "", path: str = "") -> dict:
    """An OpenCLIP model config: from a JSON file (`model_cfg` inside an open_clip_config.json, or a bare model
    config), else by name from ARCHITECTURES or the installed open_clip package's model_configs (read as data)."""
    if path:
        with open(path) as f:
            cfg = json.load(f)
        return cfg.get("model_cfg", cfg)
    if name in ARCHITECTURES:
        return json.loads(json.dumps(ARCHITECTURES[name]))
    import importlib.util
    spec = importlib.util.find_spec("open_clip")  # locates the package without importing it (no torchvision)
    if spec is not None and spec.submodule_search_locations:
        candidate = os.path.join(list(spec.submodule_search_locations)[0], "model_configs", f"{name}.json")
        if os.path.exists(candidate):
            with open(candidate) as f:
                return json.load(f)
    raise ValueError(f"--model {name!r}: unknown; known here: {sorted(ARCHITECTURES)} (or install open_clip_torch "
                     "for its model_configs), or pass --model_config FILE.json")


def _heads(width: int, head_width: int) -> int:
    if width % head_width:
        raise ValueError(f"vision width {width} is not a multiple of head_width {head_width}")
    return width // head_width


def model_from_openclip(oc: dict, allow_inexact: bool = False) -> ml_collections.ConfigDict:
    """OpenCLIP model config -> clipjax `config.model` (float32, no remat). Raises for what cannot be converted and,
    unless `allow_inexact`, for what converts only approximately (see the module docstring)."""
    v, t = dict(oc.get("vision_cfg", {})), dict(oc.get("text_cfg", {}))
    bad = [f"vision_cfg.{k}" for k in _UNSUPPORTED_VISION if v.get(k)] + \
          [f"text_cfg.{k}" for k in _UNSUPPORTED_TEXT if t.get(k)]
    if v.get("block_type") not in (None, "default") or t.get("block_type") not in (None, "default"):
        bad.append("block_type")
    if t.get("proj_type", "linear") != "linear":
        bad.append("text_cfg.proj_type")
    if oc.get("custom_text") and t.get("hf_model_name"):
        bad.append("custom_text with a Hugging Face text model")
    if bad:
        raise ValueError(f"OpenCLIP config uses features clipjax does not have: {bad}")
    notes = []
    if oc.get("quick_gelu"):
        notes.append("quick_gelu: the model uses QuickGELU, clipjax uses exact GELU")
    pool = v.get("pool_type", "tok")
    if pool not in ("tok", "avg"):
        raise ValueError(f"vision_cfg.pool_type {pool!r}: expected 'tok' or 'avg'")
    size, patch = v.get("image_size", 224), v.get("patch_size", 16)
    if isinstance(size, (list, tuple)):
        if size[0] != size[1]:
            raise ValueError(f"vision_cfg.image_size {size}: clipjax needs square images")
        size = size[0]
    width = v.get("width", 768)
    resnet = isinstance(v.get("layers"), (list, tuple))  # OpenCLIP builds a ModifiedResNet for 4 stage depths
    if resnet:
        image = dict(layers=tuple(int(n) for n in v["layers"]), width=width, image_size=size,
                     num_heads=_heads(width * 32, v.get("head_width", 64)))
    else:
        image = _tower(width, v.get("layers", 12), int(width * v.get("mlp_ratio", 4.0)),
                       _heads(width, v.get("head_width", 64)), patch_size=patch, image_size=size, pos_emb="learn",
                       pool="tok" if pool == "tok" else "gap_post_ln" if v.get("final_ln_after_pool") else "gap",
                       ln_pre=not v.get("no_ln_pre", False))
    causal = not t.get("no_causal_mask", False)
    tpool = t.get("pool_type", "argmax")
    if tpool == "eos":
        notes.append("text pool 'eos': clipjax pools at the largest token id instead")
    elif tpool not in ("argmax", "first", "last"):
        raise ValueError(f"text_cfg.pool_type {tpool!r}: not convertible")
    twidth = t.get("width", 512)
    text = _tower(twidth, t.get("layers", 12), int(twidth * t.get("mlp_ratio", 4.0)), t.get("heads", 8),
                  vocab_size=t.get("vocab_size", 49408), context_length=t.get("context_length", 77), causal=causal,
                  pad_mask=causal or bool(t.get("use_pad_mask", False)),
                  pool={"argmax": "eot", "eos": "eot", "first": "first", "last": "last_position"}[tpool])
    _finish(notes, allow_inexact, "this OpenCLIP config in clipjax")
    model = clip_lib.model_config()
    model.image, model.text = ml_collections.ConfigDict(image), ml_collections.ConfigDict(text)
    model.image_tower = "resnet" if resnet else "vit"
    model.embed_dim = int(oc.get("embed_dim", 512))
    if oc.get("init_logit_bias") is not None:
        model.logit_bias_init = float(oc["init_logit_bias"])
    return model


def _mlp_ratio(mlp_dim: int, width: int) -> float:
    """A ratio r with int(width * r) == mlp_dim (OpenCLIP computes the MLP width that way)."""
    r = mlp_dim / width
    return r if int(width * r) == mlp_dim else (mlp_dim + 0.5) / width


def openclip_from_model(model: ml_collections.ConfigDict, allow_inexact: bool = False) -> dict:
    """clipjax `config.model` -> OpenCLIP model config (the `model_cfg` of an open_clip_config.json)."""
    img, txt = model.image, model.text
    resnet = model.get("image_tower", "vit") == "resnet"
    if not resnet and img.pool in ("map", "gap_with_cls"):
        raise ValueError(f"config.model.image.pool {img.pool!r} has no OpenCLIP equivalent")
    if txt.pool == "mean":
        raise ValueError("config.model.text.pool 'mean' has no OpenCLIP equivalent")
    notes = []
    if not txt.causal and txt.pad_mask:
        notes.append("bidirectional text with pad_mask: clipjax masks padding, OpenCLIP attends to it")
    if txt.pool == "last":
        notes.append("text pool 'last': clipjax takes the last non-pad token, OpenCLIP the last position")
    _finish(notes, allow_inexact, "this clipjax model in OpenCLIP")
    vision = dict(image_size=img.image_size, layers=list(img.layers), width=img.width,
                  head_width=img.width * 32 // img.num_heads) if resnet else dict(
                  image_size=img.image_size, layers=img.depth, width=img.width, patch_size=img.patch_size,
                  head_width=img.width // img.num_heads, mlp_ratio=_mlp_ratio(img.mlp_dim, img.width),
                  no_ln_pre=not img.ln_pre, pool_type="tok" if img.pool == "tok" else "avg",
                  final_ln_after_pool=img.pool == "gap_post_ln")
    text = dict(context_length=txt.context_length, vocab_size=txt.vocab_size, width=txt.width, heads=txt.num_heads,
                layers=txt.depth, mlp_ratio=_mlp_ratio(txt.mlp_dim, txt.width), no_causal_mask=not txt.causal,
                pool_type={"eot": "argmax", "first": "first", "last": "last", "last_position": "last"}[txt.pool])
    cfg = dict(embed_dim=model.embed_dim, quick_gelu=False, vision_cfg=vision, text_cfg=text)
    if model.logit_bias_init is not None:
        cfg["init_logit_bias"] = float(model.logit_bias_init)
    return cfg


def hf_from_model(model: ml_collections.ConfigDict) -> dict:
    """clipjax `config.model` -> `transformers.CLIPConfig` keyword arguments. HF's CLIPModel always has the pre-LN
    (`pre_layrnorm`), class-token pooling and causal EOT-pooled text, so the model must have those."""
    if model.get("image_tower", "vit") == "resnet":
        raise ValueError("config.model.image_tower = 'resnet': Hugging Face's CLIPModel has no ResNet tower; export "
                         "to 'openclip'")
    img, txt = model.image, model.text
    need = {"config.model.image.ln_pre": (img.ln_pre, True), "config.model.image.pool": (img.pool, "tok"),
            "config.model.text.causal": (txt.causal, True), "config.model.text.pool": (txt.pool, "eot")}
    bad = [f"{k} = {have!r} (HF needs {want!r})" for k, (have, want) in need.items() if have != want]
    if bad:
        raise ValueError("this model has no exact Hugging Face CLIPModel equivalent: " + "; ".join(bad) +
                         ". Export it to OpenCLIP instead (--to openclip).")
    if model.logit_bias_init is not None:
        raise ValueError("CLIPModel has no logit_bias; export a sigmoid-loss model to OpenCLIP instead")
    # HF pools text at the first eos_token_id; 2 selects its legacy rule, the largest token id (clipjax's rule).
    # With the OpenAI vocabulary the two coincide and the standard id 49407 is kept.
    eos = 49407 if txt.vocab_size == 49408 else 2
    text = dict(vocab_size=txt.vocab_size, hidden_size=txt.width, intermediate_size=txt.mlp_dim,
                num_hidden_layers=txt.depth, num_attention_heads=txt.num_heads, max_position_embeddings=txt.context_length,
                hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=model.embed_dim, bos_token_id=49406,
                eos_token_id=eos, pad_token_id=1)
    vision = dict(hidden_size=img.width, intermediate_size=img.mlp_dim, num_hidden_layers=img.depth,
                  num_attention_heads=img.num_heads, image_size=img.image_size, patch_size=img.patch_size,
                  num_channels=3, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=model.embed_dim)
    return dict(text_config=text, vision_config=vision, projection_dim=model.embed_dim,
                logit_scale_init_value=float(model.logit_scale_init))


def model_from_hf(hf: dict, allow_inexact: bool = False) -> ml_collections.ConfigDict:
    """A CLIPModel config.json dict -> clipjax `config.model`."""
    t, v = hf.get("text_config", {}), hf.get("vision_config", {})
    notes = [f"{name}.hidden_act {c.get('hidden_act', 'quick_gelu')!r}: clipjax uses exact GELU"
             for name, c in (("text_config", t), ("vision_config", v)) if c.get("hidden_act", "quick_gelu") != "gelu"]
    eps = [c.get("layer_norm_eps", 1e-5) for c in (t, v)]
    if any(abs(e - 1e-5) > 1e-12 for e in eps):
        notes.append(f"layer_norm_eps {eps}: clipjax uses 1e-5")
    eos = t.get("eos_token_id", 49407)
    if eos != 2 and not (eos == 49407 and t.get("vocab_size", 49408) == 49408):
        notes.append(f"text eos_token_id {eos}: HF pools at its first occurrence, clipjax at the largest token id")
    _finish(notes, allow_inexact, "this Hugging Face CLIPModel in clipjax")
    proj = int(hf.get("projection_dim", 512))
    image = _tower(v.get("hidden_size", 768), v.get("num_hidden_layers", 12), v.get("intermediate_size", 3072),
                   v.get("num_attention_heads", 12), patch_size=v.get("patch_size", 32),
                   image_size=v.get("image_size", 224), pos_emb="learn", pool="tok", ln_pre=True)
    text = _tower(t.get("hidden_size", 512), t.get("num_hidden_layers", 12), t.get("intermediate_size", 2048),
                  t.get("num_attention_heads", 8), vocab_size=t.get("vocab_size", 49408),
                  context_length=t.get("max_position_embeddings", 77), causal=True, pad_mask=True, pool="eot")
    model = clip_lib.model_config()
    model.image, model.text = ml_collections.ConfigDict(image), ml_collections.ConfigDict(text)
    model.embed_dim = proj
    model.logit_scale_init = float(hf.get("logit_scale_init_value", math.log(1 / 0.07)))
    return model
