"""'Scaling (down) CLIP' (arXiv 2404.08197) ViT vs CNN: CLIP with configs/tiny.py's micro ViT (CPU twin:
built-in world, 64 px, batch 64).
Large data: one epoch of CLIP's budget (clipjax.recipes.scaling_down_tower_config).

python -m clipjax.main --config configs/scaling_down/tiny_tower_vit_large.py --workdir DIR
"""
from clipjax import recipes


def get_config():
    return recipes.scaling_down_tower_config("vit", "large", "cpu")
