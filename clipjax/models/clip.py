"""Two-tower CLIP model: image and text towers, L2-normalised embeddings and the temperature parameters.

    model = build_model(config.model)
    variables = model.init(rng, images, text)          # images uint8 [B, H, W, 3], text: see below
    out = model.apply(variables, images, tokens, patch_keep=None)
    # out['zimg'], out['ztxt']: [B, E] float32, unit L2 norm; out['logit_scale']: scalar log-scale (raw,
    # not exponentiated); out['logit_bias']: scalar, only when config.logit_bias_init is not None.
    zimg = model.apply(variables, images, method=model.encode_image)
    ztxt = model.apply(variables, tokens, method=model.encode_text)

The text input is token ids int32 [B, L] for the 'transformer' text tower, or, for 'llm_adapter' (LLM2CLIP, arXiv
2411.04997), a frozen LLM's caption embeddings float32 [B, d] read from a cache; or, online (no cache), the LLM's
inputs int32 [B, 3, T] (ids, attention mask, pooling mask), embedded by the frozen LLM inside the step (parameters
under 'llm', never updated). `text_input(batch)` picks the batch's field.

Parameter tree: {'image': ..., 'text': ..., 'logit_scale': (), ['logit_bias': ()]}; every leaf is boxed
with logical axis names at init (`nn.get_partition_spec(variables)`).
"""
import dataclasses
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from clipjax import config as config_lib
from clipjax.models import llm as llm_lib, sizes
from clipjax.models.adapter import LlmAdapter
from clipjax.models import layers
from clipjax.models.layers import logical
from clipjax.models.resnet import ModifiedResNet
from clipjax.models.text import TextTransformer
from clipjax.models.vit import VisionTransformer

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
TEXT_TOWERS = ("transformer", "llm_adapter")
IMAGE_TOWERS = ("vit", "resnet")
BATCH_NORM_MODES = ("train", "frozen")  # resnet: batch statistics + running updates, or running statistics only


