"""How each emotion class shows in every modality of the synthetic corpora.

One profile per IEMOCAP category code, so that the cues of voice, face, text and the V/A/D
ratings stay consistent with each other. Every cue is jittered per utterance (see `draw_style`)
so that classes overlap: each modality alone predicts the label well, but not perfectly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OTHER_CODES = ("xxx", "oth", "sur", "fea", "dis")


@dataclass(frozen=True)
class EmotionProfile:
    """Class means of every cue.

    vad: valence, arousal, dominance on IEMOCAP's 1..5 scale. pitch: factor on the speaker's base
    F0; pitch_range: F0 excursion in semitones; energy: speech gain; rate: syllables per second;
    mouth_curve: -1 frown .. +1 smile; brow_angle: degrees (+ angry, - sad); evaluator_name: the
    word EmoEvaluation's annotator lines use.
    """

    code: str
    vad: tuple[float, float, float]
    pitch: float
    pitch_range: float
    energy: float
    rate: float
    mouth_curve: float
    brow_angle: float
    evaluator_name: str


PROFILES = {
    p.code: p
    for p in (
        EmotionProfile("ang", (1.8, 4.0, 3.9), 1.20, 7.0, 1.50, 5.6, -0.7, 16.0, "Anger"),
        EmotionProfile("exc", (4.0, 3.9, 3.4), 1.35, 8.0, 1.30, 5.2, 0.9, -4.0, "Excited"),
        EmotionProfile("fru", (2.0, 3.2, 3.2), 1.05, 4.0, 1.00, 4.4, -0.4, 9.0, "Frustration"),
        EmotionProfile("hap", (4.1, 3.0, 3.1), 1.15, 6.0, 0.95, 4.0, 0.8, -1.0, "Happiness"),
        EmotionProfile("neu", (3.0, 2.4, 2.9), 1.00, 2.0, 0.80, 3.8, 0.0, 0.0, "Neutral"),
        EmotionProfile("sad", (2.0, 2.0, 2.3), 0.85, 1.5, 0.55, 2.8, -0.6, -14.0, "Sadness"),
        EmotionProfile("xxx", (2.8, 3.0, 3.0), 1.05, 4.0, 0.95, 4.2, 0.0, 3.0, "Neutral"),
        EmotionProfile("oth", (3.0, 3.0, 3.0), 1.05, 4.0, 0.90, 4.0, 0.1, 0.0, "Other"),
        EmotionProfile("sur", (3.3, 3.9, 2.9), 1.30, 9.0, 1.10, 4.6, 0.2, -10.0, "Surprise"),
        EmotionProfile("fea", (1.9, 3.6, 2.1), 1.25, 5.0, 0.80, 5.0, -0.5, -12.0, "Fear"),
        EmotionProfile("dis", (1.8, 3.2, 3.4), 0.95, 3.0, 0.90, 3.6, -0.8, 10.0, "Disgust"),
    )
}

# Frequencies of the six classes in the real IEMOCAP six-class set (7,380 utterances).
SIX_CLASS_WEIGHTS = {"ang": 1103, "exc": 1041, "fru": 1849, "hap": 595, "neu": 1708, "sad": 1084}
# Frequencies of the other codes among themselves (xxx, "no agreement", dominates in the release).
OTHER_CODE_WEIGHTS = {"xxx": 0.8, "sur": 0.1, "fea": 0.05, "oth": 0.025, "dis": 0.025}


@dataclass(frozen=True)
class Style:
    """The jittered cues of one utterance: what the voice and face renderers use."""

    pitch: float
    pitch_range: float
    energy: float
    rate: float
    mouth_curve: float
    brow_angle: float


def draw_style(code: str, rng: np.random.Generator) -> Style:
    """The cues of one utterance of class `code`, jittered so that neighbouring classes overlap."""
    p = PROFILES[code]
    return Style(
        pitch=float(p.pitch * np.exp(rng.normal(0, 0.07))),
        pitch_range=float(max(0.5, p.pitch_range + rng.normal(0, 1.5))),
        energy=float(p.energy * np.exp(rng.normal(0, 0.15))),
        rate=float(max(2.0, p.rate + rng.normal(0, 0.5))),
        mouth_curve=float(np.clip(p.mouth_curve + rng.normal(0, 0.3), -1, 1)),
        brow_angle=float(p.brow_angle + rng.normal(0, 5.0)),
    )


def draw_vad(code: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """V/A/D ratings around the class means, in [1, 5], rounded to the 4 decimals the files print."""
    values = np.clip(np.array(PROFILES[code].vad) + rng.normal(0, 0.45, size=3), 1.0, 5.0)
    return tuple(round(float(v), 4) for v in values)


def draw_six_class(rng: np.random.Generator) -> str:
    codes = list(SIX_CLASS_WEIGHTS)
    weights = np.array([SIX_CLASS_WEIGHTS[c] for c in codes], dtype=float)
    return codes[int(rng.choice(len(codes), p=weights / weights.sum()))]


def draw_other_code(rng: np.random.Generator) -> str:
    codes = list(OTHER_CODE_WEIGHTS)
    weights = np.array([OTHER_CODE_WEIGHTS[c] for c in codes])
    return codes[int(rng.choice(len(codes), p=weights / weights.sum()))]
