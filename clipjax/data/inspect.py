"""Look at what the input pipeline feeds the model.

python -m clipjax.data.inspect --config CFG --num_examples N [--contact_sheet out.png] [--config.data.KEY=...]

Prints one JSON object per example, in training order of process 0: index, key, the chosen caption, token ids
and image shape (bad samples print {"skipped": reason}); `--contact_sheet` writes a PNG grid of the augmented
images with their captions.
"""
import json
import textwrap

import numpy as np
from absl import app, flags
from ml_collections import config_flags
from PIL import Image, ImageDraw

from clipjax.data import pipeline

FLAGS = flags.FLAGS


def contact_sheet(examples: list[dict], path: str, columns: int = 4, cell: int = 160) -> None:
    """Grid of images (upscaled to `cell` px) with their wrapped captions underneath."""
    rows = -(-len(examples) // columns)
    text_h = 56
    sheet = Image.new("RGB", (columns * cell, rows * (cell + text_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, ex in enumerate(examples):
        x, y = (k % columns) * cell, (k // columns) * (cell + text_h)
        sheet.paste(Image.fromarray(ex["image"]).resize((cell, cell), Image.Resampling.NEAREST), (x, y))
        lines = textwrap.wrap(f"{ex['index']}: {ex['caption']}", width=cell // 6)[:4]
        draw.multiline_text((x + 2, y + cell + 2), "\n".join(lines), fill="black", spacing=1)
    sheet.save(path)


def main(argv):
    del argv
    config = FLAGS.config
    ds, _ = pipeline.make_train_dataset(config, 0, 1, debug=True)
    shown, it = [], iter(ds)
    while len(shown) < FLAGS.num_examples:
        ex = next(it, None)
        if ex is None:
            break
        if isinstance(ex, pipeline.Skipped):
            print(json.dumps({"skipped": ex.reason}))
            continue
        tokens = [int(t) for t in np.asarray(ex["tokens"])]
        while tokens and tokens[-1] == 0:
            tokens.pop()
        print(json.dumps({"index": int(ex["index"]), "key": ex["key"], "caption": ex["caption"], "tokens": tokens,
                          "image_shape": list(ex["image"].shape),
                          **({"views_shape": list(ex["views"].shape)} if "views" in ex else {})}))
        shown.append(ex)
    if FLAGS.contact_sheet and shown:
        contact_sheet(shown, FLAGS.contact_sheet)


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Config file whose config.data is inspected.", lock_config=True)
    flags.DEFINE_integer("num_examples", 8, "Examples to print.")
    flags.DEFINE_string("contact_sheet", "", "Write a PNG grid of the augmented images with captions here.")
    flags.mark_flags_as_required(["config"])
    app.run(main)
