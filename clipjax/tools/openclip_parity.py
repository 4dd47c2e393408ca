"""Forward parity of a full-size architecture with open_clip: its randomly initialised model (no download) converted
by clipjax.interop and run by clipjax, embeddings compared on random images and a few captions.

python -m clipjax.tools.openclip_parity --model RN50 [--batch 4]

Every BatchNorm's scale, bias and running statistics are perturbed first (fresh ones are 1 / 0 / 0 / 1 and the
last BN of each ResNet block starts at zero scale, which would hide mistakes). Both run in float32, open_clip in
eval mode (running statistics). Needs the interop extra (torch, open_clip_torch).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def perturb_batch_norms(model, scale: float = 0.1) -> None:
    """Random BN affine parameters and running statistics (mean ~ N(0, scale^2), var in [0.5, 1.5))."""
    import torch
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.add_(scale * torch.randn_like(module.weight))
                module.bias.add_(scale * torch.randn_like(module.bias))
                module.running_mean.copy_(scale * torch.randn_like(module.running_mean))
                module.running_var.copy_(0.5 + torch.rand_like(module.running_var))


def parity(name: str, batch: int = 4, seed: int = 0) -> dict[str, float]:
    """-> {'image': max |embedding difference|, 'text': ...} between open_clip's `name` and clipjax's conversion."""
    import jax
    import jax.numpy as jnp
    import open_clip
    import torch

    from clipjax import pytree
    from clipjax.data.tokenizer import ClipTokenizer
    from clipjax.interop import configs, weights
    from clipjax.models import clip
    from clipjax.models.vit import CLIP_MEAN, CLIP_STD

    torch.manual_seed(seed)
    oc = open_clip.create_model(name).eval()
    perturb_batch_norms(oc)
    model = configs.model_from_openclip(configs.resolve_openclip_config(name))
    flat = weights.from_torch_layout({k: v.numpy() for k, v in oc.state_dict().items()}, model, "openclip")
    tree = pytree.unflatten({k: jnp.asarray(v) for k, v in flat.items()})
    variables = clip.variables({k: v for k, v in tree.items() if k != "batch_stats"}, tree.get("batch_stats"))
    m = clip.build_model(model)
    size, length = model.image.image_size, model.text.context_length
    images = np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    captions = ["a photo of a dog", "a red cube on a table", "two cats asleep on a sofa", "x" * 50]
    tokens = ClipTokenizer()((captions * batch)[:batch], context_length=length)
    zimg = np.asarray(jax.jit(lambda v, x: m.apply(v, x, method=m.encode_image))(variables, images))
    ztxt = np.asarray(jax.jit(lambda v, t: m.apply(v, t, method=m.encode_text))(variables, tokens))
    x = (images.astype(np.float32) / 255.0 - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    with torch.no_grad():
        timg = oc.encode_image(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), normalize=True).numpy()
        ttxt = oc.encode_text(torch.from_numpy(tokens).long(), normalize=True).numpy()
    return {"image": float(np.abs(timg - zimg).max()), "text": float(np.abs(ttxt - ztxt).max())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m clipjax.tools.openclip_parity", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="RN50", help="an open_clip model config name, e.g. RN50, RN101, ViT-B-32")
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args(argv)
    d = parity(args.model, args.batch)
    print(f"{args.model} (open_clip random init, float32, batch {args.batch}): max |image embedding difference| "
          f"{d['image']:.3e}, max |text embedding difference| {d['text']:.3e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
