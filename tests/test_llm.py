"""Flax decoder LLMs against transformers' PyTorch models: tiny random Llama (GQA; Llama 3 rope scaling + biases),
Mistral (MQA, explicit head_dim, sliding window shorter than the sequence) and Qwen2 (q/k/v bias, tied
embeddings) saved as Hugging Face folders and loaded with `from_pretrained`; KV-cache generation, sharded
loading, bad folders, save round trip and LoRA."""
import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from clipjax.models import llm, llm_loading, lora
from clipjax.sharding import make_mesh

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

COMMON = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              initializer_range=0.1, pad_token_id=0, bos_token_id=1, eos_token_id=2)
CASES = {
    "llama_gqa": (transformers.LlamaConfig, dict(num_key_value_heads=2)),
    "llama3_rope": (transformers.LlamaConfig, dict(
        num_key_value_heads=2, attention_bias=True, mlp_bias=True,
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                             high_freq_factor=4.0, original_max_position_embeddings=16))),
    "mistral_window": (transformers.MistralConfig, dict(num_key_value_heads=1, head_dim=32, sliding_window=4)),
    "qwen2_tied": (transformers.Qwen2Config, dict(num_key_value_heads=2, tie_word_embeddings=True,
                                                  rope_parameters=dict(rope_type="default", rope_theta=1e6))),
}
LENGTHS = (8, 5, 3)  # tokens per row of the [3, 8] test batch


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    """(name, HF model, folder, Flax module, params) of one tiny random model."""
    config_cls, extra = CASES[request.param]
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(config_cls(**COMMON, **extra), attn_implementation="eager")
    hf.eval()
    folder = str(tmp_path_factory.mktemp(request.param))
    hf.save_pretrained(folder)
    module, params = llm_loading.from_pretrained(folder)
    return request.param, hf, folder, module, params


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """The llama_gqa model alone (for tests that need one model)."""
    config_cls, extra = CASES["llama_gqa"]
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(config_cls(**COMMON, **extra), attn_implementation="eager")
    hf.eval()
    folder = str(tmp_path_factory.mktemp("llama"))
    hf.save_pretrained(folder)
    return hf, folder


def batch(left: bool) -> tuple[np.ndarray, np.ndarray]:
    """ids [3, 8] (pad 0) and mask: row i holds the same LENGTHS[i] tokens, right- or left-aligned."""
    tokens = np.random.RandomState(1).randint(3, 256, (3, 8))
    ids, mask = np.zeros((3, 8), np.int64), np.zeros((3, 8), np.int64)
    for row, n in enumerate(LENGTHS):
        where = slice(8 - n, None) if left else slice(n)
        ids[row, where], mask[row, where] = tokens[row, :n], 1
    return ids, mask


def hf_forward(hf, ids, mask, attention_mask=None):
    """(last hidden state after the final norm, logits) of the PyTorch model, positions cumsum(mask) - 1."""
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    with torch.no_grad():
        out = hf(torch.tensor(ids), attention_mask=torch.tensor(mask) if attention_mask is None else attention_mask,
                 position_ids=torch.tensor(positions), output_hidden_states=True)
        base = hf.model(torch.tensor(ids), attention_mask=torch.tensor(mask) if attention_mask is None
                        else attention_mask, position_ids=torch.tensor(positions))
    # transformers' output_hidden_states[-1] is the normed final state, i.e. last_hidden_state
    np.testing.assert_array_equal(out.hidden_states[-1].numpy(), base.last_hidden_state.numpy())
    return base.last_hidden_state.numpy(), out.logits.numpy()


@functools.cache
def jitted_apply(module):
    return jax.jit(lambda p, i, m: module.apply({"params": p}, i, m))


def forward(module, params, ids, mask):
    return jitted_apply(module)(params, ids, mask)


