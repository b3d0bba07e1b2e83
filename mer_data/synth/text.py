"""Transcript text for synthetic utterances: emotion-laden words in neutral filler, with label noise.

A bag-of-words model learns the class from the emotion words; label noise (some emotion words
drawn from another class) and filler-only short utterances keep it from being perfect.
"""
from __future__ import annotations

import numpy as np

EMOTION_WORDS = {
    "ang": ("furious", "hate", "damn", "ridiculous", "outrageous", "stupid", "angry", "liar", "enough", "unbelievable"),
    "exc": ("amazing", "wow", "awesome", "fantastic", "incredible", "wonderful", "yes", "brilliant", "thrilled",
            "finally"),
    "fru": ("whatever", "again", "useless", "annoying", "forms", "waiting", "nobody", "pointless", "impossible", "ugh"),
    "hap": ("glad", "love", "nice", "happy", "lovely", "sweet", "thanks", "smile", "pleased", "cute"),
    "neu": ("okay", "tuesday", "paper", "address", "office", "number", "window", "morning", "table", "parking"),
    "sad": ("miss", "sorry", "lost", "alone", "cry", "gone", "funeral", "hurts", "lonely", "empty"),
    "sur": ("really", "what", "suddenly", "surprise", "seriously"),
    "fea": ("scared", "afraid", "danger", "help", "terrified"),
    "dis": ("gross", "disgusting", "awful", "yuck", "nasty"),
}
# Codes without a vocabulary of their own ("no agreement", "other") borrow from random classes.
BORROWING_CODES = ("xxx", "oth")

FILLER_WORDS = (
    "I", "you", "the", "we", "just", "think", "it", "was", "that", "well", "so", "know", "then",
    "about", "there", "they", "and", "have", "go", "with", "this", "to", "do", "me", "all", "now",
    "here", "one", "at", "he", "she", "on", "got", "because", "like", "get", "out", "up",
)

NOISE_TAGS = ("[LAUGHTER]", "[BREATHING]", "[GARBAGE]")
BACKCHANNELS = ("Yeah.", "Mm-hmm.", "Okay.", "Uh-huh.", "Right.")

# Probability that an emotion word comes from another class's vocabulary.
LABEL_NOISE = 0.2


def emotion_word(code: str, rng: np.random.Generator) -> str:
    """One emotion word for class `code`, from another class with probability LABEL_NOISE."""
    vocabularies = sorted(EMOTION_WORDS)
    if code in BORROWING_CODES or code not in EMOTION_WORDS or rng.random() < LABEL_NOISE:
        code = vocabularies[int(rng.integers(len(vocabularies)))]
    words = EMOTION_WORDS[code]
    return words[int(rng.integers(len(words)))]


def sentence(code: str, n_words: int, rng: np.random.Generator, extra_word: str | None = None) -> str:
    """A sentence of about `n_words` words carrying class `code`; `extra_word` is put in verbatim."""
    n_words = max(1, n_words)
    n_emotion = 1 if n_words < 6 else 2
    words = [FILLER_WORDS[int(rng.integers(len(FILLER_WORDS)))] for _ in range(n_words - n_emotion)]
    for _ in range(n_emotion):
        words.insert(int(rng.integers(len(words) + 1)), emotion_word(code, rng))
    if extra_word is not None:
        words.insert(int(rng.integers(len(words) + 1)), extra_word)
    text = " ".join(words)
    return text[0].upper() + text[1:] + _end_mark(code, rng)


def _end_mark(code: str, rng: np.random.Generator) -> str:
    # High-arousal classes exclaim more often, but not always.
    if code in ("ang", "exc", "sur") and rng.random() < 0.5:
        return "!"
    if rng.random() < 0.15:
        return "?"
    return "."
