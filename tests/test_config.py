"""Config validation: unknown keys, wrong types and wrong values fail naming the key."""
import pytest

from clipjax import config as config_lib, validation
from clipjax.models import sizes
from tests.helpers import load_config


def test_default_and_tiny_validate():
    validation.validate(config_lib.default_config(), num_devices=8)
    validation.validate(load_config("tiny.py"), num_devices=8)


def test_unknown_key_named():
    c = config_lib.default_config()
    c.optim.learning_rate = 1.0
    with pytest.raises(KeyError, match="optim.learning_rate"):
        validation.validate(c)


def test_wrong_type_refused_on_assignment():
    c = config_lib.default_config()
    with pytest.raises(TypeError):
        c.batch_size = "large"


@pytest.mark.parametrize("key,value,match", [
    ("loss.name", "infonce", "loss.name"),
    ("optim.schedule", "linear", "optim.schedule"),
    ("batch_size", 12, "batch_size"),
    ("data.image_size", 48, "data.image_size"),
    ("optim.lr", 0.0, "optim.lr"),
    ("optim.lr", -1e-3, "optim.lr"),
    ("optim.warmup_steps", 5000, "optim.warmup_steps"),
    ("optim.cooldown_steps", -1, "optim.cooldown_steps"),
])
def test_bad_values_named(key, value, match):
    c = config_lib.default_config()
    section, _, leaf = key.rpartition(".")
    (c[section] if section else c)[leaf] = value
    with pytest.raises(ValueError, match=match):
        validation.validate(c, num_devices=8)


@pytest.mark.parametrize("mesh,batch,ok", [((-1, 1, 1), 12, False), ((-1, 1, 2), 12, True), ((2, 2, 2), 6, False),
                                           ((1, -1, 1), 16, True)])
def test_batch_must_split_over_data_parallel_axes(mesh, batch, ok):
    c = config_lib.default_config()
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = mesh
    c.batch_size = batch
    if ok:
        validation.validate(c, num_devices=8)
    else:
        with pytest.raises(ValueError, match="batch_size.*data-parallel size"):
            validation.validate(c, num_devices=8)


def test_config_argument_parser():
    defaults = {"loss": "fastclip_v3", "steps": 600, "keep": 1.0, "bf16": False}
    assert config_lib.parse_arg("sogclr,steps=10,keep=0.5,bf16=true", defaults) == {
        "loss": "sogclr", "steps": 10, "keep": 0.5, "bf16": True}
    assert config_lib.parse_arg(None, defaults) == defaults
    with pytest.raises(ValueError, match="lr=2.*KEY in"):
        config_lib.parse_arg("steps=1,lr=2", defaults)


def test_siglip_needs_bias():
    c = config_lib.default_config()
    c.loss.name = "siglip"
    with pytest.raises(ValueError, match="logit_bias_init"):
        validation.validate(c)


def test_epochs_override_steps():
    c = config_lib.default_config()
    c.total_epochs, c.data.size, c.batch_size = 2.0, 1000, 100
    assert config_lib.resolve_total_steps(c) == 20


def test_size_tables():
    b = sizes.vit("B/16")
    assert (b.width, b.depth, b.mlp_dim, b.num_heads, b.patch_size) == (768, 12, 3072, 12, 16)
    with pytest.raises(ValueError):
        sizes.vit("Q/16")
