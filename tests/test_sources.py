"""Data sources on real files written here: webdataset tars, CSV/TSV + rewrites, ArrayRecord, TFDS, synthetic."""
import io
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from clipjax.data import convert, pipeline, sources
from tests import datafiles as df


def test_brace_expansion_and_lists(tmp_path):
    assert sources.expand_braces("d/{008..011}.tar") == ["d/008.tar", "d/009.tar", "d/010.tar", "d/011.tar"]
    assert sources.expand_braces("{a,b}/{1..2}") == ["a/1", "a/2", "b/1", "b/2"]
    assert sources.split_paths("x/{0..1}.tar, y/{a,b}.tar") == ["x/0.tar", "x/1.tar", "y/a.tar", "y/b.tar"]
    paths = df.write_shards(str(tmp_path), 3, 1)
    assert sources.split_paths(str(tmp_path)) == paths  # a directory: its sorted *.tar


def test_read_tar_groups_img2dataset_members(tmp_path):
    path = df.write_tar(str(tmp_path / "s.tar"), df.sample_members(7) + df.sample_members(12, ext="png"))
    records = list(sources.read_tar(path, caption_fields=("rewrite_1",)))
    assert [r["index"] for r in records] == [7, 12]
    assert records[0]["captions"] == {"caption": df.caption_of(7).encode(), "rewrite_1": "rewrite 1 of item 7"}
    assert records[0]["image"] == df.jpeg(7) and records[0]["key"] == "000000007"
    assert sources.scan_max_index([path]) == 12


def test_missing_shard_fails_at_start_naming_it(tmp_path):
    df.write_shards(str(tmp_path), 2, 2)
    config = df.data_config("webdataset", str(tmp_path / "{00000..00002}.tar"))
    with pytest.raises(FileNotFoundError, match="00002.tar"):
        pipeline.make_train_iterator(config, 0, 1)


def _stream(ds, n=None):
    it = iter(ds)
    return [next(it) for _ in range(n)] if n else list(it)


