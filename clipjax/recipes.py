"""Paper recipes as data (CLIPA, CLIPA-v2, FLIP, FastCLIP): one table per family, one builder each.

The files in configs/clipa, configs/flip and configs/fastclip are thin wrappers. A config argument
`key=value,...` overrides a table value (keys in `ARG_KEYS` / `FASTCLIP_KEYS`), and every resulting value can
still be overridden with `--config.KEY=VALUE`. A stage's own settings (fine-tune resolution, text length, lr,
batch, warm-up) always win over the pre-training row; only an explicit argument overrides them.

Sources: CLIPA (arXiv 2305.07017) and CLIPA-v2 (arXiv 2306.15658) with UCSC-VLAA/CLIPA's training scripts;
FLIP (arXiv 2212.00794) with facebookresearch/flip configs/default.py; FastCLIP (arXiv 2407.01445) with
Optimization-AI/fast_clip's scripts. Values marked "ours" are not given there.
"""
import ml_collections

from clipjax import config as config_lib
from clipjax.models import sizes

# CLIPA recipes -> towers and the pre-training token budget (larger model -> fewer tokens). res: pre-training image
# size (px); text_len / text_strategy: pre-training text length and reduction; pool / text_pool: CLIPA's layouts
# (image: mean over patches then LayerNorm, or the CLS token for B/16; text: the last position, bidirectional).
CLIPA_TABLE: dict[str, dict] = {
    # B/16: 112 px (49 patches + CLS), 16 truncated tokens, CLS pooling, crop (0.4, 1) -> 59.7 pre-FT, 63.2 FT
    "B/16": dict(model="B/16", res=112, text_len=16, text_strategy="truncate", pool="tok", text="B",
                 embed_dim=512, augment="clip", crop_min=0.4, version=1),
    # L/16: 64 px (16 + 1 tokens), 16 syntax tokens -> 60.3 -> 67.8
    "L/16": dict(model="L/16", res=64, text_len=16, text_strategy="syntax", pool="gap_post_ln", text="L",
                 embed_dim=768, augment="clipa_large", crop_min=0.4, version=1),
    # L/16 at 96 px (36 + 1 tokens), 8 syntax tokens -> 57.9 -> 69.3
    "L/16@96": dict(model="L/16", res=96, text_len=8, text_strategy="syntax", pool="gap_post_ln", text="L",
                    embed_dim=768, augment="clipa_large", crop_min=0.4, version=1),
    # CLIPA-v2 H/14: 84 px (36 + 1 tokens; or res=70), 8 syntax tokens -> 81.1 after both fine-tunes
    "H/14": dict(model="H/14", res=84, text_len=8, text_strategy="syntax", pool="gap_post_ln", text="H",
                 embed_dim=1024, augment="clipa_large", crop_min=0.4, version=2),
    # CLIPA-v2 G/14 (bigG): 84 px (or 70), 8 syntax tokens -> 83.0 after both fine-tunes
    "G/14": dict(model="G/14", res=84, text_len=8, text_strategy="syntax", pool="gap_post_ln", text="G",
                 embed_dim=1280, augment="clipa_large", crop_min=0.4, version=2),
}

# Stages per CLIPA version: image size, text length, masking (strategy, keep ratio), lr per 256, batch, samples and
# warm-up (steps, or warmup_samples).
CLIPA_STAGES: dict[int, dict[str, dict]] = {
    1: {"pretrain": dict(image_strategy="none", keep=1.0, lr_per_256=8e-6, samples=2_560_000_000, batch=32768,
                         warmup_samples=51_200_000),
        "finetune": dict(res=224, text_len=32, text_strategy="truncate", image_strategy="none", keep=1.0,
                         lr_per_256=8e-7, samples=131_000_000, batch=32768, warmup=800)},
    2: {"pretrain": dict(image_strategy="none", keep=1.0, lr_per_256=8e-6, samples=12_800_000_000, batch=65536,
                         warmup=3200),
        # 224 px with 30-40% random masking (keep 0.6-0.7), then 336 px with 40% masking (keep 0.6); warm-up ours
        "finetune": dict(res=224, text_len=32, text_strategy="truncate", image_strategy="random", keep=0.7,
                         lr_per_256=4e-7, samples=512_000_000, batch=32768, warmup=800),
        "finetune336": dict(res=336, text_len=32, text_strategy="truncate", image_strategy="random", keep=0.6,
                            lr_per_256=1e-7, samples=128_000_000, batch=16384, warmup=800)},
}

