"""The config schema: every key a run may set and its default, plus small helpers (durations, argument parsing).

Every config file starts from `default_config()` (the one place where defaults live), changes what its recipe
needs and returns the result. `check_keys` rejects keys that `default_config` lacks, naming them; the command line
locks the config, so `--config.KEY=...` of an unknown key or of a value of the wrong type fails at start-up. The
values are checked by the subsystem that reads them (`clipjax.validation.validate` calls each).
"""
import math
from typing import Any

import ml_collections

from clipjax.models import sizes

def default_config() -> ml_collections.ConfigDict:
    """All keys any run may set, with the defaults of a small CLIP on the built-in dataset."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 1000          # length of the run, in optimiser steps
    c.total_epochs = -1.0          # if > 0, overrides total_steps (epochs of config.data.size examples)
    c.batch_size = 64              # global batch size

    c.data = ml_collections.ConfigDict()
    c.data.name = "synthetic"      # 'synthetic' | 'webdataset' | 'csv' | 'arrayrecord' | 'tfds' (clipjax.data.sources)
    c.data.path = ""               # tar shards (brace pattern / list / dir), CSV/TSV file, ArrayRecord dir, TFDS name
    c.data.size = 20000            # synthetic: number of examples; webdataset: largest index + 1 (-1: scan headers)
    c.data.image_size = 64
    c.data.text_length = 32
    c.data.caption_mode = "mixed"  # 'original' | 'mixed' | 'laclip' | 'veclip' | 'weighted' (clipjax.data.captions)
    c.data.caption_fields = ""     # extra caption fields to read: webdataset json keys, CSV columns, TFDS paths
    c.data.rewrite_files = ""      # CSV: comma-separated rewrite files, line i for row i -> fields rewrite_1..K
    c.data.rewrite_fields = ""     # 'laclip' pool besides the original ('' = every field named rewrite*)
    c.data.veclip_field = "vec"    # 'veclip': the visual-enriched caption field, drawn with veclip_prob
    c.data.veclip_prob = 0.5
    c.data.caption_weights = ""    # 'weighted': 'caption:1,rewrite_1:1,...'
    c.data.tokenizer = "clip_bpe"  # 'clip_bpe' or a local Hugging Face tokenizer directory
    c.data.text_embeddings = ""    # model.text_tower 'llm_adapter': caption embedding cache folder (made by
    #                                clipjax.tools.embed_captions from config.llm.folder) read in place of tokens
    c.data.caption_noise = 0.0     # built-in world: this fraction of captions swapped for another example's
    c.data.world = "v1"            # built-in world: 'v1' (two object sizes) | 'graded' (three, 6-21% radius:
    #                                shape needs pixels on small objects; clipjax.data.synthetic)
    c.data.filter = ml_collections.ConfigDict()  # keep the best-scored pairs (clipjax.data.quality)
    c.data.filter.scores = ""      # scores folder of python -m clipjax.tools.score ('' = no filter)
    c.data.filter.top_fraction = 0.0  # keep the ceil(f N) highest-scored pairs (0: off) ...
    c.data.filter.min_score = ml_collections.config_dict.placeholder(float)  # ... or those with score >= this
    c.data.augment = "none"        # 'none' | 'eval' | 'clip' | 'clipa_large' | 'randaug' | 'stacked_randaug' | 'simclr'
    c.data.crop_scale = ()         # RandomResizedCrop area scale (min, max); () = the preset's default
    c.data.hflip = False           # random horizontal flip on top of the preset (FLIP); randaug/simclr flip anyway
    c.data.randaug_layers = 2
    c.data.randaug_magnitude = 9.0
    c.data.interpolation = "bicubic"  # crop resize: 'bicubic' (OpenCLIP) or 'bilinear' (faster)
    c.data.max_image_pixels = 89_478_485  # larger images are skipped (decompression-bomb guard)
    c.data.max_skip_rate = 0.5     # stop when more than this fraction of a window of 10,000 samples is skipped
    c.data.image_root = ""         # CSV: directory the image paths are relative to
    c.data.csv_header = False      # CSV: first row names the columns
    c.data.csv_path_column = "0"   # CSV: column (position, or name with a header) of the image path
    c.data.csv_caption_column = "1"
    c.data.csv_separator = ""      # '' = tab for .tsv, else comma
    c.data.tfds_data_dir = ""      # TFDS: data_dir of the prepared dataset (nothing is downloaded)
    c.data.tfds_split = "train"
    c.data.tfds_image_key = "image"
    c.data.tfds_caption_key = "captions/text"
    c.data.shuffle_buffer = -1     # random access: -1 global shuffle, 0 none; webdataset: window (-1 = 1000)
    c.data.num_epochs = -1         # -1: repeat forever; N: the iterator ends after N epochs
    c.data.num_workers = 0         # grain worker processes (0: in the main process)
    c.data.prefetch = 2            # batches prefetched by a host thread
    c.data.device_prefetch = 2     # global batches on device ahead of the step (2: double buffering; >= 1)

    c.model = ml_collections.ConfigDict()
    c.model.image = sizes.vit("mu/8", image_size=64)
    c.model.text = sizes.text("mu", context_length=32)
    c.model.embed_dim = 64
    c.model.dtype = "float32"      # compute dtype; parameters stay float32
    c.model.remat = "none"         # per-block rematerialisation: none | full | dots_saveable | dots_no_batch | offload
    c.model.attention = "auto"     # auto (cuDNN flash attention on GPU when it can, else XLA) | xla | cudnn | einsum
    c.model.scan = False           # blocks under nn.scan: compile time independent of depth, params 'blocks' [depth, ...]
    c.model.text_tower = "transformer"  # 'transformer' | 'llm_adapter' (LLM2CLIP: frozen LLM config.llm.folder +
    #                                     trainable adapter on its caption embeddings, data.text_embeddings)
    c.model.image_tower = "vit"    # 'vit' | 'resnet' (model.image = sizes.resnet('RN50'): OpenAI's modified ResNet)
    c.model.batch_norm = "train"   # resnet BN: 'train' (batch statistics, running ones carried in the train state)
    #                                | 'frozen' (running statistics only, never updated: fine-tuning converted weights)
    c.model.adapter_blocks = 4     # llm_adapter: residual MLP blocks (LLM2CLIP: 4)
    c.model.logit_scale_init = math.log(1 / 0.07)
    c.model.logit_bias_init = ml_collections.config_dict.placeholder(float)

    c.loss = ml_collections.ConfigDict()
    c.loss.name = "clip"           # a clipjax.losses registry name: clip, siglip, sogclr, isogclr, fastclip_v0..v3
    c.loss.max_logit_scale = math.log(100.0)
    # GCL family (sogclr, isogclr, fastclip_v*); defaults are FastCLIP's CC3M settings.
    c.loss.eps = 1e-14             # epsilon in log(eps + g)
    c.loss.rho = 6.5               # RGCL/RGCL-g constraint weight (isogclr, fastclip_v2, fastclip_v3)
    c.loss.gamma_min = 0.2         # u <- (1-gamma) u + gamma g: gamma 1 in epoch 0, cosine to gamma_min ...
    c.loss.gamma_decay_epochs = 18  # ... over this many epochs (epochs of data.size examples), gamma_min after
    c.loss.tau_init = 0.03         # per-sample temperature init (isogclr, fastclip_v2)
    c.loss.tau_lr = 2e-4           # temperature lr: fastclip_v3 AdamW on log(1/tau); per-sample step (v2, isogclr)
    c.loss.tau_weight_decay = 0.0  # fastclip_v3 temperature AdamW (its betas and eps are optim.b1, b2, eps)
    c.loss.tau_lr_drop_below = 0.03  # fastclip_v3: tau_lr / 3 at every step with tau <= this (checked each step)
    c.loss.tau_grad = "reference"  # fastclip_v3 temperature gradient: reference (FastCLIP code) | formula (d/dtau F)
    c.loss.tau_grad_clip = 5.0     # per-sample temperature gradient clipped to +-this (fastclip_v2, isogclr)
    c.loss.isogclr_beta_u = 0.9    # isogclr: per-sample tau step m <- (1 - this) m + this * grad, tau -= tau_lr * m
    c.loss.shard_state_above = 1 << 22  # per-sample state longer than this is sharded by index range
    # SLIP (arXiv 2112.12750): + ssl_scale * NT-Xent of a SimCLR head on data.augment='simclr''s two extra views
    c.loss.ssl_scale = 0.0         # 0: off; SLIP uses 1.0 (added to any image-text loss)
    c.loss.ssl_temperature = 0.1   # NT-Xent tau
    c.loss.ssl_hidden_dim = 4096   # head: Linear(width->hidden) BN ReLU Linear(hidden->hidden) BN ReLU Linear(->out)
    c.loss.ssl_out_dim = 256

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adamw"         # adamw | lamb | lion
    c.optim.lr = 1e-3              # absolute peak learning rate; ignored when lr_per_256 > 0
    c.optim.lr_per_256 = -1.0      # peak lr = lr_per_256 * batch_size / 256 when > 0
    c.optim.schedule = "cosine"    # cosine | constant | cooldown
    c.optim.warmup_steps = 100
    c.optim.cooldown_steps = 0     # 'cooldown': linear decay to 0 over the last N steps
    c.optim.end_lr_ratio = 0.0     # 'cosine': final lr / peak lr
    c.optim.b1 = 0.9
    c.optim.b2 = 0.98
    c.optim.eps = 1e-6
    c.optim.weight_decay = 0.2     # on weight matrices only (see optim.decay_mask)
    c.optim.grad_clip_norm = 1.0   # <= 0 disables
    c.optim.layer_decay = 1.0      # image tower layer-wise lr decay: embeddings x d^(L+1), block i x d^(L+1-i),
    #                                head x 1 (LLM2CLIP: 0.85); 1.0 = off
    c.optim.freeze = ""            # regex on '/'-joined parameter paths to keep fixed (LiT: "^img/")

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1               # -1: all devices not used by the other axes
    c.mesh.fsdp = 1
    c.mesh.tensor = 1

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_steps = 500
    c.checkpoint.keep = 3
    c.checkpoint.async_save = True
    c.checkpoint.on_corrupt = "fallback"  # damaged latest step: 'fallback' (warn, resume the newest intact) | 'refuse'

    c.log_every_steps = 10
    c.max_nonfinite_in_row = 5     # stop after this many consecutive skipped (non-finite) updates
    c.compile_cache = ml_collections.ConfigDict()
    c.compile_cache.dir = ""       # persistent compilation cache folder ('' = off): restarts skip compiling
    c.compile_cache.min_compile_secs = 1.0  # only programs that took at least this long to compile are stored
    c.progress_bar = True

    c.evals = ml_collections.ConfigDict()
    c.evals.every_steps = 250      # evaluate during training every N steps (and at the end); <= 0: end only
    c.evals.num_examples = 512     # built-in eval: held-out images of the built-in dataset
    c.evals.batch_size = 256       # images / texts per encoder call (an entry may set its own)
    c.evals.class_sets = "shape,colour,count"  # built-in eval: zero-shot class sets
    c.evals.captions_per_image = 3  # built-in eval, retrieval: captions per held-out image
    c.evals.suite = ml_collections.ConfigDict()  # name -> entry (clipjax.evaluate.suite: zeroshot / retrieval /
    #                                              builtin, each with its own every_steps)
    c.evals.tasks = ""             # more entries by TFDS name, default settings: 'imagenet2012,imagenet_v2,coco_captions'
    c.evals.data_dir = ""          # TFDS data_dir of entries that give none; no suite and no tasks: built-in eval only

    c.tokens = ml_collections.ConfigDict()  # token reduction at training only (clipjax.token_reduction)
    c.tokens.image_strategy = "none"  # 'none' | 'random' (FLIP) | 'grid' | 'block'; resize = data.image_size
    c.tokens.image_keep_ratio = 1.0   # kept fraction of patch tokens (grid: 1/s^2); CLS is always kept
    c.tokens.image_keep_count = -1    # > 0: exact kept patch count, overrides image_keep_ratio
    c.tokens.text_strategy = "truncate"  # 'truncate' | 'random' | 'block' | 'syntax'; length = data.text_length

    c.init_from = ""               # multi-stage: a workdir or checkpoint step dir to take params from (clipjax.finetune)
    c.init_from_keys = ""          # init_from: top-level parameter groups to take ('image' for LLM2CLIP); '' = all
    c.init_text_pos = "resize"     # text pos-emb of another length: 'resize' (linear) | 'extend' | 'reinit'

    c.llm = ml_collections.ConfigDict()  # LLM2CLIP stage 1: a decoder LM -> caption embedder (clipjax.llm_train)
    c.llm.stage = "clm"            # 'clm' (next-token pre-training of a tiny LM from scratch) | 'mntp' (LLM2Vec masked
    #                                next-token, bidirectional, LoRA) | 'cc' (caption contrastive, bidirectional, LoRA)
    c.llm.folder = ""              # mntp / cc: input Hugging Face folder (the previous stage's output, or a Llama);
    #                                llm_adapter CLIP: the frozen caption embedder (the cc stage's merged output)
    c.llm.output = ""              # Hugging Face folder written at the end ('' = WORKDIR/hf)
    c.llm.data = "builtin"         # 'builtin' (the synthetic world, data.size images) or a CSV with columns short,long
    #                                (cc); clm / mntp: CSVs (both columns) and .txt files (a text a line), comma-separated
    c.llm.max_length = 64          # tokens per text (left-padded with eos; longer texts are cut)
    c.llm.pad_bucket = 0           # > 0: pad each batch to its longest row rounded up to this (fewer padded tokens)
    c.llm.bidirectional = True     # CLIP with the LLM (llm_adapter): captions and class prompts embedded with
    #                                bidirectional attention (LLM2Vec-adapted LLM) or causal
    c.llm.dtype = "float32"        # compute and base-weight dtype ('bfloat16' for 8B); adapters + optimiser float32
    c.llm.remat = False            # recompute each decoder layer in the backward pass
    c.llm.scratch = ml_collections.ConfigDict(dict(  # clm: the tiny Llama built from scratch
        hidden_size=64, intermediate_size=192, num_layers=2, num_heads=4, num_kv_heads=2))
    c.llm.lora_rank = 16           # mntp / cc adapters on lora_targets (LLM2Vec / LLM2CLIP: r 16, alpha 32, p 0.05)
    c.llm.lora_alpha = 32.0
    c.llm.lora_dropout = 0.05
    c.llm.lora_targets = "q,k,v,o,gate,up,down"
    c.llm.mask_prob = 0.2          # mntp: fraction of tokens selected (LLM2Vec)
    c.llm.mask_replace_prob = 0.8  # mntp: selected -> mask token; of the rest half random, half unchanged (1: all masked)
    c.llm.mask_token = ""          # mntp: '' = the tokenizer's mask token, else '_' (LLM2Vec's choice for Llama)
    c.llm.pairs = "short_long"     # cc: pair kinds per row, drawn uniformly: short_long, paraphrase (built-in only)
    c.llm.instruction_to_long = "Given a caption, retrieve a detailed relevant caption: "
    c.llm.instruction_to_short = "Given a detailed caption, retrieve a short relevant caption: "
    c.llm.scale = 50.0             # cc: logits = cosine x scale (tau 0.02)
    c.llm.eval_examples = 256      # held-out captions (built-in eval split, or the CSV's last rows, not trained on)
    c.llm.eval_every_steps = 0     # evaluate before training, at the end and every N steps (<= 0: no others)
    return c


def tiny_config() -> ml_collections.ConfigDict:
    """The CPU-scale CLIP of configs/tiny.py (micro towers, 64 px, text 16, batch 64, 1000 steps), which the
    other tiny recipes (FastCLIP, webdataset) start from."""
    c = default_config()
    c.total_steps = 1000
    c.batch_size = 64
    c.data.image_size = 64
    c.data.text_length = 16
    c.model.image = sizes.vit("mu/8", image_size=64, pool="gap")
    c.model.text = sizes.text("mu", context_length=16)
    c.model.embed_dim = 64
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 50
    c.optim.weight_decay = 0.05
    c.checkpoint.every_steps = 200
    c.evals.every_steps = 200
    return c


def tiny_llm_config(stage: str) -> ml_collections.ConfigDict:
    """The CPU-scale LLM2CLIP stage-1 settings shared by configs/llm2clip/tiny_*.py: the built-in world's captions,
    48 tokens padded to multiples of 16, batch 64, LoRA r 8 / alpha 16 without dropout (its random bits cost ~40%
    of a tiny LoRA step on CPU)."""
    c = default_config()
    c.llm.stage = stage
    c.llm.max_length = 48          # the longest instructed, chat-wrapped caption has ~40 tokens
    c.llm.pad_bucket = 16
    c.llm.lora_rank = 8
    c.llm.lora_alpha = 16.0
    c.llm.lora_dropout = 0.0
    c.data.size = 4096             # built-in training images (9 captions each)
    c.batch_size = 64
    c.optim.warmup_steps = 20
    c.optim.weight_decay = 0.0
    c.checkpoint.every_steps = 100
    c.log_every_steps = 50
    return c


def resolve_lr(config: ml_collections.ConfigDict) -> float:
    """Peak learning rate: `lr_per_256 * batch_size / 256` when given, else the absolute `lr`."""
    if config.optim.lr_per_256 > 0:
        return config.optim.lr_per_256 * config.batch_size / 256
    return config.optim.lr


def resolve_total_steps(config: ml_collections.ConfigDict) -> int:
    """Run length in steps: `total_epochs * data.size / batch_size` when epochs are given, else total_steps."""
    if config.total_epochs > 0:
        return max(1, int(round(config.total_epochs * config.data.size / config.batch_size)))
    return config.total_steps


def require(ok: bool, config: ml_collections.ConfigDict, key: str, what: str) -> None:
    """Start-up check: raise ValueError 'config.KEY = VALUE: expected WHAT' unless `ok`."""
    if not ok:
        raise ValueError(f"config.{key} = {lookup(config, key)!r}: expected {what}")


def check_keys(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict | None = None,
               prefix: str = "") -> None:
    """Every key of `config` must exist in `reference` (default: `default_config()`), recursively; the towers
    (models.sizes) and eval entries (evaluate.suite) are checked by their own modules."""
    reference = default_config() if reference is None else reference
    for key, value in config.items():
        name = f"{prefix}{key}"
        if key not in reference:
            raise KeyError(f"config.{name}: unknown key (known keys here: {sorted(reference.keys())})")
        if isinstance(value, ml_collections.ConfigDict) and isinstance(reference[key], ml_collections.ConfigDict):
            if key not in ("image", "text", "suite"):
                check_keys(value, reference[key], prefix=f"{name}.")


def lookup(config: ml_collections.ConfigDict, dotted: str):
    """config['a']['b'] for 'a.b'."""
    for part in dotted.split("."):
        config = config[part]
    return config


def assign(config: ml_collections.ConfigDict, dotted: str, value) -> None:
    """config['a']['b'] = value for 'a.b' (in place)."""
    parent, _, leaf = dotted.rpartition(".")
    (lookup(config, parent) if parent else config)[leaf] = value


def parse_arg(arg: str | None, defaults: dict[str, Any]) -> dict[str, Any]:
    """The argument of `configs/x.py:ARG`: 'k=v,k=v' over the keys of `defaults`, each value cast to its default's
    type; a bare first item is the value of the first key ('fastclip_v2' == 'loss=fastclip_v2'). Unknown keys fail
    naming the allowed ones."""
    out = dict(defaults)
    for i, item in enumerate(filter(None, (arg or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep and i == 0 and defaults:
            key, value = next(iter(defaults)), item
        elif not sep or key not in defaults:
            raise ValueError(f"config argument {item!r}: expected KEY=VALUE with KEY in {list(defaults)}")
        kind = type(defaults[key])
        out[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else \
            kind(float(value)) if kind is int else value if defaults[key] is None else kind(value)
    return out
