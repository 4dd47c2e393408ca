"""The evaluation suite: `config.evals.suite` maps a name to an entry, each run at its own cadence.

    from clipjax.evaluate import suite
    c.evals.suite.imagenet = suite.zeroshot("imagenet2012", data_dir="/data/tfds")
    c.evals.suite.coco = suite.retrieval("coco_captions", data_dir="/data/tfds")
    c.evals.suite.builtin = suite.builtin()          # the built-in synthetic eval, if wanted besides

`config.evals.tasks` adds entries with default settings by TFDS name (`--config.evals.tasks=imagenet2012,coco_captions
--config.evals.data_dir=/data/tfds`). With neither suite nor tasks (the default) the built-in evaluation runs alone
(`config.evals.num_examples`, `class_sets`, `captions_per_image`). Entry fields (all overridable from the command line,
`--config.evals.suite.imagenet.num_examples=10000`):
  kind          'zeroshot' | 'retrieval' | 'builtin'
  every_steps   -1: config.evals.every_steps; 0: only at the end of training; N: every N steps (and at the end)
  batch_size    -1: config.evals.batch_size
  dataset, data_dir, split ('' = the dataset's usual evaluation split), num_examples (-1 = all), image_key
  zeroshot:     label_key, classnames ('' = per dataset: OpenAI's for ImageNet, else the TFDS label names; or a
                shipped key or a file), templates ('' = per dataset; a shipped set name or a file), per_class
                (write a per-class top-1 table: WORKDIR/per_class_NAME_STEP.json and the --mode eval report)
  retrieval:    caption_key ('captions/text'), captions_per_image (5: the first five, as in the 5k/25k COCO test;
                -1 = all)
Metrics are 'NAME/top1', 'NAME/top5', 'NAME/mean_per_class_top1' (zeroshot) and 'NAME/{i2t,t2i}_r{1,5,10}'
(retrieval); the entry named 'builtin' keeps the built-in names ('zeroshot_top1', 'retrieval_t2i_r5', ...).
"""
from __future__ import annotations

import json
import logging
import os
import re
import time

import jax
import ml_collections
import numpy as np

from clipjax.evaluate import classnames as classnames_lib
from clipjax.evaluate import retrieval as retrieval_lib
from clipjax.evaluate import text_input
from clipjax.evaluate import zeroshot as zeroshot_lib
from clipjax.evaluate.embed import Embedder

KINDS = ("zeroshot", "retrieval", "builtin")


# ---------------------------------------------------------------------------------------------- entries


def zeroshot(dataset: str, *, data_dir: str = "", split: str = "", every_steps: int = -1, num_examples: int = -1,
             batch_size: int = -1, image_key: str = "image", label_key: str = "label", classnames: str = "",
             templates: str = "", per_class: bool = False) -> ml_collections.ConfigDict:
    """A zero-shot classification entry on a prepared TFDS dataset (see the module docstring)."""
    return ml_collections.ConfigDict(dict(
        kind="zeroshot", dataset=dataset, data_dir=data_dir, split=split, every_steps=every_steps,
        num_examples=num_examples, batch_size=batch_size, image_key=image_key, label_key=label_key,
        classnames=classnames, templates=templates, per_class=per_class))


def retrieval(dataset: str = "coco_captions", *, data_dir: str = "", split: str = "test", every_steps: int = -1,
              num_examples: int = -1, batch_size: int = -1, image_key: str = "image",
              caption_key: str = "captions/text", captions_per_image: int = 5) -> ml_collections.ConfigDict:
    """An image<->text retrieval entry on a prepared TFDS caption dataset (several captions per image)."""
    return ml_collections.ConfigDict(dict(
        kind="retrieval", dataset=dataset, data_dir=data_dir, split=split, every_steps=every_steps,
        num_examples=num_examples, batch_size=batch_size, image_key=image_key, caption_key=caption_key,
        captions_per_image=captions_per_image))


def builtin(every_steps: int = -1, batch_size: int = -1) -> ml_collections.ConfigDict:
    """The built-in synthetic evaluation (settings in config.evals.num_examples / class_sets / captions_per_image)."""
    return ml_collections.ConfigDict(dict(kind="builtin", every_steps=every_steps, batch_size=batch_size))


_FIELDS = {"zeroshot": set(zeroshot("x")), "retrieval": set(retrieval()), "builtin": set(builtin())}


RETRIEVAL_DATASETS = ("coco_captions",)