def test_forward_matches_transformers(case):
    name, hf, _, module, params = case
    for left in (False, True):
        ids, mask = batch(left)
        out = forward(module, params, ids, mask)
        hidden, logits = hf_forward(hf, ids, mask)
        m = mask.astype(bool)
        np.testing.assert_allclose(np.asarray(out["last_hidden"])[m], hidden[m], atol=1e-4, err_msg=name)
        np.testing.assert_allclose(np.asarray(out["logits"])[m], logits[m], atol=1e-4, err_msg=name)
        hf_mean = np.where(mask[..., None] > 0, hidden, 0).sum(1) / mask.sum(1, keepdims=True)
        np.testing.assert_allclose(llm.mean_pool(out["last_hidden"], mask), hf_mean, atol=1e-4)
    # left padding gives the same per-token results as right padding
    right, left = forward(module, params, *batch(False)), forward(module, params, *batch(True))
    for row, n in enumerate(LENGTHS):
        np.testing.assert_allclose(left["last_hidden"][row, 8 - n:], right["last_hidden"][row, :n], atol=1e-5)


def left_padded_prompts() -> tuple[np.ndarray, np.ndarray]:
    ids, mask = batch(left=True)
    return ids[:, 2:], mask[:, 2:]  # [3, 6], rows of 6, 3 and 1 prompt tokens


def hf_generate(hf, ids, mask, n, eos=None):
    hf.generation_config.eos_token_id = eos
    with torch.no_grad():
        out = hf.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=n, do_sample=False,
                          pad_token_id=0, eos_token_id=eos).numpy()[:, ids.shape[1]:]
    return np.pad(out, ((0, 0), (0, n - out.shape[1])))  # HF stops early when every row is done


def test_greedy_generation_matches_transformers(case):
    name, hf, _, module, params = case
    ids, mask = left_padded_prompts()
    ours = np.asarray(llm.generate(module, params, ids, mask, max_new_tokens=6))
    np.testing.assert_array_equal(ours, hf_generate(hf, ids, mask, 6), err_msg=name)
    if name == "llama_gqa":  # per-row stop at eos: the eos itself, then pad
        eos = int(ours[0, 1])
        stopped = np.asarray(llm.generate(module, params, ids, mask, max_new_tokens=6, eos_token_id=eos))
        np.testing.assert_array_equal(stopped, hf_generate(hf, ids, mask, 6, eos=eos))
        assert (stopped[0, 2:] == 0).all() and stopped[0, 1] == eos


def test_sampling_is_seeded_and_top_p_narrows_to_greedy(llama):
    module, params = llm_loading.from_pretrained(llama[1])
    ids, mask = left_padded_prompts()
    sample = lambda seed, **kw: np.asarray(llm.generate(  # noqa: E731
        module, params, ids, mask, max_new_tokens=6, rng=jax.random.key(seed), **kw))
    hot = dict(temperature=10.0)
    np.testing.assert_array_equal(sample(0, **hot), sample(0, **hot))
    assert (sample(0, **hot) != sample(1, **hot)).any()
    greedy = np.asarray(llm.generate(module, params, ids, mask, max_new_tokens=6))
    np.testing.assert_array_equal(sample(2, temperature=1.0, top_p=1e-6), greedy)
    filtered = llm.top_p_filter(jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]])), 0.7)
    np.testing.assert_array_equal(np.isfinite(filtered), [[True, True, False, False]])


def test_bidirectional_matches_transformers_with_padding_only_mask(llama):
    hf, folder = llama
    module, params = llm_loading.from_pretrained(folder, causal=False)
    ids, mask = batch(left=False)
    additive = torch.tensor(np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min), dtype=torch.float32)
    hidden, _ = hf_forward(hf, ids, mask, attention_mask=additive.expand(-1, 1, 8, 8))
    out = forward(module, params, ids, mask)
    m = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(out["last_hidden"])[m], hidden[m], atol=1e-4)


