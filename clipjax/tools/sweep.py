"""Run one base config over a grid of overrides x seeds, each run in its own workdir under --root.

python -m clipjax.tools.sweep --config configs/tiny.py --root /tmp/sweep --grid optim.lr=1e-3,3e-3 \
    --grid model.embed_dim=32,64 --seeds 0,1,2 [--set total_steps=300] [--parallel 2]
python -m clipjax.tools.sweep ... --list points.txt  # one point per line: 'KEY=VALUE KEY=VALUE' (x any --grid)
python -m clipjax.tools.sweep ... --emit slurm      # ROOT/jobs.txt (one command per run) + ROOT/sweep.sbatch

Runs are named by their overrides (`optim.lr=0.001+model.embed_dim=32+seed=0`). Every grid and --set key must be a
key of the base config: checked before anything runs. ROOT/sweep.json records the sweep; a root that holds a sweep
of another base config or other --set values is refused, and so is a run directory whose config.json disagrees with
the run's overrides. Finished runs (RUN/sweep_status.json 'done') are skipped; interrupted ones are started again
and `clipjax.main` resumes them from their last checkpoint. With --parallel N the machine's cores are split evenly
between N concurrent runs (CPU affinity). Each run's output goes to RUN/log.txt; failed runs are reported at the
end (exit status 1) and `clipjax.tools.report` lists them apart.
"""
from __future__ import annotations

import importlib.util
import itertools
import json
import os
import shlex
import subprocess
import sys
import time

import ml_collections
import tqdm
from absl import app, flags, logging

from clipjax import config as config_lib, pytree

FLAGS = flags.FLAGS
STATUS = "sweep_status.json"


