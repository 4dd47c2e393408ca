"""ResNet image towers: shapes and structure, batch norm state in the train state (trained and frozen, sharded; the
Scaling-down study's ResNet CPU twin trains), validation of ViT-only options, the flops tool and OpenCLIP parity
(weights both ways)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from clipjax import sharding, train, validation
from clipjax.data import pipeline
from clipjax.models import clip, resnet, sizes
from tests.helpers import load_config


def rn_config(**overrides):
    """configs/tiny.py with the RNmu ResNet at 32 px, batch 16 (each compile takes seconds)."""
    base = dict(total_steps=20, batch_size=16, data__image_size=32, data__text_length=8, data__size=256,
                model__embed_dim=32, log_every_steps=1, evals__every_steps=0, evals__num_examples=32,
                evals__batch_size=32, checkpoint__every_steps=10, progress_bar=False, optim__warmup_steps=2)
    base.update(overrides)
    config = load_config("tiny.py", **base)
    config.model.image_tower = "resnet"
    config.model.image = sizes.resnet("RNmu", image_size=config.data.image_size, width=8, num_heads=4)
    config.model.text.context_length = config.data.text_length
    return config


def test_sizes_match_openai():
    rn50 = sizes.resnet("RN50")
    assert tuple(rn50.layers) == (3, 4, 6, 3) and rn50.width == 64 and rn50.num_heads == 32
    assert tuple(sizes.resnet("RN50x64").layers) == (3, 15, 36, 10) and sizes.resnet("RN50x64").image_size == 448
    with pytest.raises(ValueError, match="multiple of 32"):
        sizes.resnet("RN50", image_size=100)
    with pytest.raises(ValueError, match="expected one of"):
        sizes.resnet("RN18")


def test_structure_strides_and_zero_init_blocks():
    model = resnet.ModifiedResNet((1, 2, 1, 1), width=8, num_heads=4, image_size=64, embed_dim=24)
    images = jnp.zeros((2, 64, 64, 3), jnp.uint8)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(1), images)
    params = variables["params"]
    assert params["conv1"]["kernel"].value.shape == (3, 3, 3, 4)       # stem: w/2, stride 2
    assert params["layer4_0"]["conv3"]["kernel"].value.shape == (1, 1, 64, 256)  # 8w planes x 4
    assert "downsample_conv" in params["layer1_0"] and "downsample_conv" not in params["layer2_1"]
    assert params["attnpool"]["pos_embedding"].value.shape == (2 * 2 + 1, 256)  # (64/32)^2 + mean token
    assert jax.eval_shape(model.apply, variables, images).shape == (2, 24)
    bn3 = resnet.BatchNorm(zero_scale=True).init(jax.random.PRNGKey(0), jnp.ones((1, 1, 1, 3)))
    assert float(jnp.abs(bn3["params"]["scale"].value).max()) == 0.0  # zero gamma on each block's last BN


def test_batch_norm_train_uses_batch_statistics_and_updates_running_ones():
    bn = resnet.BatchNorm(train=True)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 3, 3, 5)) * 3 + 2
    variables = bn.init(jax.random.PRNGKey(1), x)
    y, updated = bn.apply(variables, x, mutable=["batch_stats"])
    np.testing.assert_allclose(np.asarray(y).mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(y).std(axis=(0, 1, 2)), 1, atol=1e-3)
    stats = nn.meta.unbox(updated["batch_stats"])
    x64 = np.asarray(x, np.float64).reshape(-1, 5)
    np.testing.assert_allclose(np.asarray(stats["mean"]), 0.1 * x64.mean(0), rtol=1e-5)  # momentum 0.1 from 0
    np.testing.assert_allclose(np.asarray(stats["var"]), 0.9 + 0.1 * x64.var(0, ddof=1), rtol=1e-5)  # unbiased
    frozen = resnet.BatchNorm(train=False).apply(variables, x)  # running stats 0 / 1: the identity
    np.testing.assert_allclose(np.asarray(frozen), np.asarray(x) / np.sqrt(1 + resnet.BN_EPS), rtol=1e-6)


def twin_config(**overrides):
    """configs/scaling_down/tiny_tower_resnet_small.py (the Scaling-down study's RNmu CPU twin, 64 px) at batch 16."""
    base = dict(batch_size=16, log_every_steps=1, evals__every_steps=0, checkpoint__every_steps=10,
                progress_bar=False, optim__warmup_steps=2)
    base.update(overrides)
    return load_config("scaling_down/tiny_tower_resnet_small.py", **base)


@pytest.fixture(scope="module")
def twin_run():
    """The ResNet twin trained 3 steps on a 2 x 4 (data x fsdp) mesh, compiled once for the tests below:
    (trainer, host copy of the initial state, final state, losses)."""
    config = twin_config(mesh__data=2, mesh__fsdp=4)
    trainer = train.Trainer(config, sharding.make_mesh(config.mesh))
    it, size = pipeline.make_train_iterator(config, 0, 1)
    state = trainer.init_state(size)
    first = jax.device_get(state)  # the step donates the state
    losses = []
    for _ in range(3):
        state, m = trainer.step_fn(state, sharding.global_batch(next(it), trainer.mesh))
        losses.append(float(m["train/loss"]))
    return trainer, first, state, np.array(losses)


def test_batch_statistics_are_global_when_the_batch_is_sharded():
    """BN in training mode normalises with the global batch's statistics: the images split over 8 devices give the
    features and running statistics of the unsplit batch (GSPMD reduces across devices)."""
    model = resnet.ModifiedResNet((1, 1, 1, 1), width=8, num_heads=4, image_size=32, embed_dim=16, train=True)
    images = jax.random.randint(jax.random.PRNGKey(0), (16, 32, 32, 3), 0, 256).astype(jnp.uint8)
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(1), images[:1]))  # no init to compile
    rng = np.random.default_rng(1)
    variables = {"params": jax.tree.map(lambda s: 0.2 * rng.standard_normal(s.shape, np.float32), shapes["params"]),
                 "batch_stats": jax.tree.map(lambda s: np.full(s.shape, 1.1, np.float32), shapes["batch_stats"])}
    fwd = jax.jit(lambda v, x: model.apply(v, x, mutable=["batch_stats"]))
    ref_out, ref_stats = fwd(variables, images)
    mesh = sharding.make_mesh(rn_config(mesh__data=8).mesh)
    out, stats = fwd(variables, jax.device_put(images, sharding.batch_sharding(mesh, 4)))
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref_out), rtol=1e-4, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6),
                 nn.meta.unbox(stats), nn.meta.unbox(ref_stats))
    # half the batch, twice, gives other statistics (and reuses the compiled shape): the comparison can fail
    half, _ = fwd(variables, jnp.concatenate([images[:8], images[:8]]))
    assert float(np.abs(np.asarray(half[:8]) - np.asarray(ref_out[:8])).max()) > 1e-3


