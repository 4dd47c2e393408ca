"""Part-of-speech ranks for CLIPA's syntax text reduction, from lemminflect's offline English lexicon.

CLIPA keeps nouns first, then adjectives, then verbs, then everything else. `lemminflect` (PyPI, no run-time
downloads) lists for each known English word form its universal POS categories (NOUN, ADJ, VERB, AUX, ADV);
closed-class words (determiners, prepositions, conjunctions, pronouns), digits and punctuation are not
in it and rank as 'other'.

Rank of a word (0 best): NOUN/PROPN 0 < ADJ 1 < VERB/AUX 2 < other 3. A word listed under several categories
takes its best rank, except the frequent adjective/noun ambiguity ('red', 'small', 'square'), which one context
rule settles: the word is an adjective when the next word can be a noun or an adjective (attributive use:
"small red square"), a noun otherwise ("in the middle"). CLIPA's JAX code ranks each vocabulary entry in
isolation; tagging whole words in their sentence is the refinement DESIGN.md suggests, and every BPE piece of
a word gets the word's rank. Lexicon look-ups are cached per word, so tagging costs a dict hit per word.
"""
import functools
from collections.abc import Sequence

import lemminflect

NOUN, ADJ, VERB, OTHER = 0, 1, 2, 3
CATEGORY_RANK = {"NOUN": NOUN, "PROPN": NOUN, "ADJ": ADJ, "VERB": VERB, "AUX": VERB}


@functools.lru_cache(maxsize=1 << 18)
def categories(word: str) -> frozenset[str]:
    """Universal POS categories lemminflect lists for the lower-cased `word`; empty for closed-class words,
    numbers, punctuation and words it does not know (most proper nouns among them)."""
    if not word.isalpha():
        return frozenset()
    return frozenset(lemminflect.getAllLemmas(word.lower()))


def word_ranks(words: Sequence[str]) -> list[int]:
    """Rank (NOUN 0, ADJ 1, VERB 2, OTHER 3) of each word of a sentence, in order."""
    cats = [categories(w) for w in words]
    ranks = []
    for i, c in enumerate(cats):
        if "ADJ" in c and "NOUN" in c:
            after = cats[i + 1] if i + 1 < len(cats) else frozenset()
            ranks.append(ADJ if ("NOUN" in after or "ADJ" in after) else NOUN)
        else:
            ranks.append(min((CATEGORY_RANK.get(x, OTHER) for x in c), default=OTHER))
    return ranks
