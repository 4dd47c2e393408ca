"""FastCLIP on LAION-315M: the published setting (ViT-B/16), FastCLIP-v3 unless an argument names another loss.

python -m clipjax.main --config configs/fastclip/laion315m.py --workdir DIR            # fastclip_v3
python -m clipjax.main --config configs/fastclip/laion315m.py:fastclip_v2 --workdir DIR  # any loss name

Settings from ../shared/METHODS.md section 3 and the FastCLIP scripts: batch 5120, 30 epochs, AdamW lr 2e-4, wd 0.2,
gamma 1 -> 0.8 over 10 epochs, rho 16, eps 1e-6. Warm-up and temperature lr are the CC3M script's (not published
here). The towers are the paper's ViT-B/16 and text B. Real data needs the data pipeline (config.data pointing at
LAION-315M shards with their global sample index); until then config.data.name is the built-in dataset and data.size
is LAION-315M's epoch length, used for the epoch count (gamma schedule, total_epochs). The per-sample state is sized
by the pipeline's data_size (largest index + 1, img2dataset keys have gaps) and is sharded by index range (2 x 414M
float32 for v3).
"""
from clipjax import config as config_lib
from clipjax.models import sizes


def get_config(loss: str = "fastclip_v3"):
    c = config_lib.default_config()
    c.loss.name = loss or "fastclip_v3"
    c.data.size = 315_000_000
    c.batch_size = 5120
    c.total_epochs = 30
    c.data.image_size = 224
    c.data.text_length = 77
    c.model.image = sizes.vit("B/16", image_size=224, pool="tok", pos_emb="learn")
    c.model.text = sizes.text("B", context_length=77)
    c.model.embed_dim = 512
    c.model.dtype = "bfloat16"
    c.optim.name = "adamw"          # lamb / lion also selectable
    c.optim.lr = 2e-4
    c.optim.weight_decay = 0.2
    c.optim.warmup_steps = 10000
    c.optim.grad_clip_norm = 0.0    # the FastCLIP scripts do not clip gradients
    c.loss.eps = 1e-6
    c.loss.gamma_min = 0.8
    c.loss.gamma_decay_epochs = 10
    c.loss.rho = 16.0
    c.loss.tau_lr = 2e-4            # fastclip_v3: AdamW on log(1/tau), / 3 once tau <= 0.03 (CC3M value)
    if c.loss.name in ("fastclip_v2", "isogclr"):  # per-sample temperatures (CC3M script: lr 0.0133, rho 7)
        c.loss.tau_lr = 0.0133
        c.loss.tau_init = 0.03
        c.loss.rho = 16.0
    c.checkpoint.every_steps = 2000
    c.evals.every_steps = 5000
    return c
