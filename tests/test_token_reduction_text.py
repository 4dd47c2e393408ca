"""Text token reduction on known sentences; the POS lexicon; wiring into the pipeline's transform."""
import numpy as np
import pytest

from clipjax.data import pipeline
from clipjax.token_reduction import pos_lexicon, text as tr

TOK = pipeline.tokenizer()
LONG = "a photo of a small red car parked beside a tall green tree on the street"


def words(row: np.ndarray) -> list[str]:
    assert row[0] == TOK.sot_id
    ids = row[1:].tolist()
    return TOK.decode(ids[:ids.index(TOK.eot_id)]).split()


def test_truncate_matches_the_tokenizer_cut():
    for length in (4, 8, 32):
        np.testing.assert_array_equal(tr.tokenize(TOK, LONG, length, "truncate"), TOK(LONG, length)[0])
    assert words(tr.tokenize(TOK, LONG, 6, "truncate")) == ["a", "photo", "of", "a"]


def test_syntax_keeps_the_nouns_in_order():
    assert words(tr.tokenize(TOK, LONG, 6, "syntax")) == ["photo", "car", "tree", "street"]
    # then adjectives ('small', 'red', 'tall', 'green' are attributive), then verbs
    assert words(tr.tokenize(TOK, LONG, 10, "syntax")) == ["photo", "small", "red", "car", "tall", "green", "tree",
                                                          "street"]
    assert words(tr.tokenize(TOK, LONG, 11, "syntax")) == ["photo", "small", "red", "car", "parked", "tall", "green",
                                                          "tree", "street"]


def test_syntax_ties_keep_left_to_right_order():
    assert words(tr.tokenize(TOK, "dog cat bird fish horse", 4, "syntax")) == ["dog", "cat"]
    assert words(tr.tokenize(TOK, "the and of dog", 3, "syntax")) == ["dog"]


def test_pos_ranks_in_context():
    n, a, v, o = pos_lexicon.NOUN, pos_lexicon.ADJ, pos_lexicon.VERB, pos_lexicon.OTHER
    assert pos_lexicon.word_ranks("a red car in the middle".split()) == [o, a, n, o, o, n]
    assert pos_lexicon.word_ranks("the dog sits on a wooden bench".split()) == [o, n, v, o, o, a, n]
    assert pos_lexicon.word_ranks(["dogs", ",", "42", "running"]) == [n, o, o, n]   # plural; punctuation, numbers


def test_random_and_block_keep_order_and_span():
    ids = TOK.encode(LONG)
    seen = set()
    for seed in range(20):
        row = tr.tokenize(TOK, LONG, 8, "random", np.random.default_rng(seed))
        pos = tr.keep_positions(len(ids), 6, "random", np.random.default_rng(seed))
        assert (np.diff(pos) > 0).all() and row[7] == TOK.eot_id
        assert row[1:7].tolist() == [ids[p] for p in pos]      # a subset, in the original order
        seen.add(tuple(pos))
        block = tr.tokenize(TOK, LONG, 8, "block", np.random.default_rng(seed))[1:7].tolist()
        assert any(ids[s:s + 6] == block for s in range(len(ids) - 5))
    assert len(seen) > 10


@pytest.mark.parametrize("strategy", tr.TEXT_STRATEGIES)
def test_short_captions_are_kept_whole(strategy):
    row = tr.tokenize(TOK, "a red car", 8, strategy, np.random.default_rng(0))
    np.testing.assert_array_equal(row, TOK("a red car", 8)[0])
    assert row.dtype == np.int32 and row.shape == (8,)


def test_unknown_strategy_fails():
    with pytest.raises(ValueError, match="text token strategy"):
        tr.keep_positions(10, 4, "nouns")


def test_pipeline_uses_the_configured_strategy():
    from tests.test_train import small_config
    config = small_config(data__text_length=6, tokens__text_strategy="syntax")
    batch = next(pipeline.make_train_iterator(config, 0, 1)[0])
    rows = batch["tokens"]
    assert rows.shape == (config.batch_size, 6)
    assert (rows[:, 0] == TOK.sot_id).all() and (rows == TOK.eot_id).any(axis=1).all()
