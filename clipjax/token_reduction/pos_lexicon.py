"""Part-of-speech tags in sentence context for CLIPA's syntax text reduction: a small rule-based tagger on
lemminflect's offline English lexicon.

CLIPA (UCSC-VLAA/CLIPA clipa_torch/open_clip/tokenizer.py `syntax_mask_tokenize`, and `get_order` in
clipa_jax/transforms/bert_ops.py) tags the caption's words with NLTK's perceptron tagger (Penn Treebank tags) and
ranks NN* (nouns and proper nouns) 1 < JJ* 2 < VB* 3 < anything else 4. NLTK's models cannot be installed offline,
so `tag` gives universal POS (UPOS) tags by the rules below, and `rank` maps them the way the Penn tags map:
NOUN, PROPN -> NOUN; ADJ -> ADJ; VERB and the be/have/do auxiliaries (VB*) -> VERB; everything else -> OTHER: modal
auxiliaries (MD), numbers (CD), pronouns and possessive pronouns (PRP, PRP$), determiners, adpositions and
particles (IN, RP, TO), adverbs, conjunctions, punctuation.

Rules for word i (its raw capitalisation kept; a dict lookup or two per word):
  1. punctuation -> PUNCT, digits -> NUM; "'s" -> AUX after a pronoun ("it's"), else PART (possessive); a word
     before "'t" ("don", "isn", "won") -> AUX.
  2. closed classes from the word lists below (a modal after a determiner, "a can of", is left to the lexicon).
  3. capitalised and not sentence-initial -> PROPN, unless the caption is in title or upper case (a capitalised
     determiner, adposition or conjunction inside it, or all words upper case): then case is no evidence.
  4. not in the lexicon: capitalised -> PROPN; -ing/-ed -> VERB; -ly -> ADV; adjective suffixes -> ADJ; else NOUN
     (NLTK's unknown words are nouns).
  5. in the lexicon under one category -> it; under several (NOUN, ADJ, VERB, ADV) -> context: a verb after a
     modal, a negation, infinitival 'to' or a subject pronoun; a noun before 'of' inside a noun phrase ("on top of"); an -ing
     form is a noun after a determiner, possessive, adjective or number, else a verb ("is running", "man riding");
     an adjective after be or a linking verb, or before a noun or adjective (attributive), else a noun inside a noun
     phrase; a noun/verb is a verb when it agrees with a clause-initial subject ("an elephant walks", "tourists
     take"), else a noun; an adverb after a main verb with no noun following.
"""
import functools
from collections.abc import Sequence

import lemminflect

NOUN, ADJ, VERB, OTHER = 0, 1, 2, 3

# modal auxiliaries (Penn MD), with the forms the CLIP pre-tokenizer leaves before "'t" ("couldn't", "won't")
MODALS = frozenset("can could will would shall should may might must 'll 'd couldn won wouldn shouldn mustn".split())
_CLOSED_LISTS = {
    "DET": "a an the this that these those each every some any no another all both either neither such which what",
    "PRON": "i me you he him she her it we us they them my your his its our their mine yours hers ours theirs myself "
            "yourself himself herself itself ourselves themselves someone somebody something everyone everybody "
            "everything anyone anybody anything nobody nothing who whom whose there",
    "ADP": "of in on at by with from into onto over under above below behind beside besides between beyond near "
           "through across along alongside around against among amid during inside outside toward towards upon via "
           "without within beneath underneath atop for about like off up down out after before since until unlike "
           "except despite throughout",
    "PART": "to not 't",
    "CCONJ": "and or but nor",
    "SCONJ": "while as because if when where although though whether unless whereas",
    "NUM": "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
           "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand "
           "million billion",
    "AUX": "be am is are was were been being have has had having do does did 're 'm 've " + " ".join(MODALS),
    "ADV": "very too also just only really still even almost quite rather so here then now again always never often "
           "together away ever already yet soon instead maybe perhaps",
    "ADJ": "next many several few other same own much",   # Penn JJ, but closed-class-like
}
CLOSED: dict[str, str] = {w: tag for tag, words in _CLOSED_LISTS.items() for w in words.split()}
POSSESSIVES = frozenset("my your his her its our their".split())
SUBJECTS = frozenset("i you he she it we they who".split())
CONTRACTED_IS = SUBJECTS | frozenset("that there here what where".split())   # "it's", "there's": 's is a verb
SINGULAR_DETS = frozenset("a an this that each every another".split())
LINKING = frozenset("look looks looked looking seem seems seemed appear appears become becomes feel feels".split())
IRREGULAR_PLURALS = frozenset("people police cattle".split())
_ADJ_SUFFIXES = ("ous", "ful", "ive", "able", "ible", "less", "ish", "ic", "ical", "esque")
_CLAUSE_BREAKS = frozenset(("CCONJ", "SCONJ", "PUNCT"))
_NOMINAL_BEFORE = frozenset(("DET", "ADJ", "NUM"))


