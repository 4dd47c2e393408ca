"""LLM2CLIP stage 1, step 2 at CPU scale: LLM2Vec's bidirectional masked next-token prediction (20% of the tokens
selected; 80% of those become <mask>, 10% a random word, 10% stay; the output at i-1 predicts token i) with LoRA
adapters on the tiny LM of configs/llm2clip/tiny_lm.py, merged into the saved weights (`clipjax.llm_train`, 'mntp').
About a minute on 2 CPU cores.

python -m clipjax.llm_train --config configs/llm2clip/tiny_mntp.py --workdir /tmp/llm2clip_tiny_mntp \\
    [--config.llm.folder=/tmp/llm2clip_tiny_lm/hf]
-> /tmp/llm2clip_tiny_mntp/hf (read by configs/llm2clip/tiny_cc.py)
"""
from clipjax import config as config_lib


def get_config():
    c = config_lib.tiny_llm_config("mntp")
    c.llm.folder = "/tmp/llm2clip_tiny_lm/hf"
    c.total_steps = 200
    c.optim.lr = 2e-3
    return c
