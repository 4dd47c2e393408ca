"""Image <-> text retrieval recall from embeddings (several captions per image)."""
from collections.abc import Sequence

import numpy as np


def recall_at_k(image_emb: np.ndarray, text_emb: np.ndarray, text_to_image: np.ndarray,
                ks: Sequence[int] = (1, 5, 10), chunk: int = 1024) -> dict[str, float]:
    """image_emb [N, E], text_emb [M, E], text_to_image int [M] (the image of each caption).
    i2t R@k: fraction of images with at least one of their captions among the k best-scoring texts.
    t2i R@k: fraction of captions whose image is among the k best-scoring images.
    Scores are computed in row chunks so N x M never needs to be held at once beyond [chunk, M]."""
    n = len(image_emb)
    i2t_rank = np.empty(n, np.int64)
    for s in range(0, n, chunk):
        scores = image_emb[s:s + chunk] @ text_emb.T                           # [c, M]
        own = text_to_image[None, :] == np.arange(s, s + len(scores))[:, None]  # [c, M]
        best_own = np.where(own, scores, -np.inf).max(1)
        i2t_rank[s:s + chunk] = (scores > best_own[:, None]).sum(1)
    t2i_rank = np.empty(len(text_emb), np.int64)
    for s in range(0, len(text_emb), chunk):
        scores = text_emb[s:s + chunk] @ image_emb.T                          # [c, N]
        own = scores[np.arange(len(scores)), text_to_image[s:s + chunk]]
        t2i_rank[s:s + chunk] = (scores > own[:, None]).sum(1)
    out = {f"i2t_r{k}": float((i2t_rank < k).mean()) for k in ks}
    out.update({f"t2i_r{k}": float((t2i_rank < k).mean()) for k in ks})
    return out
