"""Performance switches of the towers (clipjax.models.layers): attention kernels, remat policies, nn.scan and its
parameter layout (clipjax.models.scan_layout), each against the plain unrolled einsum model."""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from clipjax import config as config_lib, finetune, pytree, validation
from clipjax.interop import files, weights
from clipjax.models import clip, layers, scan_layout
from tests.test_models import IMG, make_tokens, tiny_config


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(1)
    images = jnp.asarray(rng.integers(0, 256, size=(3, IMG, IMG, 3)), jnp.uint8)
    return images, make_tokens(rng, [4, 16, 7])


TEXT_LAYOUTS = {"causal_eot": {}, "pad_mask_mean": dict(causal=False, pool="mean"),
                "no_mask_first": dict(causal=False, pad_mask=False, pool="first")}


def build(text_layout="causal_eot", image_pool="tok", **model):
    cfg = tiny_config(**model)
    cfg.text.update(TEXT_LAYOUTS[text_layout])
    cfg.image.pool = image_pool
    return clip.build_model(cfg)


def loss_and_grads(model, params, images, tokens, patch_keep=None):
    def f(p):
        out = model.apply({"params": p}, images, tokens, patch_keep)
        logits = jnp.exp(out["logit_scale"]) * out["zimg"] @ out["ztxt"].T
        return -jnp.mean(jnp.diag(jax.nn.log_softmax(logits, axis=-1)))
    return jax.jit(jax.value_and_grad(f))(params)


def assert_trees_close(a, b, rtol):
    """Every leaf of b within rtol x (the largest |value| of a) of a's: leaves that are zero up to rounding
    (e.g. gradients of a bias that softmax cancels) are compared at the tree's scale, not their own."""
    scale = max(float(np.abs(x).max()) for x in jax.tree.leaves(a))
    jax.tree.map(lambda x, y: np.testing.assert_allclose(y, x, atol=rtol * scale), a, b)


@pytest.mark.parametrize("text_layout,image_pool", [("causal_eot", "tok"), ("pad_mask_mean", "map"),
                                                    ("no_mask_first", "gap_post_ln")])
@pytest.mark.parametrize("impl", ["xla", "auto"])
def test_dot_product_attention_equals_einsum(batch, text_layout, image_pool, impl):
    images, tokens = batch
    reference = build(text_layout, image_pool, attention="einsum")
    params = nn.unbox(jax.jit(reference.init)(jax.random.key(0), images, tokens))["params"]
    keep = jnp.asarray([[0, 3, 5, 9, 15], [1, 2, 3, 4, 5], [15, 14, 0, 7, 8]], jnp.int32)  # token reduction
    for patch_keep in (None, keep):
        v0, g0 = loss_and_grads(reference, params, images, tokens, patch_keep)
        v1, g1 = loss_and_grads(build(text_layout, image_pool, attention=impl), params, images, tokens, patch_keep)
        np.testing.assert_allclose(v1, v0, rtol=1e-6)
        assert_trees_close(g0, g1, 1e-5)


def test_key_lengths_mask_equals_boolean_mask():
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=(3, 6, 2, 8)), jnp.float32) for _ in range(3))
    lengths = jnp.asarray([1, 4, 6])
    explicit = layers.padding_mask(6, lengths) & jnp.tril(jnp.ones((6, 6), bool))[None, None]
    want = layers.attend(q, k, v, "einsum", mask=explicit)
    for impl in ("einsum", "xla"):
        got = layers.attend(q, k, v, impl, causal=True, kv_lengths=lengths)
        np.testing.assert_allclose(got, want, atol=1e-6)
    # padded keys really are ignored: changing them changes nothing
    k2 = k.at[0, 1:].set(100.0)
    np.testing.assert_allclose(layers.attend(q, k2, v, "xla", kv_lengths=lengths)[0],
                               layers.attend(q, k, v, "xla", kv_lengths=lengths)[0], atol=1e-6)


