"""'Scaling (down) CLIP' (arXiv 2404.08197) ViT vs CNN: CLIP with ViT-B/32, 224 px, batch 4096.
Small data: 1/16 of CLIP's budget of pairs, seen 16 times (clipjax.recipes.scaling_down_tower_config).

python -m clipjax.main --config configs/scaling_down/tower_vit_small.py --workdir DIR
"""
from clipjax import recipes


def get_config():
    return recipes.scaling_down_tower_config("vit", "small", "full")
