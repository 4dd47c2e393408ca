"""The tiny CLIP (configs/tiny.py) trained from webdataset tar shards, with LaCLIP caption mixing and 'clip' crops.

Write the built-in world (64 px) as img2dataset-style shards, then train from them:
  python -m clipjax.data.convert --config configs/tiny.py --config.data.size=4096 --format webdataset \
      --examples_per_shard 512 --output /tmp/wds_tiny
  python -m clipjax.main --config configs/data/wds_tiny.py:/tmp/wds_tiny --workdir /tmp/wds_tiny_run
The argument is the shard location (a directory, a brace pattern such as DIR/{00000..00007}.tar, or a list).
"""
from clipjax import config as config_lib


def get_config(path: str = "/tmp/wds_tiny"):
    c = config_lib.tiny_config()
    c.data.name = "webdataset"
    c.data.path = path
    c.data.size = -1               # scan the shard headers for the largest index
    c.data.augment = "clip"
    c.data.caption_mode = "laclip"
    c.data.caption_fields = "rewrite_1,rewrite_2,rewrite_3"
    c.data.shuffle_buffer = 1000
    # evals: the held-out split of the built-in world (what the shards were written from)
    return c
