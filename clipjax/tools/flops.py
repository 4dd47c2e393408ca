"""Forward FLOPs per sample of the image and text towers at a config's token counts, analytic and by XLA.

python -m clipjax.tools.flops --config configs/clipa/pretrain.py:model=L/16 [--config.data.image_size=96]

Convention (as CLIPA arXiv 2305.07017 and FLIP arXiv 2212.00794 count): forward pass, 2 FLOPs per
multiply-accumulate, counting the patch embedding, the QKV and output projections, attention's QK^T and AV, the MLP and the head (the projection to the shared
embedding, plus the attention-pooling block for pool 'map'); normalisation, softmax, activations, biases and
the loss are not counted. With W width, M MLP width, d depth, n tokens per layer, E embedding size:
  per layer   4 n W^2 (q, k, v, out) + 2 n^2 W (QK^T, AV) + 2 n W M (MLP)          [multiply-accumulates]
  image       N 3 p^2 W (patch embedding of all N patches) + d * layer(n = K + 1) + W E, K kept patches
  text        d * layer(n = L) + W E, L = config.data.text_length (the causal mask is not exploited)
ViT-B/16 at 224 px: 2 (196 * 768 * 768 + 12 * layer(197) + 768 * 512) = 35.13 GFLOPs.
ResNet towers (config.model.image_tower = 'resnet'), each conv H_out W_out k^2 C_in C_out multiply-accumulates
(the bottleneck's 3x3 at the input resolution, before its anti-aliasing pool), plus the attention pool on
n = (R/32)^2 + 1 tokens of C = 32w: q (1 token), k, v (n tokens) projections C^2 each, QK^T and AV n C, output C E.
BN, pooling and ReLU are not counted.
XLA's count (cost analysis of the lowered forward at batch 1) also includes the elementwise work, so it lands
slightly above the analytic number.
"""
import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
from absl import app, flags
from ml_collections import config_flags

from clipjax.models import clip
from clipjax.token_reduction import image as image_reduction


@dataclasses.dataclass(frozen=True)
class Flops:
    """Forward FLOPs per sample (and the token counts they were computed at)."""
    image: float
    text: float
    image_tokens: int     # tokens per encoder layer, CLS included
    text_tokens: int

    @property
    def total(self) -> float:
        return self.image + self.text


def layer_macs(n: int, width: int, mlp_dim: int) -> int:
    """Multiply-accumulates of one pre-LN transformer block on n tokens."""
    return 4 * n * width * width + 2 * n * n * width + 2 * n * width * mlp_dim