def test_trained_batch_norm_state_is_sharded_updated_and_evaluated(twin_run):
    trainer, first, state, losses = twin_run
    assert np.isfinite(losses).all()
    mean = state.batch_stats["image"]["layer4_0"]["bn3"]["mean"]
    assert "fsdp" in str(mean.sharding.spec)  # running stats sharded by channel like the conv kernels
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), state.batch_stats, first.batch_stats)
    assert min(jax.tree.leaves(moved)) > 0  # every running statistic was updated in the state
    # evaluation reads the running statistics through TrainState.eval_params
    encode = jax.jit(lambda v, x: trainer.model.apply(v, x, method=trainer.model.encode_image))
    ev = encode(clip.as_variables(state.eval_params()), jnp.zeros((2, 64, 64, 3), jnp.uint8))
    assert ev.shape == (2, trainer.config.model.embed_dim)


@pytest.mark.parametrize("strategy", ["random", "grid", "block"])
def test_vit_only_token_masking_is_refused_for_resnets(strategy):
    config = rn_config(tokens__image_strategy=strategy, tokens__image_keep_ratio=0.25)
    with pytest.raises(ValueError, match="tokens.image_strategy"):
        validation.validate(config, 8)


def test_resize_applies_and_bad_resnet_configs_are_named():
    config = rn_config(data__image_size=64)  # reduced/raised resolution: both image sizes set together
    config.model.image.image_size = 64
    validation.validate(config, 8)
    config.model.image.image_size = 32
    with pytest.raises(ValueError, match="data.image_size"):
        validation.validate(config, 8)
    config = rn_config(model__batch_norm="sync")
    with pytest.raises(ValueError, match="model.batch_norm"):
        validation.validate(config, 8)
    config = rn_config()
    config.model.image_tower = "vit"  # a ResNet size table under a ViT tower
    with pytest.raises(ValueError, match="model.image"):
        validation.validate(config, 8)


# ---------------------------------------------------------------------------------------------- OpenCLIP parity

SIZE, CTX = 64, 16


