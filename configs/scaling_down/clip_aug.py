"""'Scaling (down) CLIP' (arXiv 2404.08197) strategy 'clip_aug' at equal compute, ViT-B/16 at 224 px, batch 4096 (clipjax.recipes.scaling_down_config).

python -m clipjax.main --config configs/scaling_down/clip_aug.py --workdir DIR
"""
from clipjax import recipes


def get_config():
    return recipes.scaling_down_config("clip_aug", "full")