def entries(evals: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
    """name -> entry (copies): `evals.suite`, then one default entry per TFDS name in `evals.tasks` (retrieval for
    caption datasets, else zero-shot; named after the dataset), with `evals.data_dir` filled in where an entry has
    no data_dir. Neither suite nor tasks: the built-in evaluation alone."""
    out = {name: ml_collections.ConfigDict(e.to_dict()) if isinstance(e, ml_collections.ConfigDict) else e
           for name, e in (evals.get("suite") or {}).items()}
    for dataset in (d.strip() for d in evals.get("tasks", "").split(",")):
        name = re.sub(r"[/:]", "_", dataset)
        if dataset and name not in out:
            is_captions = dataset.split("/")[0] in RETRIEVAL_DATASETS or "caption" in dataset
            out[name] = retrieval(dataset) if is_captions else zeroshot(dataset)
    for e in out.values():
        if isinstance(e, ml_collections.ConfigDict) and e.get("kind") in KINDS[:2] and not e.get("data_dir", "x"):
            e.data_dir = evals.get("data_dir", "")
    return out or {"builtin": builtin()}


def validate(config: ml_collections.ConfigDict) -> None:
    """Fail at start-up on a malformed entry, naming config.evals.suite.NAME.KEY."""
    for name, e in entries(config.evals).items():
        where = f"config.evals.suite.{name}"
        if not isinstance(e, (ml_collections.ConfigDict, dict)) or e.get("kind") not in KINDS:
            raise ValueError(f"{where}: expected an entry made by clipjax.evaluate.suite.zeroshot / retrieval / "
                             f"builtin (kind one of {KINDS}), got {e!r}")
        fields = set(e.keys())
        if fields != _FIELDS[e.kind]:
            raise KeyError(f"{where}: missing {sorted(_FIELDS[e.kind] - fields)}, unknown "
                           f"{sorted(fields - _FIELDS[e.kind])} (build entries with clipjax.evaluate.suite)")
        if e.kind != "builtin" and not e.dataset:
            raise ValueError(f"{where}.dataset: expected a TFDS dataset name")
        if "/" in name or not name:
            raise ValueError(f"{where}: entry names must be non-empty and contain no '/'")


def _cadence(entry, evals) -> int:
    return evals.every_steps if entry.every_steps < 0 else entry.every_steps


# ---------------------------------------------------------------------------------------------- tasks


class ZeroShotTask:
    """Top-1/top-5 (and mean per-class top-1) zero-shot accuracy on a TFDS classification split."""

    def __init__(self, name: str, entry, config, embedder: Embedder):
        info = classnames_lib.dataset_info(entry.dataset)
        self.name, self.entry, self.embed = name, entry, embedder
        self.where = f"config.evals.suite.{name}"
        from clipjax.evaluate.datasets import TfdsEvalSet
        self.data = TfdsEvalSet(entry.dataset, data_dir=entry.data_dir, split=entry.split or info.split,
                                image_key=entry.image_key, image_size=config.model.image.image_size,
                                num_examples=entry.num_examples, where=self.where)
        self.classnames = classnames_lib.resolve_classnames(entry.classnames or info.classnames,
                                                            self.data.class_names(entry.label_key))
        self.templates = classnames_lib.templates(entry.templates or info.templates)
        self.present_only = info.present_classes_only
        texts = [t.format(c) for c in self.classnames for t in self.templates]
        self.tokens = embedder.tokenize(texts, context_length=embedder.text_length)  # tokenised once
        self.image_shape = (config.model.image.image_size,) * 2 + (3,)

    def __call__(self, params) -> tuple[dict[str, float], dict | None]:
        img, labels = self.embed.stream_images(params, len(self.data), self.data.fetch_labelled(self.entry.label_key),
                                               self.image_shape)
        ok = labels >= 0
        if (labels >= len(self.classnames)).any():
            raise ValueError(f"{self.where}: labels up to {labels.max()} but {len(self.classnames)} class names")
        img, labels = img[ok], labels[ok]
        classes = np.unique(labels) if self.present_only else np.arange(len(self.classnames))
        t = len(self.templates)
        rows = (classes[:, None] * t + np.arange(t)[None]).reshape(-1)
        class_emb = zeroshot_lib.template_mean(self.embed.tokens(params, self.tokens[rows]), len(classes))
        local = np.searchsorted(classes, labels)
        ranks = zeroshot_lib.label_ranks(img, class_emb, local)
        acc, count = zeroshot_lib.per_class_accuracy(ranks, local, len(classes))
        metrics = {"top1": float((ranks < 1).mean()), "top5": float((ranks < 5).mean()),
                   "mean_per_class_top1": float(np.nanmean(acc)), "num_examples": int(len(labels)),
                   "num_classes": int(len(classes))}
        if (~ok).any():
            metrics["skipped"] = int((~ok).sum())
        table = None
        if self.entry.per_class:
            table = {self.classnames[c]: {"top1": None if np.isnan(a) else float(a), "count": int(n)}
                     for c, a, n in zip(classes, acc, count)}
        return metrics, table


class RetrievalTask:
    """Recall@1/5/10 image->text and text->image on a TFDS caption split (captions are read once and cached)."""

    def __init__(self, name: str, entry, config, embedder: Embedder):
        self.name, self.entry, self.embed = name, entry, embedder
        self.where = f"config.evals.suite.{name}"
        from clipjax.evaluate.datasets import TfdsEvalSet
        self.data = TfdsEvalSet(entry.dataset, data_dir=entry.data_dir, split=entry.split,
                                image_key=entry.image_key, image_size=config.model.image.image_size,
                                num_examples=entry.num_examples, where=self.where)
        self.image_shape = (config.model.image.image_size,) * 2 + (3,)
        self._captions = None

    def _load_captions(self):
        if self._captions is None:
            caps = self.data.texts(self.entry.caption_key, self.entry.captions_per_image)
            owner = np.array([i for i, c in enumerate(caps) for _ in c], np.int64)
            flat = [t for c in caps for t in c]
            self._captions = owner, self.embed.tokenize(flat, context_length=self.embed.text_length)
        return self._captions

    def __call__(self, params) -> tuple[dict[str, float], None]:
        owner, tokens = self._load_captions()

        def fetch(ids):
            images, ok = self.data.decode(self.data.records(ids))
            return images, np.where(ok, ids, -1).astype(np.int32)

        img, ids = self.embed.stream_images(params, len(self.data), fetch, self.image_shape)
        ok = ids >= 0
        keep_text = ok[owner]
        new_index = np.cumsum(ok) - 1  # image rows renumbered after dropping undecodable ones
        txt = self.embed.tokens(params, tokens[keep_text])
        metrics = retrieval_lib.recall_at_k(img[ok], txt, new_index[owner[keep_text]])
        metrics.update(num_images=int(ok.sum()), num_texts=int(keep_text.sum()))
        if (~ok).any():
            metrics["skipped"] = int((~ok).sum())
        return metrics, None


class BuiltinTask:
    def __init__(self, name, entry, config, model, mesh, param_shardings):
        from clipjax.evaluate.builtin import BuiltinEvaluator
        self.evaluator = BuiltinEvaluator(config, model, mesh, param_shardings, entry.batch_size)

    def __call__(self, params):
        return self.evaluator(params), None


# ---------------------------------------------------------------------------------------------- the suite


class SuiteEvaluator:
    """Runs the configured evaluations. `due(step, total)` tells whether any runs at `step`; `__call__(params,
    step, total)` runs those due (all when step is None) and returns their metrics (names as in the module
    docstring); per-class tables of the last call are in `tables` and, with `report_dir`, written to
    REPORT_DIR/per_class_NAME_STEP.json by process 0."""

    def __init__(self, config: ml_collections.ConfigDict, model, mesh, param_shardings, report_dir: str | None = None):
        validate(config)
        self.config, self.report_dir = config, report_dir
        self.entries = entries(config.evals)
        tokenizer = text_input.text_encoder(config, mesh, config.evals.batch_size)
        embedders: dict[int, Embedder] = {}
        self.tasks = {}
        for name, e in self.entries.items():
            if e.kind == "builtin":
                self.tasks[name] = BuiltinTask(name, e, config, model, mesh, param_shardings)
                continue
            bs = e.batch_size if e.batch_size > 0 else config.evals.batch_size
            if bs not in embedders:
                embedders[bs] = Embedder(model, mesh, param_shardings, bs, config.data.text_length, tokenizer)
            task_cls = ZeroShotTask if e.kind == "zeroshot" else RetrievalTask
            self.tasks[name] = task_cls(name, e, config, embedders[bs])
        self.tables: dict[str, dict] = {}

    def _runs(self, name: str, step: int | None, total: int | None) -> bool:
        if step is None or step == total:
            return True
        every = _cadence(self.entries[name], self.config.evals)
        return every > 0 and step % every == 0

    def due(self, step: int, total: int) -> bool:
        return any(self._runs(name, step, total) for name in self.tasks)

    def __call__(self, params, step: int | None = None, total: int | None = None) -> dict[str, float]:
        metrics, self.tables = {}, {}
        for name, task in self.tasks.items():
            if not self._runs(name, step, total):
                continue
            t0 = time.perf_counter()
            m, table = task(params)
            logging.info("eval %s: %.1f s", name, time.perf_counter() - t0)
            prefix = "" if name == "builtin" and self.entries[name].kind == "builtin" else f"{name}/"
            metrics.update({prefix + k: v for k, v in m.items()})
            if table is not None:
                self.tables[name] = table
        if self.tables and self.report_dir and step is not None and jax.process_index() == 0:
            for name, table in self.tables.items():
                with open(os.path.join(self.report_dir, f"per_class_{name}_{step}.json"), "w") as f:
                    json.dump(table, f, indent=1)
        return metrics
