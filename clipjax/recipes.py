"""Inverse-scaling recipes (CLIPA, CLIPA-v2, FLIP) as data: one table of model sizes and stages, one builder.

The config files in configs/clipa and configs/flip are thin wrappers around `clipa_config` / `flip_config`. A
config argument `key=value,key=value` overrides a table value (keys in `ARG_KEYS`), and every resulting config
value can still be overridden with `--config.KEY=VALUE`.

Sources. METHODS.md section 2 (from the CLIPA/CLIPA-v2/FLIP papers and code): the per-size image resolution,
text length, text strategy, gap pooling for L/16, the fine-tune stages, batch sizes, AdamW (0.9, 0.95) with weight
decay 0.2, the lr rules 8e-6 (pre-train) and 8e-7 (fine-tune) x batch / 256 for CLIPA and 4e-8 x batch / 256 for
FLIP's unmasked tuning, and the sample counts. Values marked "ours" are not given there: gap pooling for sizes
other than L/16, the text tower per size (METHODS' text size table, bidirectional with 'last' pooling, the
CLIPA/big_vision style), warm-up lengths, bfloat16 compute, rematerialisation for H and G, and FLIP's pre-training
lr of 4e-6 x batch / 256 (the FLIP paper's base lr; not in METHODS). Augmentation (colour jitter for large models)
belong to the data pipeline: the table picks its preset ('clip' = RandomResizedCrop; 'clipa_large' adds colour
jitter 0.4 and grayscale 0.2 for L and larger); the LAION-400M source is set with config.data.
"""
import ml_collections

from clipjax import config as config_lib
from clipjax.models import sizes

# The single table: model -> towers and the CLIPA pre-training token budget (larger model -> fewer tokens).
# res: pre-training image size (px); text: pre-training text length; text_strategy: CLIPA text reduction.
CLIPA_TABLE: dict[str, dict] = {
    # CLIPA B/16: 112 px (49 patches + CLS = 50 tokens), 16 truncated text tokens -> 59.7 pre-FT, 63.2 FT (IN-1k)
    "B/16": dict(res=112, text_len=16, text_strategy="truncate", pool="gap", text="B", embed_dim=512,
                 augment="clip", version=1),
    # CLIPA L/16: 64 px (16 + 1 = 17 tokens), 16 syntax tokens, gap -> 60.3 -> 67.8 (alt: 96 px / 8: 57.9 -> 69.3)
    "L/16": dict(res=64, text_len=16, text_strategy="syntax", pool="gap", text="L", embed_dim=768,
                 augment="clipa_large", version=1),
    # CLIPA-v2 H/14: 84 px (36 + 1 tokens; or 70 px, 25 + 1), 8 syntax tokens -> 81.1 after both fine-tunes
    "H/14": dict(res=84, text_len=8, text_strategy="syntax", pool="gap", text="H", embed_dim=1024,
                 augment="clipa_large", version=2),
    # CLIPA-v2 G/14 (bigG): 84 px (or 70), 8 syntax tokens -> 83.0 after both fine-tunes
    "G/14": dict(res=84, text_len=8, text_strategy="syntax", pool="gap", text="G", embed_dim=1280,
                 augment="clipa_large", version=2),
}

# Stages per CLIPA version: image size, text length, image masking (strategy, keep ratio), lr per 256, samples.
CLIPA_STAGES: dict[int, dict[str, dict]] = {
    1: {"pretrain": dict(image_strategy="none", keep=1.0, lr_per_256=8e-6, samples=2_560_000_000, batch=32768),
        "finetune": dict(res=224, text_len=32, text_strategy="truncate", image_strategy="none", keep=1.0,
                         lr_per_256=8e-7, samples=131_000_000, batch=32768)},
    2: {"pretrain": dict(image_strategy="none", keep=1.0, lr_per_256=8e-6, samples=12_800_000_000, batch=65536),
        # 224 px with 30-40% random masking (keep 0.6-0.7), then 336 px with 40% masking (keep 0.6)
        "finetune": dict(res=224, text_len=32, text_strategy="truncate", image_strategy="random", keep=0.7,
                         lr_per_256=8e-7, samples=512_000_000, batch=65536),
        "finetune336": dict(res=336, text_len=32, text_strategy="truncate", image_strategy="random", keep=0.6,
                            lr_per_256=8e-7, samples=128_000_000, batch=65536)},
}

ARG_KEYS = ("model", "stage", "res", "text_len", "text_strategy", "image_strategy", "keep", "pool", "batch",
            "lr_per_256", "samples", "init_from", "augment")
REQUIRED_INIT = "SET --config.init_from=PRETRAIN_WORKDIR"  # a fine-tune without it fails at start-up, by name


