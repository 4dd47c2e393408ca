"""Weight conversion: clipjax <-> OpenCLIP / Hugging Face layouts, configs, files and parity of embeddings.

The parity tests build the exported models with the real `open_clip` and `transformers` PyTorch code (the
`interop` extra, installed by .ci/run) and compare their normalised embeddings with clipjax's on random inputs.
"""
import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import linen as nn

from clipjax.data.tokenizer import ClipTokenizer
from clipjax import pytree
from clipjax.interop import configs, files, weights
from clipjax.models import clip, sizes
from clipjax.models.vit import CLIP_MEAN, CLIP_STD
from clipjax.tools import convert_weights

SIZE, CTX = 32, 16
CASES = {  # name: (ln_pre, pool, pos_emb, logit_bias, text overrides)
    "openai_style": (True, "tok", "learn", None, {}),
    "clipjax_gap_sincos_bias": (False, "gap", "sincos2d", -10.0, {}),
    "clipa_layout": (False, "gap_post_ln", "sincos2d", None, dict(causal=False, pad_mask=False, pool="last_position")),
}
MAX_DIFF: dict[str, float] = {}  # largest |embedding difference| per family, printed at the end of the module


def tiny_model(ln_pre=True, pool="tok", pos_emb="learn", logit_bias=None, text=None) -> ml_collections.ConfigDict:
    m = clip.model_config()
    m.image = sizes.vit("mu/8", image_size=SIZE, pool=pool, pos_emb=pos_emb, ln_pre=ln_pre)
    m.text = sizes.text("mu", context_length=CTX, **(text or {}))
    m.embed_dim = 32
    m.logit_bias_init = logit_bias
    return m


def random_params(model_cfg, seed=0, patch_bias=False) -> dict[str, np.ndarray]:
    """Freshly initialised params with every leaf perturbed (LayerNorms and biases included)."""
    flat = _init(model_cfg.to_json(), seed)
    rng = np.random.default_rng(seed)
    out = {k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32) for k, v in flat.items()}
    out["image/patch_embed/bias"] = (rng.normal(0, 0.05, flat["image/patch_embed/bias"].shape) if patch_bias
                                     else np.zeros_like(flat["image/patch_embed/bias"])).astype(np.float32)
    out["logit_scale"] = np.float32(np.log(1 / 0.07))
    return out


@functools.cache
def _init(model_json: str, seed: int) -> dict[str, np.ndarray]:
    m = clip.build_model(ml_collections.ConfigDict(json.loads(model_json)))
    init = jax.jit(lambda: nn.meta.unbox(m.init(jax.random.key(seed), jnp.zeros((1, SIZE, SIZE, 3), jnp.uint8),
                                                jnp.zeros((1, CTX), jnp.int32))["params"]))
    return {k: np.asarray(v, np.float32) for k, v in pytree.flatten(init()).items()}


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    texts = ["a photo of a red cube", "two small blue spheres on a table", "x" * 40]
    return images, ClipTokenizer()(texts, context_length=CTX)


def clipjax_embeddings(model_cfg, flat, images, tokens):
    m = clip.build_model(model_cfg)
    variables = {"params": pytree.unflatten({k: jnp.asarray(v) for k, v in flat.items()})}
    zimg = jax.jit(lambda v, x: m.apply(v, x, method=m.encode_image))(variables, images)
    ztxt = jax.jit(lambda v, x: m.apply(v, x, method=m.encode_text))(variables, tokens)
    return np.asarray(zimg), np.asarray(ztxt)