ARG_KEYS = ("model", "stage", "res", "text_len", "text_strategy", "image_strategy", "keep", "pool", "batch",
            "lr_per_256", "samples", "warmup", "init_from", "augment", "length")
REQUIRED_INIT = "SET --config.init_from=PRETRAIN_WORKDIR"  # a fine-tune without it fails at start-up, by name


def _overrides(arg: str | None, **defaults) -> dict:
    """`arg` over ARG_KEYS (values kept as strings), with `defaults` for model / stage."""
    given = config_lib.parse_arg(arg, {**{k: None for k in ARG_KEYS}, **defaults})
    return {k: v for k, v in given.items() if v is not None}


def _cast(settings: dict, overrides: dict[str, str]) -> dict:
    out = dict(settings)
    for key, value in overrides.items():
        kind = type(settings[key]) if key in settings else str
        out[key] = kind(float(value)) if kind is int else kind(value)
    return out


def build(s: dict) -> ml_collections.ConfigDict:
    """A full config from resolved settings `s` (model, res, text_len, text_strategy, image_strategy, keep, pool,
    text, text_pool, embed_dim, batch, lr_per_256, samples, warmup or warmup_samples, augment, crop_min, hflip,
    init_from)."""
    c = config_lib.default_config()
    c.batch_size = int(s["batch"])
    c.total_steps = max(1, int(s["samples"]) // c.batch_size)
    c.data.image_size = int(s["res"])
    c.data.text_length = int(s["text_len"])
    c.data.augment = s["augment"]  # RandomResizedCrop to data.image_size: the 'resize' strategy
    c.data.crop_scale = (float(s["crop_min"]), 1.0)
    c.data.hflip = bool(s.get("hflip", False))
    big = s["model"].split("/")[0] in ("H", "G")
    c.model.image = sizes.vit(s["model"], image_size=int(s["res"]), pool=s["pool"], pos_emb="sincos2d")
    c.model.text = sizes.text(s["text"], context_length=int(s["text_len"]), causal=False, pad_mask=False,
                              pool=s.get("text_pool", "last_position"))
    c.model.embed_dim = int(s["embed_dim"])
    c.model.dtype = "bfloat16"  # ours
    c.model.remat = "full" if big else "none"  # ours
    c.tokens.image_strategy = s["image_strategy"]
    c.tokens.image_keep_ratio = float(s["keep"])
    c.tokens.text_strategy = s["text_strategy"]
    c.optim.lr_per_256 = float(s["lr_per_256"])
    c.optim.b1, c.optim.b2 = 0.9, 0.95
    c.optim.weight_decay = 0.2
    warmup = int(s["warmup"]) if "warmup" in s else int(round(s["warmup_samples"] / c.batch_size))
    c.optim.warmup_steps = min(max(1, warmup), c.total_steps)
    c.init_from = s.get("init_from", "")
    c.init_text_pos = "resize"
    return c


def clipa_config(stage: str, arg: str | None = None, model: str = "L/16") -> ml_collections.ConfigDict:
    """CLIPA / CLIPA-v2 config for `stage` ('pretrain', 'finetune', 'finetune336' for v2) of the table's recipe
    `model` (a CLIPA_TABLE key), with `arg` overrides (see `ARG_KEYS`)."""
    given = _overrides(arg, model=model, stage=stage)
    model, stage = given.pop("model"), given.pop("stage")
    if model not in CLIPA_TABLE:
        raise ValueError(f"config argument model={model!r}: expected one of {list(CLIPA_TABLE)}")
    row = CLIPA_TABLE[model]
    stages = CLIPA_STAGES[row["version"]]
    if stage not in stages:
        raise ValueError(f"stage {stage!r} for {model}: expected one of {list(stages)}")
    settings = {**row, **stages[stage]}
    if stage != "pretrain":
        settings["init_from"] = REQUIRED_INIT
    return build(_cast(settings, given))


# FLIP ViT-L/16 on LAION-400M: random masking, then unmasked tuning. Image 224, text 32 (position-0 pooling), image
# tokens averaged together with the CLS token, crop (0.5, 1) + horizontal flip (facebookresearch/flip
# configs/default.py). Length: the released configs' 10000 virtual ImageNet epochs (12.8B samples) at batch 64k,
# warm-up 20 virtual epochs (25.6M samples); `length=paper` gives the paper's ablation schedule (6.4 LAION epochs,
# 2.56B samples; 50% masking at batch 32k, 75% at 64k).
FLIP_STAGES: dict[str, dict] = {
    # 50% masking: 69.6% IN-1k zero-shot at 0.50x the unmasked time (+0.5 with unmasked tuning)
    "mask50": dict(image_strategy="random", keep=0.5, batch=65536, lr_per_256=4e-6, samples=12_811_670_000,
                   warmup_samples=25_623_340),
    # 75% masking: 68.2% at 0.33x time (+1.3 with unmasked tuning)
    "mask75": dict(image_strategy="random", keep=0.25, batch=65536, lr_per_256=4e-6, samples=12_811_670_000,
                   warmup_samples=25_623_340),
    # unmasked tuning: +0.32 epoch of LAION-400M (128M samples), lr 4e-8 x batch / 256, ~780 warm-up steps at 32k
    "tune": dict(image_strategy="none", keep=1.0, batch=32768, lr_per_256=4e-8, samples=128_000_000, warmup=780),
}
FLIP_PAPER_LENGTH = {"mask50": dict(batch=32768, samples=2_560_000_000),
                     "mask75": dict(batch=65536, samples=2_560_000_000)}


def flip_config(stage: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """FLIP L/16 config for `stage` in FLIP_STAGES, with `arg` overrides (`length=released|paper`)."""
    given = _overrides(arg, model="L/16", stage=stage, length="released")
    stage, length = given.pop("stage"), given.pop("length")
    if stage not in FLIP_STAGES:
        raise ValueError(f"FLIP stage {stage!r}: expected one of {list(FLIP_STAGES)}")
    if length not in ("released", "paper"):
        raise ValueError(f"config argument length={length!r}: expected 'released' or 'paper'")
    settings = dict(text="L", embed_dim=768, res=224, text_len=32, text_strategy="truncate", pool="gap_with_cls",
                    text_pool="first", augment="clip", crop_min=0.5, hflip=True, **FLIP_STAGES[stage])
    if length == "paper":
        settings.update(FLIP_PAPER_LENGTH.get(stage, {}))
    if stage == "tune":
        settings["init_from"] = REQUIRED_INIT
    return build(_cast(settings, given))


# FastCLIP (Optimization-AI/fast_clip scripts) per dataset; `loss` picks the GCL variant (fastclip_v3 by default).
# Image towers as the paper: RN50 (CC3M), ViT-B/32 (CC12M), ViT-B/16 (LAION).
FASTCLIP_TABLE: dict[str, dict] = {
    # CC3M: open_clip RN50, 8 GPUs x 128, 37 epochs, lr 1e-3, wd 0.1, 10k warm-up, gamma 1 -> 0.2 over 18 epochs,
    # rho 6.5
    "cc3m": dict(size=2_723_840, batch=1024, epochs=37, image="RN50", lr=1e-3, wd=0.1, warmup=10_000, end_lr=0.0,
                 eps=1e-14, gamma_min=0.2, gamma_epochs=18, rho=6.5, tau_lr=2e-4),
    # CC12M: 2048, 33 epochs, lr 4e-4, wd 0.1, gamma 0.2 over 16 epochs, rho 8.5, temperature lr 1e-4
    "cc12m": dict(size=9_187_328, batch=2048, epochs=33, image="B/32", lr=4e-4, wd=0.1, warmup=10_000, end_lr=0.0,
                  eps=1e-14, gamma_min=0.2, gamma_epochs=16, rho=8.5, tau_lr=1e-4),
    # LAION-315M: 5120, 30 epochs, lr 2e-4 -> 4e-5, wd 0.2, 13.2k warm-up, gamma 0.8 over 10 epochs, rho 16, eps 1e-6
    "laion315m": dict(size=315_658_316, batch=5120, epochs=30, image="B/16", lr=2e-4, wd=0.2, warmup=13_200,
                      end_lr=4e-5, eps=1e-6, gamma_min=0.8, gamma_epochs=10, rho=16.0, tau_lr=5e-5),
}
FASTCLIP_KEYS = {"loss": "fastclip_v3", "dataset": "cc3m"}


def fastclip_config(arg: str | None = None, dataset: str = "cc3m") -> ml_collections.ConfigDict:
    """FastCLIP's published setting for `dataset` (FASTCLIP_TABLE) with the GCL loss `arg` names
    ('fastclip_v2' or 'loss=sogclr,dataset=cc12m')."""
    a = config_lib.parse_arg(arg, {**FASTCLIP_KEYS, "dataset": dataset})
    if a["dataset"] not in FASTCLIP_TABLE:
        raise ValueError(f"config argument dataset={a['dataset']!r}: expected one of {list(FASTCLIP_TABLE)}")
    s = FASTCLIP_TABLE[a["dataset"]]
    c = config_lib.default_config()
    c.loss.name = a["loss"]
    c.data.size = s["size"]  # the examples actually downloaded; set it to your count
    c.batch_size = s["batch"]
    c.total_epochs = s["epochs"]
    c.data.image_size = 224
    c.data.text_length = 77
    c.data.augment = "clip"  # RandomResizedCrop (0.9, 1), as OpenCLIP trains
    c.data.crop_scale = (0.9, 1.0)
    if s["image"] in sizes.RESNET_SIZES:  # OpenAI's modified ResNet, BN trained (open_clip RN50: embed 1024)
        c.model.image_tower, c.model.image = "resnet", sizes.resnet(s["image"])
        c.model.embed_dim = sizes.RESNET_CLIP[s["image"]][0]
    else:
        c.model.image = sizes.vit(s["image"], image_size=224, pool="tok", pos_emb="learn", ln_pre=True)
        c.model.embed_dim = 512
    c.model.text = sizes.text("B", context_length=77)
    c.model.dtype = "bfloat16"
    c.optim.lr = s["lr"]
    c.optim.end_lr_ratio = s["end_lr"] / s["lr"]
    c.optim.weight_decay = s["wd"]
    c.optim.warmup_steps = s["warmup"]
    c.optim.grad_clip_norm = 0.0  # the FastCLIP scripts do not clip gradients
    c.loss.eps = s["eps"]
    c.loss.gamma_min = s["gamma_min"]
    c.loss.gamma_decay_epochs = s["gamma_epochs"]
    c.loss.rho = s["rho"]
    c.loss.tau_lr = s["tau_lr"]
    if c.loss.name in ("sogclr", "isogclr"):  # their code's constant gamma (Optimization-AI/iSogCLR); no schedule
        c.loss.gamma_min = 0.8
    if c.loss.name in ("fastclip_v2", "isogclr"):  # per-sample temperatures (CC3M script: lr 0.0133, rho 7)
        c.loss.tau_lr, c.loss.tau_init = 0.0133, 0.03
        c.loss.rho = 7.0 if a["dataset"] == "cc3m" else s["rho"]
    c.checkpoint.every_steps = 2000
    c.evals.every_steps = 5000
    return c


# "Scaling (down) CLIP" (arXiv 2404.08197) compares four training strategies at one compute budget. Equal compute is
# kept here with each strategy's train-step cost relative to CLIP's: FLIP's 50% patch masking ~0.5x (FLIP arXiv
# 2212.00794 table 1), SLIP ~2x (SLIP arXiv 2112.12750 section 5; clipjax.tools.slip_cost measures it), so FLIP
# takes 2x and SLIP 0.5x CLIP's steps. Optimiser settings as SLIP's paper: CLIP lr 5e-4 wd 0.5, SLIP lr 3e-3 wd 0.1,
# AdamW (0.9, 0.98), eps 1e-8.
SCALING_DOWN_STRATEGIES: dict[str, dict] = {
    "clip": dict(cost=1.0, augment="clip", lr=5e-4, wd=0.5),
    "clip_aug": dict(cost=1.0, augment="stacked_randaug", lr=5e-4, wd=0.5),  # strong augmentation
    "flip": dict(cost=0.5, augment="clip", lr=5e-4, wd=0.5, keep=0.5),
    "slip": dict(cost=2.0, augment="simclr", lr=3e-3, wd=0.1, ssl_scale=1.0),
}
SCALING_DOWN_SCALES = {
    # ViT-B/16 at 224 px, batch 4096, CLIP's budget 100k steps (410M pairs seen); built-in data stands in for real
    # data (point config.data at it)
    "full": dict(batch=4096, steps=100_000, warmup=2000),
    # configs/tiny.py's CPU model on the built-in world: CLIP's budget 1000 steps x 64
    "cpu": dict(batch=64, steps=1000, warmup=50),
}


def scaling_down_config(strategy: str, scale: str = "full") -> ml_collections.ConfigDict:
    """One of the study's four strategies (SCALING_DOWN_STRATEGIES) at `scale` (SCALING_DOWN_SCALES), with the
    steps that give every strategy CLIP's compute."""
    if strategy not in SCALING_DOWN_STRATEGIES:
        raise ValueError(f"scaling_down strategy {strategy!r}: expected one of {list(SCALING_DOWN_STRATEGIES)}")
    if scale not in SCALING_DOWN_SCALES:
        raise ValueError(f"scaling_down scale {scale!r}: expected one of {list(SCALING_DOWN_SCALES)}")
    s, z = SCALING_DOWN_STRATEGIES[strategy], SCALING_DOWN_SCALES[scale]
    if scale == "cpu":
        c = config_lib.tiny_config()
    else:
        c = config_lib.default_config()
        c.data.image_size, c.data.text_length, c.model.embed_dim = 224, 77, 512
        c.model.image = sizes.vit("B/16", image_size=224, pool="tok", pos_emb="learn", ln_pre=True)
        c.model.text = sizes.text("B", context_length=77)
    c.batch_size = z["batch"]
    c.total_steps = int(round(z["steps"] / s["cost"]))
    c.optim.warmup_steps = int(round(z["warmup"] / s["cost"]))
    c.optim.lr, c.optim.weight_decay, c.optim.b1, c.optim.b2, c.optim.eps = s["lr"], s["wd"], 0.9, 0.98, 1e-8
    c.data.augment = s["augment"]
    if "keep" in s:
        c.tokens.image_strategy, c.tokens.image_keep_ratio = "random", s["keep"]
    if "ssl_scale" in s:
        c.loss.ssl_scale = s["ssl_scale"]
        if scale == "cpu":
            c.loss.ssl_hidden_dim = 256  # SLIP's 4096 would dwarf the CPU towers
    return c


# The study's ViT-vs-CNN question (arXiv 2404.08197 section 4: a CNN can win on less data, a ViT on more) as two image
# towers of about equal cost at two data sizes, trained as 'clip' with CLIP's budget (same batch and steps, so the
# same pairs seen). Towers (ours): ViT-B/32 and OpenAI's RN50 at 224 px, near-equal forward FLOPs per image
# (clipjax.tools.flops); CPU twins: configs/tiny.py's micro ViT and the RNmu ResNet at 64 px. Data sizes (ours):
# 'large' = one epoch of the budget's pairs, 'small' = 1/16 of them seen 16 times. At full scale config.data.size
# sizes the built-in stand-in; point config.data at a real subset of that many pairs.
SCALING_DOWN_TOWERS = {
    "full": {"vit": "B/32", "resnet": "RN50"},
    "cpu": {"vit": "mu/8", "resnet": "RNmu"},
}
SCALING_DOWN_DATA_SIZES = {
    "full": {"small": 25_600_000, "large": 409_600_000},  # 16 epochs / 1 epoch of 100k x 4096
    "cpu": {"small": 4_000, "large": 64_000},            # 16 epochs / 1 epoch of 1000 x 64
}


def scaling_down_tower_config(tower: str, data: str, scale: str = "full") -> ml_collections.ConfigDict:
    """CLIP with the `tower` image tower ('vit' or 'resnet', SCALING_DOWN_TOWERS) on `data` ('small' or 'large',
    SCALING_DOWN_DATA_SIZES) distinct pairs, at CLIP's budget of the study at `scale`."""
    if scale not in SCALING_DOWN_TOWERS:
        raise ValueError(f"scaling_down scale {scale!r}: expected one of {list(SCALING_DOWN_TOWERS)}")
    towers, data_sizes = SCALING_DOWN_TOWERS[scale], SCALING_DOWN_DATA_SIZES[scale]
    if tower not in towers:
        raise ValueError(f"scaling_down tower {tower!r}: expected one of {list(towers)}")
    if data not in data_sizes:
        raise ValueError(f"scaling_down data {data!r}: expected one of {list(data_sizes)}")
    c = scaling_down_config("clip", scale)
    c.data.size = data_sizes[data]
    name, res = towers[tower], c.data.image_size
    if tower == "resnet":  # text tower and joint width as OpenAI's CLIP for that ResNet
        c.model.image_tower, c.model.image = "resnet", sizes.resnet(name, image_size=res)
        c.model.embed_dim = sizes.RESNET_CLIP[name][0]
    elif scale == "full":  # the strategies' ViT-B/16 layout, at patch 32
        c.model.image = sizes.vit(name, image_size=res, pool="tok", pos_emb="learn", ln_pre=True)
    return c
