"""Report of a folder of runs (a `clipjax.tools.sweep` root, or any folder of workdirs): DIR/report.md with a table
of final metrics per configuration (mean +- sample standard deviation over seeds, n) and PNG plots (a final metric
against a swept key, one line per value of another; training curves averaged over seeds).

python -m clipjax.tools.report /tmp/sweep [--metric eval/zeroshot_top1 --x optim.lr --group model.embed_dim]
    [--out docs/studies/NAME]   (report.md and PNGs there instead of in DIR)
    [--where data.image_size=64] (only the runs with these config values; repeatable)
    [--baseline 64]  (per metric, each row's difference to the row with x = 64 and the same group value, in
                      standard errors of the difference of the two means: sqrt(s1^2/n1 + s0^2/n0))

Runs are grouped by the sweep's list and grid keys (sweep.json), or else by the config keys whose values differ
between runs (seed aside). Failed runs (sweep_status.json 'failed', or a crash before any metric) and unfinished
ones (last step below the run length that training resolves) are listed apart and never averaged in.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import textwrap

import ml_collections
from absl import app, flags

from clipjax import config as config_lib, pytree
from clipjax.tools import sweep

FLAGS = flags.FLAGS
IGNORED_KEYS = {"seed"}


def planned_steps(raw_config: dict) -> float:
    """The run length of a saved config.json (total_epochs, when set, decides as in training; inf if unknown)."""
    if raw_config.get("total_epochs", -1) > 0:
        return config_lib.resolve_total_steps(ml_collections.ConfigDict(raw_config))
    return raw_config.get("total_steps", math.inf)


def read_run(run_dir: str) -> dict | None:
    """{'name', 'config' (flat, dotted keys), 'rows' (metrics.jsonl), 'state': done|failed|unfinished}, or None
    for a folder that is not a run."""
    status_path, config_path = os.path.join(run_dir, "sweep_status.json"), os.path.join(run_dir, "config.json")
    if not (os.path.exists(status_path) or os.path.exists(config_path)):
        return None
    raw = json.load(open(config_path)) if os.path.exists(config_path) else {}
    config = {k.replace("/", "."): v for k, v in pytree.flatten(raw).items()}
    rows = []
    if os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
        for line in open(os.path.join(run_dir, "metrics.jsonl")):
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a kill
    swept = json.load(open(status_path))["status"] if os.path.exists(status_path) else None
    last = max((r["step"] for r in rows), default=0)
    if swept == "failed" or (swept != "running" and not rows and swept is not None):
        state = "failed"
    elif last >= planned_steps(raw) and swept in (None, "done"):
        state = "done"
    else:
        state = "unfinished"
    return {"name": os.path.basename(run_dir), "config": config, "rows": rows, "state": state}


def parse_where(items: list[str]) -> dict[str, str]:
    """['KEY=VALUE', ...] -> {KEY: VALUE} (text: configs of other runs decide the types); a malformed item raises
    ValueError naming it."""
    return dict(sweep.split_assignment(item, "where") for item in items)


def matches(config: dict, where: dict[str, str]) -> bool:
    """Whether the flat `config` has each KEY=VALUE of `where` (numbers compared by value, others by text)."""
    return all(key in config and same_value(config[key], want) for key, want in where.items())


def final_metrics(rows: list[dict]) -> dict[str, float]:
    """The last value of every numeric metric."""
    out = {}
    for row in rows:
        out.update({k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))})
    return out


def group_keys(root: str, runs: list[dict]) -> list[str]:
    manifest = os.path.join(root, "sweep.json")
    if os.path.exists(manifest):
        sweep = json.load(open(manifest))
        keys = [k for point in sweep.get("list", []) for k in point] + list(sweep["grid"])
        return [k for k in dict.fromkeys(keys) if k not in IGNORED_KEYS]
    keys = sorted({k for r in runs for k in r["config"]})
    return [k for k in keys if k not in IGNORED_KEYS and len({json.dumps(r["config"].get(k)) for r in runs}) > 1]


def mean_spread(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def sort_key(value) -> tuple:
    """Numbers by value, before other values by their text."""
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def summarise(runs: list[dict], keys: list[str], metrics: list[str]) -> list[dict]:
    """One row per configuration (values of `keys`) of the finished runs: n, seeds and mean/spread per metric."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(tuple(json.dumps(r["config"].get(k)) for k in keys), []).append(r)
    table = []
    for values, members in sorted(groups.items(), key=lambda item: [sort_key(json.loads(v)) for v in item[0]]):
        finals = [final_metrics(r["rows"]) for r in members]
        row = {"config": dict(zip(keys, (json.loads(v) for v in values))), "n": len(members),
               "seeds": sorted(r["config"].get("seed") for r in members)}
        for m in metrics:
            present = [f[m] for f in finals if m in f and math.isfinite(f[m])]
            row[m] = mean_spread(present) if present else None
        table.append(row)
    return table


