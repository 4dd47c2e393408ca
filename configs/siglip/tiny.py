"""SigLIP's sigmoid loss on configs/tiny.py's CLIP and the built-in dataset (t init 10, b init -10).

python -m clipjax.main --config configs/siglip/tiny.py --workdir /tmp/siglip_tiny
"""
import math

from clipjax import config as config_lib


def get_config():
    c = config_lib.tiny_config()
    c.loss.name = "siglip"
    c.model.logit_scale_init = math.log(10.0)
    c.model.logit_bias_init = -10.0
    return c
