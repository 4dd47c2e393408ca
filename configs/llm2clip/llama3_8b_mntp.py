"""LLM2Vec MNTP on Llama-3-8B-Instruct (arXiv 2404.05961; McGill-NLP/llm2vec train_configs/mntp/MetaLlama3.json),
the first step of LLM2CLIP stage 1 (arXiv 2411.04997): bidirectional attention, 20% of the tokens selected (BERT's
80/10/10 split, LLM2Vec's default collator; Llama has no mask token, so '_' masks), LoRA r 16 / alpha 32 / dropout
0.05 on q, k, v, o, gate, up, down; batch 32, 1000 steps, max length 512, lr 5e-5 (transformers' default, which
LLM2Vec keeps) decaying linearly to 0, no warm-up, bf16, FSDP over all devices. LLM2Vec trains on Wikitext-103;
LLM2CLIP mixes Wikitext-103 with CC3M captions: give the texts as `.txt` files (a text a line) and/or caption-pair
CSVs (columns short,long), comma-separated.

python -m clipjax.llm_train --config configs/llm2clip/llama3_8b_mntp.py --workdir /runs/llama3_mntp \\
    --config.llm.folder=/models/Meta-Llama-3-8B-Instruct --config.llm.data=/data/wikitext103.txt,/data/cc3m_pairs.csv
-> /runs/llama3_mntp/hf: the merged bidirectional-MNTP weights (input of configs/llm2clip/llama3_8b_cc.py)
"""
from clipjax import config as config_lib


def get_config():
    c = config_lib.default_config()
    c.llm.stage = "mntp"
    c.llm.folder = ""              # required: the Llama-3-8B-Instruct Hugging Face folder
    c.llm.data = ""                # required: .txt and/or caption-pair .csv files
    c.llm.max_length = 512
    c.llm.pad_bucket = 64
    c.llm.dtype = "bfloat16"
    c.llm.remat = True
    c.llm.lora_rank, c.llm.lora_alpha, c.llm.lora_dropout = 16, 32.0, 0.05
    c.llm.mask_prob, c.llm.mask_replace_prob, c.llm.mask_token = 0.2, 0.8, ""
    c.llm.eval_examples = 256
    c.batch_size = 32
    c.total_steps = 1000
    c.optim.lr = 5e-5
    c.optim.schedule = "cooldown"  # linear decay from the first step to 0 (transformers' default schedule)
    c.optim.warmup_steps = 0
    c.optim.cooldown_steps = 1000
    c.optim.b1, c.optim.b2, c.optim.eps = 0.9, 0.999, 1e-8
    c.optim.weight_decay = 0.0
    c.optim.grad_clip_norm = 1.0
    c.mesh.data, c.mesh.fsdp = 1, -1
    c.checkpoint.every_steps = 200
    c.log_every_steps = 10
    return c
