"""Size tables for the two towers, returned as fully resolved `ConfigDict`s.

Every field is explicit so that a config file holds concrete values that command-line flags can override
(`--config.model.image.image_size=112`). `clip.build_model` consumes exactly these fields.
"""
from typing import Any

import ml_collections

# name: (width, depth, mlp_dim, num_heads)
VIT_SIZES: dict[str, tuple[int, int, int, int]] = {
        "mu": (64, 2, 256, 2),
        "Ti": (192, 12, 768, 3),
        "S": (384, 12, 1536, 6),
        "B": (768, 12, 3072, 12),
        "L": (1024, 24, 4096, 16),
        "H": (1280, 32, 5120, 16),
        "G": (1664, 48, 8192, 16),
}

# name: (width, depth, num_heads); mlp_dim = 4 * width
TEXT_SIZES: dict[str, tuple[int, int, int]] = {
        "mu": (64, 2, 2),
        "Ti": (192, 12, 3),
        "S": (384, 12, 6),
        "B": (512, 12, 8),
        "L": (768, 12, 12),
        "H": (1024, 24, 16),
        "G": (1280, 32, 20),
}

VIT_POS_EMB = ("sincos2d", "learn")
VIT_POOL = ("tok", "gap", "gap_post_ln", "gap_with_cls", "map")
TEXT_POOL = ("eot", "last", "last_position", "mean", "first")


def _apply(base: dict[str, Any], overrides: dict[str, Any], what: str) -> ml_collections.ConfigDict:
    unknown = sorted(set(overrides) - set(base))
    if unknown:
        raise ValueError(f"{what}: unknown field(s) {unknown}; allowed: {sorted(base)}")
    return ml_collections.ConfigDict({**base, **overrides})


def vit(variant: str, **overrides: Any) -> ml_collections.ConfigDict:
    """ViT image tower config for `variant` = "NAME/PATCH", e.g. "B/16", "mu/8".

    Fields: width, depth, mlp_dim, num_heads, patch_size, image_size (224), pos_emb ('learn' | 'sincos2d';
    default 'learn' as in OpenAI CLIP, FLIP/CLIPA configs set 'sincos2d'), pool ('tok' | 'gap' | 'gap_post_ln' |
    'gap_with_cls' | 'map'; see clipjax.models.vit: CLIPA's layout is 'gap_post_ln', FLIP's 'gap_with_cls'),
    ln_pre (False; True adds OpenAI/OpenCLIP's LayerNorm before the encoder, needed for Hugging Face export).
    """
    name, sep, patch = variant.partition("/")
    if name not in VIT_SIZES or not sep or not patch.isdigit():
        raise ValueError(f"vit variant {variant!r}: expected NAME/PATCH with NAME in {list(VIT_SIZES)}, "
                         "e.g. 'B/16'")
    width, depth, mlp_dim, heads = VIT_SIZES[name]
    cfg = _apply(dict(width=width, depth=depth, mlp_dim=mlp_dim, num_heads=heads, patch_size=int(patch),
                      image_size=224, pos_emb="learn", pool="tok", ln_pre=False), overrides, f"vit({variant!r})")
    if cfg.pos_emb not in VIT_POS_EMB:
        raise ValueError(f"vit pos_emb {cfg.pos_emb!r}: expected one of {VIT_POS_EMB}")
    if cfg.pool not in VIT_POOL:
        raise ValueError(f"vit pool {cfg.pool!r}: expected one of {VIT_POOL}")
    return cfg


def text(variant: str, **overrides: Any) -> ml_collections.ConfigDict:
    """Text tower config for `variant` in TEXT_SIZES, e.g. "B".

    Fields: width, depth, mlp_dim (4 x width), num_heads, vocab_size (49408), context_length (77),
    causal (True: OpenAI causal mask; False: bidirectional), pad_mask (bidirectional only: True masks padding keys,
    False attends to every position as CLIPA, FLIP and OpenCLIP's `no_causal_mask` towers do), pool ('eot' | 'last' |
    'last_position' | 'mean' | 'first'; see clipjax.models.text: CLIPA's layout is causal=False, pad_mask=False,
    pool='last_position', FLIP's causal=False, pad_mask=False, pool='first').
    """
    if variant not in TEXT_SIZES:
        raise ValueError(f"text variant {variant!r}: expected one of {list(TEXT_SIZES)}")
    width, depth, heads = TEXT_SIZES[variant]
    cfg = _apply(dict(width=width, depth=depth, mlp_dim=4 * width, num_heads=heads, vocab_size=49408,
                      context_length=77, causal=True, pad_mask=True, pool="eot"), overrides, f"text({variant!r})")
    if cfg.pool not in TEXT_POOL:
        raise ValueError(f"text pool {cfg.pool!r}: expected one of {TEXT_POOL}")
    return cfg


# OpenAI CLIP's modified ResNets (arXiv 2103.00020 sec 2.4; open_clip model_configs RN*.json):
# name: (blocks per stage, width, image_size). 'RNmu' is a CPU-scale twin for tests and tiny configs.
RESNET_SIZES: dict[str, tuple[tuple[int, int, int, int], int, int]] = {
        "RNmu": ((1, 1, 1, 1), 16, 64),
        "RN50": ((3, 4, 6, 3), 64, 224),
        "RN101": ((3, 4, 23, 3), 64, 224),
        "RN50x4": ((4, 6, 10, 6), 80, 288),
        "RN50x16": ((6, 8, 18, 8), 96, 384),
        "RN50x64": ((3, 15, 36, 10), 128, 448),
}
# The CLIP pairing of each ResNet: (embed_dim, text size); RN50x4's text tower is 640 wide with 10 heads.
RESNET_CLIP: dict[str, tuple[int, tuple[int, int, int]]] = {
        "RNmu": (64, TEXT_SIZES["mu"]),
        "RN50": (1024, (512, 12, 8)),
        "RN101": (512, (512, 12, 8)),
        "RN50x4": (640, (640, 12, 10)),
        "RN50x16": (768, (768, 12, 12)),
        "RN50x64": (1024, (1024, 12, 16)),
}


def resnet(variant: str, **overrides: Any) -> ml_collections.ConfigDict:
    """Modified-ResNet image tower config for `variant` in RESNET_SIZES, e.g. "RN50".

    Fields: layers (bottlenecks per stage, 4 stages), width (stem width w; stages have w, 2w, 4w, 8w planes and
    the pooled feature is 32w wide), num_heads (attention-pool heads, 32w / 64 as OpenCLIP), image_size (a
    multiple of 32; the attention pool's learned position embedding is for (image_size / 32)^2 + 1 tokens).
    Use with config.model.image_tower = 'resnet'.
    """
    if variant not in RESNET_SIZES:
        raise ValueError(f"resnet variant {variant!r}: expected one of {list(RESNET_SIZES)}")
    layers, width, image_size = RESNET_SIZES[variant]
    cfg = _apply(dict(layers=layers, width=width, num_heads=width * 32 // 64, image_size=image_size), overrides,
                 f"resnet({variant!r})")
    if len(cfg.layers) != 4 or min(cfg.layers) < 1:
        raise ValueError(f"resnet layers {tuple(cfg.layers)}: expected 4 positive block counts")
    if cfg.image_size % 32:
        raise ValueError(f"resnet image_size {cfg.image_size}: expected a multiple of 32 (total stride)")
    if (cfg.width * 32) % cfg.num_heads:
        raise ValueError(f"resnet num_heads {cfg.num_heads}: must divide the pooled width 32 * {cfg.width}")
    return cfg
