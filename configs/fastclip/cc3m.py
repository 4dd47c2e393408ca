"""FastCLIP on CC3M: the published setting (`clipjax.recipes.FASTCLIP_TABLE`) with the paper's RN50 image tower
(OpenAI's modified ResNet, batch norm trained, embed 1024), FastCLIP-v3 unless the argument names another loss.

python -m clipjax.main --config configs/fastclip/cc3m.py --workdir DIR              # fastclip_v3
python -m clipjax.main --config configs/fastclip/cc3m.py:fastclip_v2 --workdir DIR  # or sogclr, isogclr, v0, v1, clip

config.data must point at the CC3M data with its global sample index (see README, Data); data.size is the
epoch length the gamma schedule and total_epochs count in (set it to the examples you actually have). The
per-sample state is sized by the pipeline's largest index + 1 and sharded by index range above
loss.shard_state_above.
"""
from clipjax import recipes


def get_config(arg=None):
    return recipes.fastclip_config(arg, dataset="cc3m")
