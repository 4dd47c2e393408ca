"""Bad data locations and damaged data on real files: truncated tar shards, a wrong path or image_root found at
start-up, and a skip rate above config.data.max_skip_rate stopping the run."""
import os
import re
import tarfile

import pytest

from clipjax.data import pipeline, sources
from tests import datafiles as df


@pytest.fixture
def shard(tmp_path):
    """A tar of samples 0..3 (KEY.jpg, KEY.txt, KEY.json each) and its members' (header offset, data offset)."""
    path = df.write_tar(str(tmp_path / "full.tar"), [m for i in range(4) for m in df.sample_members(i)])
    with tarfile.open(path) as tar:
        offsets = {m.name: (m.offset, m.offset_data) for m in tar.getmembers()}
    with open(path, "rb") as f:
        return f.read(), offsets


def _read_cut(tmp_path, data: bytes, cut: int) -> list:
    path = str(tmp_path / "cut.tar")
    with open(path, "wb") as f:
        f.write(data[:cut])
    return [r["index"] if isinstance(r, dict) else r.reason for r in sources.read_tar(path)]


def test_truncated_shard_yields_every_complete_sample_and_counts_the_cut_one(shard, tmp_path):
    data, at = shard
    header, body = at["000000002.jpg"]
    cuts = {
        "mid-header, first member of sample 2": (header + 200, [0, 1]),
        "mid-member, first member of sample 2": (body + 100, [0, 1]),
        "right after sample 1's last member": (header, [0, 1]),
        "right after sample 2's first member": (at["000000002.txt"][0], [0, 1]),
        "mid-header, second member of sample 2": (at["000000002.txt"][0] + 100, [0, 1]),
        "mid-member, last member of sample 3": (at["000000003.json"][1] + 10, [0, 1, 2]),
    }
    for name, (cut, complete) in cuts.items():
        assert _read_cut(tmp_path, data, cut) == [*complete, "truncated_shard"], name
    end = at["000000003.json"][1] + 512
    assert _read_cut(tmp_path, data, end + 1024) == [0, 1, 2, 3]  # intact up to the end-of-archive marker
    assert _read_cut(tmp_path, data, len(data)) == [0, 1, 2, 3]


def test_truncated_shard_through_the_pipeline(shard, tmp_path):
    data, at = shard
    os.makedirs(tmp_path / "d")
    with open(tmp_path / "d" / "00000.tar", "wb") as f:
        f.write(data[:at["000000002.jpg"][1] + 100])  # cut inside sample 2's image
    df.write_shards(str(tmp_path / "d2"), 1, 4, start=4)
    config = df.data_config("webdataset", f"{tmp_path}/d/00000.tar,{tmp_path}/d2/00000.tar", size=8, num_epochs=1,
                            batch_size=1)
    it, _ = pipeline.make_train_iterator(config, 0, 1)
    assert sorted(int(i) for b in it for i in b["index"]) == [0, 1, 4, 5, 6, 7]
    assert pipeline.data_metrics(it) == {"data/skipped_truncated_shard": 1, "data/skipped_total": 1}


def test_csv_with_wrong_image_root_fails_at_startup_naming_the_file(tmp_path):
    path, _ = df.write_csv(str(tmp_path / "csv"), 6, rewrites=0)
    wrong = str(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match=re.escape(f"image_root = {wrong!r}") + ".*missing_image: "
                       + re.escape(wrong) + r"/img/\d\.jpg"):
        pipeline.make_train_iterator(df.data_config("csv", path, image_root=wrong), 0, 1)


def test_folder_without_shards_fails_at_startup_naming_it(tmp_path):
    folder = tmp_path / "photos"
    os.makedirs(folder)
    for i in range(3):
        with open(folder / f"{i}.jpg", "wb") as f:
            f.write(df.jpeg(i))
    with pytest.raises(FileNotFoundError, match=re.escape(str(folder))):
        pipeline.make_train_iterator(df.data_config("webdataset", str(folder), size=10), 0, 1)
    pattern = str(folder / "*")  # every file of the folder taken as a shard
    with pytest.raises(ValueError, match=re.escape(f"config.data.path = {pattern!r}") + ".*"
                       + re.escape(str(folder)) + r"/\d\.jpg: not a readable tar"):
        pipeline.make_train_iterator(df.data_config("webdataset", pattern, size=10), 0, 1)


def test_images_that_all_fail_to_decode_stop_at_startup_naming_the_file(tmp_path):
    path = df.write_tar(str(tmp_path / "bad.tar"), [m for i in range(5) for m in df.sample_members(i, image=b"junk")])
    with pytest.raises(ValueError, match=re.escape(path) + r":00000000\d: bad_image"):
        pipeline.make_train_iterator(df.data_config("webdataset", path, size=-1), 0, 1)


def test_skip_rate_above_the_ceiling_stops_naming_reason_and_file(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "_SKIP_RATE_WINDOW", 40, raising=False)
    members = [m for i in range(40) for m in df.sample_members(i, image=None if i % 4 == 0 else b"junk")]
    path = df.write_tar(str(tmp_path / "mostly_bad.tar"), members)  # 3 of 4 images are not images
    config = lambda rate: df.data_config("webdataset", path, size=40, num_epochs=3, shuffle_buffer=0,  # noqa: E731
                                         max_skip_rate=rate)
    it, _ = pipeline.make_train_iterator(config(0.5), 0, 1)
    expected = (r"of the last \d+ samples read were skipped \(\d+% > config.data.max_skip_rate = 0.5\), most as "
                r"bad_image \(\d+\), e\.g\. " + re.escape(path) + r":0000000\d\d: bad_image")
    with pytest.raises(RuntimeError, match=expected):
        list(it)
    it, _ = pipeline.make_train_iterator(config(0.8), 0, 1)  # under this ceiling the same data runs to the end
    assert len([i for b in it for i in b["index"]]) == 3 * 10 - 3 * 10 % 8
    assert pipeline.data_metrics(it)["data/skipped_bad_image"] == 3 * 30
