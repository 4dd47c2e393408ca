"""LLM2CLIP stage 1 caption-contrastive training of Llama-3-8B-Instruct (arXiv 2411.04997 Sec. 3.1; supervised
LLM2Vec settings, McGill-NLP/llm2vec train_configs/supervised/MetaLlama3.json) on top of the merged MNTP weights of
configs/llm2clip/llama3_8b_mntp.py: LoRA r 16 / alpha 32 / dropout 0.05 on q, k, v, o, gate, up, down; pairs are the
short and the long caption of one image (a coin flip picks the query, which carries the instruction); a hard negative
is the same-type caption of another image; loss cosine x 50 against every document and hard negative of the global
batch; batch 512, 1 epoch, lr 2e-4 with 300 warm-up steps, max length 512, bf16, FSDP over all devices. The run
length is 1 epoch of the CSV's rows (data.size below is a placeholder, replaced by the row count at start-up).
The schedule after warm-up is cosine to 0 (transformers' default, which LLM2Vec keeps, decays linearly).

python -m clipjax.llm_train --config configs/llm2clip/llama3_8b_cc.py --workdir /runs/llama3_cc \\
    --config.llm.folder=/runs/llama3_mntp/hf --config.llm.data=/data/cc3m_pairs.csv
-> /runs/llama3_cc/hf (merged weights: the frozen text encoder of stage 2), /runs/llama3_cc/lora_adapters.safetensors
"""
from clipjax import config as config_lib


def get_config():
    c = config_lib.default_config()
    c.llm.stage = "cc"
    c.llm.folder = ""              # required: the merged MNTP folder (or Llama-3-8B-Instruct itself, skipping MNTP)
    c.llm.data = ""                # required: CSV of caption pairs with a header naming columns short,long
    c.llm.max_length = 512
    c.llm.pad_bucket = 64
    c.llm.dtype = "bfloat16"
    c.llm.remat = True
    c.llm.lora_rank, c.llm.lora_alpha, c.llm.lora_dropout = 16, 32.0, 0.05
    c.llm.pairs = "short_long"
    c.llm.scale = 50.0
    c.llm.eval_examples = 1024     # held-out CSV rows for caption-to-caption R@1
    c.data.size = 2_800_000        # placeholder (~CC3M); the CSV's row count replaces it at start-up
    c.total_epochs = 1.0
    c.batch_size = 512
    c.optim.lr = 2e-4
    c.optim.warmup_steps = 300
    c.optim.schedule = "cosine"
    c.optim.b1, c.optim.b2, c.optim.eps = 0.9, 0.999, 1e-8
    c.optim.weight_decay = 0.0
    c.optim.grad_clip_norm = 1.0
    c.mesh.data, c.mesh.fsdp = 1, -1
    c.checkpoint.every_steps = 200
    c.log_every_steps = 10
    return c
