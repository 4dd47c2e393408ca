"""LaCLIP's caption mix on the built-in dataset: each step draws the caption uniformly from the primary phrasing and
the world's three paraphrases (fields rewrite_1..3, standing in for LLM rewrites); crop (0.5, 1) as LaCLIP.
Compare with configs/tiny.py at data.caption_mode='original' for the effect of rewrites.

python -m clipjax.main --config configs/laclip/tiny.py --workdir /tmp/laclip_tiny
"""
from clipjax import config as config_lib


def get_config():
    c = config_lib.tiny_config()
    c.data.caption_mode = "laclip"
    c.data.augment = "clip"
    c.data.crop_scale = (0.5, 1.0)
    return c