@functools.lru_cache(maxsize=1 << 18)
def categories(word: str) -> frozenset[str]:
    """Universal POS categories lemminflect lists for the lower-case `word` (NOUN, ADJ, VERB, ADV; AUX read as
    VERB); empty for words it does not know (most proper nouns among them)."""
    cats = frozenset(lemminflect.getAllLemmas(word))
    return cats - {"AUX"} | {"VERB"} if "AUX" in cats else cats


@functools.lru_cache(maxsize=1 << 18)
def is_plural(word: str) -> bool:
    """A lower-case noun form other than its lemma ('dogs', 'children'), or 'people'/'police'/'cattle'."""
    nouns = lemminflect.getAllLemmas(word).get("NOUN", ())
    return word in IRREGULAR_PLURALS or (bool(nouns) and word not in nouns)


@functools.lru_cache(maxsize=1 << 18)
def verb_form(word: str) -> str:
    """'ing', 's', 'ed' (past or participle) or 'base' for a lower-case word lemminflect lists as a verb, else ''."""
    lemmas = lemminflect.getAllLemmas(word).get("VERB")
    if not lemmas:
        return ""
    if word in lemmas:
        return "base"
    return "ing" if word.endswith("ing") else "s" if word.endswith("s") else "ed"


def rank(word: str, upos: str) -> int:
    """CLIPA's rank of a word tagged `upos`: NOUN 0 (NOUN, PROPN), ADJ 1, VERB 2 (VERB, non-modal AUX), OTHER 3."""
    if upos in ("NOUN", "PROPN"):
        return NOUN
    if upos == "ADJ":
        return ADJ
    return VERB if upos == "VERB" or (upos == "AUX" and word.lower() not in MODALS) else OTHER


def word_ranks(words: Sequence[str]) -> list[int]:
    """Rank (NOUN 0, ADJ 1, VERB 2, OTHER 3) of each word of a caption (capitalisation kept), in order."""
    return [rank(w, t) for w, t in zip(words, tag(words))]


def _is_initial(words: Sequence[str], i: int) -> bool:
    return i == 0 or (not words[i - 1][-1].isalnum() and any(c in ".!?:" for c in words[i - 1]))


def _ignore_case(words: Sequence[str], lower: Sequence[str]) -> bool:
    """Title or upper case: a capitalised closed-class word inside the caption, or every word upper case."""
    alpha = [w for w in words if w.isalpha() and len(w) > 1]
    if len(alpha) > 1 and all(w.isupper() for w in alpha):
        return True
    return any(w[0].isupper() and lw in CLOSED and lw != "i" and not _is_initial(words, i)
               for i, (w, lw) in enumerate(zip(words, lower)))


