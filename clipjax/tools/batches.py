"""Random host batches of a config's shapes, for tools that time the train step without the input pipeline."""
import numpy as np


def random_batch(config, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """image uint8 [B,H,W,3], tokens int32 [B,L] (EOT last), index int32 [B]."""
    b, h, l = config.batch_size, config.data.image_size, config.data.text_length
    tokens = rng.integers(1, 49000, (b, l), dtype=np.int32)
    tokens[:, -1] = 49407
    return {"image": rng.integers(0, 256, (b, h, h, 3), dtype=np.uint8), "tokens": tokens,
            "index": np.arange(b, dtype=np.int32)}