def test_tar_shards_epochs_window_shuffle_and_process_split(tmp_path):
    paths = df.write_shards(str(tmp_path), 4, 5)
    one = sources.TarShards(paths, seed=1, window=6, num_epochs=2)
    items = _stream(one)
    epochs = [[r["index"] for r in items if r["epoch"] == e] for e in (0, 1)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(20))
    assert epochs[0] != epochs[1] and epochs[0] != list(range(20))  # reshuffled every epoch
    parts = [_stream(sources.TarShards(paths, seed=1, window=6, num_epochs=1, process_index=p, process_count=2))
             for p in (0, 1)]
    got = [r["index"] for part in parts for r in part]
    assert sorted(got) == list(range(20))  # each example of the epoch exactly once
    assert {r["index"] // 5 for r in parts[0]}.isdisjoint({r["index"] // 5 for r in parts[1]})  # whole shards


def test_tar_iterator_state_restores_mid_window(tmp_path):
    paths = df.write_shards(str(tmp_path), 3, 4)
    ds = sources.TarShards(paths, seed=0, window=5, num_epochs=-1)
    it = iter(ds)
    for _ in range(13):
        next(it)
    state = it.get_state()
    expected = [next(it)["index"] for _ in range(20)]
    fresh = iter(ds)
    fresh.set_state(state)
    assert [next(fresh)["index"] for _ in range(20)] == expected


def test_csv_source_with_rewrites_header_and_tsv(tmp_path):
    path, rewrites = df.write_csv(str(tmp_path / "a"), 5)
    src = sources.CsvSource(path, image_root=str(tmp_path / "a"), rewrite_files=rewrites)
    r = src[3]
    assert len(src) == 5 and r["index"] == 3 and r["image"] == df.jpeg(3)
    assert r["captions"]["caption"] == df.caption_of(3) + ", indoors"  # quoted comma kept
    assert r["captions"]["rewrite_2"] == b"rewrite 2 of item 3"
    path, _ = df.write_csv(str(tmp_path / "b"), 4, rewrites=0, header=True, sep="\t")
    src = sources.CsvSource(path, image_root=str(tmp_path / "b"), header=True, path_column="filepath",
                            caption_column="title")
    assert len(src) == 4 and src[0]["captions"]["caption"] == df.caption_of(0) + ", indoors"
    with pytest.raises(ValueError, match="no such column"):
        sources.CsvSource(path, header=True, path_column="nope")
    pickle.loads(pickle.dumps(src))[1]  # workers get a picklable copy that maps the file again


def test_csv_unequal_rewrite_files_fail_at_start_naming_file(tmp_path):
    path, rewrites = df.write_csv(str(tmp_path), 5)
    with open(rewrites[1], "a") as f:
        f.write("one line too many\n")
    with pytest.raises(ValueError, match=r"rewrite_1\.txt.*6 lines.*5 rows"):
        sources.CsvSource(path, rewrite_files=rewrites)
    config = df.data_config("csv", path, rewrite_files=",".join(rewrites))
    with pytest.raises(ValueError, match="rewrite_1.txt"):
        pipeline.make_train_iterator(config, 0, 1)


def test_csv_bad_rows(tmp_path):
    path, _ = df.write_csv(str(tmp_path), 3, rewrites=0)
    with open(path, "ab") as f:
        f.write(b"img/missing.jpg,a caption for nothing\n")
        f.write(b"img/0.jpg,caf\xe9 latin-1 caption\n")
        f.write(b"img/1.jpg\n")
    src = sources.CsvSource(path, image_root=str(tmp_path))
    reasons = []
    for i in (3, 4, 5):
        with pytest.raises(sources.BadSample) as e:
            src[i]
        reasons.append(e.value.reason)
    assert reasons == ["missing_image", "bad_caption", "bad_row"]


def test_arrayrecord_from_converter_keeps_images_captions_index(tmp_path):
    path, rewrites = df.write_csv(str(tmp_path / "csv"), 6)
    config = df.data_config("csv", path, image_root=str(tmp_path / "csv"), rewrite_files=",".join(rewrites))
    meta = convert.convert(config, str(tmp_path / "ar"), "arrayrecord", examples_per_shard=4)
    assert meta["num_records"] == 6 and meta["size"] == 6 and len(os.listdir(tmp_path / "ar")) == 3
    src = sources.ArrayRecordSource(str(tmp_path / "ar"))
    csv_src = pipeline.make_source(config.data)
    for i in range(6):
        a, b = src[i], csv_src[i]
        assert a["index"] == b["index"] and a["image"] == b["image"]
        assert a["captions"] == {k: sources.to_text(v) for k, v in b["captions"].items()}
    assert src.size == 6


def test_converter_to_webdataset_roundtrip(tmp_path):
    config = df.data_config("synthetic", "", size=10, image_size=32)
    convert.convert(config, str(tmp_path / "wds"), "webdataset", examples_per_shard=4)
    paths = sources.split_paths(str(tmp_path / "wds"))
    records = [r for p in paths for r in sources.read_tar(p, ("rewrite_1",))]
    synth = sources.SyntheticRaw(10, 32)
    assert [r["index"] for r in records] == list(range(10)) and len(paths) == 3
    assert records[4]["captions"]["caption"].decode() == synth[4]["captions"]["caption"]
    assert records[4]["captions"]["rewrite_1"] == synth[4]["captions"]["rewrite_1"]
    decoded = np.asarray(Image.open(io.BytesIO(records[4]["image"])))
    assert np.abs(decoded.astype(int) - synth[4]["image"]).mean() < 8  # JPEG of the same picture


def test_tfds_source_reads_prepared_dataset_without_download(tmp_path):
    name = df.build_tfds(str(tmp_path / "tfds"))
    src = sources.TfdsSource(name, data_dir=str(tmp_path / "tfds"), split="train", image_key="image",
                             caption_key="captions/text")
    assert len(src) == 6
    seen = set()
    for i in range(6):
        r = src[i]
        k = int(sources.to_text(r["captions"]["caption"]).split()[-1])
        assert r["index"] == i and sources.to_text(r["captions"]["caption_2"]) == f"another caption {k}"
        assert isinstance(r["image"], bytes) and Image.open(io.BytesIO(r["image"])).size == (48, 40)
        seen.add(k)
    assert seen == set(range(6))
    with pytest.raises(FileNotFoundError, match="no_such_dataset"):
        sources.TfdsSource("no_such_dataset", data_dir=str(tmp_path / "tfds"), split="train", image_key="image",
                           caption_key="captions/text")


def test_synthetic_raw_fields():
    r = sources.SyntheticRaw(8, 32)[5]
    assert r["index"] == 5 and r["image"].shape == (32, 32, 3)
    assert sorted(r["captions"]) == sorted(["caption", *(f"phrasing_{k}" for k in range(2, 7)),
                                            *(f"rewrite_{k}" for k in range(1, 4))])
