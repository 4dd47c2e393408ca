"""Every file under configs/ loads and validates; each CPU-sized one traces a train step; every paper recipe x stage
has the reference's resolution, text length, lr and batch."""
import importlib.util

import jax
import jax.numpy as jnp
import pytest

from clipjax import recipes, train, validation
from tests.helpers import REPO, save_tiny_llm

CONFIGS = sorted(p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*.py"))
NEEDS_ARG = {"from_converted.py": "a converted weights folder (tested in test_interop)"}
CPU_SIZED = {"tiny.py", "small.py", "clipa/tiny_pretrain.py", "clipa/tiny_finetune.py", "fastclip/tiny.py",
             "siglip/tiny.py", "laclip/tiny.py", "veclip/tiny.py", "data/wds_tiny.py",
             *(f"scaling_down/tiny_tower_{t}_{d}.py" for t in ("vit", "resnet") for d in ("small", "large"))}


def load(name: str, arg: str | None = None):
    spec = importlib.util.spec_from_file_location("cfg", REPO / "configs" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config() if arg is None else module.get_config(arg)


def test_the_lists_name_existing_files():
    assert set(NEEDS_ARG) | CPU_SIZED <= set(CONFIGS)


@pytest.fixture(scope="module")
def llm_folder(tmp_path_factory):
    return save_tiny_llm(str(tmp_path_factory.mktemp("llm")), ["a red square"])


@pytest.mark.parametrize("name", [n for n in CONFIGS if n not in NEEDS_ARG])
def test_config_loads_and_validates(name, llm_folder):
    config = load(name)
    if config.model.text_tower == "llm_adapter":  # the frozen LLM is the user's folder; any one validates
        config.llm.folder = llm_folder
    validation.validate(config, num_devices=8)


@pytest.mark.parametrize("name", sorted(CPU_SIZED))
def test_cpu_config_traces_a_train_step(name):
    config = load(name)
    config.data.size = min(config.data.size, 4096) if config.data.size > 0 else 4096
    trainer = train.Trainer(config)
    abstract = trainer.setup(config.data.size)
    b, h = config.batch_size, config.data.image_size
    batch = {"image": jax.ShapeDtypeStruct((b, h, h, 3), jnp.uint8),
             "tokens": jax.ShapeDtypeStruct((b, config.data.text_length), jnp.int32),
             "index": jax.ShapeDtypeStruct((b,), jnp.int32)}
    out_state, metrics = jax.eval_shape(trainer.step_fn, abstract, batch)
    assert metrics["train/loss"].shape == () and out_state.step.shape == ()


# (file, argument) -> (image size, text length, text strategy, lr per 256, batch): UCSC-VLAA/CLIPA's scripts
# (CLIPA: 8e-6 / 8e-7 x B/256 at 32k; CLIPA-v2: 8e-6 at 64k, then 4e-7 at 32k and 1e-7 at 16k) and
# facebookresearch/flip configs/default.py (4e-6 x B/256 at 64k, unmasked tuning 4e-8 at 32k).
RECIPES = {
    ("clipa/b16.py", None): (112, 16, "truncate", 8e-6, 32768),
    ("clipa/b16.py", "stage=finetune"): (224, 32, "truncate", 8e-7, 32768),
    ("clipa/l16_64px.py", None): (64, 16, "syntax", 8e-6, 32768),
    ("clipa/l16_64px.py", "stage=finetune"): (224, 32, "truncate", 8e-7, 32768),
    ("clipa/l16_96px.py", None): (96, 8, "syntax", 8e-6, 32768),
    ("clipa/l16_96px.py", "stage=finetune"): (224, 32, "truncate", 8e-7, 32768),
    ("clipa/v2_h14.py", None): (84, 8, "syntax", 8e-6, 65536),
    ("clipa/v2_h14.py", "stage=finetune"): (224, 32, "truncate", 4e-7, 32768),
    ("clipa/v2_h14.py", "stage=finetune336"): (336, 32, "truncate", 1e-7, 16384),
    ("clipa/v2_g14.py", None): (84, 8, "syntax", 8e-6, 65536),
    ("clipa/v2_g14.py", "stage=finetune"): (224, 32, "truncate", 4e-7, 32768),
    ("clipa/v2_g14.py", "stage=finetune336"): (336, 32, "truncate", 1e-7, 16384),
    ("clipa/pretrain.py", "model=L/16@96"): (96, 8, "syntax", 8e-6, 32768),
    ("clipa/finetune.py", "model=B/16"): (224, 32, "truncate", 8e-7, 32768),
    ("flip/l16_mask50.py", None): (224, 32, "truncate", 4e-6, 65536),
    ("flip/l16_mask50.py", "length=paper"): (224, 32, "truncate", 4e-6, 32768),
    ("flip/l16_mask75.py", None): (224, 32, "truncate", 4e-6, 65536),
    ("flip/l16_mask50.py", "stage=tune"): (224, 32, "truncate", 4e-8, 32768),
}


@pytest.mark.parametrize("name,arg", sorted(RECIPES, key=str))
def test_recipe_stage_resolution_and_text_length(name, arg):
    config = load(name, arg)
    res, text_len, strategy, lr, batch = RECIPES[(name, arg)]
    assert (config.data.image_size, config.model.image.image_size) == (res, res)
    assert (config.data.text_length, config.model.text.context_length) == (text_len, text_len)
    assert config.tokens.text_strategy == strategy
    assert config.optim.lr_per_256 == pytest.approx(lr) and config.batch_size == batch
    assert (config.init_from == recipes.REQUIRED_INIT) == ("stage=" in (arg or "") or name == "clipa/finetune.py")
    validation.validate(config, num_devices=8)


def test_recipe_warmups_follow_the_references():
    """CLIPA pre-train ~51M samples, fine-tune 800 steps; CLIPA-v2 pre-train 3200 steps; FLIP 20 virtual ImageNet
    epochs (25.6M samples), unmasked tuning ~780 steps (UCSC-VLAA/CLIPA scripts, facebookresearch/flip)."""
    assert load("clipa/l16_64px.py").optim.warmup_steps == round(51_200_000 / 32768)
    assert load("clipa/l16_64px.py", "stage=finetune").optim.warmup_steps == 800
    assert load("clipa/v2_h14.py").optim.warmup_steps == 3200
    assert load("flip/l16_mask50.py").optim.warmup_steps == round(25_623_340 / 65536)
    assert load("flip/l16_mask50.py", "stage=tune").optim.warmup_steps == 780
    assert load("flip/l16_mask50.py").total_steps * 65536 == pytest.approx(12.8e9, rel=0.01)
    assert load("flip/l16_mask50.py", "length=paper").total_steps * 32768 == pytest.approx(2.56e9, rel=0.01)


def test_recipe_augmentation_and_pooling():
    """CLIPA B/16: CLS pooling, crop (0.4, 1); CLIPA L/16: mean-then-LayerNorm pooling, last-position text; FLIP:
    crop (0.5, 1) + flip, image tokens averaged with CLS, text at position 0."""
    b16, l16, flip = load("clipa/b16.py"), load("clipa/l16_64px.py"), load("flip/l16_mask50.py")
    assert b16.model.image.pool == "tok" and tuple(b16.data.crop_scale) == (0.4, 1.0)
    assert l16.model.image.pool == "gap_post_ln" and l16.model.text.pool == "last_position"
    assert l16.data.augment == "clipa_large" and not l16.model.text.causal
    assert flip.model.image.pool == "gap_with_cls" and flip.model.text.pool == "first"
    assert tuple(flip.data.crop_scale) == (0.5, 1.0) and flip.data.hflip


@pytest.mark.parametrize("dataset,size,tau_lr,warmup,end_lr", [
    ("cc3m", 2_723_840, 2e-4, 10_000, 0.0), ("cc12m", 9_187_328, 1e-4, 10_000, 0.0),
    ("laion315m", 315_658_316, 5e-5, 13_200, 4e-5)])
def test_fastclip_tables(dataset, size, tau_lr, warmup, end_lr):
    """Optimization-AI/fast_clip scripts: epoch sizes, temperature lrs, LAION warm-up and final lr."""
    config = load(f"fastclip/{dataset}.py")
    assert config.loss.name == "fastclip_v3" and config.data.size == size
    assert config.loss.tau_lr == pytest.approx(tau_lr) and config.optim.warmup_steps == warmup
    assert config.optim.lr * config.optim.end_lr_ratio == pytest.approx(end_lr)
    assert tuple(config.data.crop_scale) == (0.9, 1.0)
    if dataset == "cc3m":  # the paper's open_clip RN50, no ViT stand-in
        assert config.model.image_tower == "resnet" and tuple(config.model.image.layers) == (3, 4, 6, 3)
        assert config.model.embed_dim == 1024
    else:
        assert config.model.image_tower == "vit" and config.model.image.ln_pre
    assert load(f"fastclip/{dataset}.py", "sogclr").loss.name == "sogclr"


@pytest.mark.parametrize("prefix", ["", "tiny_"])
def test_scaling_down_towers_at_two_data_sizes(prefix):
    """ViT vs ResNet (configs/scaling_down/[tiny_]tower_*.py): the same CLIP budget (batch, steps, lr) and text
    tower for both towers; the small data size is 1/16 of the large one, which is one epoch of the budget."""
    configs = {(t, d): load(f"scaling_down/{prefix}tower_{t}_{d}.py") for t in ("vit", "resnet")
               for d in ("small", "large")}
    clip = load(f"scaling_down/{prefix}clip.py")
    for (tower, data), c in configs.items():
        assert c.model.image_tower == tower and c.model.image.image_size == c.data.image_size == clip.data.image_size
        assert (c.batch_size, c.total_steps, c.optim.lr, c.loss.name) == (
            clip.batch_size, clip.total_steps, clip.optim.lr, "clip")
        assert c.model.text.to_dict() == clip.model.text.to_dict()
        large = configs[(tower, "large")].data.size
        assert c.data.size == (large if data == "large" else large // 16)
        assert large == c.batch_size * c.total_steps
    assert tuple(configs[("resnet", "small")].model.image.layers) == ((3, 4, 6, 3) if not prefix else (1, 1, 1, 1))
    assert configs[("vit", "small")].model.image.patch_size == (32 if not prefix else 8)
    with pytest.raises(ValueError, match="tower 'rn18'"):
        recipes.scaling_down_tower_config("rn18", "small")
    with pytest.raises(ValueError, match="data 'medium'"):
        recipes.scaling_down_tower_config("vit", "medium")


def test_scaling_down_quality_subsets():
    """configs/scaling_down/quality.py: the 'clip' strategy with data.filter set from its argument (or unfiltered)."""
    twin = load("scaling_down/quality.py", "tiny=1,noise=0.5,scores=/data/scores,top_fraction=0.25")
    clip = load("scaling_down/tiny_clip.py")
    assert (twin.batch_size, twin.total_steps, twin.optim.lr) == (clip.batch_size, clip.total_steps, clip.optim.lr)
    assert twin.data.caption_noise == 0.5
    assert (twin.data.filter.scores, twin.data.filter.top_fraction) == ("/data/scores", 0.25)
    full = load("scaling_down/quality.py")
    assert full.data.filter.scores == "" and full.to_dict() == load("scaling_down/clip.py").to_dict()
    assert load("scaling_down/quality.py", "scores=/s").data.filter.top_fraction == 0.5
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        load("scaling_down/quality.py", "keep=0.5")
