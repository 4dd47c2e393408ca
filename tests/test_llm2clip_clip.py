"""LLM2CLIP stage 2 on the built-in world with a tiny random Llama: cached caption embeddings replace tokens in the
pipeline (mixing among a sample's captions), the adapter text tower trains with the image tower (taken from another
run with init_from_keys, layer-wise lr decay), zero-shot embeds class prompts through LLM + adapter, and stale or
incomplete caches are refused by name."""
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clipjax import config as config_lib, llm_text, optim, train
from clipjax.data import embedding_cache as ec, pipeline
from clipjax.evaluate import text_input
from clipjax.models import clip, llm, llm_loading, sizes
from clipjax.tools import embed_captions, llm2clip_tiny
from tests.helpers import REPO, save_tiny_llm

SIZE, FIELDS = 64, ["caption", "rewrite_1"]


def base_config(steps=4):
    c = config_lib.tiny_config()
    c.data.size, c.data.image_size = SIZE, 16
    c.model.image = sizes.vit("mu/8", image_size=16, pool="gap")
    c.batch_size, c.total_steps = 16, steps
    c.optim.warmup_steps = 1
    c.checkpoint.every_steps = steps
    c.evals.every_steps, c.evals.num_examples, c.evals.batch_size = 0, 32, 32
    c.progress_bar = False
    return c


def adapter_config(llm_folder, cache, steps=4):
    c = base_config(steps)
    c.model.text_tower = "llm_adapter"
    c.model.adapter_blocks = 2
    c.llm.folder, c.llm.max_length = llm_folder, 32
    c.data.text_embeddings = cache
    c.data.caption_mode, c.data.rewrite_fields = "laclip", "rewrite_1"
    return c


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(tiny LLM folder, its caption cache over the built-in world's first SIZE examples)."""
    root = tmp_path_factory.mktemp("llm2clip")
    source = pipeline.make_source(base_config().data)
    folder = save_tiny_llm(str(root / "llm"), (t for i in range(SIZE) for t in source[i]["captions"].values()))
    cache = str(root / "cache")
    embed_captions.run(base_config(), folder, cache, FIELDS, batch_size=16, max_length=32, chunk=32,
                       progress_bar=False)
    return folder, cache


def test_pipeline_reads_the_chosen_captions_embedding(world):
    folder, cache = world
    config = adapter_config(folder, cache)
    transform = pipeline.make_transform(config, debug=True)
    source = pipeline.make_source(config.data)
    store = ec.EmbeddingCache(cache)
    chosen = set()
    for i in range(16):
        out = transform({**source[i], "epoch": 0})
        assert "tokens" not in out and out["text_embedding"].shape == (32,)
        field = next(f for f in FIELDS if source[i]["captions"][f] == out["caption"])
        chosen.add(field)
        np.testing.assert_array_equal(out["text_embedding"], store(field, i))
    assert chosen == set(FIELDS)  # the LaCLIP mix draws both the original and the rewrite


def test_stale_or_unusable_caches_are_refused_by_name(world, tmp_path):
    folder, cache = world
    config = adapter_config(folder, cache)
    config.llm.max_length = 48  # prompts would be embedded unlike the cached captions
    with pytest.raises(ec.CacheError, match="(?s)header.json.*pooling"):
        pipeline.make_transform(config)
    config = adapter_config(folder, cache)
    config.data.size = 32  # another caption source
    with pytest.raises(ec.CacheError, match="sources"):
        pipeline.make_transform(config)
    config = adapter_config(folder, cache)
    config.data.caption_mode = "mixed"  # draws phrasing_2.. that were not embedded
    with pytest.raises(ValueError, match="caption field 'phrasing_.*embed_captions --fields"):
        pipeline.make_train_dataset(config, 0, 1)
    config = base_config()
    config.data.text_embeddings = cache  # a cache without the adapter text tower
    with pytest.raises(ValueError, match="config.data.text_embeddings"):
        train.Trainer(config)
    config = adapter_config(str(tmp_path), cache)
    with pytest.raises(ValueError, match="config.llm.folder"):
        train.Trainer(config)


def test_layer_decay_scales_the_image_towers_updates_by_depth():
    c = base_config()
    c.optim.layer_decay, c.optim.grad_clip_norm = 0.5, 0.0
    model = clip.build_model(c.model)
    params = jax.tree.map(jnp.ones_like, nn.meta.unbox(jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3), jnp.uint8), clip.dummy_text(c)))["params"]))
    scales = optim.layer_decay_scales(params, 0.5)
    depth = len(params["image"]["encoder"]) - 1  # blocks + ln_final
    assert scales["image"]["patch_embed"]["kernel"] == 0.5 ** (depth + 1)
    assert scales["image"]["encoder"]["block0"]["mlp"]["fc1"]["kernel"] == 0.5 ** depth
    assert scales["image"]["encoder"][f"block{depth - 1}"]["ln1"]["scale"] == 0.5
    assert scales["image"]["proj"]["kernel"] == scales["text"]["token_embed"]["embedding"] == 1.0
    tx, _ = optim.make_optimizer(c, params)
    c.optim.layer_decay = 1.0
    plain, _ = optim.make_optimizer(c, params)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.3), params)
    got, want = tx.update(grads, tx.init(params), params)[0], plain.update(grads, plain.init(params), params)[0]
    jax.tree.map(lambda g, w, s: np.testing.assert_allclose(g, w * s, rtol=1e-6), got, want, scales)


