"""Parity of ClipTokenizer with OpenAI's / OpenCLIP's SimpleTokenizer.

The expected ids were produced once by open_clip_torch 3.3.0's `SimpleTokenizer` (outside this repo) and are
hard-coded here, so the test needs no reference package.
"""
import pickle

import numpy as np
import pytest

from clipjax.data.tokenizer import ClipTokenizer

# A 100-word caption: over-long for a 77-token context.
LONG_CAPTION = " ".join(
    f"word{i} and the quick brown fox" if i % 7 == 0
    else ["a", "photo", "of", "big", "dogs", "running", "near", "water"][i % 8]
    for i in range(100)
)

CASES = [
    ('a photo of a cat',
     [320, 1125, 539, 320, 2368]),
    ("Hello, World!!! How's it going? (fine...) #yolo @user",
     [3306, 267, 1002, 995, 829, 568, 585, 1245, 286, 263, 3797, 14040, 258, 20905, 287, 7031]),
    ('Café naïve résumé — Ünïcödé façade, Straße, Ελληνικά, 日本語のテキスト',
     [15304, 1097, 35689, 563, 29106, 7054, 4166, 2005, 6522, 77, 35689, 66, 7255, 67, 4166, 778, 10067,
      1928, 267, 1894, 127, 253, 324, 267, 138, 113, 138, 119, 138, 119, 138, 115, 138, 121, 138, 117,
      138, 118, 138, 361, 267, 39121, 44353, 34002, 252, 21575, 2429, 228, 47121, 32421, 486]),
    ('I ❤️ pizza 🍕🍕 and 🐶s 👍🏽',
     [328, 1752, 4474, 31469, 23904, 537, 10631, 338, 43722]),
    ('3.14159 is pi; 2024-01-01 12:30pm $1,000,000 50%',
     [274, 269, 272, 275, 272, 276, 280, 533, 5357, 282, 273, 271, 273, 275, 268, 271, 272, 268, 271, 272,
      272, 273, 281, 274, 271, 990, 259, 272, 267, 271, 271, 271, 267, 271, 271, 271, 276, 271, 260]),
    ('Tom &amp;amp; Jerry &lt;3 &quot;quoted&quot; &#39;single&#39;',
     [2435, 261, 9164, 283, 274, 257, 27706, 257, 568, 17005, 262]),
    ("it's they're we've I'm you'll he'd don't ISN'T",
     [585, 568, 889, 982, 649, 1200, 328, 880, 592, 1342, 797, 1896, 847, 713, 2923, 713]),
    ('   lots   of\twhitespace\n\nand NEWLINES   ',
     [2958, 539, 4699, 2138, 537, 1218, 3418]),
    ('<start_of_text>special tokens<end_of_text> in text',
     [49406, 1689, 23562, 49407, 530, 4160]),
    ('supercalifragilisticexpialidocious antidisestablishmentarianism',
     [1642, 2857, 13093, 2076, 5868, 26850, 835, 639, 38466, 3120, 4262, 7726, 12658, 1585, 44351]),
    ("", []),
]
LONG_ROW = [49406, 2653, 271, 537, 518, 3712, 2866, 3240, 1125, 539, 1205, 3255, 2761, 2252, 2653, 278, 537,
            518, 3712, 2866, 3240, 320, 1125, 539, 1205, 3255, 2761, 2653, 272, 275, 537, 518,
            3712, 2866, 3240, 1573, 320, 1125, 539, 1205, 3255, 2653, 273, 272, 537, 518, 3712,
            2866, 3240, 2252, 1573, 320, 1125, 539, 1205, 2653, 273, 279, 537, 518, 3712, 2866,
            3240, 2761, 2252, 1573, 320, 1125, 539, 2653, 274, 276, 537, 518, 3712, 2866, 49407]


@pytest.fixture(scope="module")
def tok() -> ClipTokenizer:
    return ClipTokenizer()


@pytest.mark.parametrize("text,ids", CASES)
def test_encode_matches_reference(tok, text, ids):
    assert tok.encode(text) == ids


def test_call_pads_and_wraps(tok):
    texts = [text for text, _ in CASES]
    out = tok(texts)
    assert out.dtype == np.int32 and out.shape == (len(texts), 77)
    for row, (_, ids) in zip(out, CASES):
        expected = [tok.sot_id, *ids, tok.eot_id]
        assert row.tolist() == expected + [tok.pad_id] * (77 - len(expected))


def test_call_truncates_to_end_with_eot(tok):
    assert tok(LONG_CAPTION)[0].tolist() == LONG_ROW
    short = tok(CASES[1][0], context_length=16)[0].tolist()
    assert short == [tok.sot_id, *CASES[1][1][:14], tok.eot_id]


def test_single_string_gives_one_row(tok):
    assert tok("a photo of a cat", context_length=8).tolist() == [[49406, 320, 1125, 539, 320, 2368, 49407, 0]]


def test_vocab_constants(tok):
    assert (tok.vocab_size, tok.sot_id, tok.eot_id, tok.pad_id) == (49408, 49406, 49407, 0)
    assert tok.decode([tok.sot_id, tok.eot_id]) == "<start_of_text><end_of_text>"


@pytest.mark.parametrize(
    "text,decoded",
    [
        ("a photo of a cat", "a photo of a cat "),
        ("Café naïve, 日本語", "café naïve , 日本語 "),
        ("I ❤️ pizza 🍕", "i ❤️ pizza 🍕 "),
        ("Tom &amp;amp; Jerry", "tom & jerry "),
    ],
)
def test_decode_roundtrip(tok, text, decoded):
    assert tok.decode(tok.encode(text)) == decoded


def test_bpe_cache_and_pickle(tok):
    tok.encode("a photo of a cat")
    assert tok._cache["photo"] == ("photo</w>",)
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.encode(LONG_CAPTION) == tok.encode(LONG_CAPTION)
