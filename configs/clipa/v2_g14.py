"""CLIPA-v2 ViT-G/14 (bigG): 12.8B samples at 84 px (or res=70) with 8 syntax text tokens, then 512M at
224 px with 30% random masking (30-40% published), then 128M at 336 px with 40% masking.
Published: 83.0% IN-1k zero-shot. Batch 64k / 32k / 16k; lr 8e-6 / 4e-7 / 1e-7 x batch / 256.

python -m clipjax.main --config configs/clipa/v2_g14.py --workdir PT
python -m clipjax.main --config configs/clipa/v2_g14.py:stage=finetune --workdir FT224 --config.init_from=PT
python -m clipjax.main --config configs/clipa/v2_g14.py:stage=finetune336 --workdir FT336 --config.init_from=FT224
"""
from clipjax import recipes


def get_config(arg=None):
    return recipes.clipa_config("pretrain", arg, model="G/14")
