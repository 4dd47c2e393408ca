"""SigLIP ViT-B/16 (arXiv 2303.15343): the pairwise sigmoid loss, t = exp(logit_scale) initialised to 10 and
b to -10, attention-pooled (MAP) image tower, 64 text tokens, batch 32k, AdamW with beta2 0.95 (the paper's
setting for stability), lr 1e-3, weight decay 1e-4, 9B examples seen (the paper's shorter schedule).

python -m clipjax.main --config configs/siglip/b16.py --workdir DIR --config.data.name=webdataset \
    --config.data.path=/data/laion/{00000..41407}.tar
The loss runs as a ring over the devices (ppermute): memory O(b_local^2) per block.
"""
import math

from clipjax import config as config_lib
from clipjax.models import sizes


def get_config():
    c = config_lib.default_config()
    c.loss.name = "siglip"
    c.batch_size = 32768
    c.total_steps = 9_000_000_000 // c.batch_size
    c.data.image_size = 224
    c.data.text_length = 64
    c.data.augment = "eval"  # SigLIP trains on resized images without random crops
    c.model.image = sizes.vit("B/16", image_size=224, pool="map", pos_emb="learn")
    c.model.text = sizes.text("B", context_length=64, causal=False, pool="last")
    c.model.embed_dim = 768
    c.model.dtype = "bfloat16"
    c.model.logit_scale_init = math.log(10.0)
    c.model.logit_bias_init = -10.0
    c.optim.lr = 1e-3
    c.optim.b2 = 0.95
    c.optim.weight_decay = 1e-4
    c.optim.warmup_steps = 5000
    c.checkpoint.every_steps = 5000
    c.evals.every_steps = 10000
    return c