def test_sharded_loading_matches_and_is_sharded(llama):
    mesh = make_mesh(ml_collections.ConfigDict(dict(data=1, fsdp=4, tensor=2)))
    module, params = llm_loading.from_pretrained(llama[1])
    _, sharded = llm_loading.from_pretrained(llama[1], mesh=mesh)
    P = jax.sharding.PartitionSpec
    assert sharded["embed"]["embedding"].sharding.spec == P("tensor", "fsdp")
    q = sharded["layers_0"]["attn"]["q"]["kernel"]                       # [64, 4, 16]
    assert q.sharding.spec == P("fsdp", "tensor", None) and q.addressable_shards[0].data.shape == (16, 2, 16)
    assert sharded["layers_1"]["mlp"]["down"]["kernel"].sharding.spec == P("tensor", "fsdp")
    ids, mask = batch(left=True)
    ref, out = forward(module, params, ids, mask), forward(module, sharded, ids, mask)
    np.testing.assert_allclose(out["logits"], ref["logits"], atol=1e-5)
    adapters = lora.init_adapters(module.clone(lora=lora.LoraConfig(rank=2)), jax.random.key(0), mesh=mesh)
    assert adapters["layers_0"]["attn"]["q"]["a"].sharding.spec == P("fsdp", None)


def test_bf16_checkpoint_and_sharded_index(llama, tmp_path):
    hf, folder = llama
    module, params = llm_loading.from_pretrained(folder)
    hf.save_pretrained(tmp_path / "shards", max_shard_size="100KB")
    assert os.path.isfile(tmp_path / "shards" / "model.safetensors.index.json")
    _, from_shards = llm_loading.from_pretrained(str(tmp_path / "shards"))
    jax.tree.map(np.testing.assert_array_equal, from_shards, params)
    hf.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    hf.to(torch.float32)
    bf_module, bf_params = llm_loading.from_pretrained(str(tmp_path / "bf16"), dtype=jnp.bfloat16)
    assert {x.dtype for x in jax.tree.leaves(bf_params)} == {jnp.dtype(jnp.bfloat16)}
    ids, mask = batch(left=False)
    ref, out = forward(module, params, ids, mask), forward(bf_module, bf_params, ids, mask)
    m = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(out["logits"], np.float32)[m], np.asarray(ref["logits"])[m], atol=0.1)


def test_save_pretrained_round_trip(case, tmp_path):
    name, hf, _, module, params = case
    llm_loading.save_pretrained(module, params, str(tmp_path))
    again = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    ids, mask = batch(left=False)
    np.testing.assert_array_equal(hf_forward(again, ids, mask)[1], hf_forward(hf, ids, mask)[1], err_msg=name)
    assert llm_loading.read_config(str(tmp_path)) == module.config


def rewrite(folder, dest, drop=(), replace=None, config=None):
    """Copy of a model folder with tensors dropped / replaced and config.json entries changed."""
    os.makedirs(dest, exist_ok=True)
    tensors = {k: v for k, v in load_file(os.path.join(folder, "model.safetensors")).items() if k not in drop}
    save_file(tensors | (replace or {}), os.path.join(dest, "model.safetensors"))
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f) | (config or {})
    with open(os.path.join(dest, "config.json"), "w") as f:
        json.dump(cfg, f)
    return str(dest)


