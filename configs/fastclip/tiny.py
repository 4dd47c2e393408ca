"""FastCLIP-v3 (or another GCL-family loss) at CPU scale on the built-in dataset: configs/tiny.py's model.

python -m clipjax.main --config configs/fastclip/tiny.py --workdir /tmp/fastclip_tiny
python -m clipjax.main --config configs/fastclip/tiny.py:sogclr --workdir /tmp/sogclr_tiny   # any loss name
The gamma schedule is scaled to the short run: epoch 0 at gamma 1, then cosine to 0.2 over 2 epochs of
data.size examples (so it matters within a few hundred steps at batch 32).
"""
from clipjax import config as config_lib


def get_config(arg=None):
    c = config_lib.tiny_config()
    c.loss.name = config_lib.parse_arg(arg, {"loss": "fastclip_v3"})["loss"]
    c.batch_size = 32
    c.data.size = 4096
    c.loss.gamma_min = 0.2
    c.loss.gamma_decay_epochs = 2
    c.loss.rho = 6.5
    c.loss.tau_lr = 2e-3 if c.loss.name == "fastclip_v3" else 1e-2  # v3: AdamW on log(1/tau); v2: per sample
    return c
