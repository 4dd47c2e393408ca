"""LLM2CLIP stage 1, step 3 at CPU scale: caption-contrastive LoRA fine-tuning of the MNTP model of
configs/llm2clip/tiny_mntp.py on the built-in world (a short and a long phrasing of one image, or a phrasing and a
paraphrase; a coin flip picks the query, which carries the instruction; a same-type caption of another image is the
hard negative; loss cosine x 50 over the global batch). Logs caption-to-caption R@1 on 256 held-out images before
and after (`clipjax.llm_train`, 'cc'); the merged folder is the frozen text encoder of LLM2CLIP's stage 2. About two
minutes on 2 CPU cores; R@1 short -> long rises from chance (~0.4%) to ~84%.

python -m clipjax.llm_train --config configs/llm2clip/tiny_cc.py --workdir /tmp/llm2clip_tiny_cc \\
    [--config.llm.folder=/tmp/llm2clip_tiny_mntp/hf]
-> /tmp/llm2clip_tiny_cc/hf and /tmp/llm2clip_tiny_cc/lora_adapters.safetensors
"""
from clipjax import config as config_lib


def get_config():
    c = config_lib.tiny_llm_config("cc")
    c.llm.folder = "/tmp/llm2clip_tiny_mntp/hf"
    c.llm.pairs = "short_long,paraphrase"
    c.llm.eval_examples = 256
    c.total_steps = 300
    c.optim.lr = 5e-3
    return c
