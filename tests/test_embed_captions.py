"""python -m clipjax.tools.embed_captions on the built-in world with a tiny Llama: every caption field embedded by
global index, equal to the LLM's own mean-pooled embedding; resume rewrites only missing chunks; a cache from
another LLM is refused."""
import json
import os
import shutil

import numpy as np
import pytest

from clipjax import config as config_lib, llm_text
from clipjax.data import embedding_cache as ec, pipeline
from clipjax.models import llm, llm_loading
from clipjax.tools import embed_captions
from tests.helpers import save_tiny_llm

FIELDS = ["caption", "rewrite_1"]


def data_config(size=24):
    c = config_lib.tiny_config()
    c.data.size, c.data.image_size = size, 16
    c.model.image.image_size = 16
    c.mesh.data = -1
    return c


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    """A random tiny Llama with a word-level tokenizer over the built-in captions, saved as a HF folder."""
    source = pipeline.make_source(data_config(64).data)
    return save_tiny_llm(str(tmp_path_factory.mktemp("llm")), (t for i in range(64) for t in source[i]["captions"].values()))


def run(folder, out, **kw):
    return embed_captions.run(data_config(), folder, out, FIELDS, batch_size=8, max_length=32, chunk=10,
                              progress_bar=False, **kw)


def test_embeds_every_field_by_index_and_resumes(tiny_llm, tmp_path):
    out = str(tmp_path / "cache")
    header = run(tiny_llm, out)
    assert (header.size, header.num_chunks, header.fields) == (24, 3, tuple(FIELDS))
    cache = ec.EmbeddingCache(out, fields=FIELDS)
    source = pipeline.make_source(data_config().data)
    module, params = llm_loading.from_pretrained(tiny_llm, causal=False)
    tokenizer = llm_loading.load_tokenizer(tiny_llm)
    for i in (0, 13, 23):
        for f in FIELDS:
            ids, mask, pool = llm_text.encode_for_embedding(tokenizer, [source[i]["captions"][f]], max_length=32)
            want = llm.mean_pool(module.apply({"params": params}, ids, mask)["last_hidden"], pool)[0]
            np.testing.assert_allclose(cache(f, i), want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(cache("caption", 0), cache("rewrite_1", 0))
    before = np.load(ec.chunk_path(out, "rewrite_1", 1))
    os.remove(ec.chunk_path(out, "rewrite_1", 1))  # as if killed before that chunk was committed
    mtime = os.path.getmtime(ec.chunk_path(out, "caption", 2))
    run(tiny_llm, out)
    np.testing.assert_array_equal(np.load(ec.chunk_path(out, "rewrite_1", 1)), before)
    assert os.path.getmtime(ec.chunk_path(out, "caption", 2)) == mtime  # complete chunks are not redone


def test_cache_of_another_llm_or_dataset_is_refused(tiny_llm, tmp_path):
    out = str(tmp_path / "cache")
    run(tiny_llm, out)
    other = str(tmp_path / "other_llm")
    shutil.copytree(tiny_llm, other)
    with open(os.path.join(other, "config.json")) as f:
        cfg = json.load(f)
    cfg["rms_norm_eps"] = 1e-6
    with open(os.path.join(other, "config.json"), "w") as f:
        json.dump(cfg, f)
    with pytest.raises(ec.CacheError, match="(?s)stale cache.*llm_fingerprint"):
        run(other, out)
    with pytest.raises(ec.CacheError, match="pooling"):
        run(tiny_llm, out, bidirectional=False)
    with pytest.raises(FileNotFoundError, match="--llm"):
        run(str(tmp_path / "missing"), out)
