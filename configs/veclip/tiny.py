"""VeCLIP's caption mix on the built-in dataset: with probability 0.5 the world's most detailed phrasing (field
phrasing_5, standing in for a visual-enriched caption), else the primary caption (the AltText).

python -m clipjax.main --config configs/veclip/tiny.py --workdir /tmp/veclip_tiny
"""
from clipjax import config as config_lib


def get_config():
    c = config_lib.tiny_config()
    c.data.caption_mode = "veclip"
    c.data.veclip_field = "phrasing_5"
    c.data.veclip_prob = 0.5
    return c
