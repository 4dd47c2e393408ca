"""Tiny CPU version of the CLIPA two-stage recipe on the built-in dataset, stage 1: pre-train with few tokens.

The tiny CLIP of configs/tiny.py (mu/8 towers) at 32 px (16 patches + CLS instead of 64 + CLS at 64 px) with
8 syntax-reduced text tokens (instead of 16), sin-cos position embeddings and gap pooling, as CLIPA does for L/16.
Then configs/clipa/tiny_finetune.py tunes it briefly at 64 px / 16 tokens. Both run in a few minutes on 2 cores:
python -m clipjax.main --config configs/clipa/tiny_pretrain.py --workdir /tmp/clipa_tiny/pretrain
python -m clipjax.main --config configs/clipa/tiny_finetune.py --workdir /tmp/clipa_tiny/finetune
Argument (optional): 'res=PX,text_len=L,text_strategy=S,image_strategy=S,keep=RATIO,steps=N'.
"""
from clipjax import config as config_lib
from clipjax.models import sizes


def get_config(arg=None):
    a = dict(res="32", text_len="8", text_strategy="syntax", image_strategy="none", keep="1.0", steps="600")
    for item in filter(None, (arg or "").split(",")):
        key, _, value = item.partition("=")
        if key not in a:
            raise ValueError(f"config argument {item!r}: expected KEY=VALUE with KEY in {sorted(a)}")
        a[key] = value
    c = config_lib.default_config()
    c.total_steps = int(a["steps"])
    c.batch_size = 64
    c.data.image_size = int(a["res"])
    c.data.text_length = int(a["text_len"])
    c.model.image = sizes.vit("mu/8", image_size=int(a["res"]), pool="gap", pos_emb="sincos2d")
    c.model.text = sizes.text("mu", context_length=int(a["text_len"]))
    c.model.embed_dim = 64
    c.tokens.image_strategy = a["image_strategy"]
    c.tokens.image_keep_ratio = float(a["keep"])
    c.tokens.text_strategy = a["text_strategy"]
    c.optim.lr = 2e-3
    c.optim.b2 = 0.95
    c.optim.warmup_steps = 50
    c.optim.weight_decay = 0.05
    c.checkpoint.every_steps = 200
    c.evals.every_steps = -1
    return c
