"""CLIPA ViT-L/16 at 96 px (37 image tokens) with 8 syntax text tokens, gap pooling, then 224 / 32.
Published (LAION-400M, IN-1k zero-shot): 57.9% pre-FT -> 69.3% after the fine-tune (~4 days on 8 A100).

python -m clipjax.main --config configs/clipa/l16_96px.py --workdir PT
python -m clipjax.main --config configs/clipa/l16_96px.py:stage=finetune --workdir FT --config.init_from=PT
"""
from clipjax import recipes


def get_config(arg=None):
    return recipes.clipa_config("pretrain", arg, model="L/16@96")
