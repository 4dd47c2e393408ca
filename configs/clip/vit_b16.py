"""OpenCLIP-style ViT-B/16 CLIP at 224 px (with OpenCLIP's ln_pre, so it exports to OpenCLIP and Hugging Face),
text tower B (512 wide, causal, EOT pooling), context 77.

Optimiser as OpenCLIP trains (mlfoundations/open_clip) (AdamW betas (0.9, 0.98), eps 1e-6, wd 0.2, warm-up then cosine). The built-in
dataset stands in for real data here; point config.data at real shards (see README, Data) for real runs.
python -m clipjax.main --config configs/clip/vit_b16.py --workdir DIR
"""
from clipjax import config as config_lib
from clipjax.models import sizes


def get_config():
    c = config_lib.default_config()
    c.batch_size = 256
    c.data.image_size = 224
    c.data.text_length = 77
    c.model.image = sizes.vit("B/16", image_size=224, pool="tok", pos_emb="learn", ln_pre=True)  # OpenCLIP layout
    c.model.text = sizes.text("B", context_length=77)
    c.model.embed_dim = 512
    c.optim.lr = 5e-4
    c.optim.warmup_steps = 2000
    c.optim.weight_decay = 0.2
    c.total_steps = 100_000
    return c
