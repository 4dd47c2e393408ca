"""Config validation: unknown keys, wrong types and wrong values fail naming the key."""
import pytest

from clipjax import config as config_lib
from clipjax.models import sizes
from tests.helpers import load_config


def test_default_and_tiny_validate():
    config_lib.validate(config_lib.default_config(), num_devices=8)
    config_lib.validate(load_config("tiny.py"), num_devices=8)


def test_unknown_key_named():
    c = config_lib.default_config()
    c.optim.learning_rate = 1.0
    with pytest.raises(KeyError, match="optim.learning_rate"):
        config_lib.validate(c)


def test_wrong_type_refused_on_assignment():
    c = config_lib.default_config()
    with pytest.raises(TypeError):
        c.batch_size = "large"


@pytest.mark.parametrize("key,value,match", [
    ("loss.name", "infonce", "loss.name"),
    ("optim.schedule", "linear", "optim.schedule"),
    ("batch_size", 12, "batch_size"),
    ("data.image_size", 48, "data.image_size"),
])
def test_bad_values_named(key, value, match):
    c = config_lib.default_config()
    section, _, leaf = key.rpartition(".")
    (c[section] if section else c)[leaf] = value
    with pytest.raises(ValueError, match=match):
        config_lib.validate(c, num_devices=8)


def test_siglip_needs_bias():
    c = config_lib.default_config()
    c.loss.name = "siglip"
    with pytest.raises(ValueError, match="logit_bias_init"):
        config_lib.validate(c)


def test_epochs_override_steps():
    c = config_lib.default_config()
    c.total_epochs, c.data.size, c.batch_size = 2.0, 1000, 100
    assert config_lib.resolve_total_steps(c) == 20


def test_size_tables():
    b = sizes.vit("B/16")
    assert (b.width, b.depth, b.mlp_dim, b.num_heads, b.patch_size) == (768, 12, 3072, 12, 16)
    with pytest.raises(ValueError):
        sizes.vit("Q/16")