def test_adapter_clip_trains_from_another_runs_image_tower_and_evaluates_through_the_llm(world, tmp_path):
    folder, cache = world
    first = str(tmp_path / "plain")
    train.train_and_evaluate(base_config(steps=2), first)
    config = adapter_config(folder, cache, steps=4)
    config.init_from, config.init_from_keys, config.optim.freeze = first, "image", "^image/"
    workdir = str(tmp_path / "adapter")
    final = train.train_and_evaluate(config, workdir)
    assert np.isfinite(final["train/loss"]) and 0 <= final["eval/zeroshot_top1"] <= 1
    assert "eval/retrieval_i2t_r1" in final

    trainer = train.Trainer(config)
    abstract = trainer.setup(SIZE)
    restore = lambda d: train.checkpoint.Checkpointer(d, config.checkpoint, read_only=True).restore_latest(  # noqa
        abstract if d == workdir else train.Trainer(base_config()).setup(SIZE))[1].params
    ours, theirs = restore(workdir), restore(first)
    jax.tree.map(np.testing.assert_array_equal, ours["image"], theirs["image"])  # taken, then frozen
    assert set(ours["text"]) == {"block0", "block1", "norm0", "norm1", "norm", "proj"}
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["model"]["text_tower"] == "llm_adapter"

    # Class prompts go through the same LLM embedding as the cached training captions.
    embedder = text_input.text_encoder(config, trainer.mesh, 8)
    module, params = llm_loading.from_pretrained(folder, causal=False)
    ids, mask, pool = llm_text.encode_for_embedding(
        llm_loading.load_tokenizer(folder), [pipeline.make_source(config.data)[5]["captions"]["caption"]],
        max_length=32)
    want = llm.mean_pool(module.apply({"params": params}, ids, mask)["last_hidden"], pool)[0]
    got = embedder([pipeline.make_source(config.data)[5]["captions"]["caption"]])[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got, ec.EmbeddingCache(cache)("caption", 5), rtol=1e-4, atol=1e-5)


def test_unknown_init_from_keys_names_the_groups(tmp_path):
    first = str(tmp_path / "plain")
    train.train_and_evaluate(base_config(steps=2), first)  # step 0 has lr 0 (warm-up)
    trainer = train.Trainer(base_config())
    state = trainer.init_state(SIZE)
    with pytest.raises(ValueError, match="init_from_keys.*'vision'"):
        train.finetune.init_params_from(first, state.params, trainer.mesh, keys="vision")
    taken = train.finetune.init_params_from(first, state.params, trainer.mesh, keys="text")
    jax.tree.map(np.testing.assert_array_equal, taken["image"], state.params["image"])
    assert not np.array_equal(taken["text"]["proj"]["kernel"], state.params["text"]["proj"]["kernel"])


def test_the_tiny_chain_runs_end_to_end_and_reruns_as_done(tmp_path):
    """clm -> mntp -> cc -> embedding cache -> adapter CLIP, next to plain tiny CLIP (--quick: a few steps each)."""
    root = str(tmp_path / "chain")
    results = llm2clip_tiny.run_chain(root, str(REPO / "configs"), quick=True, progress=False)
    for run in ("clip_0", "tiny_0"):
        assert 0 <= results[run]["eval/zeroshot_top1"] <= 1 and np.isfinite(results[run]["train/loss"])
    header = ec.read_header(os.path.join(root, "emb"))
    assert header.fields == tuple(llm2clip_tiny.FIELDS.split(",")) and header.llm.endswith("cc/hf")
    with open(os.path.join(root, "clip_0", "config.json")) as f:
        assert json.load(f)["llm"]["folder"] == header.llm
    again = llm2clip_tiny.run_chain(root, str(REPO / "configs"), quick=True, progress=False)
    assert again["clip_0"] == results["clip_0"]  # finished stages are not redone
    assert "| frozen tiny LLM + adapter |" in llm2clip_tiny.table(results, [0])


def test_online_llm_in_the_step_trains_like_the_cache(world, tmp_path):
    """Without a cache the frozen LLM embeds each caption inside the step: same losses as reading the cache (the
    adapter starts alike and the LLM gets no update); the LLM's weights are the folder's and stay so."""
    folder, cache = world
    losses = {}
    for name, emb in (("cached", cache), ("online", "")):
        config = adapter_config(folder, emb, steps=3)
        config.log_every_steps, config.evals.class_sets = 1, "colour"
        workdir = str(tmp_path / name)
        train.train_and_evaluate(config, workdir)
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            losses[name] = [r["train/loss"] for r in map(json.loads, f) if "train/loss" in r]
    np.testing.assert_allclose(losses["online"], losses["cached"], rtol=2e-4)
    config = adapter_config(folder, "", steps=3)
    trainer = train.Trainer(config)
    state = train.checkpoint.Checkpointer(str(tmp_path / "online"), config.checkpoint, read_only=True).restore_latest(
        trainer.setup(SIZE))[1]
    _, want = llm_loading.from_pretrained(folder)
    jax.tree.map(np.testing.assert_array_equal, state.params["llm"], {k: v for k, v in want.items() if k in state.params["llm"]})
    assert "lm_head" not in state.params["llm"]
