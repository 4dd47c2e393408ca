"""FLOP accounting: the published reference number, masking arithmetic, agreement with XLA's count."""
import pytest

from clipjax import recipes
from clipjax.models import sizes
from clipjax.tools import flops
from tests.helpers import load_config
from tests.test_train import small_config


def test_vit_b16_at_224_is_35_13_gflops():
    b16 = sizes.vit("B/16", image_size=224)
    assert round(flops.image_flops(b16, 512, 224) / 1e9, 2) == 35.13
    config = load_config("clip/vit_b16.py")
    assert round(flops.analytic(config).image / 1e9, 2) == 35.13


def test_masking_and_resize_counts():
    config = recipes.flip_config("mask50")            # L/16 at 224, 98 of 196 patches
    full, masked = flops.analytic(config, masked=False), flops.analytic(config)
    assert (full.image_tokens, masked.image_tokens) == (197, 99)
    assert 0.45 < masked.image / full.image < 0.52   # attention is quadratic, the patch embedding is not masked
    assert masked.text == full.text
    small = recipes.clipa_config("pretrain", "model=L/16,res=64")
    assert flops.analytic(small).image_tokens == 17
    assert flops.analytic(small).image < full.image / 10


@pytest.mark.parametrize("pool,strategy", [("tok", "none"), ("map", "random")])
def test_analytic_matches_xla_within_a_few_percent(pool, strategy):
    config = small_config(data__image_size=64, data__text_length=16)
    config.model.image = sizes.vit("S/16", image_size=64, pool=pool)
    config.model.text = sizes.text("S", context_length=16)
    config.tokens.image_strategy, config.tokens.image_keep_ratio = strategy, 0.5
    ours, xla = flops.analytic(config), flops.xla(config)
    assert ours.image_tokens == xla.image_tokens == (9 if strategy == "random" else 17)
    assert 1.0 <= xla.image / ours.image < 1.06
    assert 1.0 <= xla.text / ours.text < 1.06
