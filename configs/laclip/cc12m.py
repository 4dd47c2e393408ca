"""LaCLIP (arXiv 2305.20088) on CC12M: every step each image's caption is drawn uniformly from the original and its
LLM rewrites (LijieFan/LaCLIP releases four: ChatGPT, Bard, MSCOCO, Human; a draw of fewer than 2 words falls back
to the original), RandomResizedCrop (0.5, 1), ViT-B/16. Published IN-1k zero-shot: 40.2 (CLIP) -> 48.4 (LaCLIP).

python -m clipjax.main --config configs/laclip/cc12m.py --workdir DIR --config.data.path=cc12m_original.csv \
    --config.data.image_root=/data/cc12m \
    --config.data.rewrite_files=cc12m_chatgpt.txt,cc12m_bard.txt,cc12m_mscoco.txt,cc12m_human.txt
The rewrite files are aligned line by line with the CSV's rows (path,caption with a header). The optimiser settings
are SLIP's CLIP ones (facebookresearch/SLIP, whose code LaCLIP builds on): AdamW (0.9, 0.98), eps 1e-8, lr 5e-4,
weight decay 0.5, batch 4096, 1 warm-up epoch; the epoch count (35) is ours.
"""
from clipjax import config as config_lib
from clipjax.models import sizes


def get_config():
    c = config_lib.default_config()
    c.data.name = "csv"
    c.data.path = "cc12m_original.csv"
    c.data.csv_header = True
    c.data.size = 10_000_000
    c.data.caption_mode = "laclip"
    c.data.augment = "clip"
    c.data.crop_scale = (0.5, 1.0)
    c.data.image_size = 224
    c.data.text_length = 77
    c.batch_size = 4096
    c.total_epochs = 35
    c.model.image = sizes.vit("B/16", image_size=224, pool="tok", ln_pre=True)
    c.model.text = sizes.text("B", context_length=77)
    c.model.embed_dim = 512
    c.model.dtype = "bfloat16"
    c.optim.lr = 5e-4
    c.optim.eps = 1e-8
    c.optim.weight_decay = 0.5
    c.optim.warmup_steps = c.data.size // c.batch_size
    c.checkpoint.every_steps = 2000
    c.evals.every_steps = 5000
    return c