def test_bad_folders_are_refused_by_name(llama, tmp_path):
    folder = llama[1]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        llm_loading.from_pretrained(str(tmp_path / "nowhere"))
    name = "model.layers.1.mlp.up_proj.weight"
    with pytest.raises(ValueError, match=f"{name}.*missing"):
        llm_loading.from_pretrained(rewrite(folder, tmp_path / "drop", drop=[name]))
    name = "model.layers.0.self_attn.k_proj.weight"
    bad = rewrite(folder, tmp_path / "shape", replace={name: np.zeros((16, 64), np.float32)})
    with pytest.raises(ValueError, match=rf"{name}.*\(16, 64\).*\(32, 64\)"):
        llm_loading.from_pretrained(bad)
    with pytest.raises(ValueError, match="'gpt2' is not supported; supported: llama, mistral, qwen2"):
        llm_loading.from_pretrained(rewrite(folder, tmp_path / "gpt2", config={"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="'yarn'"):
        llm_loading.from_pretrained(rewrite(folder, tmp_path / "yarn", config={"rope_parameters": {
            "rope_type": "yarn", "factor": 4.0}}))
    sharded = rewrite(folder, tmp_path / "sharded")
    os.rename(os.path.join(sharded, "model.safetensors"), os.path.join(sharded, "model-00001-of-00002.safetensors"))
    keys = load_file(os.path.join(folder, "model.safetensors"))
    weight_map = {k: f"model-0000{1 + i % 2}-of-00002.safetensors" for i, k in enumerate(keys)}
    with open(os.path.join(sharded, "model.safetensors.index.json"), "w") as f:
        json.dump({"weight_map": weight_map}, f)
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors"):
        llm_loading.from_pretrained(sharded)


def test_load_tokenizer(llama, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", "a", "red", "cube", "on", "grass"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>")
    folder = rewrite(llama[1], tmp_path / "tok")
    with pytest.raises(FileNotFoundError, match="tok"):
        llm_loading.load_tokenizer(folder)
    fast.save_pretrained(folder)
    loaded = llm_loading.load_tokenizer(folder)
    assert loaded("a red cube")["input_ids"] == [4, 5, 6] and loaded.is_fast
    with pytest.raises(ValueError, match="9 tokens, more than the model's 8"):
        llm_loading.load_tokenizer(folder, vocab_size=8)


def test_lora_init_merge_save_and_train(llama, tmp_path):
    config = lora.LoraConfig(rank=2, alpha=4.0, dropout=0.1)
    base, params = llm_loading.from_pretrained(llama[1])
    module = base.clone(lora=config, remat=True)
    adapters = lora.init_adapters(module, jax.random.key(0))
    assert set(adapters["layers_1"]["attn"]) == {"q", "k", "v", "o"}
    assert set(adapters["layers_1"]["mlp"]) == {"gate", "up", "down"}
    ids, mask = batch(left=True)
    apply = jax.jit(lambda p, a, i, m, key: module.apply({"params": p, "lora": a}, i, m, deterministic=key is None,
                                                         rngs=None if key is None else {"dropout": key})["logits"])
    ref = forward(base, params, ids, mask)["logits"]
    np.testing.assert_array_equal(apply(params, adapters, ids, mask, None), ref)   # B = 0: no change at init
    rand = np.random.RandomState(0)
    adapters = jax.tree.map(lambda x: x + 0.2 * rand.standard_normal(x.shape).astype(np.float32), adapters)
    with_adapters = apply(params, adapters, ids, mask, None)
    assert np.abs(with_adapters - ref).max() > 1e-2
    merged = lora.merge(params, adapters, alpha=4.0, rank=2)
    np.testing.assert_allclose(forward(base, merged, ids, mask)["logits"], with_adapters, atol=1e-5)
    path = str(tmp_path / "adapters.safetensors")
    lora.save_adapters(path, adapters, config)
    assert os.path.getsize(path) < 0.1 * os.path.getsize(os.path.join(llama[1], "model.safetensors"))
    loaded, loaded_config = lora.load_adapters(path)
    assert loaded_config == config
    jax.tree.map(np.testing.assert_array_equal, loaded, jax.device_get(adapters))
    # training: gradients for the adapters only, through remat, with adapter dropout active
    loss, grads = jax.value_and_grad(lambda a: apply(params, a, ids, mask, jax.random.key(2)).sum())(adapters)
    assert abs(loss - with_adapters.sum()) > 1e-3
    assert jax.tree.structure(grads) == jax.tree.structure(adapters)
    assert all(np.isfinite(g).all() and np.abs(g).max() > 0 for g in jax.tree.leaves(grads))
    with pytest.raises(ValueError, match="rank 2, merge was given rank 4"):
        lora.merge(params, adapters, alpha=4.0, rank=4)