def parse_arg(arg: str | None) -> dict[str, str]:
    """'model=L/16,res=96' -> {'model': 'L/16', 'res': '96'}; unknown keys fail naming the allowed ones."""
    out = {}
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in ARG_KEYS:
            raise ValueError(f"config argument {item!r}: expected KEY=VALUE with KEY in {ARG_KEYS}")
        out[key] = value
    return out


def _cast(settings: dict, overrides: dict[str, str]) -> dict:
    out = dict(settings)
    for key, value in overrides.items():
        kind = type(settings[key]) if key in settings else str
        out[key] = kind(float(value)) if kind is int else kind(value)
    return out


def build(model: str, s: dict) -> ml_collections.ConfigDict:
    """A full config from resolved settings `s` (res, text_len, text_strategy, image_strategy, keep, pool, batch,
    lr_per_256, samples, text, embed_dim, init_from, warmup_frac)."""
    c = config_lib.default_config()
    c.batch_size = int(s["batch"])
    c.total_steps = max(1, int(s["samples"]) // c.batch_size)
    c.data.image_size = int(s["res"])
    c.data.text_length = int(s["text_len"])
    c.data.augment = s.get("augment", "clip")  # RandomResizedCrop to data.image_size: the 'resize' strategy
    big = model.split("/")[0] in ("H", "G")
    c.model.image = sizes.vit(model, image_size=int(s["res"]), pool=s["pool"], pos_emb="sincos2d")
    c.model.text = sizes.text(s["text"], context_length=int(s["text_len"]), causal=False, pool="last")
    c.model.embed_dim = int(s["embed_dim"])
    c.model.dtype = "bfloat16"
    c.model.remat = big
    c.tokens.image_strategy = s["image_strategy"]
    c.tokens.image_keep_ratio = float(s["keep"])
    c.tokens.text_strategy = s["text_strategy"]
    c.optim.lr_per_256 = float(s["lr_per_256"])
    c.optim.b1, c.optim.b2 = 0.9, 0.95
    c.optim.weight_decay = 0.2
    c.optim.warmup_steps = max(1, int(round(s.get("warmup_frac", 0.03) * c.total_steps)))  # ours
    c.init_from = s.get("init_from", "")
    c.init_text_pos = "resize"
    return c


def clipa_config(stage: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """CLIPA / CLIPA-v2 config for `stage` ('pretrain', 'finetune', 'finetune336' for v2) of the table's model
    (default L/16), with `arg` overrides (see `ARG_KEYS`)."""
    given = parse_arg(arg)
    model = given.pop("model", "L/16")
    stage = given.pop("stage", stage)
    if model not in CLIPA_TABLE:
        raise ValueError(f"config argument model={model!r}: expected one of {list(CLIPA_TABLE)}")
    row = CLIPA_TABLE[model]
    stages = CLIPA_STAGES[row["version"]]
    if stage not in stages:
        raise ValueError(f"stage {stage!r} for {model}: expected one of {list(stages)}")
    settings = {**row, **stages[stage]}
    if stage != "pretrain":
        settings["init_from"] = REQUIRED_INIT
    return build(model, _cast(settings, given))


# FLIP ViT-L/16 on LAION-400M: random masking at training, then unmasked tuning. Image 224, text 32.
FLIP_STAGES: dict[str, dict] = {
    # 50% masking, batch 32k: 69.6% IN-1k zero-shot at 0.50x the unmasked time (+0.5 with unmasked tuning)
    "mask50": dict(image_strategy="random", keep=0.5, batch=32768, lr_per_256=4e-6, samples=2_560_000_000),
    # 75% masking, batch 64k: 68.2% at 0.33x time (+1.3 with unmasked tuning)
    "mask75": dict(image_strategy="random", keep=0.25, batch=65536, lr_per_256=4e-6, samples=2_560_000_000),
    # unmasked tuning: +0.32 epoch of LAION-400M (128M samples), lr 4e-8 x batch / 256
    "tune": dict(image_strategy="none", keep=1.0, batch=32768, lr_per_256=4e-8, samples=128_000_000),
}


def flip_config(stage: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """FLIP L/16 config for `stage` in FLIP_STAGES, with `arg` overrides."""
    given = parse_arg(arg)
    stage = given.pop("stage", stage)
    model = given.pop("model", "L/16")
    if stage not in FLIP_STAGES:
        raise ValueError(f"FLIP stage {stage!r}: expected one of {list(FLIP_STAGES)}")
    settings = dict(text="L", embed_dim=768, res=224, text_len=32, text_strategy="truncate", pool="gap",
                    **FLIP_STAGES[stage])
    if stage == "tune":
        settings["init_from"] = REQUIRED_INIT
    return build(model, _cast(settings, given))