def torch_images(images):
    torch = pytest.importorskip("torch")
    x = (images.astype(np.float32) / 255.0 - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def record(family: str, *diffs: float) -> None:
    MAX_DIFF[family] = max(MAX_DIFF.get(family, 0.0), *diffs)


@pytest.fixture(scope="module", autouse=True)
def report_max_diff():
    yield
    if MAX_DIFF:
        print("\nlargest embedding difference per family: " + json.dumps({k: f"{v:.2e}" for k, v in MAX_DIFF.items()}))


# ---------------------------------------------------------------------------------------------- numpy only


@pytest.mark.parametrize("layout", ["openclip", "hf"])
def test_round_trip_preserves_every_parameter(layout):
    model = tiny_model()
    flat = random_params(model)
    back = weights.from_torch_layout(weights.to_torch_layout(flat, model, layout), model, layout)
    assert set(back) == set(flat)
    for k in flat:
        np.testing.assert_array_equal(back[k], flat[k], err_msg=k)


def test_patch_bias_folds_into_position_embedding_with_same_embeddings():
    model = tiny_model()
    flat = random_params(model, patch_bias=True)
    back = weights.from_torch_layout(weights.to_torch_layout(flat, model, "openclip"), model, "openclip")
    assert not back["image/patch_embed/bias"].any()
    np.testing.assert_allclose(back["image/pos_embedding"], flat["image/pos_embedding"] + flat["image/patch_embed/bias"])
    images, tokens = inputs()
    a, b = clipjax_embeddings(model, flat, images, tokens), clipjax_embeddings(model, back, images, tokens)
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)
    np.testing.assert_array_equal(a[1], b[1])


def test_configs_round_trip_and_known_architectures():
    model = tiny_model(ln_pre=False, pool="gap")
    oc = configs.openclip_from_model(model)
    again = configs.model_from_openclip(oc)
    assert again.image.to_dict() == {**model.image.to_dict(), "pos_emb": "learn"} and again.text == model.text
    big_g = configs.model_from_openclip(configs.resolve_openclip_config("ViT-bigG-14"))
    assert (big_g.image.width, big_g.image.mlp_dim, big_g.image.num_heads, big_g.image.depth) == (1664, 8192, 16, 48)
    assert (big_g.text.width, big_g.text.num_heads, big_g.text.depth, big_g.embed_dim) == (1280, 20, 32, 1280)
    h14 = configs.model_from_openclip(configs.resolve_openclip_config("ViT-H-14"))
    assert h14.image.num_heads == 16 and h14.image.ln_pre and h14.image.pool == "tok"


def test_clipa_configs_convert_exactly_and_quickgelu_needs_allow_inexact():
    """OpenCLIP's CLIPA configs (open_clip model_configs/ViT-*-CLIPA.json: vision 'avg' + final_ln_after_pool, text
    no_causal_mask + pool_type 'last', no pad mask in open_clip/transformer.py) map to clipjax's CLIPA layout."""
    m = configs.model_from_openclip(configs.resolve_openclip_config("ViT-H-14-CLIPA"))
    assert (m.image.pool, m.image.ln_pre, m.text.causal, m.text.pad_mask, m.text.pool, m.text.vocab_size,
            m.text.context_length) == ("gap_post_ln", False, False, False, "last_position", 32000, 32)
    oc = configs.openclip_from_model(m)
    assert (oc["vision_cfg"]["pool_type"], oc["vision_cfg"]["final_ln_after_pool"], oc["text_cfg"]["pool_type"],
            oc["text_cfg"]["no_causal_mask"]) == ("avg", True, "last", True)
    assert configs.model_from_openclip(oc) == m
    with pytest.raises(configs.InexactConversion, match="pad_mask"):
        configs.openclip_from_model(tiny_model(text=dict(causal=False, pool="first")))
    with pytest.raises(configs.InexactConversion, match="last non-pad"):
        configs.openclip_from_model(tiny_model(text=dict(pool="last")))
    with pytest.raises(ValueError, match="gap_with_cls"):
        configs.openclip_from_model(tiny_model(pool="gap_with_cls"))
    with pytest.raises(configs.InexactConversion, match="QuickGELU"):
        configs.model_from_openclip({**configs.resolve_openclip_config("ViT-B-32"), "quick_gelu": True})
    with pytest.raises(ValueError, match="no exact Hugging Face"):
        configs.hf_from_model(tiny_model(ln_pre=False))


def test_wrong_architecture_fails_naming_keys():
    model = tiny_model()
    sd = weights.to_torch_layout(random_params(model), model, "openclip")
    deeper = tiny_model()
    deeper.image.depth = 3
    with pytest.raises(ValueError, match="missing 'visual.transformer.resblocks.2"):
        weights.from_torch_layout(dict(sd), deeper, "openclip")
    shallower = tiny_model()
    shallower.text.depth = 1
    with pytest.raises(ValueError, match="does not use"):
        weights.from_torch_layout(dict(sd), shallower, "openclip")


