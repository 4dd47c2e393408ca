"""The shared small config used to compare speed across changes: 64 px images, patch 8, width 192, depth 6,
3 heads, text 32 tokens (vocab 49408), embedding 128, batch 64.

python -m clipjax.tools.benchmark --config configs/small.py --baseline
"""
from clipjax import config as config_lib
from clipjax.models import sizes


def get_config():
    c = config_lib.default_config()
    c.batch_size = 64
    c.data.image_size = 64
    c.data.text_length = 32
    c.model.image = sizes.vit("Ti/8", image_size=64, depth=6)
    c.model.text = sizes.text("Ti", context_length=32, depth=6)
    c.model.embed_dim = 128
    return c
