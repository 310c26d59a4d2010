"""Varied English sentences from a small seeded grammar (no downloads).

The word list is chosen to cover the mouth shapes that matter for lip sync: bilabial
closures (p b m), labiodentals (f v), rounded vowels and glides (oo, oh, w), spread
vowels (ee), open vowels (ah) and the alveolar/velar consonants in between.
"""

from __future__ import annotations

import numpy as np

_NAMES = ("Maria", "Bob", "Peter", "Olivia", "William", "Fiona", "Hugo", "Paula", "Ben", "Lucy", "Omar", "Vera")
_ADJECTIVES = (
    "big", "blue", "small", "warm", "cool", "happy", "quiet", "purple", "bright", "old", "new", "soft", "funny",
    "brave", "smooth", "yellow", "famous", "round", "heavy", "busy",
)
_NOUNS = (
    "boat", "moon", "apple", "window", "map", "puppy", "food", "mouth", "garden", "balloon", "violin", "pizza",
    "camera", "river", "phone", "book", "ship", "mirror", "farmer", "teacher", "baby", "bottle", "pillow", "flower",
)
_VERBS_PAST = (
    "bought", "moved", "painted", "opened", "found", "saw", "wanted", "pushed", "followed", "played with",
    "forgot", "washed", "brought", "showed", "made", "fixed", "watched", "baked", "mapped", "borrowed",
)
_PLACES = (
    "by the river", "in the morning", "at the party", "on the boat", "near the window", "after lunch",
    "before the movie", "behind the museum", "over the bridge", "with a smile", "every Monday", "at home",
)
_ADVERBS = ("quickly", "slowly", "happily", "beautifully", "very often", "once more", "by mistake", "on purpose")
_QUESTIONS = ("Why did", "When did", "Would", "How often did", "Could")
_REPLIES = (
    "Oh, we will", "Maybe", "Of course", "Wow", "Please be", "Boom, perfect", "Yes, maybe", "Oops, forgive me",
    "Move over", "Look", "Beautiful",
)


def _pick(rng: np.random.Generator, words: tuple[str, ...]) -> str:
    return words[int(rng.integers(len(words)))]


def _noun_phrase(rng: np.random.Generator) -> str:
    if rng.random() < 0.3:
        return _pick(rng, _NAMES)
    det = _pick(rng, ("the", "a", "my", "your", "our", "that"))
    adj = f"{_pick(rng, _ADJECTIVES)} " if rng.random() < 0.6 else ""
    if det == "a" and (adj or _pick(rng, _NOUNS))[:1] in "aeiou":
        det = "an"
    return f"{det} {adj}{_pick(rng, _NOUNS)}"


def make_sentence(rng: np.random.Generator) -> str:
    """One sentence (about 5-14 words), drawn from the grammar with ``rng``."""
    kind = rng.random()
    subject, obj = _noun_phrase(rng), _noun_phrase(rng)
    verb = _pick(rng, _VERBS_PAST)
    if kind < 0.55:
        tail = f" {_pick(rng, _PLACES)}" if rng.random() < 0.7 else ""
        adv = f" {_pick(rng, _ADVERBS)}" if rng.random() < 0.3 else ""
        text = f"{subject} {verb} {obj}{adv}{tail}."
    elif kind < 0.75:
        base = {"bought": "buy", "moved": "move", "saw": "see", "found": "find", "forgot": "forget",
                "brought": "bring", "made": "make", "showed": "show"}.get(verb.split()[0], verb.split()[0][:-2]
                                                                             if verb.endswith("ed") else verb)
        rest = " ".join(verb.split()[1:])
        text = f"{_pick(rng, _QUESTIONS)} {subject} {base}{' ' + rest if rest else ''} {obj}?"
    else:
        text = f"{_pick(rng, _REPLIES)}, {subject} {verb} {obj} {_pick(rng, _PLACES)}!"
    return text[0].upper() + text[1:]


def make_sentences(n: int, seed: int) -> list[str]:
    """``n`` sentences, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return [make_sentence(rng) for _ in range(n)]