def test_cli_clipjax_to_openclip_to_clipjax_via_files(tmp_path):
    model = tiny_model()
    flat = random_params(model)
    files.save_clipjax(str(tmp_path / "src"), flat, model)
    assert convert_weights.main(["--from", "clipjax", "--to", "openclip", "--input", str(tmp_path / "src"),
                                 "--output", str(tmp_path / "oc")]) == 0
    assert os.path.exists(tmp_path / "oc" / "open_clip_model.safetensors")
    assert convert_weights.main(["--from", "openclip", "--to", "clipjax", "--input", str(tmp_path / "oc"),
                                 "--output", str(tmp_path / "back")]) == 0
    params, model_back = files.load_clipjax(str(tmp_path / "back"))
    assert model_back.image == model.image and model_back.text == model.text
    for k in flat:
        np.testing.assert_array_equal(params[k], flat[k], err_msg=k)
    # the converted folder is a valid config.init_from step folder
    from clipjax import finetune
    assert finetune.resolve_step_dir(str(tmp_path / "back")) == str(tmp_path / "back")


# ---------------------------------------------------------------------------------------------- PyTorch parity


@pytest.mark.parametrize("case", sorted(CASES))
def test_openclip_model_gives_clipjax_embeddings(case, tmp_path):
    pytest.importorskip("torch")
    open_clip = pytest.importorskip("open_clip")
    import torch
    ln_pre, pool, pos_emb, bias, text = CASES[case]
    model = tiny_model(ln_pre, pool, pos_emb, bias, text)
    flat = random_params(model, seed=1, patch_bias=True)
    convert_weights.save("openclip", flat, model, str(tmp_path))
    oc = open_clip.create_model(f"local-dir:{tmp_path}").eval()   # real open_clip code, strict load
    images, tokens = inputs(1)
    zimg, ztxt = clipjax_embeddings(model, flat, images, tokens)
    with torch.no_grad():
        timg = oc.encode_image(torch_images(images), normalize=True).numpy()
        ttxt = oc.encode_text(torch.from_numpy(tokens).long(), normalize=True).numpy()
    d_img, d_txt = float(np.abs(timg - zimg).max()), float(np.abs(ttxt - ztxt).max())
    record(f"openclip/{case}", d_img, d_txt)
    assert d_img < 1e-4 and d_txt < 1e-4
    if bias is not None:
        assert oc.logit_bias.item() == pytest.approx(float(flat["logit_bias"]))


@pytest.mark.parametrize("pos_emb", ["learn", "sincos2d"])
def test_hf_model_gives_clipjax_embeddings(pos_emb, tmp_path):
    torch = pytest.importorskip("torch")
    import transformers
    model = tiny_model(True, "tok", pos_emb)
    flat = random_params(model, seed=2, patch_bias=True)
    convert_weights.save("hf", flat, model, str(tmp_path))
    hf = transformers.CLIPModel.from_pretrained(str(tmp_path)).eval()
    images, tokens = inputs(2)
    zimg, ztxt = clipjax_embeddings(model, flat, images, tokens)
    with torch.no_grad():
        timg = _features(hf.get_image_features(pixel_values=torch_images(images)))
        ttxt = _features(hf.get_text_features(input_ids=torch.from_numpy(tokens).long()))
    timg, ttxt = (x / np.linalg.norm(x, axis=-1, keepdims=True) for x in (timg, ttxt))
    d_img, d_txt = float(np.abs(timg - zimg).max()), float(np.abs(ttxt - ztxt).max())
    record(f"hf/{pos_emb}", d_img, d_txt)
    assert d_img < 1e-4 and d_txt < 1e-4
    # and back: HF -> clipjax gives the same embeddings
    params, model_back = convert_weights.load("hf", str(tmp_path))
    back = clipjax_embeddings(model_back, params, images, tokens)
    np.testing.assert_allclose(back[0], zimg, atol=1e-5)
    np.testing.assert_allclose(back[1], ztxt, atol=1e-5)


def _features(out):
    """get_*_features returns a tensor (or, in some transformers versions, an output with pooler_output)."""
    out = getattr(out, "pooler_output", out)
    return out.detach().float().numpy()


