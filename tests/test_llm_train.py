"""LLM2CLIP stage 1 (clipjax.llm_train): caption encoding for embeddings (left padding, pool mask), MNTP masking and
the shifted labels, a caption-contrastive step that trains only the LoRA adapters, and the tiny chain clm -> mntp ->
cc writing Hugging Face folders that reload with from_pretrained and reproduce the trained embedder."""
import csv
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clipjax import llm_text, llm_train, pytree
from clipjax.data import caption_pairs
from clipjax.losses import language_modeling as lm
from clipjax.models import llm_loading
from tests.helpers import REPO

CAPTIONS = ["a red circle on the left", "Two small blue squares: at the top.", "Given a caption, retrieve"]


def config(name: str, **llm):
    """configs/llm2clip/NAME shrunk for tests: 2 layers of width 32, 16 texts a batch, 64 images, 16 held out."""
    spec = importlib.util.spec_from_file_location("cfg", REPO / "configs" / "llm2clip" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config()
    c.llm.scratch.update(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, num_kv_heads=1)
    c.llm.update(dict(max_length=32, pad_bucket=0, eval_examples=16, lora_rank=4, lora_alpha=8.0) | llm)  # one shape
    c.data.size, c.batch_size, c.log_every_steps, c.optim.warmup_steps = 64, 16, 5, 2
    c.checkpoint.every_steps, c.checkpoint.async_save = 5, False
    return c


def tokenizer():
    return llm_text.build_word_tokenizer(CAPTIONS)


def test_encode_for_embedding_left_pads_and_pools_the_caption_only():
    tok = tokenizer()
    ids, mask, pool = llm_text.encode_for_embedding(tok, ["A red circle ", "circle"], "Given a caption, ", 12)
    tokens = [tok.convert_ids_to_tokens(row) for row in ids]
    # <bos><|user|> INSTRUCTION CAPTION<eos>, left-padded with eos
    assert tokens[0] == ["<eos>"] * 2 + ["<bos>", "<|user|>", "given", "a", "caption", ",", "a", "red", "circle",
                                         "<eos>"]
    assert tokens[1] == ["<eos>"] * 4 + ["<bos>", "<|user|>", "given", "a", "caption", ",", "circle", "<eos>"]
    np.testing.assert_array_equal(mask[0], [0] * 2 + [1] * 10)
    np.testing.assert_array_equal(mask[1], [0] * 4 + [1] * 8)
    np.testing.assert_array_equal(pool[0], [0] * 8 + [1, 1, 1, 0])   # 'a red circle', not the instruction's 'a'
    np.testing.assert_array_equal(pool[1], [0] * 10 + [1, 0])
    # one instruction per row; bucket: the longest row (8 tokens) rounded up to a multiple of 5; the cut keeps
    # the left end
    ids2, _, pool2 = llm_text.encode_for_embedding(tok, ["a red circle", "circle"], ["", "Given a caption, "], 32,
                                                   bucket=5)
    assert ids2.shape == (2, 10) and pool2[0].sum() == 3 and pool2[1].sum() == 1
    ids3, _, pool3 = llm_text.encode_for_embedding(tok, ["a red circle on the left"], "Given a caption, ", 10)
    assert tok.convert_ids_to_tokens(ids3[0])[-2:] == ["circle", "on"] and pool3[0].sum() == 4


def test_pool_mask_with_a_byte_level_bpe_and_a_llama3_style_template():
    """With byte-level BPE the space before the caption merges into its first token; the pooled tokens decode to
    the caption exactly, and without a chat template the tokenizer's own bos is added."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    bpe.train_from_iterator(CAPTIONS * 20, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=specials[0], eos_token=specials[3])
    tok.chat_template = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
                         "\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}")
    texts = ["a red circle on the left", "Two small blue squares: at the top."]
    ids, mask, pool = llm_text.encode_for_embedding(tok, texts, "Given a caption, retrieve: ", 64)
    for row, text in enumerate(texts):
        assert tok.decode(ids[row][pool[row] == 1]).strip() == text
        assert tok.convert_ids_to_tokens(int(ids[row][mask[row] == 1][0])) == "<|begin_of_text|>"
    tok.chat_template = None
    ids, mask, pool = llm_text.encode_for_embedding(tok, texts[:1], "", 64)
    assert tok.decode(ids[0][pool[0] == 1]) == texts[0] and pool[0].sum() == mask[0].sum()


def test_mntp_masks_maskable_tokens_and_predicts_them_from_the_previous_position():
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(10, 50, (64, 40)), jnp.int32)
    maskable = jnp.asarray(rng.random((64, 40)) < 0.8)
    inputs, selected = lm.mntp_mask(jax.random.key(0), ids, maskable, mask_prob=0.2, mask_id=3, vocab_size=50)
    inputs, selected, m = np.asarray(inputs), np.asarray(selected), np.asarray(maskable)
    assert not (selected & ~m).any() and not selected[:, 0].any()
    assert abs(selected.sum() / m[:, 1:].sum() - 0.2) < 0.02
    changed = inputs != np.asarray(ids)
    assert not (changed & ~selected).any()                       # only selected tokens change
    assert abs((inputs[selected] == 3).mean() - 0.8) < 0.04      # 80% mask, 10% random, 10% kept
    all_masked, sel = lm.mntp_mask(jax.random.key(0), ids, maskable, mask_prob=0.2, mask_id=3, replace_prob=1.0,
                                   random_prob=0.0, vocab_size=50)
    assert (np.asarray(all_masked)[np.asarray(sel)] == 3).all()
    # the label of position i is scored by the logits at i-1, only where selected
    logits = jnp.asarray(rng.normal(size=(64, 40, 50)), jnp.float32)
    loss, _ = lm.shifted_cross_entropy(logits, ids, selected)
    logp = jax.nn.log_softmax(np.asarray(logits), -1)
    b, t = np.nonzero(selected)
    expected = -np.mean(np.asarray(logp)[b, t - 1, np.asarray(ids)[b, t]])
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # next-token weights: a target counts when it and its predecessor are real (left padding)
    np.testing.assert_array_equal(lm.next_token_weights(jnp.array([[0, 0, 1, 1, 1]])), [[0, 0, 0, 1, 1]])


def test_triples_and_pairs_csv(tmp_path):
    table = caption_pairs.builtin_table("train", 8)
    t = caption_pairs.draw_triples(table, np.arange(8), np.random.default_rng(0), ["short_long"])
    for i, (q, d, n, up) in enumerate(zip(t["query"], t["document"], t["negative"], t["to_long"])):
        assert {q, d} == {table.short[i], table.long[i]} and up == (q == table.short[i])
        kind = table.long if d == table.long[i] else table.short
        assert n in kind and kind.index(n) != i                     # same type, another image
    t = caption_pairs.draw_triples(table, np.arange(8), np.random.default_rng(0), ["paraphrase"])
    assert all(q in table.phrasings[i] + table.rewrites[i] for i, q in enumerate(t["query"]))
    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["url", "short", "long"], ["u", "a dog", "a brown dog on grass"], ["v", "", "x"],
                                 ["w", "a cat", "a cat asleep on a sofa"]])
    pairs = caption_pairs.read_pairs_csv(str(path))
    assert pairs.short == ["a dog", "a cat"] and pairs.long[1] == "a cat asleep on a sofa"
    bad = tmp_path / "bad.csv"
    bad.write_text("short,caption\na,b\n")
    with pytest.raises(ValueError, match="missing \\['long'\\]"):
        caption_pairs.read_pairs_csv(str(bad))
    (tmp_path / "wiki.txt").write_text("first line\n\nsecond line\n")
    c = config("tiny_cc.py", data=str(path), eval_examples=1)       # the big configs' data: CSV / text files
    train, held = caption_pairs.load_stage_data(c)
    assert len(train) == len(held) == 1 and {train.short[0], held.short[0]} == {"a dog", "a cat"}
    c = config("tiny_mntp.py", data=f"{tmp_path / 'wiki.txt'},{path}", eval_examples=2)
    train, held = caption_pairs.load_stage_data(c)
    assert sorted(train + held) == sorted(["first line", "second line", *pairs.short, *pairs.long])
    rows = [caption_pairs.epoch_rows(10, 4, 0, s) for s in range(5)]   # every row once per epoch
    assert sorted(np.concatenate(rows)[:10]) == list(range(10))


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """The clm stage: 12 steps, stopped at 6 and resumed."""
    workdir = str(tmp_path_factory.mktemp("clm"))
    c = config("tiny_lm.py", stage="clm")
    c.total_steps = 12
    llm_train.run(c, workdir, stop_at=6)
    return workdir, llm_train.run(c, workdir)


def test_clm_stage_resumes_and_writes_a_loadable_folder(lm_run):
    workdir, final = lm_run
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    train_steps = [r["step"] for r in rows if "train/loss" in r]
    assert train_steps == [5, 6, 10, 12]                         # resumed at 6, every step once
    evals = [r["eval/loss"] for r in rows if "eval/loss" in r]
    assert len(evals) == 2 and evals[1] < evals[0]
    module, params = llm_loading.from_pretrained(final["output"])
    tok = llm_loading.load_tokenizer(final["output"])
    assert tok.chat_template and tok.mask_token == "<mask>" and module.config.vocab_size == len(tok)
    assert module.config.num_layers == 2 and module.config.hidden_size == 32


def test_cc_step_lowers_the_loss_and_changes_only_the_adapters(lm_run):
    stage = llm_train.Stage(config("tiny_cc.py", folder=lm_run[1]["output"], lora_dropout=0.05))
    assert stage.mesh.size == 8
    base = jax.tree.map(np.array, stage.base)
    lora0 = jax.tree.map(np.array, stage.state.trainable)
    batch = stage.to_device(stage.host_batch(0))
    assert batch["ids"].shape[:2] == (16, 3)
    state, losses = stage.state, []
    for _ in range(6):
        state, metrics = stage.step_fn(state, batch, stage.base)
        losses.append(float(metrics["train/loss"]))
    assert losses[-1] < losses[0] - 0.1, losses
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, stage.base), base)
    changed = jax.tree.map(lambda a, b: not np.array_equal(np.asarray(a), b), state.trainable, lora0)
    assert all(jax.tree.leaves(changed))                          # every adapter moved (B starts at zero)
    assert set(pytree.flatten(state.trainable)) == set(pytree.flatten(lora0))


def test_missing_previous_stage_folder_names_the_key_and_path(tmp_path):
    missing = str(tmp_path / "no_such_run" / "hf")
    with pytest.raises(FileNotFoundError, match=f"config.llm.folder = '{missing}': the folder does not exist.*mntp"):
        llm_train.run(config("tiny_cc.py", folder=missing), str(tmp_path / "w"))
    with pytest.raises(ValueError, match="config.llm.folder = '': expected the input Hugging Face folder"):
        llm_train.validate(config("llama3_8b_mntp.py"))
    with pytest.raises(ValueError, match="config.llm.data = 'x.json': expected 'builtin' or a CSV"):
        llm_train.validate(config("tiny_lm.py", data="x.json"))


def test_paper_configs():
    """METHODS of LLM2CLIP / LLM2Vec: LoRA r 16 / alpha 32 / dropout 0.05, bf16, length 512, FSDP; CC lr 2e-4,
    300 warm-up steps, 1 epoch, batch 512, cosine x 50; MNTP 20% masked, batch 32, 1000 steps."""
    def load(name):
        spec = importlib.util.spec_from_file_location("cfg", REPO / "configs" / "llm2clip" / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_config()
    mntp, cc = load("llama3_8b_mntp.py"), load("llama3_8b_cc.py")
    for c in (mntp, cc):
        assert (c.llm.lora_rank, c.llm.lora_alpha, c.llm.lora_dropout) == (16, 32.0, 0.05)
        assert (c.llm.dtype, c.llm.max_length, c.mesh.fsdp, c.llm.stage) == ("bfloat16", 512, -1, c.llm.stage)
    assert (cc.optim.lr, cc.optim.warmup_steps, cc.total_epochs, cc.batch_size, cc.llm.scale) == (2e-4, 300, 1, 512, 50)
    assert (mntp.llm.mask_prob, mntp.batch_size, mntp.total_steps, mntp.llm.stage) == (0.2, 32, 1000, "mntp")


@pytest.mark.slow
def test_chain_clm_mntp_cc_writes_folders_that_reproduce_the_embedder(lm_run, tmp_path):
    mntp_dir, cc_dir = str(tmp_path / "mntp"), str(tmp_path / "cc")
    c = config("tiny_mntp.py", folder=lm_run[1]["output"])
    c.total_steps = 10
    mntp = llm_train.run(c, mntp_dir)
    assert os.path.isfile(os.path.join(mntp_dir, "lora_adapters.safetensors"))
    _, before = llm_loading.from_pretrained(lm_run[1]["output"])
    _, merged = llm_loading.from_pretrained(mntp["output"])
    q_before, q_after = (np.asarray(p["layers_0"]["attn"]["q"]["kernel"]) for p in (before, merged))
    assert not np.allclose(q_before, q_after)                     # adapters merged into the saved weights
    c = config("tiny_cc.py", folder=mntp["output"])
    c.total_steps, c.optim.lr = 10, 1e-2
    cc = llm_train.run(c, cc_dir)
    rows = [json.loads(line) for line in open(os.path.join(cc_dir, "metrics.jsonl"))]
    r1 = [r["eval/r1_short_to_long"] for r in rows if "eval/r1_short_to_long" in r]
    assert len(r1) == 2 and all(0 <= v <= 1 for v in r1) and "eval/r1_paraphrase" in rows[0]
    with open(os.path.join(cc["output"], "clipjax_llm2clip.json")) as f:
        assert json.load(f)["causal"] is False
    # the merged folder, loaded as a plain bidirectional model, embeds like the trained base + adapters
    stage = llm_train.Stage(c)
    from clipjax.models import lora
    adapters, _ = lora.load_adapters(os.path.join(cc_dir, "lora_adapters.safetensors"))
    texts = caption_pairs.builtin_table("eval", 16).long
    want = stage.embed_texts(jax.tree.map(jnp.asarray, adapters), texts, "")
    module, params = llm_loading.from_pretrained(cc["output"], causal=False)
    ids, mask, pool = llm_text.encode_for_embedding(llm_loading.load_tokenizer(cc["output"]), texts, "", 32)
    plain = llm_train.StepSpec("clm")
    got = llm_train.embed(module, plain, params, {}, ids, mask, pool)
    np.testing.assert_allclose(got, want, atol=2e-5)


def clm_step_temp_bytes(fsdp: int) -> int:
    """Compiled clm-step temporaries per device of a 4-layer, 512-wide scratch Llama on 8 devices, batch 64."""
    c = config("tiny_lm.py")
    c.llm.scratch.update(hidden_size=512, intermediate_size=1536, num_layers=4, num_heads=8, num_kv_heads=4)
    c.mesh.data, c.mesh.fsdp = 8 // fsdp, fsdp
    c.batch_size, c.llm.max_length, c.llm.pad_bucket = 64, 48, 16  # tiny_lm.py's (at 16 x 32 no pin is needed)
    stage = llm_train.Stage(c)
    batch = stage.to_device(stage.host_batch(0))
    return stage.step_fn.lower(stage.state, batch, stage.base).compile().memory_analysis().temp_size_in_bytes


def test_fsdp_decoder_keeps_activations_batch_sharded():
    """The decoder pins its activations to the batch axes between layers: unpinned, FSDP 8 needed 2.3x data
    parallelism's temporaries per device (308 vs 132 MB), pinned 1.14x (150 MB; FSDP also gathers weights)."""
    assert clm_step_temp_bytes(fsdp=8) < 1.4 * clm_step_temp_bytes(fsdp=1)