def l2_normalise(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """x / max(||x||, eps) along the last axis, in float32."""
    x = x.astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


class CLIP(nn.Module):
    """Image tower + text tower + logit_scale (+ logit_bias). Build with `build_model`."""
    image: nn.Module  # VisionTransformer or ModifiedResNet
    text: nn.Module   # TextTransformer (token ids) or LlmAdapter (LLM caption embeddings)
    llm: nn.Module | None = None  # online llm_adapter: the frozen LlmDecoder that embeds [B, 3, T] inputs
    logit_scale_init: float = math.log(1 / 0.07)
    logit_bias_init: float | None = None

    def setup(self) -> None:
        const = nn.initializers.constant
        self.logit_scale = self.param("logit_scale", logical(const(self.logit_scale_init)), ())
        if self.logit_bias_init is not None:
            self.logit_bias = self.param("logit_bias", logical(const(self.logit_bias_init)), ())

    def encode_image(self, images: jax.Array, patch_keep: jax.Array | None = None) -> jax.Array:
        """images [B, H, W, 3] in [0, 255], patch_keep int [B, K] or None -> zimg [B, E] float32, unit norm."""
        return l2_normalise(self.image(images, patch_keep))

    def encode_text(self, text: jax.Array) -> jax.Array:
        """tokens int [B, L] (llm_adapter: LLM embeddings float [B, d], or online LLM inputs int [B, 3, T])
        -> ztxt [B, E] float32, unit norm."""
        if self.llm is not None and text.ndim == 3:  # online: mean over the caption tokens, no gradient into the LLM
            hidden = self.llm(text[:, 0], text[:, 1], return_logits=False)["last_hidden"]
            text = jax.lax.stop_gradient(llm_lib.mean_pool(hidden, text[:, 2]))
        return l2_normalise(self.text(text))

    def __call__(self, images: jax.Array, text: jax.Array,
                 patch_keep: jax.Array | None = None) -> dict[str, jax.Array]:
        """-> {'zimg' [B, E], 'ztxt' [B, E], 'logit_scale' (), ['logit_bias' ()]}, all float32."""
        out = {"zimg": self.encode_image(images, patch_keep), "ztxt": self.encode_text(text),
               "logit_scale": self.logit_scale}
        if self.logit_bias_init is not None:
            out["logit_bias"] = self.logit_bias
        return out


def _tower_kwargs(cfg: ml_collections.ConfigDict, cls: type[nn.Module], key: str, skip: tuple[str, ...] = ()) -> dict:
    """ConfigDict -> constructor kwargs for `cls`, failing on unknown fields and on missing ones without a default
    (a field added later, e.g. text `pad_mask`, takes its default in configs saved before it existed)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    fields = {k: f for k, f in fields.items() if k not in ("embed_dim", "dtype", "parent", "name") + PERF_KEYS + skip}
    given = dict(cfg)
    missing = sorted(k for k, f in fields.items() if k not in given and f.default is dataclasses.MISSING)
    unknown = sorted(set(given) - set(fields))
    if missing or unknown:
        raise ValueError(f"config.model.{key}: missing {missing}, unknown {unknown}; build it with "
                         f"clipjax.models.sizes")
    return given


PERF_KEYS = ("remat", "attention", "scan")  # config.model keys every transformer tower takes (clipjax.models.layers)


def perf_kwargs(config: ml_collections.ConfigDict) -> dict:
    """Tower kwargs of the performance keys; configs saved before a key existed get its default (bool remat)."""
    return dict(remat=layers.remat_name(config.get("remat", "none")), attention=str(config.get("attention", "auto")),
                scan=bool(config.get("scan", False)))


def variables(params, batch_stats=None) -> dict:
    """The variables `model.apply` takes: {'params': params} plus {'batch_stats': ...} when there are any."""
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def eval_params(params, batch_stats=None):
    """What evaluators take as 'params': `variables(params, batch_stats)` for a model with BN running statistics,
    else the params tree itself (works on trees of shardings too)."""
    return variables(params, batch_stats) if batch_stats else params


def as_variables(params_or_variables) -> dict:
    """What evaluators hand around as 'params' -> apply variables: a ResNet's evaluators get `variables(params,
    batch_stats)` (a dict with 'batch_stats'), every other model its params tree."""
    tree = params_or_variables
    return tree if isinstance(tree, dict) and "batch_stats" in tree else {"params": tree}


def build_model(config: ml_collections.ConfigDict, llm: nn.Module | None = None, train: bool = False) -> CLIP:
    """CLIP module from `config.model` (fields: image, text, embed_dim, dtype, remat, logit_scale_init,
    logit_bias_init, image_tower, batch_norm; see `model_config`), with `llm` (`frozen_llm`) for the online LLM
    adapter. `train`: the train step's model: a ResNet with batch_norm = 'train' then normalises with batch statistics
    and updates the running ones (apply with mutable=['batch_stats']); otherwise BN uses the running statistics.
    All module attributes are plain hashable values."""
    if config.dtype not in DTYPES:
        raise ValueError(f"config.model.dtype {config.dtype!r}: expected one of {list(DTYPES)}")
    common = dict(embed_dim=int(config.embed_dim), dtype=DTYPES[config.dtype], **perf_kwargs(config))
    bias = config.logit_bias_init
    if config.get("text_tower", "transformer") == "llm_adapter":
        text = LlmAdapter(embed_dim=common["embed_dim"], num_blocks=int(config.adapter_blocks), dtype=common["dtype"])
    else:
        text = TextTransformer(**_tower_kwargs(config.text, TextTransformer, "text"), **common)
    if config.get("image_tower", "vit") == "resnet":
        kw = dict(_tower_kwargs(config.image, ModifiedResNet, "image", skip=("train",)))
        kw["layers"] = tuple(int(n) for n in kw["layers"])
        bn_train = train and config.get("batch_norm", "train") == "train"
        image = ModifiedResNet(**kw, embed_dim=common["embed_dim"], dtype=common["dtype"],
                               attention=common["attention"], train=bn_train)
    else:
        image = VisionTransformer(**_tower_kwargs(config.image, VisionTransformer, "image"), **common)
    return CLIP(image=image, text=text,
                logit_scale_init=float(config.logit_scale_init), llm=llm,
                logit_bias_init=None if bias is None else float(bias))


TEXT_KEYS = ("tokens", "text_embedding", "llm_tokens")  # a batch's text input: one of these


def text_key(config: ml_collections.ConfigDict) -> str:
    """The batch field holding the text input: 'tokens' (transformer), 'text_embedding' (llm_adapter with a cache)
    or 'llm_tokens' (online llm_adapter)."""
    if config.model.get("text_tower", "transformer") != "llm_adapter":
        return "tokens"
    return "text_embedding" if config.data.text_embeddings else "llm_tokens"


def text_input(batch: dict) -> jax.Array:
    """The text tower's input in a batch (the one TEXT_KEYS field it has)."""
    return next(batch[k] for k in TEXT_KEYS if k in batch)


def dummy_text(config: ml_collections.ConfigDict, batch: int = 1) -> jax.Array:
    """Zeros shaped like a batch's text input: int32 [batch, text_length] (tokens), float32 [batch, d] (cached LLM
    embeddings, d from config.llm.folder's config.json) or int32 [batch, 3, llm.max_length] (online)."""
    key = text_key(config)
    if key == "tokens":
        return jnp.zeros((batch, config.data.text_length), jnp.int32)
    if key == "llm_tokens":
        return jnp.zeros((batch, 3, config.llm.max_length), jnp.int32)
    from clipjax.models import llm_loading  # the LLM's config only (no weights)
    return jnp.zeros((batch, llm_loading.read_config(config.llm.folder).hidden_size), jnp.float32)


def frozen_llm(config: ml_collections.ConfigDict) -> nn.Module | None:
    """The online llm_adapter's LlmDecoder (config.llm.folder's architecture, llm.dtype, llm.bidirectional), else
    None. Its weights are loaded into the state by `clipjax.train.Trainer.init_state`."""
    if text_key(config) != "llm_tokens":
        return None
    from clipjax.models import llm_loading
    dtype = DTYPES[config.llm.dtype]
    return llm_lib.LlmDecoder(llm_loading.read_config(config.llm.folder), dtype=dtype, param_dtype=dtype,
                              causal=not config.llm.bidirectional)


def validate(config: ml_collections.ConfigDict) -> None:
    """config.model against config.data: patch grid, image size and text length the towers can take; for the
    LLM adapter text tower, the LLM folder and the caption embedding cache."""
    m, d = config.model, config.data
    require = lambda ok, key, what: config_lib.require(ok, config, key, what)  # noqa: E731
    tower = m.get("image_tower", "vit")
    require(tower in IMAGE_TOWERS, "model.image_tower", f"one of {IMAGE_TOWERS}")
    if tower == "resnet":
        require(m.get("batch_norm", "train") in BATCH_NORM_MODES, "model.batch_norm", f"one of {BATCH_NORM_MODES}")
        require("layers" in m.image, "model.image", "a ResNet tower config (clipjax.models.sizes.resnet) with "
                "model.image_tower = 'resnet'")
        require(m.image.image_size % 32 == 0, "model.image.image_size", "a multiple of 32 (the ResNet's stride)")
        require(config.tokens.image_strategy == "none", "tokens.image_strategy",
                "'none' with model.image_tower = 'resnet' (random/grid/block masking drops ViT patch tokens; a ResNet "
                "has none; lower data.image_size and model.image.image_size to train at a reduced resolution)")
    else:
        require("patch_size" in m.image, "model.image", "a ViT tower config (clipjax.models.sizes.vit) with "
                "model.image_tower = 'vit'")
        require(m.image.image_size % m.image.patch_size == 0, "model.image.image_size",
                f"a multiple of model.image.patch_size={m.image.patch_size}")
    require(d.image_size == m.image.image_size, "data.image_size",
            f"equal to model.image.image_size={m.image.image_size}")
    require(m.dtype in DTYPES, "model.dtype", f"one of {list(DTYPES)}")
    require(isinstance(m.remat, bool) or m.remat in layers.REMAT_POLICIES, "model.remat",
            f"one of {layers.REMAT_POLICIES}")
    if m.remat == "offload":
        layers.remat_policy("offload")  # names the backend when it has no pinned host memory
    require(m.attention in layers.ATTENTION_IMPLS, "model.attention", f"one of {layers.ATTENTION_IMPLS}")
    require(not (m.scan and config.optim.name == "lamb"), "model.scan",
            "False with optim.name = 'lamb' (LAMB's per-leaf trust ratio would span all stacked layers)")
    require(not (m.scan and config.optim.layer_decay < 1), "model.scan",
            "False with optim.layer_decay < 1 (layer-wise decay scales the unrolled 'blockN' parameters)")
    require(m.text_tower in TEXT_TOWERS, "model.text_tower", f"one of {TEXT_TOWERS}")
    if m.text_tower == "transformer":
        require(d.text_length <= m.text.context_length, "data.text_length",
                f"at most model.text.context_length={m.text.context_length}")
        require(not d.text_embeddings, "data.text_embeddings", "'' (cached LLM embeddings need model.text_tower = "
                "'llm_adapter')")
        return
    require(m.adapter_blocks >= 0, "model.adapter_blocks", "a non-negative count")
    require(bool(config.llm.folder) and os.path.isfile(os.path.join(config.llm.folder, "config.json")), "llm.folder",
            "the frozen LLM's Hugging Face folder (with config.json) that embeds captions and class prompts")
    require(config.llm.dtype in DTYPES, "llm.dtype", f"one of {list(DTYPES)}")


def model_config(image: str = "B/16", text: str = "B", embed_dim: int = 512) -> ml_collections.ConfigDict:
    """Default `config.model`: OpenAI-style towers, float32, no remat, 'auto' attention, no scan, logit_scale
    ln(1/0.07), no bias. `image` 'RN50' etc. (sizes.RESNET_SIZES) gives a ResNet tower (image_tower 'resnet',
    batch_norm 'train'), else a ViT variant such as 'B/16'.
    SigLIP sets logit_scale_init=ln(10), logit_bias_init=-10."""
    return ml_collections.ConfigDict(dict(
        image=sizes.resnet(image) if image.startswith("RN") else sizes.vit(image), text=sizes.text(text),
        image_tower="resnet" if image.startswith("RN") else "vit", batch_norm="train",
        embed_dim=embed_dim, dtype="float32", remat="none",
        attention="auto", scan=False,
        logit_scale_init=math.log(1 / 0.07),
        logit_bias_init=ml_collections.config_dict.placeholder(float)))
