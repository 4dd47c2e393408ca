"""CLIPA ViT-L/16 at 64 px (17 image tokens) with 16 syntax text tokens, gap pooling, then 224 / 32.
Published (LAION-400M, IN-1k zero-shot): 60.3% pre-FT -> 67.8% after the fine-tune (~3 days on 8 A100).

python -m clipjax.main --config configs/clipa/l16_64px.py --workdir PT
python -m clipjax.main --config configs/clipa/l16_64px.py:stage=finetune --workdir FT --config.init_from=PT
"""
from clipjax import recipes


def get_config(arg=None):
    return recipes.clipa_config("pretrain", arg, model="L/16")
