"""LLM2CLIP side-car embeddings: chunked atomic writes, resume, stale and half-written caches refused; the adapter."""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clipjax.data import embedding_cache as ec
from clipjax.models.adapter import LlmAdapter


def header(**overrides) -> ec.Header:
    base = dict(llm="/llm", llm_fingerprint="abc", pooling="mean", fields=("caption", "rewrite_1"),
                sources=(("index.csv", "f00"),), size=10, dim=4, chunk=4)
    return ec.Header(**{**base, **overrides})


def fill(folder, h, fields=None, chunks=None):
    rng = np.random.default_rng(0)
    table = {f: rng.normal(size=(h.size, h.dim)).astype(np.float32) for f in h.fields}
    for f in fields or h.fields:
        for c in chunks if chunks is not None else range(h.num_chunks):
            ec.write_chunk(str(folder), h, f, c, table[f][c * h.chunk:c * h.chunk + h.chunk_rows(c)])
    return table


def test_round_trip_by_global_index(tmp_path):
    h = ec.open_for_writing(str(tmp_path), header())
    table = fill(tmp_path, h)
    cache = ec.EmbeddingCache(str(tmp_path), expected=h)
    assert h.num_chunks == 3 and h.chunk_rows(2) == 2
    for f in h.fields:
        for i in (0, 3, 4, 9):
            np.testing.assert_array_equal(cache(f, i), table[f][i])
    with pytest.raises(IndexError, match="outside"):
        cache("caption", 10)


def test_resume_writes_only_missing_chunks_and_equals_a_straight_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    h = header()
    ec.open_for_writing(str(a), h)
    table = fill(a, h)
    ec.open_for_writing(str(b), h)
    fill(b, h, chunks=[0])  # killed after one chunk
    assert ec.missing_chunks(str(b), h, "caption") == [1, 2]
    with pytest.raises(ec.CacheError, match="half-written cache, 2 of 3 chunks of 'caption' missing"):
        ec.EmbeddingCache(str(b))
    ec.open_for_writing(str(b), h)  # same header: resume
    fill(b, h, chunks=ec.missing_chunks(str(b), h, "caption"))
    cache = ec.EmbeddingCache(str(b))
    np.testing.assert_array_equal(np.stack([cache("rewrite_1", i) for i in range(10)]), table["rewrite_1"])
    assert not list((b / "caption").glob("*.tmp"))


@pytest.mark.parametrize("change,named", [
    (dict(llm_fingerprint="other"), "llm_fingerprint"), (dict(pooling="last"), "pooling"),
    (dict(sources=(("index.csv", "f01"),)), "sources")])
def test_stale_cache_refused_naming_what_differs(tmp_path, change, named):
    h = ec.open_for_writing(str(tmp_path), header())
    fill(tmp_path, h)
    with pytest.raises(ec.CacheError, match=f"stale cache.*\\n  {named}"):
        ec.EmbeddingCache(str(tmp_path), expected=dataclasses.replace(h, **change))
    with pytest.raises(ec.CacheError, match=named):
        ec.open_for_writing(str(tmp_path), dataclasses.replace(h, **change))


def test_missing_header_and_unknown_field(tmp_path):
    with pytest.raises(ec.CacheError, match="no header.json.*embed_captions"):
        ec.EmbeddingCache(str(tmp_path))
    h = ec.open_for_writing(str(tmp_path), header())
    fill(tmp_path, h)
    with pytest.raises(ec.CacheError, match="rewrite_9"):
        ec.EmbeddingCache(str(tmp_path), fields=["caption", "rewrite_9"])
    with pytest.raises(ValueError, match="shape"):
        ec.write_chunk(str(tmp_path), h, "caption", 2, np.zeros((4, 4)))


def test_adapter_shapes_size_and_scale_invariance():
    """LLM2CLIP's adapter: 4 residual MLP blocks of width 2d, ~274M parameters for d = 4096 (arXiv 2411.04997)."""
    adapter = LlmAdapter(embed_dim=1280)
    shapes = jax.eval_shape(adapter.init, jax.random.PRNGKey(0), jnp.zeros((1, 4096)))
    count = sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))
    assert 2.70e8 < count < 2.78e8
    small = LlmAdapter(embed_dim=8, num_blocks=2)
    e = jax.random.normal(jax.random.PRNGKey(1), (3, 16))
    params = small.init(jax.random.PRNGKey(0), e)
    out = small.apply(params, e)
    assert out.shape == (3, 8)
    np.testing.assert_allclose(small.apply(params, 7.0 * e), out, rtol=1e-5, atol=1e-6)  # input is L2-normalised
