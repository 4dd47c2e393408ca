"""'Scaling (down) CLIP' (arXiv 2404.08197) strategy 'clip_aug' at equal compute, CPU twin on the built-in world (configs/tiny.py's model) (clipjax.recipes.scaling_down_config).

python -m clipjax.main --config configs/scaling_down/tiny_clip_aug.py --workdir DIR
"""
from clipjax import recipes


def get_config():
    return recipes.scaling_down_config("clip_aug", "cpu")