def _native_openclip_resnet(seed: int):
    """open_clip's own CLIP with a ModifiedResNet (tiny widths), every parameter and BN running statistic perturbed
    (so the zero-init last BN of each block and the fresh 0/1 statistics are not trivial), in eval mode."""
    torch = pytest.importorskip("torch")
    open_clip = pytest.importorskip("open_clip")
    cfg = dict(embed_dim=32, vision_cfg=dict(image_size=SIZE, layers=[1, 2, 1, 1], width=8, head_width=64),
               text_cfg=dict(context_length=CTX, vocab_size=49408, width=64, heads=2, layers=2))
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.3 * torch.randn_like(b))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand_like(b))
    return model, cfg


def test_openclip_resnet_weights_give_the_same_embeddings_both_ways(tmp_path):
    """open_clip's ModifiedResNet -> state dict file -> convert_weights --from openclip -> clipjax embeddings equal
    open_clip's; clipjax -> openclip (convert_weights) -> open_clip's strict load gives them back too."""
    torch = pytest.importorskip("torch")
    open_clip = pytest.importorskip("open_clip")
    from clipjax import pytree
    from clipjax.data.tokenizer import ClipTokenizer
    from clipjax.interop import configs, files
    from clipjax.models.vit import CLIP_MEAN, CLIP_STD
    from clipjax.tools import convert_weights

    oc, cfg = _native_openclip_resnet(seed=3)
    (tmp_path / "model.json").write_text(__import__("json").dumps(cfg))
    files.save_state_dict({k: v.numpy() for k, v in oc.state_dict().items()}, str(tmp_path / "w.safetensors"))
    flat, model = convert_weights.load("openclip", str(tmp_path / "w.safetensors"),
                                       model_config=str(tmp_path / "model.json"))
    assert model.image_tower == "resnet" and tuple(model.image.layers) == (1, 2, 1, 1) and model.image.num_heads == 4
    convert_weights.check_against_model(flat, model)

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    tokens = ClipTokenizer()(["a photo of a red cube", "two small blue spheres", "x" * 40], context_length=CTX)
    tree = pytree.unflatten({k: jnp.asarray(v) for k, v in flat.items()})
    variables = clip.variables({k: v for k, v in tree.items() if k != "batch_stats"}, tree["batch_stats"])
    m = clip.build_model(model)
    zimg = np.asarray(jax.jit(lambda v, x: m.apply(v, x, method=m.encode_image))(variables, images))
    ztxt = np.asarray(jax.jit(lambda v, x: m.apply(v, x, method=m.encode_text))(variables, tokens))
    x = (images.astype(np.float32) / 255.0 - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    with torch.no_grad():
        timg = oc.encode_image(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), normalize=True).numpy()
        ttxt = oc.encode_text(torch.from_numpy(tokens).long(), normalize=True).numpy()
    d_img, d_txt = float(np.abs(timg - zimg).max()), float(np.abs(ttxt - ztxt).max())
    print(f"\nRN parity vs open_clip (tiny RN [1,2,1,1] w8, 64 px): max |dz_img| {d_img:.2e}, |dz_txt| {d_txt:.2e}")
    assert d_img < 1e-4 and d_txt < 1e-4
    assert float(np.abs(timg - ztxt).max()) > 0.1  # the comparison can fail

    # export: clipjax -> OpenCLIP folder -> open_clip's own loader (strict) -> the same image embeddings
    convert_weights.save("openclip", flat, model, str(tmp_path / "export"))
    back = open_clip.create_model(f"local-dir:{tmp_path / 'export'}").eval()
    assert configs.model_from_openclip(cfg).image.to_dict() == model.image.to_dict()
    with torch.no_grad():
        bimg = back.encode_image(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), normalize=True).numpy()
    assert float(np.abs(bimg - timg).max()) < 1e-6


def test_hf_export_of_a_resnet_is_refused():
    from clipjax.interop import weights
    config = rn_config()
    with pytest.raises(ValueError, match="image_tower = 'resnet'"):
        weights.to_torch_layout({}, config.model, "hf")


# ---------------------------------------------------------------------------------------------- flops


