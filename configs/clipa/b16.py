"""CLIPA ViT-B/16 (arXiv 2305.07017): pre-train at 112 px (50 image tokens) with 16 truncated text tokens,
then fine-tune at 224 px / 32 tokens. Published (LAION-400M, IN-1k zero-shot): 59.7% pre-FT -> 63.2% after the
fine-tune, ~2 days on 8 A100.

python -m clipjax.main --config configs/clipa/b16.py --workdir PT
python -m clipjax.main --config configs/clipa/b16.py:stage=finetune --workdir FT --config.init_from=PT
"""
from clipjax import recipes


def get_config(arg=None):
    return recipes.clipa_config("pretrain", arg, model="B/16")