def load_config(spec: str) -> ml_collections.ConfigDict:
    """configs/x.py[:arg] -> its get_config()."""
    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("sweep_base_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def parse_value(base: ml_collections.ConfigDict, key: str, text: str, flag: str):
    """`text` cast to the type of config key `key` (refused, naming the flag, when the key does not exist)."""
    try:
        current = config_lib.lookup(base, key)
    except (KeyError, AttributeError):
        raise ValueError(f"--{flag} {key}: not a key of the base config") from None
    if isinstance(current, ml_collections.ConfigDict):
        raise ValueError(f"--{flag} {key}: a group of keys, not a value")
    if isinstance(current, bool):
        return text.lower() in ("1", "true", "yes")
    if isinstance(current, (int, float)) and not isinstance(current, bool):
        number = float(text)
        return int(number) if isinstance(current, int) and number.is_integer() else number
    return text


def split_assignment(item: str, flag: str, multi: bool = False) -> tuple[str, str]:
    """'KEY=VALUE' -> (KEY, VALUE) as text; a malformed item raises ValueError naming it and its --flag."""
    key, sep, value = item.partition("=")
    if not sep or not key or not value:
        raise ValueError(f"--{flag} {item!r}: expected KEY=VALUE{',VALUE...' if multi else ''}")
    return key, value


def parse_assignments(base, items: list[str], flag: str, multi: bool) -> dict:
    """['k=v1,v2', ...] -> {k: [v1, v2]} (multi) or ['k=v'] -> {k: v}, typed as `base`'s values."""
    out = {}
    for item in items:
        key, values = split_assignment(item, flag, multi)
        parsed = [parse_value(base, key, v, flag) for v in values.split(",")] if multi else \
            parse_value(base, key, values, flag)
        out[key] = parsed
    return out


def read_list(base, path: str) -> list[dict]:
    """A --list file: one point per line, 'KEY=VALUE KEY=VALUE ...' ('#' starts a comment) -> [{key: value}]."""
    points = []
    for line in open(path):
        items = line.partition("#")[0].split()
        if items:
            points.append(parse_assignments(base, items, "list", multi=False))
    if not points:
        raise ValueError(f"--list {path}: no KEY=VALUE lines")
    return points


def plan(grid: dict[str, list], seeds: list[int], listed: list[dict] | None = None) -> dict[str, dict]:
    """Run name -> overrides: each --list point (or none) x the grid product x seeds, in that order."""
    runs = {}
    for point in listed or [{}]:
        for values in itertools.product(*grid.values()):
            for seed in seeds:
                overrides = {**point, **dict(zip(grid, values)), "seed": seed}
                runs["+".join(f"{k}={v}" for k, v in overrides.items())] = overrides
    return runs


def command(config_spec: str, workdir: str, overrides: dict, num_cpu_devices: int = 0) -> list[str]:
    cmd = [sys.executable, "-m", "clipjax.main", "--config", config_spec, "--workdir", workdir]
    cmd += [f"--config.{k}={v}" for k, v in overrides.items()]
    return cmd + ([f"--num_cpu_devices={num_cpu_devices}"] if num_cpu_devices else [])


def check_root(path: str, old: dict | None, manifest: dict) -> None:
    """Refuse a root whose manifest `old` (read from `path`) records another base config or fixed overrides."""
    if old is not None:
        for key in ("config", "set"):
            if old.get(key) != manifest[key]:
                raise ValueError(f"{path}: this root holds a sweep with {key} {old.get(key)!r}, not "
                                 f"{manifest[key]!r}; use another --root")


def check_run_dir(run_dir: str, expected: dict) -> None:
    """Refuse a run directory whose saved config.json disagrees with the run's resolved config."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return
    saved = pytree.flatten(json.load(open(path)))
    differ = sorted(k.replace("/", ".") for k, v in expected.items() if k in saved and saved[k] != v)
    if differ:
        keys = [k.replace(".", "/") for k in differ[:5]]
        raise ValueError(f"{run_dir} holds a run of another config: {', '.join(differ[:5])} differ (saved "
                         f"{[saved[k] for k in keys]}, this sweep {[expected[k] for k in keys]})")


def resolved(base: ml_collections.ConfigDict, overrides: dict) -> dict:
    c = base.copy_and_resolve_references()
    for key, value in overrides.items():
        config_lib.assign(c, key, value)
    return pytree.flatten(json.loads(c.to_json_best_effort()))


def status(run_dir: str) -> str:
    path = os.path.join(run_dir, STATUS)
    return json.load(open(path))["status"] if os.path.exists(path) else "pending"


def write_status(run_dir: str, state: str, returncode: int | None = None) -> None:
    with open(os.path.join(run_dir, STATUS + ".tmp"), "w") as f:
        json.dump({"status": state, "returncode": returncode, "time": time.time()}, f)
    os.replace(os.path.join(run_dir, STATUS + ".tmp"), os.path.join(run_dir, STATUS))


def core_slices(parallel: int) -> list[set[int]]:
    """This process's cores split into `parallel` slices (empty sets where affinity is unavailable)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not cores:
        return [set()] * parallel
    per = max(1, len(cores) // parallel)
    if parallel > 1 and per < 2:
        logging.warning("--parallel %d on %d cores leaves %d core per run: XLA:CPU on one core runs far slower than "
                        "at half speed, so fewer runs at once finish sooner", parallel, len(cores), per)
    return [set(cores[(i * per) % len(cores):(i * per) % len(cores) + per]) for i in range(parallel)]


def run_local(root: str, config_spec: str, runs: dict[str, dict], parallel: int) -> list[str]:
    """Run the unfinished runs, `parallel` at a time, slot i pinned to core slice i; returns the failed runs."""
    todo = [name for name in runs if status(os.path.join(root, name)) != "done"]
    bar = tqdm.tqdm(total=len(runs), initial=len(runs) - len(todo), unit="run", dynamic_ncols=True,
                    mininterval=1 if sys.stderr.isatty() else 60)  # a redirected log gets a line a minute
    slices, free, running, failed = core_slices(parallel), list(range(parallel)), {}, []
    while todo or running:
        while todo and free:
            name, slot = todo.pop(0), free.pop(0)
            run_dir = os.path.join(root, name)
            write_status(run_dir, "running")
            with open(os.path.join(run_dir, "log.txt"), "a") as log:
                proc = subprocess.Popen(command(config_spec, run_dir, runs[name]), stdout=log,
                                        stderr=subprocess.STDOUT, preexec_fn=_pin(slices[slot]))
            running[name] = (proc, slot)
        time.sleep(0.5)
        for name, (proc, slot) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            free.append(slot)
            write_status(os.path.join(root, name), "done" if proc.returncode == 0 else "failed", proc.returncode)
            if proc.returncode:
                failed.append(name)
            bar.update(1)
        bar.set_postfix(running=len(running), failed=len(failed), refresh=False)
    bar.close()
    return failed


def _pin(cores: set[int]):
    return (lambda: os.sched_setaffinity(0, cores)) if cores else None


def emit(root: str, config_spec: str, runs: dict[str, dict], kind: str) -> None:
    lines = [shlex.join(command(config_spec, os.path.join(root, name), o)) for name, o in runs.items()]
    with open(os.path.join(root, "jobs.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if kind == "slurm":
        with open(os.path.join(root, "sweep.sbatch"), "w") as f:
            f.write(f"#!/bin/bash\n#SBATCH --array=0-{len(lines) - 1}\n#SBATCH --output={root}/slurm-%A_%a.out\n"
                    f"cd {shlex.quote(os.getcwd())}\n"
                    f"eval \"$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" {shlex.quote(os.path.join(root, 'jobs.txt'))})\"\n")
    print(f"wrote {len(lines)} commands to {root}/jobs.txt" + (f" and {root}/sweep.sbatch" if kind == "slurm" else ""))


def main(argv):
    del argv
    try:
        prepare_and_run()
    except ValueError as e:  # bad grid keys, foreign roots and run directories: one line, nothing started
        sys.exit(f"error: {e}")


def prepare_and_run():
    base = load_config(FLAGS.config)
    fixed = parse_assignments(base, FLAGS.set, "set", multi=False)
    grid = parse_assignments(base, FLAGS.grid, "grid", multi=True)
    seeds = [int(s) for s in FLAGS.seeds]
    listed = read_list(base, FLAGS.list) if FLAGS.list else []
    runs = plan(grid, seeds, listed)
    runs = {name: {**fixed, **o} for name, o in runs.items()}
    manifest = {"config": FLAGS.config, "set": fixed, "grid": grid, "list": listed, "seeds": seeds, "runs": runs}
    os.makedirs(FLAGS.root, exist_ok=True)
    path = os.path.join(FLAGS.root, "sweep.json")
    old = json.load(open(path)) if os.path.exists(path) else None
    check_root(path, old, manifest)
    for name, overrides in runs.items():  # every run directory checked before any run starts
        check_run_dir(os.path.join(FLAGS.root, name), resolved(base, overrides))
    if old is not None:  # keep runs of earlier grids in the manifest
        manifest["runs"] = {**old["runs"], **runs}
    with open(path, "w") as f:
        json.dump(manifest, f, indent=2)
    for name in runs:
        os.makedirs(os.path.join(FLAGS.root, name), exist_ok=True)
    if FLAGS.emit:
        emit(FLAGS.root, FLAGS.config, runs, FLAGS.emit)
        return
    failed = run_local(FLAGS.root, FLAGS.config, runs, FLAGS.parallel)
    if failed:
        sys.exit(f"{len(failed)} of {len(runs)} runs failed (logs in RUN/log.txt): {', '.join(failed)}")


if __name__ == "__main__":
    flags.DEFINE_string("config", None, "Base config file (configs/x.py[:arg]).")
    flags.DEFINE_string("root", None, "Folder of the sweep: one workdir per run, sweep.json.")
    flags.DEFINE_multi_string("grid", [], "KEY=V1,V2,... swept (the product of all --grid flags).")
    flags.DEFINE_multi_string("set", [], "KEY=VALUE fixed for every run.")
    flags.DEFINE_string("list", None, "File of points, one per line: 'KEY=VALUE KEY=VALUE ...' (times the grid, if "
                        "any).")
    flags.DEFINE_list("seeds", ["0"], "Seeds (config.seed) per grid point.")
    flags.DEFINE_integer("parallel", 1, "Runs at once on this machine (its cores split evenly between them).")
    flags.DEFINE_enum("emit", None, ["slurm", "list"], "Write the commands (and a SLURM array script) instead of "
                      "running them.")
    flags.mark_flags_as_required(["config", "root"])
    app.run(main)