def test_flops_of_resnet_towers_match_xla_and_grow_with_depth():
    from clipjax.tools import flops
    config = rn_config(data__image_size=224, data__text_length=16)
    config.model.image = sizes.resnet("RN50", layers=(1, 1, 2, 1), width=16, num_heads=8, image_size=224)
    ours, xla = flops.analytic(config), flops.xla(config)
    assert ours.image_tokens == xla.image_tokens == 50
    # XLA skips the multiplies with the zero padding of the 3x3 convs, so it lands a little below
    assert 0.93 < xla.image / ours.image <= 1.0
    rn50, rn101 = (flops.resnet_flops(sizes.resnet(n), 1024, 224) for n in ("RN50", "RN101"))
    assert round(rn50 / 1e9, 2) == 11.59 and rn101 > 1.6 * rn50
    assert "ResNet (layers (1, 1, 2, 1)" in flops.report(config, with_xla=False)


def test_converted_folder_carries_batch_stats_into_a_frozen_bn_run(tmp_path, twin_run):
    """convert_weights' clipjax folder keeps the running statistics beside the params; a run with init_from on it
    (model.batch_norm = 'frozen', as for fine-tuning converted weights) starts from them and never changes them,
    while the parameters train."""
    from clipjax import pytree
    from clipjax.interop import files
    config = twin_config(mesh__data=8, model__batch_norm="frozen")
    trainer = train.Trainer(config)
    it, size = pipeline.make_train_iterator(config, 0, 1)
    trainer.setup(size)
    first = twin_run[1]  # the twin's fresh state (same model): no second init to compile
    state = jax.device_put(first, trainer.state_shardings)
    rng = np.random.default_rng(0)
    stats = jax.tree.map(lambda x: (rng.random(x.shape) + 0.5).astype(np.float32), first.batch_stats)
    flat = {**pytree.flatten(first.params), **pytree.flatten({"batch_stats": stats})}
    files.save_clipjax(str(tmp_path / "conv"), flat, config.model)
    loaded, _ = files.load_clipjax(str(tmp_path / "conv"))
    assert sorted(loaded) == sorted(flat)
    config.init_from = str(tmp_path / "conv")
    state = train.init_from(config, state, trainer.mesh)
    losses = []
    for _ in range(3):
        state, m = trainer.step_fn(state, sharding.global_batch(next(it), trainer.mesh))
        losses.append(float(m["train/loss"]))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), state.batch_stats, stats)
    assert np.isfinite(losses).all() and losses[-1] != losses[0]
    config.init_from = str(tmp_path / "nothing")
    with pytest.raises(Exception, match="nothing"):
        train.init_from(config, state, trainer.mesh)


def test_sizes_match_open_clip_model_configs():
    """RN50 .. RN50x64 read from the installed open_clip's model_configs convert to sizes.resnet and RESNET_CLIP."""
    pytest.importorskip("open_clip")
    from clipjax.interop import configs
    for name, (embed, (width, _, heads)) in sizes.RESNET_CLIP.items():
        if name == "RNmu":
            continue
        model = configs.model_from_openclip(configs.resolve_openclip_config(name))
        ref = sizes.resnet(name)
        assert model.image_tower == "resnet" and model.image.to_dict() == {**ref.to_dict(), "layers": tuple(ref.layers)}
        assert (model.embed_dim, model.text.width, model.text.num_heads) == (embed, width, heads)


def test_init_from_another_resolution_resizes_the_attention_pool_grid():
    """A ResNet trained at 64 px continues at 128 px: the attention pool's mean-token row is kept, its 2x2 grid of
    position rows resized bilinearly to 4x4; everything else is taken as it is."""
    from clipjax import finetune
    small = resnet.ModifiedResNet((1, 1, 1, 1), width=8, num_heads=4, image_size=64, embed_dim=16)
    large = resnet.ModifiedResNet((1, 1, 1, 1), width=8, num_heads=4, image_size=128, embed_dim=16)
    old = nn.meta.unbox(jax.eval_shape(small.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))["params"])
    new = nn.meta.unbox(jax.eval_shape(large.init, jax.random.PRNGKey(0), jnp.zeros((1, 128, 128, 3)))["params"])
    rng = np.random.default_rng(0)
    old = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), old)
    out = finetune.adapt_params({"image": old}, {"image": new})["image"]
    pos_old, pos_new = old["attnpool"]["pos_embedding"], np.asarray(out["attnpool"]["pos_embedding"])
    assert pos_new.shape == (4 * 4 + 1, 256)
    np.testing.assert_array_equal(pos_new[0], pos_old[0])
    np.testing.assert_allclose(pos_new[1:].mean(0), pos_old[1:].mean(0), atol=1e-5)  # bilinear keeps the mean
    np.testing.assert_array_equal(np.asarray(out["conv1"]["kernel"]), old["conv1"]["kernel"])