def test_bfloat16_dot_product_attention_close_to_einsum(batch):
    images, tokens = batch
    ref = build("pad_mask_mean", dtype="bfloat16", attention="einsum")
    params = nn.unbox(jax.jit(ref.init)(jax.random.key(0), images, tokens))["params"]
    a = jax.jit(ref.apply)({"params": params}, images, tokens)
    b = jax.jit(build("pad_mask_mean", dtype="bfloat16", attention="xla").apply)({"params": params}, images, tokens)
    for key in ("zimg", "ztxt"):  # bf16 rounding of q before vs after the scale: ~1e-2, never a different model
        assert np.all(np.sum(np.asarray(a[key]) * np.asarray(b[key]), -1) > 0.999)


@pytest.mark.parametrize("scan", [False, True])
def test_remat_policies_same_loss_and_grads(batch, scan):
    images, tokens = batch
    base = build(scan=scan)
    params = nn.unbox(jax.jit(base.init)(jax.random.key(0), images, tokens))["params"]
    v0, g0 = loss_and_grads(base, params, images, tokens)
    for policy in ("full", "dots_saveable", "dots_no_batch", "offload"):
        v1, g1 = loss_and_grads(build(scan=scan, remat=policy), params, images, tokens)
        np.testing.assert_allclose(v1, v0, rtol=1e-6)
        assert_trees_close(g0, g1, 1e-5)


def test_remat_names_and_errors():
    assert layers.remat_name(True) == "full" and layers.remat_name(False) == "none"  # configs saved with bools
    with pytest.raises(ValueError, match="config.model.remat = 'sometimes'"):
        layers.remat_name("sometimes")
    with pytest.raises(ValueError, match=r"config.model.attention = 'flash'"):
        layers.attend(*(jnp.zeros((1, 2, 1, 8)),) * 3, "flash")
    for key, value, match in [("model.remat", "sometimes", "model.remat"), ("model.attention", "flash",
                                                                              "model.attention")]:
        c = config_lib.tiny_config()
        c.model[key.split(".")[1]] = value
        with pytest.raises(ValueError, match=match):
            validation.validate(c, 8)
    c = config_lib.tiny_config()
    c.model.scan, c.optim.name = True, "lamb"
    with pytest.raises(ValueError, match="model.scan"):
        validation.validate(c, 8)


@pytest.mark.parametrize("text_layout,image_pool", [("causal_eot", "tok"), ("pad_mask_mean", "gap_post_ln")])
def test_scan_equals_unrolled_after_layout_conversion(batch, text_layout, image_pool):
    images, tokens = batch
    unrolled, scanned = build(text_layout, image_pool), build(text_layout, image_pool, scan=True)
    params = nn.unbox(jax.jit(unrolled.init)(jax.random.key(0), images, tokens))["params"]
    stacked = scan_layout.to_layout(params, scanned=True)
    # the converted tree is exactly the tree (and logical axis names: 'layers' first) the scanned model initialises
    boxed = jax.eval_shape(scanned.init, jax.random.key(0), images, tokens)["params"]
    assert jax.tree.map(lambda x: (x.shape, x.dtype), nn.unbox(boxed)) == jax.tree.map(
        lambda x: (x.shape, x.dtype), stacked)
    spec = nn.get_partition_spec(boxed)["image"]["encoder"]["blocks"]["attn"]["query"]["kernel"]
    assert tuple(spec) == ("layers", "embed", "heads", "kv")
    v0, g0 = loss_and_grads(unrolled, params, images, tokens)
    v1, g1 = loss_and_grads(scanned, stacked, images, tokens)
    np.testing.assert_allclose(v1, v0, rtol=1e-6)
    assert_trees_close(scan_layout.to_layout(g0, scanned=True), g1, 1e-5)
    # and back: unstacking is exact
    back = scan_layout.to_layout(stacked, scanned=False)
    jax.tree.map(np.testing.assert_array_equal, params, back)


def test_layout_conversion_errors():
    with pytest.raises(ValueError, match="blocks \\[0, 2\\]"):
        scan_layout.stack_blocks({"image/encoder/block0/x": np.zeros(2), "image/encoder/block2/x": np.zeros(2)})


