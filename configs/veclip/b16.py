"""VeCLIP (arXiv 2310.07699): per sample and step, the visual-enriched caption (VeC, an LLM fusion of the AltText and
a VLM description of the image) with probability `data.veclip_prob` (0.5), else the AltText; ViT-B/16. Published
(apple/ml-veclip README, 12M pairs): COCO I2T R@1 24.5 -> 47.8, IN-1k 31.6 -> 38.1.

python -m clipjax.main --config configs/veclip/b16.py --workdir DIR --config.data.path=/data/vecap/{00000..01199}.tar
Webdataset shards carry the AltText under `txt` and the VeC in the json field named by data.veclip_field ('vec').
For your own data, `python -m clipjax.tools.vec_captions` writes no shard field but OUTPUT/vec.txt (line i = the VeC
of row i) for a CSV index: --config.data.name=csv --config.data.path=INDEX.csv --config.data.caption_fields=''
--config.data.rewrite_files=OUTPUT/vec.txt --config.data.veclip_field=rewrite_1. Optimiser and length: OpenCLIP's B/16
defaults (AdamW (0.9, 0.98), eps 1e-6, wd 0.2, lr 5e-4, batch 32k, 10k warm-up); the exact VeCLIP values are not
given here.
"""
from clipjax import config as config_lib
from clipjax.models import sizes


def get_config():
    c = config_lib.default_config()
    c.data.name = "webdataset"
    c.data.path = "/data/vecap/{00000..01199}.tar"
    c.data.caption_fields = "vec"
    c.data.caption_mode = "veclip"
    c.data.veclip_field = "vec"
    c.data.veclip_prob = 0.5
    c.data.size = 12_000_000
    c.data.augment = "clip"
    c.data.image_size = 224
    c.data.text_length = 77
    c.batch_size = 32768
    c.total_epochs = 30
    c.model.image = sizes.vit("B/16", image_size=224, pool="tok", ln_pre=True)
    c.model.text = sizes.text("B", context_length=77)
    c.model.embed_dim = 512
    c.model.dtype = "bfloat16"
    c.optim.lr = 5e-4
    c.optim.warmup_steps = 10_000
    c.checkpoint.every_steps = 2000
    c.evals.every_steps = 5000
    return c