def default_metrics(runs: list[dict]) -> list[str]:
    names = sorted({k for r in runs for k in final_metrics(r["rows"])})
    chosen = [k for k in names if k.startswith("eval/") and (k.endswith("top1") or k.endswith("_r1"))]
    return chosen + [k for k in ("train/loss",) if k in names]


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (imported on first use: report tables need no matplotlib)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_final(table: list[dict], metric: str, x: str, group: str | None, path: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    lines: dict = {}
    for row in table:
        if row[metric] is not None:
            lines.setdefault(row["config"].get(group) if group else None, []).append((row["config"][x], *row[metric]))
    for label, pts in sorted(lines.items(), key=lambda kv: sort_key(kv[0])):
        pts.sort(key=lambda p: (isinstance(p[0], str), p[0]))
        xs = [p[0] for p in pts] if all(isinstance(p[0], (int, float)) for p in pts) else [str(p[0]) for p in pts]
        ax.errorbar(xs, [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3,
                    label=f"{group}={label}" if group else None)
    xs_all = sorted({row["config"][x] for row in table if isinstance(row["config"].get(x), (int, float))})
    if xs_all and len(xs_all) == len({row["config"].get(x) for row in table}):  # ticks at the swept values only
        if xs_all[0] > 0 and xs_all[-1] / xs_all[0] >= 10:
            ax.set_xscale("log")
        ax.set_xticks(xs_all, [f"{v:g}" for v in xs_all])
        ax.minorticks_off()
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    if group:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(runs: list[dict], keys: list[str], metric: str, path: str) -> None:
    """`metric` against step, averaged over the seeds of each configuration."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    groups: dict[str, list[dict]] = {}
    for r in runs:  # labels name each key by its last part ('image_size=48'), wrapped under the axes
        label = ", ".join(f"{k.rsplit('.', 1)[-1]}={r['config'].get(k)}" for k in keys) or "all"
        groups.setdefault(textwrap.fill(label, 100), []).append(r)
    for label, members in sorted(groups.items()):
        by_step: dict[int, list[float]] = {}
        for r in members:
            for row in r["rows"]:
                if metric in row and isinstance(row[metric], (int, float)):
                    by_step.setdefault(row["step"], []).append(row[metric])
        steps = sorted(by_step)
        ax.plot(steps, [statistics.fmean(by_step[s]) for s in steps], label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(0, -0.2))
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def same_value(have, want: str) -> bool:
    """Config value `have` equals the command-line text `want` (numbers by value, others by text)."""
    try:
        return float(have) == float(want)
    except (TypeError, ValueError):
        return str(have) == want


def versus_baseline(table: list[dict], metric: str, x: str, group: str | None, baseline: str) -> list[str]:
    """Per row: mean difference to the row of the same `group` value whose `x` is `baseline`, and that
    difference in standard errors, e.g. '+0.0213 (2.4 s.e.)'; '-' for the baseline rows and rows without one."""
    out = []
    for row in table:
        base = next((r for r in table if same_value(r["config"].get(x), baseline)
                     and (not group or r["config"].get(group) == row["config"].get(group))), None)
        if base is None or base is row or row[metric] is None or base[metric] is None:
            out.append("-")
            continue
        (m, sd), (m0, sd0) = row[metric], base[metric]
        diff, se = m - m0, math.sqrt(sd * sd / row["n"] + sd0 * sd0 / base["n"])
        out.append(f"{diff:+.4f}" + (f" ({diff / se:.1f} s.e.)" if se > 0 else ""))
    return out


def fmt(value) -> str:
    return "-" if value is None else f"{value[0]:.4f} ± {value[1]:.4f}"


def write_report(root: str, metrics: list[str] | None = None, x: str | None = None, group: str | None = None,
                 curve: str = "train/loss", out: str | None = None, where: dict[str, str] | None = None,
                 baseline: str | None = None) -> str:
    """Write ROOT/report.md and its PNGs (of the runs whose config has `where`'s values); returns the markdown."""
    runs = [r for name in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, name))
            and (r := read_run(os.path.join(root, name)))]
    where = where or {}
    unknown = sorted({k for k in where for r in runs if r["config"] and k not in r["config"]})
    if unknown:
        raise ValueError(f"--where {unknown}: not config keys of the runs in {root}")
    runs = [r for r in runs if matches(r["config"], where)]
    done = [r for r in runs if r["state"] == "done"]
    keys = [k for k in group_keys(root, runs) if k not in where]
    metrics = metrics or default_metrics(done)
    table = summarise(done, keys, metrics)
    x = x or (keys[0] if keys else None)
    group = group if group is not None else next((k for k in keys if k != x), None)
    if baseline is not None and not x:
        raise ValueError("--baseline needs an x key (--x, or a sweep with a grid or list key)")
    out = out or root
    os.makedirs(out, exist_ok=True)
    selection = " (runs with " + ", ".join(f"{k}={v}" for k, v in where.items()) + ")" if where else ""
    lines = [f"# Report: {os.path.basename(os.path.abspath(root))}{selection}", "",
             f"{len(done)} finished runs, {sum(r['state'] == 'failed' for r in runs)} failed, "
             f"{sum(r['state'] == 'unfinished' for r in runs)} unfinished. Mean ± sample standard deviation over "
             f"seeds of each run's last value.", ""]
    deltas = [versus_baseline(table, m, x, group, baseline) for m in metrics] if baseline is not None else []
    header = [*keys, "n", "seeds", *metrics, *(f"{m} - ({x}={baseline})" for m in metrics[:len(deltas)])]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, row in enumerate(table):
        lines.append("| " + " | ".join([*(str(row["config"][k]) for k in keys), str(row["n"]),
                                        ",".join(map(str, row["seeds"])), *(fmt(row[m]) for m in metrics),
                                        *(d[i] for d in deltas)]) + " |")
    if x and done:
        for m in metrics:
            png = f"{m.replace('/', '_')}_vs_{x}.png"
            plot_final(table, m, x, group, os.path.join(out, png))
            lines += ["", f"![{m} vs {x}]({png})"]
    if done:
        plot_curves(done, keys, curve, os.path.join(out, "curves.png"))
        lines += ["", f"Training curves ({curve}, mean over seeds):", "", "![curves](curves.png)"]
    for state in ("failed", "unfinished"):
        names = [r["name"] for r in runs if r["state"] == state]
        if names:
            lines += ["", f"**{state.capitalize()} runs (not averaged):** " + ", ".join(names)]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    return text


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("usage: python -m clipjax.tools.report DIR [--metric M --x KEY --group KEY]")
    print(write_report(argv[1], FLAGS.metric or None, FLAGS.x, FLAGS.group, FLAGS.curve, FLAGS.out,
                       parse_where(FLAGS.where), FLAGS.baseline))


if __name__ == "__main__":
    flags.DEFINE_multi_string("metric", [], "Final metrics in the table and plots (default: eval top-1 and R@1, "
                              "train/loss).")
    flags.DEFINE_string("x", None, "Config key on the x axis of the final-metric plots (default: first grid key).")
    flags.DEFINE_string("group", None, "Config key with one line per value (default: the next grid key; '' for "
                        "none).")
    flags.DEFINE_string("curve", "train/loss", "Metric of the training-curve plot.")
    flags.DEFINE_string("out", None, "Folder for report.md and the PNGs (default: DIR).")
    flags.DEFINE_string("baseline", None, "An x value: add each row's difference to the row with this x and the "
                        "same group value (mean difference and standard errors) for every metric.")
    flags.DEFINE_multi_string("where", [], "KEY=VALUE: report only the runs with this config value (repeatable).")
    app.run(main)
