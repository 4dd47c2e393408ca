"""clipjax.tools.rewrite (LaCLIP rewrites): prompt parsing, the built-in world end to end, resume after a real kill,
CSV output read back by the data pipeline, and bad input."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from clipjax.data import chunked_files, pipeline, sources
from clipjax.tools import rewrite, rewrite_prompt as rp
from tests.helpers import REPO, load_config, save_tiny_llm

SMALL = dict(max_new_tokens=12, context=128, batch_size=8, chunk=8)


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    raw = sources.SyntheticRaw(64, 16)
    texts = [raw[i]["captions"]["caption"] for i in range(64)] + ["=>", "a photo of a red car parked"]
    for pool in rp.builtin_pools().values():
        texts += [pool["instruction"], *(x for pair in pool["pairs"] for x in pair)]
    return save_tiny_llm(str(tmp_path_factory.mktemp("llm")), texts)


def read_outputs(folder, k):
    return [open(os.path.join(folder, f"rewrite_{i + 1}.txt"), encoding="utf-8").read() for i in range(k)]


def test_parse_answer_cases():
    ex = [("a dog", "a brown dog on sand")]
    assert rp.parse_answer(" a red car\nnext => x", False, "car", ex) == ("a red car", None)
    assert rp.parse_answer(" a red car => a blue", False, "car", ex) == ("a red car", None)
    assert rp.parse_answer(" a red car", True, "car", ex) == ("a red car", None)
    assert rp.parse_answer(" a red car going on and on", False, "car", ex) == ("car", "overlong")
    assert rp.parse_answer("  \n", True, "car", ex) == ("car", "empty")
    assert rp.parse_answer(" A Brown Dog on sand\n", True, "car", ex) == ("car", "echo")
    assert rp.parse_answer("Rewrite this. a cat\n", True, "car", ex, "Rewrite this.") == ("a cat", None)


def test_pools_by_name_and_file(tmp_path):
    assert set(rp.builtin_pools()) == {"descriptive", "concise", "scene", "object"}
    assert all(len(p["pairs"]) >= 3 for p in rp.builtin_pools().values())
    text = tmp_path / "pairs.txt"
    text.write_text("a cat => a grey cat on a mat\n\nsky => a blue sky\n")
    assert rp.load_pool(str(text))["pairs"] == [["a cat", "a grey cat on a mat"], ["sky", "a blue sky"]]
    (tmp_path / "bad.txt").write_text("no arrow here\n")
    with pytest.raises(ValueError, match="line 1"):
        rp.load_pool(str(tmp_path / "bad.txt"))
    with pytest.raises(FileNotFoundError, match="built-in pool"):
        rp.load_pool("nonexistent_style")
    prompt = rp.build_prompt("Rewrite.", [("a", "b")], "a dog")
    assert prompt == "Rewrite.\n\na => b\n\na dog =>"


def test_builtin_world_real_kill_resumes_to_identical_files(tiny_llm, tmp_path):
    args = dict(SMALL, rows=48, pools=["descriptive", "object"], seed=3)
    config = load_config("tiny.py")
    full = str(tmp_path / "full")
    summary = rewrite.run(config, tiny_llm, full, progress_bar=False, **args)
    assert summary["rows"] == 48 and summary["rewrites"] == 96
    assert 0 <= summary["replaced_fraction"] <= 1
    outputs = read_outputs(full, 2)
    assert all(len(o.splitlines()) == 48 for o in outputs)
    assert outputs[0] != outputs[1]

    killed = str(tmp_path / "killed")
    cmd = [sys.executable, "-m", "clipjax.tools.rewrite", f"--config={REPO}/configs/tiny.py", f"--llm={tiny_llm}",
           f"--output={killed}", "--pools=descriptive,object", "--seed=3", "--rows=48", "--progress_bar=false",
           *(f"--{k}={v}" for k, v in SMALL.items())]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = os.path.join(killed, "chunks")
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(chunks) and any(f.endswith(".json") for f in os.listdir(chunks)):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = [f for f in os.listdir(chunks) if f.endswith(".json")]
    assert 0 < len(done) < 6, f"the kill should land mid-run, found {len(done)} of 6 chunks"
    assert not os.path.exists(os.path.join(killed, "rewrite_1.txt"))
    resumed = rewrite.run(config, tiny_llm, killed, progress_bar=False, **args)
    assert read_outputs(killed, 2) == outputs
    assert resumed == summary

    with pytest.raises(chunked_files.StaleOutput, match="seed"):
        rewrite.run(config, tiny_llm, full, progress_bar=False, **(args | {"seed": 4}))


def write_csv(tmp_path, captions: list[bytes]):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img.png")
    index = tmp_path / "index.csv"
    index.write_bytes(b"path,caption\n" + b"".join(b"img.png," + c + b"\n" for c in captions))
    config = load_config("tiny.py")
    config.data.name, config.data.path, config.data.csv_header = "csv", str(index), True
    config.data.image_root = str(tmp_path)
    return config


def test_csv_output_is_read_by_the_pipeline(tiny_llm, tmp_path):
    config = write_csv(tmp_path, [b"a photo of a red car parked", b"two dotted blue diamonds", b"a red car"])
    out = str(tmp_path / "out")
    summary = rewrite.run(config, tiny_llm, out, ["concise"], temperature=0.0, progress_bar=False, **SMALL)
    config.data.rewrite_files = os.path.join(out, "rewrite_1.txt")
    source = pipeline.make_source(config.data)
    lines = read_outputs(out, 1)[0].splitlines()
    assert [source[i]["captions"]["rewrite_1"].decode() for i in range(3)] == lines
    assert summary["replaced"]["empty"] + summary["replaced"]["echo"] + summary["replaced"]["overlong"] == \
        round(summary["replaced_fraction"] * 3)


def test_bad_input(tiny_llm, tmp_path):
    config = write_csv(tmp_path, [b"a red car", b"caf\xe9 table"])
    with pytest.raises(FileNotFoundError, match="--llm"):
        rewrite.run(config, str(tmp_path / "missing"), str(tmp_path / "o1"), ["concise"], **SMALL)
    with pytest.raises(ValueError, match="row 1 is not UTF-8"):
        rewrite.run(config, tiny_llm, str(tmp_path / "o2"), ["concise"], progress_bar=False, **SMALL)
    long = write_csv(tmp_path, [b"a red car", b" ".join([b"car"] * 200)])
    with pytest.raises(ValueError, match="row 1: the caption alone"):
        rewrite.run(long, tiny_llm, str(tmp_path / "o3"), ["concise"], progress_bar=False, **SMALL)
    (tmp_path / "short.txt").write_text("only one line\n")
    long.data.rewrite_files = str(tmp_path / "short.txt")
    with pytest.raises(ValueError, match="short.txt.*1 lines.*2 rows"):
        rewrite.run(long, tiny_llm, str(tmp_path / "o4"), ["concise"], **SMALL)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    with pytest.raises(chunked_files.StaleOutput, match="no header.json"):
        rewrite.run(write_csv(tmp_path, [b"a red car"]), tiny_llm, str(other), ["concise"], **SMALL)


def test_two_devices_write_the_same_files(tiny_llm, tmp_path):
    """Batch rows split over 2 (host-platform) devices of one process: the same files as on one device."""
    config, one, two = load_config("tiny.py"), str(tmp_path / "one"), str(tmp_path / "two")
    rewrite.run(config, tiny_llm, one, ["scene"], rows=16, progress_bar=False, **SMALL)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-m", "clipjax.tools.rewrite", f"--config={REPO}/configs/tiny.py",
                    f"--llm={tiny_llm}", f"--output={two}", "--pools=scene", "--rows=16", "--progress_bar=false",
                    *(f"--{k}={v}" for k, v in SMALL.items())], cwd=REPO, env=env, check=True, capture_output=True)
    assert json.load(open(os.path.join(two, "header.json"))) == json.load(open(os.path.join(one, "header.json")))
    assert read_outputs(two, 1) == read_outputs(one, 1)