def image_flops(image: ml_collections.ConfigDict, embed_dim: int, image_size: int, kept: int | None = None) -> float:
    """ViT forward FLOPs per image at `image_size` px keeping `kept` patches (None: all)."""
    p, w = image.patch_size, image.width
    n_patches = (image_size // p) ** 2
    k = n_patches if kept is None else kept
    macs = n_patches * 3 * p * p * w + image.depth * layer_macs(k + 1, w, image.mlp_dim) + w * embed_dim
    if image.pool == "map":  # probe query (1 token) over K patch keys/values, then its MLP
        macs += 2 * w * w + 2 * k * w * w + 2 * k * w + 2 * w * image.mlp_dim
    return 2.0 * macs


def resnet_flops(image: ml_collections.ConfigDict, embed_dim: int, image_size: int) -> float:
    """Modified-ResNet forward FLOPs per image at `image_size` px (module docstring)."""
    w, s = image.width, image_size // 2
    macs = s * s * 9 * (3 * (w // 2) + (w // 2) * (w // 2) + (w // 2) * w)  # stem: three 3x3 convs at R/2
    s, c_in = s // 2, w                                                       # 2x2 average pool
    for stage, blocks in enumerate(image.layers):
        planes = w * 2 ** stage
        for i in range(blocks):
            stride = 2 if stage > 0 and i == 0 else 1
            out = s // stride
            macs += s * s * c_in * planes + s * s * 9 * planes * planes + out * out * planes * 4 * planes
            if i == 0:  # shortcut: avgpool(stride) then 1x1 (every stage's first block changes the channels)
                macs += out * out * c_in * 4 * planes
            s, c_in = out, 4 * planes
    n, c = s * s + 1, c_in
    macs += c * c + 2 * n * c * c + 2 * n * c + c * embed_dim
    return 2.0 * macs


def is_resnet(config: ml_collections.ConfigDict) -> bool:
    return config.model.get("image_tower", "vit") == "resnet"


def text_flops(text: ml_collections.ConfigDict, embed_dim: int, length: int) -> float:
    """Text transformer forward FLOPs per caption of `length` tokens."""
    return 2.0 * (text.depth * layer_macs(length, text.width, text.mlp_dim) + text.width * embed_dim)


def kept_patches(config: ml_collections.ConfigDict) -> int:
    """Patch tokens the image tower sees in training under config.tokens."""
    t = config.tokens
    grid = image_reduction.image_grid(config.data.image_size, config.model.image.patch_size)
    return image_reduction.kept_count(t.image_strategy, *grid, t.image_keep_ratio, t.image_keep_count)


def analytic(config: ml_collections.ConfigDict, masked: bool = True) -> Flops:
    """Analytic forward FLOPs per sample at the config's training token counts (`masked=False`: all patches)."""
    m = config.model
    if is_resnet(config):
        return Flops(image=resnet_flops(m.image, m.embed_dim, config.data.image_size),
                     text=text_flops(m.text, m.embed_dim, config.data.text_length),
                     image_tokens=(config.data.image_size // 32) ** 2 + 1, text_tokens=config.data.text_length)
    k = kept_patches(config) if masked else None
    n = k if k is not None else (config.data.image_size // m.image.patch_size) ** 2
    return Flops(image=image_flops(m.image, m.embed_dim, config.data.image_size, k),
                 text=text_flops(m.text, m.embed_dim, config.data.text_length),
                 image_tokens=n + 1, text_tokens=config.data.text_length)


def xla(config: ml_collections.ConfigDict, masked: bool = True) -> Flops:
    """The same counts from XLA's cost analysis of each lowered encoder (batch 1, abstract parameters)."""
    model = clip.build_model(config.model)
    h, length = config.data.image_size, config.data.text_length
    images = jax.ShapeDtypeStruct((1, h, h, 3), jnp.uint8)
    text = jax.ShapeDtypeStruct((1, length), jnp.int32)
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, h, h, 3), jnp.uint8),
                                                  jnp.zeros((1, length), jnp.int32)))
    if is_resnet(config):  # no tokens to keep; BN reads its running statistics
        k, keep = (h // 32) ** 2, None
    else:
        k = kept_patches(config) if masked else (h // config.model.image.patch_size) ** 2
        keep = jax.ShapeDtypeStruct((1, k), jnp.int32)

    def cost(fn, *args) -> float:
        c = jax.jit(fn).lower(*args).cost_analysis()
        return float((c[0] if isinstance(c, list) else c)["flops"])

    img = cost(lambda v, x, i: model.apply(v, x, i, method=model.encode_image), variables, images, keep)
    txt = cost(lambda v, t: model.apply(v, t, method=model.encode_text), variables, text)
    return Flops(image=img, text=txt, image_tokens=k + 1, text_tokens=length)


def report(config: ml_collections.ConfigDict, with_xla: bool = True) -> str:
    """Printable table: analytic GFLOPs (and XLA's with their ratio) per sample, training and unmasked."""
    m = config.model
    ours = analytic(config)
    full = analytic(config, masked=False)
    image = (f"image {config.data.image_size}px ResNet (layers {tuple(m.image.layers)}, width {m.image.width}, "
             f"attention pool over {ours.image_tokens} tokens)" if is_resnet(config) else
             f"image {config.data.image_size}px/{m.image.patch_size} (width {m.image.width}, depth {m.image.depth}, "
             f"pool {m.image.pool}), {config.tokens.image_strategy} masking: {ours.image_tokens - 1} of "
             f"{full.image_tokens - 1} patches kept + CLS")
    lines = [f"{image}; text {ours.text_tokens} tokens (width {m.text.width}, depth {m.text.depth}); "
             f"embed {m.embed_dim}",
             f"{'forward GFLOPs/sample':<24}{'image':>10}{'text':>10}{'total':>10}"]
    rows = [("analytic", ours)]
    if ours.image_tokens != full.image_tokens:
        rows.append(("analytic, unmasked", full))
    if with_xla:
        rows.append(("XLA cost analysis", xla(config)))
    for name, f in rows:
        lines.append(f"{name:<24}{f.image / 1e9:>10.2f}{f.text / 1e9:>10.2f}{f.total / 1e9:>10.2f}")
    if with_xla:
        x = rows[-1][1]
        lines.append(f"{'XLA / analytic':<24}{x.image / ours.image:>10.3f}{x.text / ours.text:>10.3f}"
                     f"{x.total / ours.total:>10.3f}")
    return "\n".join(lines)


def main(argv):
    del argv
    print(report(flags.FLAGS.config, flags.FLAGS.xla))


if __name__ == "__main__":  # flags only when run as a tool, so that other tools can import this module
    config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
    flags.DEFINE_bool("xla", True, "Cross-check against XLA's cost analysis of the lowered forward.")
    flags.mark_flags_as_required(["config"])
    app.run(main)
