"""LLM2CLIP stage 2 at CPU scale: configs/tiny.py (same image tower, data, caption mix, batch and 1000 steps) with
its text transformer replaced by LLM2CLIP's adapter on the frozen caption embeddings of the tiny CC-tuned LLM of
configs/llm2clip/tiny_cc.py. Zero-shot class prompts go through the same LLM and the adapter.

python -m clipjax.tools.embed_captions --config configs/llm2clip/tiny_clip.py --llm /tmp/llm2clip_tiny_cc/hf \\
    --output /tmp/llm2clip_tiny_emb --max_length 48 \\
    --fields caption,phrasing_2,phrasing_3,phrasing_4,phrasing_5,phrasing_6,rewrite_1,rewrite_2,rewrite_3
python -m clipjax.main --config configs/llm2clip/tiny_clip.py --workdir /tmp/llm2clip_tiny_clip
"""
from clipjax import config as config_lib


def get_config():
    c = config_lib.tiny_config()
    c.model.text_tower = "llm_adapter"
    c.model.adapter_blocks = 4
    c.llm.folder = "/tmp/llm2clip_tiny_cc/hf"
    c.llm.max_length = 48          # as stage 1 (config.tiny_llm_config); embed_captions --max_length 48
    c.data.text_embeddings = "/tmp/llm2clip_tiny_emb"
    return c
