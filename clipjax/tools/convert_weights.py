"""Convert CLIP weights between clipjax, OpenCLIP and Hugging Face transformers (offline, numpy only).

  python -m clipjax.tools.convert_weights --from openclip --to clipjax --model ViT-B-32 \
      --input open_clip_pytorch_model.bin --output /ckpt/vit_b32      # -> model.json + state/ (orbax)
  python -m clipjax.tools.convert_weights --from clipjax --to openclip --input WORKDIR --output /export/oc
      # -> open_clip_config.json + open_clip_model.safetensors; open_clip.create_model('local-dir:/export/oc')
  python -m clipjax.tools.convert_weights --from clipjax --to hf --input WORKDIR --output /export/hf
      # -> config.json + model.safetensors; transformers.CLIPModel.from_pretrained('/export/hf')
  python -m clipjax.tools.convert_weights --from hf --to clipjax --input /models/clip-vit-b32 --output /ckpt/b32

Inputs: clipjax = a converted folder, a training workdir (latest checkpoint + its config.json), its checkpoints
folder or a step folder; openclip = a weights file or a folder with open_clip_config.json (the architecture from
there, --model NAME or --model_config JSON); hf = a CLIPModel folder (config.json + weights).
A converted clipjax folder starts a run: `--config configs/from_converted.py:FOLDER` (or config.init_from=FOLDER).
Conversions that would change the embeddings (QuickGELU, see clipjax.interop.configs) are refused unless
--allow_inexact.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from clipjax.interop import configs, files, weights

FORMATS = ("clipjax", "openclip", "hf")


def load(fmt: str, path: str, model: str = "", model_config: str = "", allow_inexact: bool = False):
    """-> (flat clipjax params, clipjax `config.model`) from `path` in format `fmt`."""
    if fmt == "clipjax":
        return files.load_clipjax(path)
    if fmt == "openclip":
        folder_cfg = os.path.join(path, "open_clip_config.json") if os.path.isdir(path) else ""
        if not (model or model_config) and folder_cfg and os.path.isfile(folder_cfg):
            model_config = folder_cfg
        if not (model or model_config):
            raise ValueError("--from openclip needs the architecture: --model NAME (e.g. ViT-B-32) or "
                             "--model_config FILE.json")
        oc = configs.resolve_openclip_config(model, model_config)
        cfg = configs.model_from_openclip(oc, allow_inexact)
        return weights.from_torch_layout(files.load_state_dict(path), cfg, "openclip"), cfg
    if fmt == "hf":
        with open(os.path.join(path, "config.json")) as f:
            cfg = configs.model_from_hf(json.load(f), allow_inexact)
        return weights.from_torch_layout(files.load_state_dict(path), cfg, "hf"), cfg
    raise ValueError(f"--from {fmt!r}: expected one of {FORMATS}")


def save(fmt: str, params: dict, model, output: str, allow_inexact: bool = False, torch_format: bool = False) -> None:
    """Write flat clipjax `params` of `config.model` = `model` to the folder `output` in format `fmt`."""
    if fmt == "clipjax":
        files.save_clipjax(output, params, model)
    elif fmt == "openclip":
        oc = configs.openclip_from_model(model, allow_inexact)
        os.makedirs(output, exist_ok=True)
        preprocess = dict(size=model.image.image_size, mean=list(_vit().CLIP_MEAN), std=list(_vit().CLIP_STD),
                          interpolation="bicubic", resize_mode="shortest")
        with open(os.path.join(output, "open_clip_config.json"), "w") as f:
            json.dump({"model_cfg": oc, "preprocess_cfg": preprocess}, f, indent=2)
        name = "open_clip_pytorch_model.bin" if torch_format else "open_clip_model.safetensors"
        files.save_state_dict(weights.to_torch_layout(params, model, "openclip"), os.path.join(output, name))
    elif fmt == "hf":
        import transformers
        kwargs = configs.hf_from_model(model)
        hf_config = transformers.CLIPConfig(**kwargs)
        hf_config.architectures = ["CLIPModel"]
        hf_config.save_pretrained(output)
        name = "pytorch_model.bin" if torch_format else "model.safetensors"
        files.save_state_dict(weights.to_torch_layout(params, model, "hf"), os.path.join(output, name))
    else:
        raise ValueError(f"--to {fmt!r}: expected one of {FORMATS}")


def _vit():
    from clipjax.models import vit
    return vit


def check_against_model(params: dict, model) -> None:
    """The params must be exactly those of `build_model(model)` (names and shapes)."""
    import jax
    import jax.numpy as jnp
    from flax import linen as nn
    from clipjax.models import clip
    m = clip.build_model(model)
    h = model.image.image_size
    shapes = jax.eval_shape(lambda: nn.meta.unbox(m.init(jax.random.key(0), jnp.zeros((1, h, h, 3), jnp.uint8),
                                                          jnp.zeros((1, model.text.context_length), jnp.int32))))
    expected = dict(shapes["params"])
    if "batch_stats" in shapes:  # a ResNet's BN running statistics travel under 'batch_stats/'
        expected["batch_stats"] = shapes["batch_stats"]
    weights.check_shapes(params, expected)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m clipjax.tools.convert_weights", description=__doc__.split("\n")[0])
    ap.add_argument("--from", dest="src", required=True, choices=FORMATS)
    ap.add_argument("--to", dest="dst", required=True, choices=FORMATS)
    ap.add_argument("--input", required=True, help="file or folder to read (see the module docstring)")
    ap.add_argument("--output", required=True, help="folder to write")
    ap.add_argument("--model", default="", help=f"OpenCLIP architecture name, e.g. {sorted(configs.ARCHITECTURES)}")
    ap.add_argument("--model_config", default="", help="OpenCLIP model config JSON (bare or open_clip_config.json)")
    ap.add_argument("--allow_inexact", action="store_true", help="convert even where embeddings would change")
    ap.add_argument("--torch_format", action="store_true", help="write .bin (torch.save) instead of .safetensors")
    args = ap.parse_args(argv)
    params, model = load(args.src, args.input, args.model, args.model_config, args.allow_inexact)
    check_against_model(params, model)
    save(args.dst, params, model, args.output, args.allow_inexact, args.torch_format)
    n = sum(int(np.prod(np.shape(v))) for v in params.values())
    print(f"converted {args.src} -> {args.dst}: {len(params)} arrays, {n / 1e6:.1f}M parameters -> {args.output}")
    if args.dst == "clipjax":
        print(f"start a run from it: python -m clipjax.main --config configs/from_converted.py:{args.output} "
              f"--workdir WORKDIR")
    return 0


if __name__ == "__main__":
    sys.exit(main())