def _native_openclip(cfg: dict, seed: int):
    """An OpenCLIP model built and randomly initialised by open_clip itself (CLS position row, ln_pre, ...),
    with every parameter perturbed so that LayerNorms and biases are not trivial."""
    torch = pytest.importorskip("torch")
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _tiny_openclip_cfg(**vision_extra) -> dict:
    return dict(embed_dim=32, vision_cfg=dict(image_size=SIZE, layers=2, width=64, patch_size=8, head_width=32,
                                              **vision_extra),
                text_cfg=dict(context_length=CTX, vocab_size=49408, width=64, heads=2, layers=2))


@pytest.mark.parametrize("pool", ["tok", "avg"])
def test_native_openclip_weights_import_exactly(pool, tmp_path):
    """open_clip's own model -> state dict file -> convert_weights --from openclip -> clipjax embeddings."""
    torch = pytest.importorskip("torch")
    cfg = _tiny_openclip_cfg(pool_type=pool)
    oc = _native_openclip(cfg, seed=4)
    (tmp_path / "model.json").write_text(json.dumps(cfg))
    files.save_state_dict({k: v.numpy() for k, v in oc.state_dict().items()}, str(tmp_path / "w.safetensors"))
    params, model = convert_weights.load("openclip", str(tmp_path / "w.safetensors"),
                                         model_config=str(tmp_path / "model.json"))
    convert_weights.check_against_model(params, model)
    images, tokens = inputs(4)
    zimg, ztxt = clipjax_embeddings(model, params, images, tokens)
    with torch.no_grad():
        timg = oc.encode_image(torch_images(images), normalize=True).numpy()
        ttxt = oc.encode_text(torch.from_numpy(tokens).long(), normalize=True).numpy()
    d_img, d_txt = float(np.abs(timg - zimg).max()), float(np.abs(ttxt - ztxt).max())
    record(f"openclip_import/{pool}", d_img, d_txt)
    assert d_img < 1e-4 and d_txt < 1e-4


def test_native_openclip_clipa_layout_imports_exactly():
    """A CLIPA-style OpenCLIP model (open_clip/transformer.py: vision 'avg' pooling with final_ln_after_pool, text
    no_causal_mask attending to padding, pool_type 'last' = the last position) gives clipjax's embeddings on padded
    text, as UCSC-VLAA/CLIPA clipa_jax/models/{vit,text_transformer}.py compute them."""
    torch = pytest.importorskip("torch")
    cfg = _tiny_openclip_cfg(no_ln_pre=True, pool_type="avg", final_ln_after_pool=True)
    cfg["text_cfg"].update(vocab_size=1000, no_causal_mask=True, pool_type="last")
    oc = _native_openclip(cfg, seed=5)
    model = configs.model_from_openclip(cfg)
    params = weights.from_torch_layout({k: v.numpy() for k, v in oc.state_dict().items()}, model, "openclip")
    images, _ = inputs(5)
    tokens = np.random.default_rng(5).integers(1, 1000, (3, CTX)).astype(np.int32)
    tokens[0, 5:], tokens[1, 12:] = 0, 0                                 # rows 0 and 1 padded
    zimg, ztxt = clipjax_embeddings(model, params, images, tokens)
    with torch.no_grad():
        timg = oc.encode_image(torch_images(images), normalize=True).numpy()
        ttxt = oc.encode_text(torch.from_numpy(tokens).long(), normalize=True).numpy()
    d_img, d_txt = float(np.abs(timg - zimg).max()), float(np.abs(ttxt - ztxt).max())
    record("openclip_import/clipa_layout", d_img, d_txt)
    assert d_img < 1e-4 and d_txt < 1e-4


def test_named_architectures_match_open_clip_configs():
    import importlib.util
    spec = importlib.util.find_spec("open_clip")
    if spec is None:
        pytest.skip("open_clip not installed")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "model_configs")
    for name, ours in configs.ARCHITECTURES.items():
        with open(os.path.join(folder, f"{name}.json")) as f:
            theirs = json.load(f)
        assert configs.model_from_openclip(theirs, allow_inexact=True) == \
            configs.model_from_openclip(ours, allow_inexact=True), name
