"""Input-pipeline benchmark: 256-px JPEG webdataset shards -> 224-px 'clip' crops, batch 64.

Make shards (synthetic world, 256 px JPEG):
  python -m clipjax.data.convert --config configs/tiny.py --config.data.image_size=256 --config.data.size=2048 \
      --format webdataset --examples_per_shard 256 --output /tmp/wds256
python -m clipjax.data.benchmark --config configs/data/wds_bench.py [--config.data.path=DIR]
"""
from clipjax import config as config_lib
from clipjax.models import sizes


def get_config():
    c = config_lib.default_config()
    c.batch_size = 64
    c.data.name = "webdataset"
    c.data.path = "/tmp/wds256"
    c.data.size = -1
    c.data.image_size = 224
    c.data.text_length = 77
    c.model.image = sizes.vit("B/16", image_size=224)  # a valid full config; the benchmark reads only config.data
    c.model.text = sizes.text("B", context_length=77)
    c.data.augment = "clip"
    c.data.caption_mode = "laclip"
    c.data.caption_fields = "rewrite_1,rewrite_2,rewrite_3"
    return c
