"""Tiny CLIPA two-stage recipe, stage 2: fine-tune the tiny pre-training run at full size, 64 px / 16 tokens,
without masking, at a tenth of the learning rate (CLIPA: 8e-7 vs 8e-6 per 256). Parameters come from
config.init_from (default /tmp/clipa_tiny/pretrain, see tiny_pretrain.py); the text position embedding grows from
8 to 16 rows by linear resizing; the optimiser starts fresh.
python -m clipjax.main --config configs/clipa/tiny_finetune.py --workdir /tmp/clipa_tiny/finetune \
    [--config.init_from=PRETRAIN_WORKDIR]
"""
from clipjax import config as config_lib
from clipjax.models import sizes


def get_config():
    c = config_lib.tiny_config()
    c.total_steps = 200
    c.model.image = sizes.vit("mu/8", image_size=64, pool="gap", pos_emb="sincos2d")
    c.optim.lr = 2e-4
    c.optim.b2 = 0.95
    c.optim.warmup_steps = 20
    c.evals.every_steps = -1
    c.init_from = "/tmp/clipa_tiny/pretrain"
    c.init_text_pos = "resize"
    return c