def tag(words: Sequence[str]) -> list[str]:
    """UPOS tag of each word of a caption in its context (see the module docstring); `words` keep their case."""
    lower = [w.lower() for w in words]
    ignore_case = _ignore_case(words, lower)
    tags: list[str] = []

    def nominal_start(i: int) -> int:
        """Index of the first word of the noun phrase ending at word i (nouns, adjectives, numbers, determiners,
        possessives)."""
        while i > 0 and (tags[i - 1] in ("NOUN", "PROPN", "ADJ", "NUM", "DET") or lower[i - 1] in POSSESSIVES):
            i -= 1
        return i

    def clause_start(i: int) -> bool:
        return i == 0 or tags[i - 1] in _CLAUSE_BREAKS

    def noun_like(j: int) -> bool:
        """Word j can head or modify a noun phrase: an open-class noun or adjective, or an unknown word."""
        if j >= len(words) or lower[j] in CLOSED or not words[j].isalpha():
            return False
        cats = categories(lower[j])
        return not cats or bool(cats & {"NOUN", "ADJ"})

    def open_class(i: int, cats: frozenset[str]) -> str:
        w, prev_w = lower[i], lower[i - 1] if i else ""
        prev = tags[i - 1] if i else ""
        after = lower[i + 1] if i + 1 < len(words) else ""
        form = verb_form(w)
        after_nominal = prev in _NOMINAL_BEFORE or prev_w in POSSESSIVES
        if len(cats) == 1:
            return next(iter(cats))
        if "VERB" in cats and form != "ing":
            if prev_w in SUBJECTS or (form == "base" and (prev_w in MODALS or prev_w in ("'t", "not"))):
                return "VERB"
            if form == "base" and prev_w == "to" and not noun_like(i + 1):
                return "VERB"
        if after == "of" and form != "ing" and (after_nominal or prev == "ADP"):
            return "NOUN"
        if form == "ing":
            if not after_nominal:
                return "VERB"
            return "NOUN" if "NOUN" in cats else "ADJ" if "ADJ" in cats else "VERB"
        if "ADV" in cats and prev == "VERB" and not noun_like(i + 1):
            return "ADV"
        if "ADJ" in cats:
            if prev == "AUX" or prev_w in LINKING:
                return "VERB" if form == "ed" else "ADJ"
            coordinated = after in ("and", "or", ",") and i + 2 < len(words) and "ADJ" in categories(lower[i + 2])
            if noun_like(i + 1) or coordinated:
                return "ADJ"
            if "NOUN" in cats and (after_nominal or prev == "ADP"):
                return "NOUN"
            return "VERB" if form == "ed" and prev in ("NOUN", "PROPN") else "ADJ"
        if "VERB" in cats and "NOUN" in cats and prev in ("NOUN", "PROPN"):
            start = nominal_start(i - 1)
            if form == "s" and not is_plural(prev_w) and start < i - 1 and lower[start] in SINGULAR_DETS:
                return "VERB"
            if form == "base" and is_plural(prev_w) and clause_start(start):
                return "VERB"
        if form == "ed":
            return "VERB"
        return next(t for t in ("NOUN", "ADJ", "VERB", "ADV") if t in cats)

    for i, (word, w) in enumerate(zip(words, lower)):
        if not any(c.isalpha() for c in w):
            tags.append("NUM" if w.isdigit() else "PUNCT")
        elif w == "'s":
            tags.append("AUX" if i and lower[i - 1] in CONTRACTED_IS else "PART")
        elif i + 1 < len(words) and lower[i + 1] == "'t":
            tags.append("AUX")
        elif w in CLOSED and not (w in MODALS and i and tags[i - 1] in _NOMINAL_BEFORE):
            tags.append(CLOSED[w])
        elif word[0].isupper() and not ignore_case and not _is_initial(words, i):
            tags.append("PROPN")
        elif not (cats := categories(w)):
            tags.append(_unknown(word))
        else:
            tags.append(open_class(i, cats))
    return tags


def _unknown(word: str) -> str:
    """Tag of a word the lexicon does not know, from its case and suffix."""
    w = word.lower()
    if word[0].isupper():
        return "PROPN"
    if w.endswith(("ing", "ed")):
        return "VERB"
    if w.endswith("ly"):
        return "ADV"
    return "ADJ" if w.endswith(_ADJ_SUFFIXES) else "NOUN"
