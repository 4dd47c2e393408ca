"""Evaluation on the built-in dataset's held-out split: zero-shot classification per class set and retrieval."""
import ml_collections
import numpy as np

from clipjax.data import pipeline, synthetic
from clipjax.evaluate import retrieval, text_input, zeroshot
from clipjax.evaluate.embed import Embedder


class BuiltinEvaluator:
    """Metrics 'zeroshot_{set}_top1/top5', their mean 'zeroshot_top1/top5', 'retrieval_{i2t,t2i}_r{1,5,10}', and
    in the graded world 'zeroshot_{set}_{size}_top1' over the held-out images of each object size class."""

    def __init__(self, config: ml_collections.ConfigDict, model, mesh, param_shardings, batch_size: int = -1):
        """batch_size: encoder batch (-1: config.evals.batch_size)."""
        self.data = pipeline.load_eval_split(config)
        self.class_sets = {name: synthetic.CLASS_SETS[name] for name in config.evals.class_sets.split(",") if name}
        world = synthetic.WORLD_SPECS[config.data.world]
        self.size_names = world.sizes if world.per_size_eval else ()
        batch_size = batch_size if batch_size > 0 else config.evals.batch_size
        self.embed = Embedder(model, mesh, param_shardings, batch_size, config.data.text_length,
                              text_input.text_encoder(config, mesh, batch_size))

    def __call__(self, params) -> dict[str, float]:
        img = self.embed.images(params, self.data["images"])
        metrics = {}
        for name, cs in self.class_sets.items():
            classes = zeroshot.class_embeddings(lambda t: self.embed.texts(params, t), cs.names, cs.templates)
            labels = self.data["labels"][cs.label_key]
            for k, v in zeroshot.topk_accuracy(img, classes, labels).items():
                metrics[f"zeroshot_{name}_{k}"] = v
            for s, size in enumerate(self.size_names):
                of_size = self.data["labels"]["size"] == s
                metrics[f"zeroshot_{name}_{size}_top1"] = zeroshot.topk_accuracy(
                    img[of_size], classes, labels[of_size], ks=(1,))["top1"]
        for k in ("top1", "top5"):
            metrics[f"zeroshot_{k}"] = float(np.mean([metrics[f"zeroshot_{n}_{k}"] for n in self.class_sets]))
        captions = [c for caps in self.data["captions"] for c in caps]
        owner = np.array([i for i, caps in enumerate(self.data["captions"]) for _ in caps])
        for k, v in retrieval.recall_at_k(img, self.embed.texts(params, captions), owner).items():
            metrics[f"retrieval_{k}"] = v
        return metrics

