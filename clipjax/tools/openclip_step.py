"""OpenCLIP's PyTorch train step on the model a clipjax config describes, for side-by-side speed measurements
(`python -m clipjax.tools.benchmark --openclip`, `clipjax.tools.gpu_check`). Needs the interop extra.

The step is OpenCLIP's own training recipe reduced to one batch (mlfoundations/open_clip src/open_clip_train/
train.py): model(image, text) -> ClipLoss -> backward -> grad clip -> AdamW (betas, eps and weight decay of
config.optim; no decay on gains, biases and logit_scale) -> logit_scale clamped to ln 100. On CUDA it runs under
torch.autocast(bfloat16) when config.model.dtype is bfloat16, as OpenCLIP's `--precision amp_bf16`.
"""
from __future__ import annotations

import time

import ml_collections
import numpy as np

from clipjax.interop import configs as interop_configs


def build(config: ml_collections.ConfigDict, device: str = "cpu"):
    """(step(images, tokens) -> loss, model) for config.model; images float32 NCHW, tokens int64 [B, L]."""
    import open_clip
    import torch
    from open_clip.loss import ClipLoss

    torch.manual_seed(0)
    model = open_clip.model.CLIP(**interop_configs.openclip_from_model(config.model, allow_inexact=True)).to(device)
    o = config.optim
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "logit_scale" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "logit_scale" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=o.lr, betas=(o.b1, o.b2), eps=o.eps)
    loss_fn = ClipLoss()
    bf16 = config.model.dtype == "bfloat16" and device.startswith("cuda")

    def step(images, tokens):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=bf16):
            img, txt, scale = model(images, tokens)
            loss = loss_fn(img, txt, scale)
        loss.backward()
        if o.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip_norm)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, np.log(100))
        return loss
    return step, model


def torch_batch(host_batch: dict, device: str = "cpu"):
    """clipjax host batch (uint8 NHWC images, int32 tokens) -> OpenCLIP's inputs (normalised-range float NCHW,
    int64 tokens) on `device`."""
    import torch
    images = torch.from_numpy(host_batch["image"]).to(device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return images.contiguous(), torch.from_numpy(host_batch["tokens"].astype(np.int64)).to(device)


def seconds_per_step(step, images, tokens, steps: int, sync=lambda: None) -> float:
    """Mean seconds of `steps` calls of `step` (after the caller's warm-up)."""
    t0 = time.perf_counter()
    for _ in range(steps):
        step(images, tokens)
    sync()
    return (time.perf_counter() - t0) / steps
