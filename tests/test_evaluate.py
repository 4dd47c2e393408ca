"""Zero-shot and retrieval metrics against hand-computed answers."""
import numpy as np
import pytest

from clipjax.evaluate import retrieval, zeroshot


def test_topk_accuracy_hand_computed():
    classes = np.eye(3, dtype=np.float32)
    images = np.array([[1, 0.5, 0], [0.2, 0.1, 1], [0.9, 1, 0], [0, 0.4, 0.5]], np.float32)
    labels = np.array([0, 2, 0, 0])  # ranks: 0, 0, 1, 2
    acc = zeroshot.topk_accuracy(images, classes, labels, ks=(1, 2, 5))
    assert acc == {"top1": 0.5, "top2": 0.75, "top5": 1.0}


def test_class_embeddings_are_normalised_template_means():
    def encode(texts):
        vecs = np.array([[len(t), t.count("b"), 1.0] for t in texts], np.float32)
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    emb = zeroshot.class_embeddings(encode, ["a", "bb"], ["{}", "x {}"])
    raw = encode(["a", "x a"]).mean(0)
    np.testing.assert_allclose(emb[0], raw / np.linalg.norm(raw), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("chunk", [1, 2, 1024])
def test_recall_hand_computed(chunk):
    images = np.array([[1, 0], [0, 1], [0.7, 0.7]], np.float32)
    texts = np.array([[1, 0], [0.6, 0.8], [0, 1], [1, 0.1]], np.float32)
    owner = np.array([0, 0, 1, 2])
    r = retrieval.recall_at_k(images, texts, owner, ks=(1, 2), chunk=chunk)
    # i2t: img0 best text is t0 (own) -> rank 0; img1 best t2 (own) -> 0; img2 scores .7,.98,.7,.77 -> own t3 rank 1
    assert r["i2t_r1"] == pytest.approx(2 / 3) and r["i2t_r2"] == 1.0
    # t2i: t0 -> img0 (1.0 vs .7) rank 0; t1 -> scores .6,.8,.98 own img0 rank 2; t2 -> img1 rank 0;
    # t3 -> scores 1,.1,.77 own img2 rank 1
    assert r["t2i_r1"] == 0.5 and r["t2i_r2"] == 0.75
