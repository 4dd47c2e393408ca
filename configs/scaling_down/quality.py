"""'Scaling (down) CLIP' (arXiv 2404.08197 section 3) quality subsets: strategy 'clip' at equal compute, trained on
the top fraction of pairs by a CLIP model's image-text score (`config.data.filter`), or on all of them.

python -m clipjax.tools.score --config CFG --model MODEL --output SCORES      # score the pairs once
python -m clipjax.main --config configs/scaling_down/quality.py:scores=SCORES,top_fraction=0.5 --workdir DIR
python -m clipjax.main --config configs/scaling_down/quality.py:tiny=1,noise=0.5,scores=SCORES --workdir DIR

Arguments: `scores` (the scores folder; '' trains on all pairs), `top_fraction` (default 0.5), `tiny` (the CPU twin
on the built-in world) and `noise` (the twin's `data.caption_noise`, the share of mismatched captions). Point
`config.data` at the scored dataset at full scale; the equal-steps comparison is the same config with `scores=''`.
"""
from clipjax import config as config_lib, recipes


def get_config(arg: str | None = None):
    a = config_lib.parse_arg(arg, {"scores": "", "top_fraction": 0.5, "tiny": False, "noise": 0.0})
    c = recipes.scaling_down_config("clip", "cpu" if a["tiny"] else "full")
    if a["noise"]:
        c.data.caption_noise = a["noise"]
    if a["scores"]:
        c.data.filter.scores, c.data.filter.top_fraction = a["scores"], a["top_fraction"]
    return c
