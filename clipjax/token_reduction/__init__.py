"""Token reduction at training time (CLIPA arXiv 2305.07017, FLIP arXiv 2212.00794).

`image`: which patch tokens each image keeps (`patch_keep_fn` gives the train step its one entry). `text`: how a
caption is cut to `data.text_length` tokens (called by the data pipeline). `pos_lexicon`: part-of-speech ranks for
syntax masking. `validate` checks config.tokens.
"""
from collections.abc import Callable

import jax
import ml_collections

from clipjax import config as config_lib
from clipjax.token_reduction import image, text


def patch_keep_fn(config: ml_collections.ConfigDict) -> Callable[[jax.Array, int], jax.Array] | None:
    """config.tokens -> `(rng, batch) -> patch_keep int32 [batch, K]` for the train step, or None for 'none'."""
    t = config.tokens
    if t.image_strategy == "none":
        return None
    grid = image.image_grid(config.model.image.image_size, config.model.image.patch_size)
    return lambda rng, batch: image.patch_keep(rng, t.image_strategy, batch, *grid, t.image_keep_ratio,
                                               t.image_keep_count)


def validate(config: ml_collections.ConfigDict) -> None:
    """config.tokens and config.init_text_pos: known strategies, a kept-patch count the strategy can give."""
    t = config.tokens
    require = lambda ok, key, what: config_lib.require(ok, config, key, what)  # noqa: E731
    require(t.image_strategy in image.IMAGE_STRATEGIES, "tokens.image_strategy", f"one of {image.IMAGE_STRATEGIES}")
    require(t.text_strategy in text.TEXT_STRATEGIES, "tokens.text_strategy", f"one of {text.TEXT_STRATEGIES}")
    require(0.0 < t.image_keep_ratio <= 1.0, "tokens.image_keep_ratio", "a fraction in (0, 1]")
    require(config.init_text_pos in ("resize", "extend", "reinit"), "init_text_pos", "'resize', 'extend' or 'reinit'")
    if t.image_strategy != "none":
        grid = image.image_grid(config.model.image.image_size, config.model.image.patch_size)
        try:
            image.kept_count(t.image_strategy, *grid, t.image_keep_ratio, t.image_keep_count)
        except ValueError as e:
            raise ValueError(f"config.tokens (image_keep_ratio={t.image_keep_ratio}, image_keep_count="
                             f"{t.image_keep_count}): {e}") from None
