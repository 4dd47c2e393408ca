"""Caption choice per example per epoch (LaCLIP arXiv 2305.20088, VeCLIP arXiv 2310.07699), deterministic given
(seed, epoch, index).

Modes over an example's caption fields ({name: text}, 'caption' being the original / AltText):
- 'original': the original caption.
- 'mixed':    uniform over every caption field (the built-in world's phrasings and rewrites).
- 'laclip':   uniform over [original, rewrite_1..K] (LaCLIP); `rewrite_fields` names the rewrites (default: every
              field whose name starts with 'rewrite'). As in LaCLIP (LijieFan/LaCLIP data.py `CsvDatasetAugCap`), an
              empty, missing or undecodable rewrite is drawn like any other and then falls back to the original.
- 'veclip':   the visual-enriched caption (field `veclip_field`) with probability p, else the AltText (VeCLIP).
- 'weighted': field f with probability w_f / sum of the weights of the fields the example has.
In 'mixed', 'laclip' and 'weighted', a draw of fewer than 2 words falls back to the original caption.
Otherwise ('mixed', 'weighted', 'veclip') empty or missing optional fields are left out of the draw; a missing
original caption makes the sample bad.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from clipjax.data.sources import BadSample, to_text

MODES = ("original", "mixed", "laclip", "veclip", "weighted")


def parse_weights(spec: str) -> tuple[tuple[str, float], ...]:
    """'caption:2,rewrite_1:1' -> (('caption', 2.0), ('rewrite_1', 1.0)); fails naming the config key."""
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, w = part.rpartition(":")
        try:
            weight = float(w)
        except ValueError:
            weight = -1.0
        if not sep or not name or weight < 0:
            raise ValueError(f"config.data.caption_weights = {spec!r}: expected 'field:weight,...' with weights >= 0")
        out.append((name, weight))
    if not out or sum(w for _, w in out) <= 0:
        raise ValueError(f"config.data.caption_weights = {spec!r}: expected at least one positive weight")
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class CaptionChooser:
    """`chooser(fields, rng) -> str`: one caption for this example and epoch (see module docstring);
    `chooser.choose(fields, rng) -> (field name, str)` also names the field it came from (the fallback to the
    original names 'caption'), for side-car data keyed by field such as LLM caption embeddings."""
    mode: str = "original"
    rewrite_fields: tuple[str, ...] = ()
    veclip_field: str = "vec"
    veclip_prob: float = 0.5
    weights: tuple[tuple[str, float], ...] = ()

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"config.data.caption_mode = {self.mode!r}: expected one of {MODES}")
        if not 0.0 <= self.veclip_prob <= 1.0:
            raise ValueError(f"config.data.veclip_prob = {self.veclip_prob}: expected a probability in [0, 1]")
        if self.mode == "weighted" and not self.weights:
            raise ValueError("config.data.caption_weights: expected 'field:weight,...' for caption_mode 'weighted'")

    def __call__(self, fields: dict, rng: np.random.Generator) -> str:
        return self.choose(fields, rng)[1]

    def choose(self, fields: dict, rng: np.random.Generator) -> tuple[str, str]:
        original = to_text(fields.get("caption"))
        if original is None or not original.strip():
            raise BadSample("missing_caption")
        if self.mode == "original":
            return "caption", original
        if self.mode == "veclip":
            if rng.random() < self.veclip_prob:
                vec = _optional(fields.get(self.veclip_field))
                return (self.veclip_field, vec) if vec else ("caption", original)
            return "caption", original
        if self.mode == "weighted":
            names = [(n, w) for n, w in self.weights if n == "caption" or _optional(fields.get(n))]
            if not names:
                return "caption", original
            p = np.array([w for _, w in names])
            if p.sum() <= 0:
                return "caption", original
            name = names[int(rng.choice(len(names), p=p / p.sum()))][0]
        else:
            if self.mode == "laclip":
                rewrites = self.rewrite_fields or tuple(sorted(n for n in fields if n.startswith("rewrite")))
                pool = ["caption", *rewrites]
            else:  # mixed
                pool = ["caption", *(n for n in fields if n != "caption" and _optional(fields.get(n)))]
            name = pool[int(rng.integers(len(pool)))]
        choice = original if name == "caption" else _optional(fields.get(name)) or ""
        return (name, choice) if len(choice.split()) >= 2 else ("caption", original)


def _optional(value) -> str | None:
    """An optional caption field as text; undecodable or empty fields count as absent."""
    try:
        text = to_text(value)
    except BadSample:
        return None
    return text if text and text.strip() else None
