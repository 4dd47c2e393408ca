"""FLIP ViT-L/16 with 75% random image masking at 224 px (49 of 196 patches + CLS), batch 64k, then unmasked
tuning. Published (LAION-400M, IN-1k zero-shot): 68.2% at 0.33x the unmasked training time; unmasked tuning
(+0.32 epoch, lr 4e-8 x batch / 256) adds +1.3.

python -m clipjax.main --config configs/flip/l16_mask75.py --workdir PT
python -m clipjax.main --config configs/flip/l16_mask75.py:stage=tune,batch=65536 --workdir FT --config.init_from=PT
"""
from clipjax import recipes


def get_config(arg=None):
    return recipes.flip_config("mask75", arg)
