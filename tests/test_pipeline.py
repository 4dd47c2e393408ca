"""The Grain pipeline end to end on real files: every source, bad input skipped and counted, exact resume (also
with worker processes and through the Orbax checkpointer), two processes reading one epoch, HF tokenizers."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from absl import flags

from clipjax import checkpoint
from clipjax.data import convert, pipeline
from tests import datafiles as df
from tests.helpers import REPO

flags.FLAGS.mark_as_parsed()  # grain worker processes read absl flags


def take(it, n):
    return [next(it) for _ in range(n)]


def same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert sorted(x) == sorted(y)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return df.write_shards(str(tmp_path_factory.mktemp("wds")), 4, 8)


@pytest.fixture(scope="module")
def csv_files(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("csv"))
    path, rewrites = df.write_csv(d, 24)
    return d, path, rewrites


def wds_config(shards, **kw):
    return df.data_config("webdataset", ",".join(shards), size=-1, shuffle_buffer=5,
                          caption_fields="rewrite_1,rewrite_2", **kw)


def test_webdataset_batches(shards):
    config = wds_config(shards, caption_mode="laclip")
    it, size = pipeline.make_train_iterator(config, 0, 1)
    batches = take(it, 8)  # two epochs of 32
    assert size == 32
    b = batches[0]
    assert b["image"].shape == (8, 32, 32, 3) and b["image"].dtype == np.uint8
    assert b["tokens"].shape == (8, 16) and b["tokens"].dtype == np.int32 and b["index"].dtype == np.int32
    for epoch in (batches[:4], batches[4:]):
        assert sorted(np.concatenate([x["index"] for x in epoch])) == list(range(32))
    tok = pipeline.tokenizer()
    texts = {tok.decode([t for t in row if t not in (0, tok.sot_id, tok.eot_id)]).strip()
             for x in batches for row in x["tokens"]}
    assert any(t.startswith("rewrite") for t in texts) and any(t.startswith("a photo of item") for t in texts)
    assert pipeline.data_metrics(it) == {"data/skipped_total": 0}


@pytest.mark.parametrize("name", ["csv", "arrayrecord", "synthetic"])
def test_random_access_sources_cover_each_epoch_once(name, csv_files, tmp_path):
    d, path, rewrites = csv_files
    config = df.data_config("csv", path, image_root=d, rewrite_files=",".join(rewrites), caption_mode="laclip")
    if name == "arrayrecord":
        convert.convert(config, str(tmp_path / "ar"), "arrayrecord", examples_per_shard=10)
        config = df.data_config("arrayrecord", str(tmp_path / "ar"), caption_mode="laclip")
    elif name == "synthetic":
        config = df.data_config("synthetic", "", size=24, caption_mode="mixed", augment="none")
    it, size = pipeline.make_train_iterator(config, 0, 1)
    assert size == 24
    batches = take(it, 6)
    for epoch in (batches[:3], batches[3:]):
        assert sorted(np.concatenate([x["index"] for x in epoch])) == list(range(24))
    assert batches[0]["image"].shape == (8, 32, 32, 3)


def test_tfds_source_through_pipeline(tmp_path):
    name = df.build_tfds(str(tmp_path / "tfds"), n=8)
    config = df.data_config("tfds", name, tfds_data_dir=str(tmp_path / "tfds"), caption_mode="mixed")
    it, size = pipeline.make_train_iterator(config, 0, 1)
    b = next(it)
    assert size == 8 and sorted(b["index"]) == list(range(8)) and b["image"].shape == (8, 32, 32, 3)


def test_bad_input_is_skipped_and_counted(tmp_path):
    good = lambda i: df.sample_members(i)  # noqa: E731
    jpeg = df.jpeg(99, 64, 64)
    bad = [
        df.sample_members(100, image=jpeg[: len(jpeg) // 2]),                       # truncated JPEG
        df.sample_members(101, image=b"<html>not an image</html>"),                  # not an image
        [m for m in df.sample_members(102) if not m[0].endswith((".txt", ".json"))],  # no caption
        df.sample_members(103, caption=b"caf\xe9 \xff latin-1"),                     # non-UTF-8 caption
        df.sample_members(104, image=df.encode(np.zeros((2000, 1500, 3), np.uint8), "PNG")),  # too many pixels
        [m for m in df.sample_members(105) if m[0].endswith(".txt")],                # no image
    ]
    df.write_tar(str(tmp_path / "00000.tar"), [m for i in range(6) for m in good(i)] + [m for b in bad for m in b])
    df.write_tar(str(tmp_path / "00001.tar"), [m for i in range(6, 12) for m in good(i)])
    df.write_tar(str(tmp_path / "full.tar"), [m for i in range(12, 18) for m in good(i)])
    with open(tmp_path / "full.tar", "rb") as f:
        data = f.read()
    with open(tmp_path / "00002.tar", "wb") as f:  # truncated tar: the first samples survive
        f.write(data[: len(data) // 2 + 100])
    df.write_shards(str(tmp_path / "more"), 1, 6, start=18)
    config = df.data_config("webdataset", f"{tmp_path}/{{00000..00002}}.tar,{tmp_path}/more/00000.tar", size=-1,
                            num_epochs=1, max_image_pixels=1_000_000, shuffle_buffer=4, batch_size=1)
    it, size = pipeline.make_train_iterator(config, 0, 1)
    seen = [int(i) for b in it for i in b["index"]]
    assert size == 106 and len(seen) == len(set(seen))
    assert set(range(12)) | set(range(18, 24)) <= set(seen) <= set(range(24))
    assert 0 < len([i for i in seen if 12 <= i < 18]) < 6  # the samples before the damage
    assert pipeline.data_metrics(it) == {
        "data/skipped_bad_image": 2, "data/skipped_missing_caption": 1, "data/skipped_bad_caption": 1,
        "data/skipped_too_large": 1, "data/skipped_missing_image": 1, "data/skipped_truncated_shard": 1,
        "data/skipped_total": 7}


def test_resume_gives_identical_batches(shards, csv_files):
    d, path, rewrites = csv_files
    configs = [wds_config(shards, caption_mode="laclip"),
               df.data_config("csv", path, image_root=d, rewrite_files=",".join(rewrites), caption_mode="laclip")]
    for config in configs:
        it, _ = pipeline.make_train_iterator(config, 0, 1)
        take(it, 5)  # into the second epoch
        state = it.get_state()
        expected = take(it, 6)
        fresh, _ = pipeline.make_train_iterator(config, 0, 1)
        fresh.set_state(json.loads(json.dumps(state)))
        same_batches(take(fresh, 6), expected)


def test_resume_with_worker_processes_through_checkpointer(shards, tmp_path):
    config = wds_config(shards, num_workers=2, augment="clipa_large")
    it, _ = pipeline.make_train_iterator(config, 0, 1)
    take(it, 3)
    state = {"step": np.zeros((), np.int32)}
    ckpt = checkpoint.Checkpointer(str(tmp_path), config.checkpoint)
    ckpt.save(3, state, it)
    ckpt.wait()
    expected = take(it, 4)
    fresh, _ = pipeline.make_train_iterator(config, 0, 1)
    ckpt.restore(3, {"step": jax.ShapeDtypeStruct((), np.int32)}, fresh)
    ckpt.close()
    same_batches(take(fresh, 4), expected)


_WORKER = """
import json, sys
from tests import datafiles as df
from clipjax.data import pipeline
pi, pc, name, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
config = df.data_config(name, path, num_epochs=1, batch_size=4, size=-1,
                        image_root=sys.argv[5] if len(sys.argv) > 5 else "")
