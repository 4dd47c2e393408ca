"""Tiny CPU version of the CLIPA two-stage recipe on the built-in dataset, stage 1: pre-train with few tokens.

configs/tiny.py's CLIP at 32 px (16 patches + CLS instead of 64 + CLS at 64 px) with 8 syntax-reduced text
tokens (instead of 16) and sin-cos position embeddings, as CLIPA does for L/16. Then configs/clipa/tiny_finetune.py
tunes it briefly at 64 px / 16 tokens. Both run in a few minutes on 2 cores:
python -m clipjax.main --config configs/clipa/tiny_pretrain.py --workdir /tmp/clipa_tiny/pretrain
python -m clipjax.main --config configs/clipa/tiny_finetune.py --workdir /tmp/clipa_tiny/finetune
Argument (optional): 'res=PX,text_len=L,text_strategy=S,image_strategy=S,keep=RATIO,steps=N'.
"""
from clipjax import config as config_lib
from clipjax.models import sizes

DEFAULTS = dict(res=32, text_len=8, text_strategy="syntax", image_strategy="none", keep=1.0, steps=600)


def get_config(arg=None):
    a = config_lib.parse_arg(arg, DEFAULTS)
    c = config_lib.tiny_config()
    c.total_steps = a["steps"]
    c.data.image_size = a["res"]
    c.data.text_length = a["text_len"]
    c.model.image = sizes.vit("mu/8", image_size=a["res"], pool="gap", pos_emb="sincos2d")
    c.model.text = sizes.text("mu", context_length=a["text_len"])
    c.tokens.image_strategy = a["image_strategy"]
    c.tokens.image_keep_ratio = a["keep"]
    c.tokens.text_strategy = a["text_strategy"]
    c.optim.b2 = 0.95
    c.evals.every_steps = -1
    return c
