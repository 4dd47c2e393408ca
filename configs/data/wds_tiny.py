"""The tiny CLIP (configs/tiny.py) trained from webdataset tar shards, with LaCLIP caption mixing and 'clip' crops.

Write the built-in world (64 px) as img2dataset-style shards, then train from them:
  python -m clipjax.data.convert --config configs/tiny.py --config.data.size=4096 --format webdataset \
      --examples_per_shard 512 --output /tmp/wds_tiny
  python -m clipjax.main --config configs/data/wds_tiny.py:/tmp/wds_tiny --workdir /tmp/wds_tiny_run
The argument is the shard location (a directory, a brace pattern such as DIR/{00000..00007}.tar, or a list).
"""
from clipjax import config as config_lib
from clipjax.models import sizes


def get_config(path: str = "/tmp/wds_tiny"):
    c = config_lib.default_config()
    c.total_steps = 1000
    c.batch_size = 64
    c.data.name = "webdataset"
    c.data.path = path
    c.data.size = -1               # scan the shard headers for the largest index
    c.data.image_size = 64
    c.data.text_length = 16
    c.data.augment = "clip"
    c.data.caption_mode = "laclip"
    c.data.caption_fields = "rewrite_1,rewrite_2,rewrite_3"
    c.data.shuffle_buffer = 1000
    c.model.image = sizes.vit("mu/8", image_size=64, pool="gap")
    c.model.text = sizes.text("mu", context_length=16)
    c.model.embed_dim = 64
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 50
    c.optim.weight_decay = 0.05
    c.checkpoint.every_steps = 200
    c.evals.every_steps = 200      # held-out split of the built-in world (what the shards were written from)
    return c
