"""Class names and prompt templates for zero-shot classification, per TFDS dataset.

Shipped data (clipjax/assets): `zeroshot_classnames.json` holds OpenAI's curated ImageNet-1k class names (1000,
in the order of TFDS' imagenet2012 labels) and EuroSAT's descriptive names; `zeroshot_templates.json` holds
OpenAI's prompt templates: the 80 ImageNet ones ('imagenet'), the 7-template subset ('imagenet_simple') and the
per-dataset sets of the CLIP paper ('cifar', 'food101', 'pets', ...). Templates use '{}' for the class name.
Other datasets take their names from the TFDS label feature, cleaned ('golden_retriever' -> 'golden retriever',
SUN397's '/b/bakery/shop' -> 'bakery shop').
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import re

ASSETS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """How to zero-shot-classify a TFDS dataset: default split, where class names come from ('tfds' = the label
    feature, otherwise a key of zeroshot_classnames.json), template set, and whether only the classes present in the
    evaluated split compete (ImageNet-A/-R label 200 of the 1000 ImageNet classes)."""
    split: str
    classnames: str
    templates: str
    present_classes_only: bool = False


DATASETS: dict[str, DatasetInfo] = {
    "imagenet2012": DatasetInfo("validation", "imagenet", "imagenet"),
    "imagenet_v2": DatasetInfo("test", "imagenet", "imagenet"),
    "imagenet_sketch": DatasetInfo("test", "imagenet", "imagenet"),
    "imagenet_a": DatasetInfo("test", "imagenet", "imagenet", present_classes_only=True),
    "imagenet_r": DatasetInfo("test", "imagenet", "imagenet", present_classes_only=True),
    "cifar10": DatasetInfo("test", "tfds", "cifar"),
    "cifar100": DatasetInfo("test", "tfds", "cifar"),
    "food101": DatasetInfo("validation", "tfds", "food101"),
    "oxford_iiit_pet": DatasetInfo("test", "tfds", "pets"),
    "oxford_flowers102": DatasetInfo("test", "tfds", "flowers"),
    "dtd": DatasetInfo("test", "tfds", "dtd"),
    "eurosat": DatasetInfo("train", "eurosat", "eurosat"),
    "stl10": DatasetInfo("test", "tfds", "stl10"),
    "caltech101": DatasetInfo("test", "tfds", "caltech101"),
    "cars196": DatasetInfo("test", "tfds", "cars"),
    "sun397": DatasetInfo("test", "tfds", "sun397"),
    "resisc45": DatasetInfo("train", "tfds", "resisc45"),
    "svhn_cropped": DatasetInfo("test", "tfds", "svhn"),
    "mnist": DatasetInfo("test", "tfds", "mnist"),
}


def dataset_info(name: str) -> DatasetInfo:
    """Registry entry for the TFDS name (a '/config' or ':version' suffix is ignored); unknown names get the test
    split, TFDS class names and the single template 'a photo of a {}.'."""
    base = re.split(r"[/:]", name, maxsplit=1)[0]
    return DATASETS.get(base, DatasetInfo("test", "tfds", "generic"))


@functools.cache
def _load(file: str) -> dict[str, list[str]]:
    with open(os.path.join(ASSETS, file)) as f:
        return json.load(f)


def shipped_classnames(key: str) -> list[str]:
    names = _load("zeroshot_classnames.json")
    if key not in names:
        raise KeyError(f"class names {key!r}: not shipped (have {sorted(names)})")
    return list(names[key])


def templates(key: str) -> list[str]:
    """A shipped template set by name, or the templates in a file (JSON list, or one template per line)."""
    if os.path.isfile(key):
        return _read_list(key)
    sets = _load("zeroshot_templates.json")
    if key not in sets:
        raise KeyError(f"templates {key!r}: expected one of {sorted(sets)} or a file")
    return list(sets[key])


def _read_list(path: str) -> list[str]:
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):
        return list(json.loads(text))
    return [line.strip() for line in text.splitlines() if line.strip()]


def clean(name: str) -> str:
    """A TFDS label name made readable: SUN397's '/b/bakery/shop' -> 'bakery shop', underscores -> spaces."""
    name = re.sub(r"^/[a-z]/", "", name.strip())
    return re.sub(r"[_/]+", " ", name).strip()


def resolve_classnames(spec: str, tfds_names: list[str] | None) -> list[str]:
    """`spec`: 'tfds' (the label feature's names, cleaned), a shipped key, or a file (JSON list or lines)."""
    if spec == "tfds":
        if not tfds_names:
            raise ValueError("the dataset's label feature has no class names; set the entry's classnames")
        return [clean(n) for n in tfds_names]
    if os.path.isfile(spec):
        return _read_list(spec)
    return shipped_classnames(spec)