def test_scanned_run_exports_and_restarts_unrolled(tmp_path, batch):
    """A scanned run's checkpoint -> load_clipjax (converters) gives the unrolled layout and model.scan False;
    OpenCLIP export of scanned params equals that of unrolled ones; finetune adapts either layout to either."""
    images, tokens = batch
    cfg = tiny_config(scan=True)
    scanned = clip.build_model(cfg)
    params = jax.device_get(nn.unbox(jax.jit(scanned.init)(jax.random.key(3), images, tokens))["params"])
    files.save_clipjax(str(tmp_path / "run"), params, cfg)
    loaded, model_cfg = files.load_clipjax(str(tmp_path / "run"))
    assert model_cfg.scan is False and not scan_layout.is_scanned(loaded)
    assert set(loaded) == set(pytree.flatten(scan_layout.to_layout(params, scanned=False)))
    oc_from_scanned = weights.to_torch_layout(params, cfg, "openclip")
    oc_from_unrolled = weights.to_torch_layout(loaded, model_cfg, "openclip")
    assert set(oc_from_scanned) == set(oc_from_unrolled)
    for k in oc_from_scanned:
        np.testing.assert_array_equal(oc_from_scanned[k], oc_from_unrolled[k])
    # init_from a scanned checkpoint into an unrolled model (and the reverse) gives the same embeddings
    unrolled = clip.build_model(tiny_config())
    fresh = nn.unbox(jax.jit(unrolled.init)(jax.random.key(9), images, tokens))["params"]
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    adapted = finetune.init_params_from(str(tmp_path / "run"), fresh, mesh)
    out_s = scanned.apply({"params": params}, images, tokens)
    out_u = unrolled.apply({"params": adapted}, images, tokens)
    np.testing.assert_allclose(out_u["zimg"], out_s["zimg"], atol=1e-6)
    files.save_clipjax(str(tmp_path / "unrolled"), jax.device_get(adapted), tiny_config())
    again = finetune.init_params_from(str(tmp_path / "unrolled"), jax.device_put(params), mesh)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, again)


def step_temp_bytes(fsdp: int) -> int:
    """Compiled train-step temporaries per device of configs/small.py's CLIP (width 192) on 8 devices, batch 64."""
    from clipjax import sharding, train
    from tests.test_configs import load
    c = load("small.py")
    c.mesh.data, c.mesh.fsdp = 8 // fsdp, fsdp
    trainer = train.Trainer(c)
    abstract = trainer.setup(c.batch_size)
    b, h = c.batch_size, c.data.image_size
    shape = lambda s, dtype: jax.ShapeDtypeStruct(s, dtype, sharding=sharding.batch_sharding(trainer.mesh, len(s)))  # noqa: E731
    batch = {"image": shape((b, h, h, 3), jnp.uint8), "tokens": shape((b, c.data.text_length), jnp.int32),
             "index": shape((b,), jnp.int32)}
    return trainer.step_fn.lower(abstract, batch).compile().memory_analysis().temp_size_in_bytes


def test_fsdp_step_keeps_activations_batch_sharded():
    """FSDP shards parameters over 'embed'; the blocks pin activations to the batch axes, so per-device temporaries
    stay below pure data parallelism's (which also holds whole gradients). Without the pin GSPMD partly replicated
    the batch and FSDP needed more than data parallelism."""
    assert step_temp_bytes(fsdp=8) < step_temp_bytes(fsdp=1)


@pytest.mark.parametrize("lq,lk,expected", [(198, 198, True), (50, 16, True), (197, 197, False),
                                             (16, 77, False)])
def test_auto_attention_takes_cudnn_only_for_even_lengths(monkeypatch, lq, lk, expected):
    """JAX's cuDNN check refuses odd lengths in the backward pass (seen on an H200 with ViT-B/16's 197 tokens), after
    `attend` could fall back, so 'auto' must leave them to XLA."""
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    q, k = (jax.ShapeDtypeStruct((2, n, 4, 64), jnp.bfloat16) for n in (lq, lk))
    assert layers._use_cudnn(q, k, None) is expected
