"""LLM2CLIP stage 2 (arXiv 2411.04997 Sec. 3.2 and 4.1; microsoft/LLM2CLIP): CLIP training with the frozen
caption-contrastive Llama-3-8B of configs/llm2clip/llama3_8b_cc.py as the text encoder. Each caption's embedding is
computed once (`clipjax.tools.embed_captions`, no instruction); per sample the short or the dense caption is drawn
50/50; the text side trains only the adapter (4 residual MLP blocks, ~274M parameters at width 4096); the image
tower starts from converted OpenAI / OpenCLIP weights and trains whole with layer-wise lr decay 0.85; plain CLIP loss,
logit scale ln(1/0.07), lr 1e-5, weight decay 0.05 (matrices only), no warm-up, grad clip 5, batch 4096 on
CC3M + CC12M. The epoch count (4) is ours.

Argument: the converted image tower folder (python -m clipjax.tools.convert_weights --from openclip --to clipjax
--model ViT-L-14 ...; OpenAI's weights use QuickGELU and need --allow_inexact); its model.json gives the tower.

python -m clipjax.tools.embed_captions --config configs/llm2clip/llama3_8b_clip.py:/ckpt/vit_l14 \\
    --llm /runs/cc/hf --output /data/cc_emb --fields caption,long --max_length 128 --dtype bfloat16 \\
    --config.data.path=/data/cc3m_cc12m.csv --config.data.image_root=/data/images
python -m clipjax.main --config configs/llm2clip/llama3_8b_clip.py:/ckpt/vit_l14 --workdir /runs/llm2clip \\
    --config.data.path=/data/cc3m_cc12m.csv --config.data.image_root=/data/images
"""
import json
import os

from clipjax import config as config_lib
from clipjax.models import sizes


def get_config(image_folder: str = ""):
    c = config_lib.default_config()
    c.data.name = "csv"
    c.data.path = "cc3m_cc12m.csv"  # columns path,caption,long (the dense caption) with a header
    c.data.csv_header = True
    c.data.caption_fields = "long"
    c.data.caption_mode = "weighted"  # short (the original) or dense, 50/50
    c.data.caption_weights = "caption:1,long:1"
    c.data.size = 15_000_000       # CC3M + CC12M rows (set to the CSV's count)
    c.data.augment = "clip"
    c.data.image_size = 224
    c.data.text_embeddings = "/data/cc_emb"
    c.model.image = sizes.vit("L/14", image_size=224, pool="tok", ln_pre=True)
    c.model.embed_dim = 768
    c.model.dtype = "bfloat16"
    c.model.remat = "full"
    c.model.text_tower = "llm_adapter"
    c.model.adapter_blocks = 4
    c.llm.folder = "/runs/cc/hf"   # the merged caption-contrastive Llama-3-8B
    c.llm.max_length = 128
    c.llm.dtype = "bfloat16"
    if image_folder:  # the converted tower fixes the image model; only 'image' is taken from it
        with open(os.path.join(image_folder, "model.json")) as f:
            model = json.load(f)
        c.model.image.update(model["image"])
        c.model.embed_dim = model["embed_dim"]
        c.data.image_size = model["image"]["image_size"]
        c.init_from, c.init_from_keys = os.path.abspath(image_folder), "image"
    c.batch_size = 4096
    c.total_epochs = 4
    c.optim.lr = 1e-5
    c.optim.warmup_steps = 0
    c.optim.weight_decay = 0.05
    c.optim.grad_clip_norm = 5.0
    c.optim.layer_decay = 0.85
    c.mesh.data, c.mesh.fsdp = 1, -1
    c.checkpoint.every_steps = 1000
    c.evals.every_steps = 2000
    return c
