"""Tests for clipjax.models: size tables, towers, CLIP wrapper, logical names, dtype and remat."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from clipjax.models import clip, sizes
from clipjax.models.vit import sincos_2d

VOCAB, EOT, CTX, IMG, PATCH = 512, 511, 16, 32, 8   # mu/8 at 32 px: 4x4 = 16 patches


def tiny_config(**model_overrides):
    cfg = clip.model_config("mu/8", "mu", embed_dim=32)
    cfg.image.image_size = IMG
    cfg.text.update(vocab_size=VOCAB, context_length=CTX)
    cfg.update(model_overrides)
    return cfg


def make_tokens(rng, lengths, seq_len=CTX):
    """Rows of random ids in [1, EOT), EOT at position length-1, zeros after."""
    toks = rng.integers(1, EOT, size=(len(lengths), seq_len))
    for i, n in enumerate(lengths):
        toks[i, n - 1] = EOT
        toks[i, n:] = 0
    return jnp.asarray(toks, jnp.int32)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, size=(4, IMG, IMG, 3)), jnp.uint8)
    return images, make_tokens(rng, [5, 9, 16, 2])


@pytest.fixture(scope="module")
def tiny(batch):
    model = clip.build_model(tiny_config())
    return model, init(model, batch)


def init(model, batch, seed=0):
    return jax.jit(model.init)(jax.random.key(seed), *batch)


def image_encoder(model):
    """jitted (variables, images, patch_keep=None) -> zimg."""
    return jax.jit(lambda v, x, keep=None: model.apply(v, x, keep, method=model.encode_image))


def text_encoder(model, variables):
    """jitted tokens -> ztxt."""
    return jax.jit(lambda t: model.apply(variables, t, method=model.encode_text))


def count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


# ---------------------------------------------------------------- size tables


def test_size_tables():
    b16 = sizes.vit("B/16")
    assert (b16.width, b16.depth, b16.mlp_dim, b16.num_heads, b16.patch_size, b16.image_size) == (
        768, 12, 3072, 12, 16, 224)
    assert sizes.vit("G/14").width == 1664 and sizes.vit("G/14").depth == 48
    assert sizes.vit("L/14", pool="gap", image_size=112).to_dict() == dict(
        width=1024, depth=24, mlp_dim=4096, num_heads=16, patch_size=14, image_size=112, pos_emb="learn",
        pool="gap", ln_pre=False)
    t = sizes.text("H")
    assert (t.width, t.depth, t.mlp_dim, t.num_heads, t.vocab_size, t.context_length, t.causal, t.pool) == (
        1024, 24, 4096, 16, 49408, 77, True, "eot")
    with pytest.raises(ValueError, match="'B'"):
        sizes.vit("X/16")
    with pytest.raises(ValueError, match="NAME/PATCH"):
        sizes.vit("B")
    with pytest.raises(ValueError, match="widht"):
        sizes.text("B", widht=3)
    with pytest.raises(ValueError, match="pool"):
        sizes.vit("B/16", pool="avg")


def test_param_counts_b16():
    """Exact parameter counts of the B/16 image tower (~86M) and B text tower (~63M), no allocation."""
    cfg = clip.model_config("B/16", "B", embed_dim=512)
    model = clip.build_model(cfg)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.uint8),
                            jax.ShapeDtypeStruct((1, 77), jnp.int32))
    params = nn.unbox(shapes)["params"]

    def blocks(w, m, depth):   # qkv+out kernels/biases, 2 LNs, MLP
        return depth * (4 * w * w + 4 * w + 4 * w + 2 * w * m + m + w)

    w, e = 768, 512
    image = 16 * 16 * 3 * w + w + 196 * w + w + blocks(w, 3072, 12) + 2 * w + w * e
    w = 512
    text = 49408 * w + 77 * w + blocks(w, 2048, 12) + 2 * w + w * e
    assert count(params["image"]) == image and 85.5e6 < image < 87e6
    assert count(params["text"]) == text and 62.5e6 < text < 64e6
    assert set(params) == {"image", "text", "logit_scale"}


def test_sincos_2d_follows_big_vision():
    """google-research/big_vision big_vision/models/vit.py `posemb_sincos_2d` (as UCSC-VLAA/CLIPA
    clipa_jax/models/vit.py): rows [sin(x w), cos(x w), sin(y w), cos(y w)], x the column, y the row, row-major,
    w_k = 10000^(-k / (W/4 - 1)). Values for W = 16 on a 2 x 3 grid worked out from that formula by hand."""
    gh, gw, width = 2, 3, 16
    pos = sincos_2d(gh, gw, width)
    assert pos.shape == (gh * gw, width) and pos.dtype == np.float32
    # (row 0, column 1): x = 1 in the first half, y = 0 in the second; w = (1, 10^(-4/3), 10^(-8/3), 1e-4)
    np.testing.assert_allclose(pos[1], [0.84147098, 0.04639922, 0.00215443, 0.00010000,
                                        0.54030231, 0.99892298, 0.99999768, 1.0, 0, 0, 0, 0, 1, 1, 1, 1], atol=1e-7)
    # (row 1, column 2) = index 5
    np.testing.assert_allclose(pos[5], [0.90929743, 0.09269850, 0.00430886, 0.00020000,
                                        -0.41614684, 0.99569422, 0.99999072, 0.99999998,
                                        0.84147098, 0.04639922, 0.00215443, 0.00010000,
                                        0.54030231, 0.99892298, 0.99999768, 1.0], atol=1e-7)
    grid = pos.reshape(gh, gw, width)
    x_half, y_half = grid[..., : width // 2], grid[..., width // 2:]
    np.testing.assert_allclose(x_half, np.broadcast_to(x_half[:1], x_half.shape))   # depends on the column only
    np.testing.assert_allclose(y_half, np.broadcast_to(y_half[:, :1], y_half.shape))  # depends on the row only
    with pytest.raises(ValueError):
        sincos_2d(2, 2, 6)


# ---------------------------------------------------------------- CLIP outputs


def test_outputs_shapes_and_norm(tiny, batch):
    model, variables = tiny
    out = jax.jit(model.apply)(variables, *batch)
    assert set(out) == {"zimg", "ztxt", "logit_scale"}
    for key in ("zimg", "ztxt"):
        assert out[key].shape == (4, 32) and out[key].dtype == jnp.float32
        np.testing.assert_allclose(jnp.linalg.norm(out[key], axis=-1), 1.0, atol=1e-5)
    assert out["logit_scale"].shape == () and out["logit_scale"].dtype == jnp.float32
    np.testing.assert_allclose(out["logit_scale"], math.log(1 / 0.07), rtol=1e-6)
    enc_text = text_encoder(model, variables)
    np.testing.assert_allclose(image_encoder(model)(variables, batch[0]), out["zimg"], atol=1e-5)
    np.testing.assert_allclose(enc_text(batch[1]), out["ztxt"], atol=1e-5)
    # texts shorter than context_length use the first L position embeddings
    assert enc_text(batch[1][:, :9]).shape == (4, 32)
    assert not np.allclose(out["zimg"][0], out["zimg"][1])


def test_logit_bias_and_config_errors(batch):
    model = clip.build_model(tiny_config(logit_scale_init=math.log(10), logit_bias_init=-10.0))
    out = jax.jit(model.apply)(init(model, batch), *batch)
    np.testing.assert_allclose([out["logit_scale"], out["logit_bias"]], [math.log(10), -10.0], rtol=1e-6)
    with pytest.raises(ValueError, match="dtype"):
        clip.build_model(tiny_config(dtype="float16"))
    bad = tiny_config()
    bad.image.dropout = 0.1
    with pytest.raises(ValueError, match=r"config.model.image.*dropout"):
        clip.build_model(bad)
    bad = tiny_config()
    bad.image.image_size = 64   # learned position embedding for 8x8 but images give 4x4
    with pytest.raises(ValueError, match="grid"):
        init(clip.build_model(bad), batch)


@pytest.mark.parametrize("pool,pos_emb", [("gap", "sincos2d"), ("map", "learn")])
def test_image_pool_variants(batch, pool, pos_emb):
    cfg = tiny_config()
    cfg.image.update(pool=pool, pos_emb=pos_emb)
    model = clip.build_model(cfg)
    variables = init(model, batch)
    assert ("pos_embedding" in variables["params"]["image"]) == (pos_emb == "learn")
    assert ("map_head" in variables["params"]["image"]) == (pool == "map")
    enc = image_encoder(model)
    zimg = enc(variables, batch[0])
    assert zimg.shape == (4, 32) and np.all(np.isfinite(zimg))
    if pos_emb == "sincos2d":   # fixed embedding follows the input grid: 64 px works with the same params
        assert enc(variables, jnp.zeros((1, 64, 64, 3), jnp.uint8)).shape == (1, 32)


def tower_with_blocks(cfg, variables, tower, inputs):
    """(unnormalised tower output, last block's output before the final LayerNorm, tower params)."""
    model = clip.build_model(cfg)
    apply = jax.jit(lambda v, x: model.apply(v, x, method=lambda m, y: getattr(m, tower)(y),
                                             capture_intermediates=True, mutable=["intermediates"]))
    out, state = apply(variables, inputs)
    enc = state["intermediates"][tower]["encoder"]
    last = enc[f"block{getattr(cfg, tower).depth - 1}"]["__call__"][0]
    return np.asarray(out), np.asarray(last), jax.tree.map(np.asarray, nn.unbox(variables)["params"][tower])


def ln_final(x, p):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * p["encoder"]["ln_final"]["scale"] + p["encoder"]["ln_final"]["bias"]


@pytest.mark.parametrize("pool", ["tok", "gap", "gap_post_ln", "gap_with_cls"])
def test_image_pool_layouts(tiny, batch, pool):
    """Pooling of the last block's tokens x [B, 1+N, W] with the final LayerNorm LN: 'gap_post_ln' = LN(mean of
    patches) as UCSC-VLAA/CLIPA clipa_jax/models/vit.py pool_type='gap' (OpenCLIP open_clip/transformer.py 'avg' with
    final_ln_after_pool); 'gap_with_cls' = mean of LN(x) over all tokens, CLS included, as facebookresearch/flip
    models_flip.py (img_avg_token). Same parameter tree for all four."""
    cfg = tiny_config()
    cfg.image.pool = pool
    out, x, p = tower_with_blocks(cfg, tiny[1], "image", batch[0])
    pooled = {"tok": lambda: ln_final(x, p)[:, 0], "gap": lambda: ln_final(x, p)[:, 1:].mean(1),
              "gap_post_ln": lambda: ln_final(x[:, 1:].mean(1), p),
              "gap_with_cls": lambda: ln_final(x, p).mean(1)}[pool]()
    np.testing.assert_allclose(out, pooled @ p["proj"]["kernel"], atol=1e-5)


@pytest.mark.parametrize("pool", ["last_position", "first"])
def test_text_without_pad_mask_attends_to_padding(tiny, pool):
    """UCSC-VLAA/CLIPA clipa_jax/models/text_transformer.py (pool_type='last': `x[:, -1]`) and facebookresearch/flip
    models_flip.py (position 0) run their bidirectional text encoder without any attention mask."""
    cfg = tiny_config()
    cfg.text.update(causal=False, pad_mask=False, pool=pool)
    tokens = make_tokens(np.random.default_rng(3), [3, 6, 8], seq_len=8)
    out, x, p = tower_with_blocks(cfg, tiny[1], "text", tokens)
    position = {"last_position": -1, "first": 0}[pool]
    np.testing.assert_allclose(out, ln_final(x, p)[:, position] @ p["proj"]["kernel"], atol=1e-5)
    enc = text_encoder(clip.build_model(cfg), tiny[1])
    assert np.abs(enc(jnp.pad(tokens, ((0, 0), (0, 8))))[:2] - enc(tokens)[:2]).max() > 1e-3  # padding is attended
    masked = tiny_config()
    masked.text.update(causal=False, pool=pool)
    np.testing.assert_allclose(text_encoder(clip.build_model(masked), tiny[1])(tokens[2:]), enc(tokens[2:]),
                               atol=1e-6)  # a row without padding: the same with and without the pad mask


# ---------------------------------------------------------------- patch_keep


@pytest.mark.parametrize("pool", ["tok", "gap"])
def test_patch_keep_all_equals_none(tiny, batch, pool):
    cfg = tiny_config()
    cfg.image.pool = pool
    model, variables = clip.build_model(cfg), tiny[1]   # same parameter tree as the 'tok' model
    images = batch[0]
    enc = image_encoder(model)
    full = enc(variables, images)
    ident = jnp.tile(jnp.arange(16, dtype=jnp.int32), (4, 1))
    perm = jnp.asarray(np.stack([np.random.default_rng(i).permutation(16) for i in range(4)]), jnp.int32)
    np.testing.assert_allclose(enc(variables, images, ident), full, atol=1e-5)
    np.testing.assert_allclose(enc(variables, images, perm), full, atol=1e-5)   # order does not matter


def test_patch_keep_subset_drops_patches(tiny, batch):
    model, variables = tiny
    images = batch[0].astype(jnp.float32)
    keep = jnp.asarray(np.stack([np.sort(np.random.default_rng(i).permutation(16)[:6]) for i in range(4)]),
                       jnp.int32)
    probe = jnp.asarray(np.random.default_rng(9).normal(size=(4, 32)), jnp.float32)

    def f(x):
        return jnp.sum(model.apply(variables, x, keep, method=model.encode_image) * probe)

    enc = image_encoder(model)
    full, kept = enc(variables, images), enc(variables, images, keep)
    assert np.abs(full - kept).max() > 1e-3
    grad = np.asarray(jax.jit(jax.grad(f))(images))                       # [4, 32, 32, 3]
    per_patch = np.abs(grad).reshape(4, 4, PATCH, 4, PATCH, 3).sum((2, 4, 5)).reshape(4, 16)
    is_kept = np.zeros((4, 16), bool)
    np.put_along_axis(is_kept, np.asarray(keep), True, axis=1)
    assert np.all(per_patch[~is_kept] == 0) and np.all(per_patch[is_kept] > 0)
    # perturbing a dropped patch region leaves the output unchanged
    row, col = divmod(int(np.flatnonzero(~is_kept[0])[0]), 4)
    perturbed = images.at[0, row * PATCH:(row + 1) * PATCH, col * PATCH:(col + 1) * PATCH].set(255.0)
    np.testing.assert_allclose(enc(variables, perturbed, keep), kept, atol=1e-6)


# ---------------------------------------------------------------- text masking and pooling


def test_causal_eot_ignores_tokens_after_eot(tiny, batch):
    model, variables = tiny
    tokens = batch[1]                                   # row 0 has EOT at position 4
    enc = text_encoder(model, variables)
    base = enc(tokens)
    after = enc(tokens.at[0, 7].set(123))               # after the EOT
    before = enc(tokens.at[0, 2].set(123))              # before the EOT
    np.testing.assert_allclose(after, base, atol=1e-6)
    assert np.abs(before[0] - base[0]).max() > 1e-3
    np.testing.assert_allclose(before[1:], base[1:], atol=1e-6)


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_bidirectional_ignores_padding(tiny, pool):
    cfg = tiny_config()
    cfg.text.update(causal=False, pool=pool)
    enc = text_encoder(clip.build_model(cfg), tiny[1])   # same parameter tree as the causal model
    tokens = make_tokens(np.random.default_rng(3), [3, 6, 8], seq_len=8)
    padded = jnp.pad(tokens, ((0, 0), (0, 8)))          # same texts, 8 more pad tokens
    np.testing.assert_allclose(enc(padded), enc(tokens), atol=1e-5)
    # bidirectional: a later token changes the output (it would not for causal + 'first')
    changed = enc(tokens.at[0, 1].set(7))
    assert np.abs(changed[0] - enc(tokens)[0]).max() > 1e-3


# ---------------------------------------------------------------- logical names, dtype, remat


def test_every_param_has_logical_names(batch):
    model = clip.build_model(tiny_config(logit_bias_init=-10.0))
    cfg_map = tiny_config()
    cfg_map.image.pool = "map"
    for m in (model, clip.build_model(cfg_map)):
        boxed = jax.eval_shape(m.init, jax.random.key(0), *batch)["params"]
        leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
        assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
        specs = jax.tree.leaves(nn.get_partition_spec(boxed), is_leaf=lambda x: isinstance(x, PartitionSpec))
        assert len(specs) == len(leaves)
        for spec, leaf in zip(specs, leaves):
            assert isinstance(spec, PartitionSpec) and len(spec) == leaf.value.ndim
            assert all(isinstance(name, str) for name in spec)
    names = {n for s in specs for n in s}
    assert names == {"embed", "mlp", "heads", "kv", "norm", "vocab", "pos", "patch_h", "patch_w", "channels",
                     "cls", "proj"}


def test_bfloat16_matches_float32(tiny, batch):
    model, variables = tiny
    model16 = clip.build_model(tiny_config(dtype="bfloat16"))
    out32 = jax.jit(model.apply)(variables, *batch)
    out16 = jax.jit(model16.apply)(variables, *batch)
    params16 = jax.eval_shape(model16.init, jax.random.key(0), *batch)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nn.unbox(params16)))
    for key in ("zimg", "ztxt"):
        assert out16[key].dtype == jnp.float32
        np.testing.assert_allclose(out16[key], out32[key], atol=5e-2)
        cos = np.sum(np.asarray(out16[key]) * np.asarray(out32[key]), axis=-1)
        assert np.all(cos > 0.995)


def test_remat_same_output_and_grads(tiny, batch):
    model, variables = tiny
    model_r = clip.build_model(tiny_config(remat="full"))
    assert jax.tree.structure(jax.eval_shape(model_r.init, jax.random.key(0), *batch)) == jax.tree.structure(
        variables)

    def loss(m):
        def f(params):
            out = m.apply({"params": params}, *batch)
            logits = jnp.exp(out["logit_scale"]) * out["zimg"] @ out["ztxt"].T
            return -jnp.mean(jnp.diag(jax.nn.log_softmax(logits, axis=-1)))
        return jax.jit(jax.value_and_grad(f))

    params = nn.unbox(variables)["params"]
    (v0, g0), (v1, g1) = loss(model)(params), loss(model_r)(params)
    np.testing.assert_allclose(v1, v0, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, atol=1e-5 * np.abs(a).max() + 1e-7), g0, g1)
