"""MOSEI-style labels for synthetic segments: a dominant emotion, three annotators, averages.

CMU-MOSEI's labels come from three MTurk annotators per clip: sentiment on a -3..3 scale and the
presence of each of six emotions on a 0..3 scale ("no evidence" .. "highly"); the SDK's `.csd`
stores their averages. Here each labelled segment gets a dominant emotion (or none), drawn with
MOSEI-like frequencies; its voice, face and words follow the matching IEMOCAP-style profile
(`emotions.PROFILES`), and its annotators rate around it with disagreement and some
co-occurring emotions, so that labels are multi-label and noisy as in the release.
"""
from __future__ import annotations

import numpy as np

from mer_data.corpora.mosei import MOSEI_EMOTIONS
from mer_data.synth.mosei_script import Rating

ANNOTATORS = 3
# The emotion profile (emotions.PROFILES) whose cues a segment of each dominant emotion shows.
STYLE_CODE = {"happy": "hap", "sad": "sad", "anger": "ang", "surprise": "sur", "disgust": "dis", "fear": "fea",
              None: "neu"}
# How often each emotion dominates a segment (happiness is by far the most frequent in MOSEI).
DOMINANT_WEIGHTS = {"happy": 0.34, "sad": 0.14, "anger": 0.12, "disgust": 0.08, "surprise": 0.07, "fear": 0.05,
                    None: 0.20}
SENTIMENT_MEAN = {"happy": 1.6, "surprise": 0.4, None: 0.3, "sad": -1.1, "anger": -1.6, "disgust": -1.5, "fear": -0.9}
SENTIMENT_SPREAD = 0.8
# An annotator's rating of the dominant emotion, and of any other one.
DOMINANT_RATINGS = {0: 0.08, 1: 0.27, 2: 0.42, 3: 0.23}
OTHER_RATINGS = {0: 0.955, 1: 0.035, 2: 0.01}


_DOMINANT_NAMES = list(DOMINANT_WEIGHTS)
_DOMINANT_CUMULATIVE = np.cumsum(list(DOMINANT_WEIGHTS.values())) / sum(DOMINANT_WEIGHTS.values())


def _cumulative(distribution: dict[int, float]) -> np.ndarray:
    weights = np.array([distribution.get(value, 0.0) for value in range(4)])
    return np.cumsum(weights) / weights.sum()


# Per emotion, the cumulative rating distribution (ratings 0..3) given the dominant emotion.
_RATING_CUMULATIVE = {dominant: np.stack([_cumulative(DOMINANT_RATINGS if name == dominant else OTHER_RATINGS)
                                          for name in MOSEI_EMOTIONS]) for dominant in DOMINANT_WEIGHTS}


def draw_dominant(rng: np.random.Generator) -> str | None:
    return _DOMINANT_NAMES[int(np.searchsorted(_DOMINANT_CUMULATIVE, rng.random(), side="right"))]


def draw_ratings(dominant: str | None, rng: np.random.Generator) -> tuple[Rating, ...]:
    """The answers of ANNOTATORS annotators for a segment whose dominant emotion is `dominant`.

    Drawn with two generator calls per segment, not one per answer: the dai2021 corpus has
    20,477 segments, and per-answer draws made planning it take seconds."""
    sentiments = np.clip(np.round(rng.normal(SENTIMENT_MEAN[dominant], SENTIMENT_SPREAD, size=ANNOTATORS)), -3, 3)
    uniform = rng.random((ANNOTATORS, len(MOSEI_EMOTIONS)))
    cumulative = _RATING_CUMULATIVE[dominant]
    # The rating is how many of the cumulative bounds of its emotion the draw reaches.
    ratings = (uniform[:, :, None] >= cumulative[None, :, :3]).sum(axis=2)
    return tuple(Rating(int(sentiment), tuple(int(r) for r in row)) for sentiment, row in zip(sentiments, ratings))


def averaged(ratings: tuple[Rating, ...]) -> tuple[float, dict[str, float]]:
    """(sentiment, intensities) averaged over the annotators: what a reader of the MTurk CSVs gets."""
    count = len(ratings)
    sentiment = sum(r.sentiment for r in ratings) / count
    emotions = {name: sum(r.emotions[i] for r in ratings) / count for i, name in enumerate(MOSEI_EMOTIONS)}
    return sentiment, emotions


def csd_row(ratings: tuple[Rating, ...]) -> np.ndarray:
    """The .csd features row of a clip: sentiment then the six intensities, averaged, as float32."""
    sentiment, emotions = averaged(ratings)
    return np.array([sentiment, *(emotions[name] for name in MOSEI_EMOTIONS)], dtype=np.float32)
