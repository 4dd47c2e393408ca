"""Zero-shot classification from embeddings."""
from collections.abc import Callable, Sequence

import numpy as np


def template_mean(text_emb: np.ndarray, num_classes: int) -> np.ndarray:
    """[C*T, E] normalised embeddings ordered class-major (all templates of class 0 first) -> [C, E]: per class,
    the normalised mean over its T templates."""
    emb = np.asarray(text_emb, np.float32).reshape(num_classes, -1, text_emb.shape[-1]).mean(1)
    return emb / np.linalg.norm(emb, axis=-1, keepdims=True)


def class_embeddings(encode_texts: Callable[[list[str]], np.ndarray], classnames: Sequence[str],
                     templates: Sequence[str]) -> np.ndarray:
    """[C, E] class embeddings: for each class, the normalised mean of the normalised embeddings of
    `template.format(name)` over all templates. `encode_texts` maps strings to L2-normalised [N, E]."""
    texts = [t.format(name) for name in classnames for t in templates]
    return template_mean(encode_texts(texts), len(classnames))


def label_ranks(image_emb: np.ndarray, class_emb: np.ndarray, labels: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """int [N]: how many classes score strictly higher than the true one (0 = correct top-1), computed in row
    chunks so that only [chunk, C] scores exist at a time."""
    ranks = np.empty(len(labels), np.int64)
    for s in range(0, len(labels), chunk):
        scores = image_emb[s:s + chunk] @ class_emb.T
        own = scores[np.arange(len(scores)), labels[s:s + chunk]]
        ranks[s:s + chunk] = (scores > own[:, None]).sum(1)
    return ranks


def topk_accuracy(image_emb: np.ndarray, class_emb: np.ndarray, labels: np.ndarray,
                  ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Fraction of images whose label is among the k classes of highest cosine similarity.
    image_emb [N, E], class_emb [C, E], labels int [N]; k larger than C counts as C."""
    rank = label_ranks(image_emb, class_emb, labels)
    return {f"top{k}": float((rank < k).mean()) for k in ks}


def per_class_accuracy(ranks: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 accuracy [C] (NaN for a class without examples), example count [C])."""
    count = np.bincount(labels, minlength=num_classes)
    correct = np.bincount(labels, weights=(ranks == 0).astype(np.float64), minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, correct / np.maximum(count, 1), np.nan), count
