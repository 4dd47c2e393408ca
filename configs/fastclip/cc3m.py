"""FastCLIP on CC3M: the published setting (8 GPUs x 128, ResNet-50 in the paper), FastCLIP-v3 unless an argument names
another loss.

python -m clipjax.main --config configs/fastclip/cc3m.py --workdir DIR            # fastclip_v3
python -m clipjax.main --config configs/fastclip/cc3m.py:fastclip_v2 --workdir DIR  # or sogclr, isogclr, v0, v1, clip

Settings from ../shared/METHODS.md section 3 and the FastCLIP scripts: batch 1024, 37 epochs, AdamW lr 1e-3, wd 0.1,
warm-up 10k steps, gamma 1 -> 0.2 over 18 epochs, rho 6.5, eps 1e-14, v3 temperature lr 2e-4. The image tower is
ViT-B/32, standing in where the paper used ResNet-50 (clipjax has no ResNet tower). Real data needs the data
pipeline (config.data pointing at CC3M shards with their global sample index); until then config.data.name is the
built-in dataset and data.size is CC3M's epoch length, used for the epoch count (gamma schedule, total_epochs). The
per-sample state is sized by the pipeline's data_size (largest index + 1, img2dataset keys have gaps) and is
replicated (3.3M < loss.shard_state_above).
"""
from clipjax import config as config_lib
from clipjax.models import sizes


def get_config(loss: str = "fastclip_v3"):
    c = config_lib.default_config()
    c.loss.name = loss or "fastclip_v3"
    c.data.size = 2_723_840
    c.batch_size = 1024
    c.total_epochs = 37
    c.data.image_size = 224
    c.data.text_length = 77
    c.model.image = sizes.vit("B/32", image_size=224, pool="tok", pos_emb="learn")
    c.model.text = sizes.text("B", context_length=77)
    c.model.embed_dim = 512
    c.model.dtype = "bfloat16"
    c.optim.name = "adamw"          # lamb / lion also selectable
    c.optim.lr = 1e-3
    c.optim.weight_decay = 0.1
    c.optim.warmup_steps = 10000
    c.optim.grad_clip_norm = 0.0    # the FastCLIP scripts do not clip gradients
    c.loss.eps = 1e-14
    c.loss.gamma_min = 0.2
    c.loss.gamma_decay_epochs = 18
    c.loss.rho = 6.5
    c.loss.tau_lr = 2e-4            # fastclip_v3: AdamW on log(1/tau), / 3 once tau <= 0.03
    if c.loss.name in ("fastclip_v2", "isogclr"):  # per-sample temperatures (CC3M script: lr 0.0133, rho 7)
        c.loss.tau_lr = 0.0133
        c.loss.tau_init = 0.03
        c.loss.rho = 7.0
    c.checkpoint.every_steps = 2000
    c.evals.every_steps = 5000
    return c
