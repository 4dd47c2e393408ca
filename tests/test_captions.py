"""Caption choice: frequencies match the configured probabilities, determinism from (seed, epoch, index)."""
import collections

import numpy as np
import pytest

from clipjax.data import captions, pipeline, sources

FIELDS = {"caption": "the original alt text", "rewrite_1": "first rewritten caption", "rewrite_2": "second rewrite",
          "rewrite_3": "short", "vec": "a visually enriched caption", "other": "another field here"}
N = 6000


def frequencies(chooser, fields=FIELDS, n=N):
    counts = collections.Counter(chooser(fields, pipeline.example_rng(0, e, 7, 0)) for e in range(n))
    return {k: v / n for k, v in counts.items()}


def assert_close(freq, expected):
    assert set(freq) == set(expected)
    for k, p in expected.items():
        assert abs(freq[k] - p) < 4 * np.sqrt(p * (1 - p) / N) + 1e-9, (k, freq[k], p)


def test_laclip_uniform_over_original_and_rewrites_with_short_fallback():
    freq = frequencies(captions.CaptionChooser("laclip"))
    # rewrite_3 has one word: its quarter of the draws falls back to the original
    assert_close(freq, {FIELDS["caption"]: 0.5, FIELDS["rewrite_1"]: 0.25, FIELDS["rewrite_2"]: 0.25})
    freq = frequencies(captions.CaptionChooser("laclip", rewrite_fields=("rewrite_1",)))
    assert_close(freq, {FIELDS["caption"]: 0.5, FIELDS["rewrite_1"]: 0.5})


def test_laclip_draws_empty_rewrites_then_falls_back_like_the_reference():
    """LijieFan/LaCLIP data.py `CsvDatasetAugCap.__getitem__`: `random.choice([original, rewrite_1..K])`, then a
    text of fewer than 2 words is replaced by the original. With rewrites ('first rewritten caption', 'second
    rewrite', 'short', ''): P(original) = (1 + 1 + 1) / 5 = 0.6 (0.5 if the empty rewrite left the draw)."""
    fields = {**FIELDS, "rewrite_4": ""}
    expected = {FIELDS["caption"]: 0.6, FIELDS["rewrite_1"]: 0.2, FIELDS["rewrite_2"]: 0.2}
    assert_close(frequencies(captions.CaptionChooser("laclip"), fields), expected)
    # a named rewrite missing from the row counts as empty, too
    named = captions.CaptionChooser("laclip", rewrite_fields=("rewrite_1", "rewrite_2", "rewrite_3", "absent"))
    assert_close(frequencies(named), expected)


def test_veclip_probability():
    freq = frequencies(captions.CaptionChooser("veclip", veclip_prob=0.3))
    assert_close(freq, {FIELDS["vec"]: 0.3, FIELDS["caption"]: 0.7})
    no_vec = {"caption": FIELDS["caption"]}
    assert frequencies(captions.CaptionChooser("veclip", veclip_prob=0.9), no_vec, 50) == {FIELDS["caption"]: 1.0}


def test_weighted_choice_and_missing_fields_renormalised():
    chooser = captions.CaptionChooser("weighted", weights=captions.parse_weights("caption:1,other:3,missing:4"))
    assert_close(frequencies(chooser), {FIELDS["caption"]: 0.25, FIELDS["other"]: 0.75})
    with pytest.raises(ValueError, match="caption_weights"):
        captions.parse_weights("caption=1")


def test_mixed_uniform_over_all_fields():
    freq = frequencies(captions.CaptionChooser("mixed"))
    expected = {v: 1 / 6 for k, v in FIELDS.items() if k not in ("caption", "rewrite_3")}
    expected[FIELDS["caption"]] = 2 / 6
    assert_close(freq, expected)


def test_deterministic_per_seed_epoch_index_and_varies_across_epochs():
    chooser = captions.CaptionChooser("laclip")
    draw = lambda seed, epoch, index: chooser(FIELDS, pipeline.example_rng(seed, epoch, index, 0))  # noqa: E731
    assert [draw(0, e, 3) for e in range(20)] == [draw(0, e, 3) for e in range(20)]
    assert len({draw(0, e, 3) for e in range(20)}) > 1
    assert [draw(0, 0, i) for i in range(20)] != [draw(1, 0, i) for i in range(20)]


def test_missing_or_undecodable_original_is_a_bad_sample():
    chooser = captions.CaptionChooser("laclip")
    rng = np.random.default_rng(0)
    for fields, reason in (({"rewrite_1": "a b c"}, "missing_caption"), ({"caption": "  "}, "missing_caption"),
                           ({"caption": b"caf\xe9 au lait"}, "bad_caption")):
        with pytest.raises(sources.BadSample) as e:
            chooser(fields, rng)
        assert e.value.reason == reason
    # an undecodable rewrite falls back to the original, the sample stays usable
    fields = {"caption": "good original caption", "rewrite_1": b"\xff\xfe bad"}
    assert {chooser(fields, np.random.default_rng(s)) for s in range(20)} == {"good original caption"}


def test_unknown_mode_names_key():
    with pytest.raises(ValueError, match="config.data.caption_mode"):
        captions.CaptionChooser("nope")
