"""LLM2CLIP stage 1, step 1 at CPU scale: pre-train a tiny Llama (2 layers, width 64, GQA 4/2 heads) from scratch on
the built-in world's captions with a word-level tokenizer built from them, and save it as a Hugging Face folder that
the next stages load like a downloaded Llama (`clipjax.llm_train`, stage 'clm'). About 1.5 minutes on 2 CPU cores.

python -m clipjax.llm_train --config configs/llm2clip/tiny_lm.py --workdir /tmp/llm2clip_tiny_lm
-> /tmp/llm2clip_tiny_lm/hf (read by configs/llm2clip/tiny_mntp.py)
"""
from clipjax import config as config_lib


def get_config():
    c = config_lib.tiny_llm_config("clm")  # model sizes: config.llm.scratch (the defaults)
    c.total_steps = 300
    c.optim.lr = 3e-3
    c.optim.warmup_steps = 30
    c.optim.weight_decay = 0.01
    c.optim.b2 = 0.99
    return c
