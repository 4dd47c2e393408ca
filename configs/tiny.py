"""Tiny CLIP on the built-in synthetic dataset: trains on 2 CPU cores in a few minutes.

python -m clipjax.main --config configs/tiny.py --workdir /tmp/tiny
"""
from clipjax import config as config_lib
from clipjax.models import sizes


def get_config():
    c = config_lib.default_config()
    c.total_steps = 1000
    c.batch_size = 64
    c.data.image_size = 64
    c.data.text_length = 16
    c.model.image = sizes.vit("mu/8", image_size=64, pool="gap")
    c.model.text = sizes.text("mu", context_length=16)
    c.model.embed_dim = 64
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 50
    c.optim.weight_decay = 0.05
    c.checkpoint.every_steps = 200
    c.evals.every_steps = 200
    return c