it, size = pipeline.make_train_iterator(config, pi, pc)
print(json.dumps([int(i) for b in it for i in b["index"]]))
"""


@pytest.mark.parametrize("name", ["webdataset", "csv"])
def test_two_processes_read_each_example_of_an_epoch_once(name, shards, csv_files):
    d, path, _ = csv_files
    args = [",".join(shards)] if name == "webdataset" else [path, d]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(p), "2", name, *args], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for p in (0, 1)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    n = 32 if name == "webdataset" else 24
    assert len(outs[0]) == len(outs[1]) == n // 2
    assert sorted(outs[0] + outs[1]) == list(range(n))


def test_hugging_face_tokenizer_from_local_directory(tmp_path, shards):
    import transformers
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "item", "rewrite", "0",
             *map(str, range(1, 40))]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizerFast(vocab=str(tmp_path / "vocab.txt")).save_pretrained(str(tmp_path / "tok"))
    config = wds_config(shards, tokenizer=str(tmp_path / "tok"), text_length=8)
    it, _ = pipeline.make_train_iterator(config, 0, 1)
    checked = 0
    for b in take(it, 4):
        for row, i in zip(b["tokens"], b["index"]):
            if i < 10:  # the original caption "a photo of item i" (caption_mode 'original')
                assert list(row) == [2, 5, 6, 7, 8, vocab.index(str(int(i))), 3, 0]
                checked += 1
            assert row[0] == 2 and 3 in row  # [CLS] ... [SEP]
    assert checked == 10
    config.model.text.vocab_size = 10
    with pytest.raises(ValueError, match="vocab_size"):
        pipeline.make_train_iterator(config, 0, 1)


def test_inspect_cli_prints_examples_and_contact_sheet(tmp_path, shards):
    cfg = tmp_path / "cfg.py"
    cfg.write_text(
        "from tests import datafiles as df\n"
        f"def get_config():\n    return df.data_config('webdataset', {','.join(shards)!r}, size=-1, "
        "caption_mode='laclip', caption_fields='rewrite_1,rewrite_2')\n")
    out = subprocess.run([sys.executable, "-m", "clipjax.data.inspect", "--config", str(cfg), "--num_examples", "5",
                          "--contact_sheet", str(tmp_path / "sheet.png")], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.strip().splitlines()]
    assert len(rows) == 5 and rows[0]["image_shape"] == [32, 32, 3]
    assert {"index", "key", "caption", "tokens"} <= set(rows[0])
    assert rows[0]["key"] == f"{rows[0]['index']:09d}"
    assert (tmp_path / "sheet.png").stat().st_size > 1000


def test_simclr_batches_carry_two_views(shards):
    it, _ = pipeline.make_train_iterator(wds_config(shards, augment="simclr"), 0, 1)
    assert next(it)["views"].shape == (8, 2, 32, 32, 3)


@pytest.mark.slow
def test_short_training_run_from_webdataset_shards_logs_skips(tmp_path):
    from clipjax import train
    from tests.helpers import load_config
    config = load_config("tiny.py", data__size=64, data__image_size=16)
    convert.convert(config, str(tmp_path / "wds"), "webdataset", examples_per_shard=16)
    df.write_tar(str(tmp_path / "wds" / "00004.tar"), df.sample_members(64, image=b"not an image"))
    config = load_config("data/wds_tiny.py", total_steps=4, batch_size=16, data__image_size=16, data__text_length=8,
                         model__embed_dim=32, log_every_steps=2, evals__every_steps=0, evals__num_examples=32,
                         evals__batch_size=32, checkpoint__every_steps=4, progress_bar=False, optim__warmup_steps=2)
    config.data.path = str(tmp_path / "wds")
    config.model.image.image_size, config.model.text.context_length = 16, 8
    final = train.train_and_evaluate(config, str(tmp_path / "run"))
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    train_rows = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in train_rows] == [2, 4] and np.isfinite(train_rows[-1]["train/loss"])
    assert train_rows[-1]["data/skipped_total"] == train_rows[-1]["data/skipped_bad_image"] == 1
    assert "eval/zeroshot_top1" in final
