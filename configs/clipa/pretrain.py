"""CLIPA pre-training, parameterised by model size: the image size, text length/strategy and pooling come from
the single table `clipjax.recipes.CLIPA_TABLE` (larger model -> fewer tokens; sources documented there).

python -m clipjax.main --config configs/clipa/pretrain.py:model=L/16 --workdir DIR
Argument: comma-separated KEY=VALUE over recipes.ARG_KEYS, e.g. `model=L/16@96` or `model=L/16,res=96,text_len=8`;
then any `--config.KEY=VALUE`. Recipes: B/16 (112 px, 16 truncated), L/16 (64 px, 16 syntax), L/16@96 (96 px,
8 syntax), H/14 and G/14 (84 px, 8 syntax). lr = 8e-6 x batch / 256, AdamW (0.9, 0.95), wd 0.2.
"""
from clipjax import recipes


def get_config(arg=None):
    return recipes.clipa_config("pretrain", arg)
