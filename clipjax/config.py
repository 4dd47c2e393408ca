"""Shared config defaults, validation and duration helpers.

Every config file starts from `default_config()` (the one place where defaults live), changes what its recipe
needs and returns the result. The default config is locked: setting a key that does not exist fails at once,
naming the key, and ml_collections refuses values of the wrong type.
"""
import math

import ml_collections

from clipjax.models import sizes

LOSSES = ("clip", "siglip")
SCHEDULES = ("cosine", "constant", "cooldown")
OPTIMIZERS = ("adamw", "lamb", "lion")


def default_config() -> ml_collections.ConfigDict:
    """All keys any run may set, with the defaults of a small CLIP on the built-in dataset."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 1000          # length of the run, in optimiser steps
    c.total_epochs = -1.0          # if > 0, overrides total_steps (epochs of config.data.size examples)
    c.batch_size = 64              # global batch size

    c.data = ml_collections.ConfigDict()
    c.data.name = "synthetic"      # built-in procedurally generated dataset
    c.data.size = 20000            # number of training examples of the synthetic world
    c.data.image_size = 64
    c.data.text_length = 32
    c.data.caption_mode = "mixed"  # 'original' | 'mixed' (uniform over phrasings and rewrites per epoch)
    c.data.shuffle_buffer = -1     # -1: exact global shuffle (random access sources)
    c.data.num_workers = 0         # grain worker processes (0: in the main process)
    c.data.prefetch = 2            # batches prefetched by a host thread

    c.model = ml_collections.ConfigDict()
    c.model.image = sizes.vit("mu/8", image_size=64)
    c.model.text = sizes.text("mu", context_length=32)
    c.model.embed_dim = 64
    c.model.dtype = "float32"      # compute dtype; parameters stay float32
    c.model.remat = False
    c.model.logit_scale_init = math.log(1 / 0.07)
    c.model.logit_bias_init = ml_collections.config_dict.placeholder(float)

    c.loss = ml_collections.ConfigDict()
    c.loss.name = "clip"           # one of LOSSES
    c.loss.max_logit_scale = math.log(100.0)

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adamw"         # one of OPTIMIZERS
    c.optim.lr = 1e-3              # absolute peak learning rate; ignored when lr_per_256 > 0
    c.optim.lr_per_256 = -1.0      # peak lr = lr_per_256 * batch_size / 256 when > 0
    c.optim.schedule = "cosine"    # one of SCHEDULES
    c.optim.warmup_steps = 100
    c.optim.cooldown_steps = 0     # 'cooldown': linear decay to 0 over the last N steps
    c.optim.end_lr_ratio = 0.0     # 'cosine': final lr / peak lr
    c.optim.b1 = 0.9
    c.optim.b2 = 0.98
    c.optim.eps = 1e-6
    c.optim.weight_decay = 0.2     # on weight matrices only (see optim.decay_mask)
    c.optim.grad_clip_norm = 1.0   # <= 0 disables
    c.optim.freeze = ""            # regex on '/'-joined parameter paths to keep fixed (LiT: "^img/")

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1               # -1: all devices not used by the other axes
    c.mesh.fsdp = 1
    c.mesh.tensor = 1

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_steps = 500
    c.checkpoint.keep = 3
    c.checkpoint.async_save = True

    c.log_every_steps = 10
    c.max_nonfinite_in_row = 5     # stop after this many consecutive skipped (non-finite) updates
    c.progress_bar = True

    c.evals = ml_collections.ConfigDict()
    c.evals.every_steps = 250      # evaluate during training every N steps (and at the end); <= 0: end only
    c.evals.num_examples = 512     # held-out images of the built-in dataset
    c.evals.batch_size = 256
    c.evals.class_sets = "shape,colour,count"
    c.evals.captions_per_image = 3  # retrieval: captions per held-out image
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


def validate(config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
    """Fail at start-up on values that are well-typed but wrong, naming the key and what is expected."""
    _check_keys(config, default_config())

    def expect(ok, key, what):
        if not ok:
            raise ValueError(f"config.{key} = {_lookup(config, key)!r}: expected {what}")

    expect(config.loss.name in LOSSES, "loss.name", f"one of {LOSSES}")
    expect(config.optim.name in OPTIMIZERS, "optim.name", f"one of {OPTIMIZERS}")
    expect(config.optim.schedule in SCHEDULES, "optim.schedule", f"one of {SCHEDULES}")
    expect(config.batch_size > 0, "batch_size", "a positive integer")
    expect(resolve_total_steps(config) > 0, "total_steps", "a positive integer")
    expect(config.data.caption_mode in ("original", "mixed"), "data.caption_mode", "'original' or 'mixed'")
    expect(config.model.image.image_size % config.model.image.patch_size == 0, "model.image.image_size",
           f"a multiple of model.image.patch_size={config.model.image.patch_size}")
    expect(config.data.image_size == config.model.image.image_size, "data.image_size",
           f"equal to model.image.image_size={config.model.image.image_size}")
    expect(config.data.text_length <= config.model.text.context_length, "data.text_length",
           f"at most model.text.context_length={config.model.text.context_length}")
    expect(config.model.dtype in ("float32", "bfloat16"), "model.dtype", "'float32' or 'bfloat16'")
    if config.loss.name == "siglip":
        expect(config.model.logit_bias_init is not None, "model.logit_bias_init", "a float for loss 'siglip' (e.g. -10)")
    if num_devices is not None:
        expect(config.batch_size % num_devices == 0, "batch_size", f"a multiple of the {num_devices} devices")


def _check_keys(config, reference, prefix=""):
    """Every key of `config` must exist in `reference` (nested ConfigDicts are compared recursively)."""
    for key, value in config.items():
        name = f"{prefix}{key}"
        if key not in reference:
            raise KeyError(f"config.{name}: unknown key (known keys here: {sorted(reference.keys())})")
        if isinstance(value, ml_collections.ConfigDict) and isinstance(reference[key], ml_collections.ConfigDict):
            if key not in ("image", "text"):  # tower configs come from models.sizes and are checked there
                _check_keys(value, reference[key], prefix=f"{name}.")


def _lookup(config, dotted):
    for part in dotted.split("."):
        config = config[part]
    return config
