"""FLIP ViT-L/16 with 50% random image masking at 224 px (98 of 196 patches + CLS), batch 32k, then unmasked tuning.
Published (LAION-400M, IN-1k zero-shot): 69.6% at 0.50x the unmasked training time; unmasked tuning (+0.32
epoch, lr 4e-8 x batch / 256) adds +0.5. Text is not masked (text masking hurts in FLIP).

python -m clipjax.main --config configs/flip/l16_mask50.py --workdir PT
python -m clipjax.main --config configs/flip/l16_mask50.py:stage=tune --workdir FT --config.init_from=PT
"""
from clipjax import recipes


def get_config(arg=None):
    return recipes.flip_config("mask50", arg)
