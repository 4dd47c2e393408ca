"""Start from (or evaluate) weights converted with `python -m clipjax.tools.convert_weights --to clipjax`.

The argument is the converted folder (model.json + state/): the model config is read from it and
config.init_from points at it, so training starts from those weights and `--mode eval` evaluates them as step 0.

python -m clipjax.main --config configs/from_converted.py:/ckpt/vit_b32 --workdir /runs/vit_b32_eval --mode eval \
    --config.evals.tasks=imagenet2012,coco_captions --config.evals.data_dir=/data/tfds
"""
import json
import os

import ml_collections

from clipjax import config as config_lib


def get_config(folder: str):
    path = os.path.join(folder, "model.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"configs/from_converted.py:{folder}: no model.json there (write one with "
                                "python -m clipjax.tools.convert_weights --to clipjax --output FOLDER)")
    with open(path) as f:
        model = ml_collections.ConfigDict(json.load(f))
    c = config_lib.default_config()
    c.model.image = model.image
    c.model.text = model.text
    c.model.embed_dim = model.embed_dim
    c.model.logit_scale_init = model.logit_scale_init
    if model.logit_bias_init is not None:
        c.model.logit_bias_init = model.logit_bias_init
    c.data.image_size = model.image.image_size
    c.data.text_length = model.text.context_length
    c.data.augment = "clip"
    c.init_from = os.path.abspath(folder)
    return c
