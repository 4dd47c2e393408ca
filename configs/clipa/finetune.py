"""CLIPA fine-tuning ("unmasked tuning") from a pre-training workdir, parameterised by model size.

python -m clipjax.main --config configs/clipa/finetune.py:model=L/16 --workdir FT_DIR --config.init_from=PT_DIR
CLIPA (v1, B/16 and L/16): 224 px, text 32, no masking, lr 8e-7 x batch / 256, ~131M samples.
CLIPA-v2 (H/14, G/14): stage 'finetune' = 224 px with 30% random masking (512M samples, lr 4e-7 x batch / 256 at
32k), then `:model=H/14,stage=finetune336` = 336 px with 40% masking (128M samples, 1e-7 at 16k), each from the
previous stage.
Parameters come from config.init_from; sin-cos position embeddings are recomputed, the text position embedding
is resized from the pre-training length to 32 (config.init_text_pos), the optimiser starts fresh.
"""
from clipjax import recipes


def get_config(arg=None):
    return recipes.clipa_config("finetune", arg)
