"""Zero-shot classification from embeddings."""
from collections.abc import Callable, Sequence

import numpy as np


def class_embeddings(encode_texts: Callable[[list[str]], np.ndarray], classnames: Sequence[str],
                     templates: Sequence[str]) -> np.ndarray:
    """[C, E] class embeddings: for each class, the normalised mean of the normalised embeddings of
    `template.format(name)` over all templates. `encode_texts` maps strings to L2-normalised [N, E]."""
    texts = [t.format(name) for name in classnames for t in templates]
    emb = np.asarray(encode_texts(texts), np.float32).reshape(len(classnames), len(templates), -1).mean(1)
    return emb / np.linalg.norm(emb, axis=-1, keepdims=True)


def topk_accuracy(image_emb: np.ndarray, class_emb: np.ndarray, labels: np.ndarray,
                  ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Fraction of images whose label is among the k classes of highest cosine similarity.
    image_emb [N, E], class_emb [C, E], labels int [N]; k larger than C counts as C."""
    scores = image_emb @ class_emb.T
    rank = (scores > scores[np.arange(len(labels)), labels][:, None]).sum(1)  # classes strictly better
    return {f"top{k}": float((rank < k).mean()) for k in ks}
