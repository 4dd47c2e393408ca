"""Tiny CLIP on the built-in synthetic dataset: trains on 2 CPU cores in a few minutes.

python -m clipjax.main --config configs/tiny.py --workdir /tmp/tiny
Micro ViT (patch 8, 64 px, gap pooling) and micro text tower (16 tokens), batch 64, 1000 steps
(`clipjax.config.tiny_config`).
"""
from clipjax import config as config_lib


def get_config():
    return config_lib.tiny_config()
