"""The options of the synthetic releases and their defaults, declared once: the synth functions take
them as keyword defaults and `mer synth` shows and uses the same values. Nothing heavy is imported
here, so the CLI can read it when it starts (the generators load numpy and OpenCV)."""
from __future__ import annotations

from dataclasses import dataclass

VOICES = ("auto", "espeak", "synth")   # espeak-ng where available (auto), or the synthesized voice


@dataclass(frozen=True)
class IemocapSynthOptions:
    sessions: tuple[int, ...] = (1, 2, 3, 4, 5)
    dialogs_per_session: int = 2
    utterances_per_dialog: int = 24
    seed: int = 0
    frame_size: tuple[int, int] = (720, 480)   # width, height of the dialog videos
    voice: str = "auto"


@dataclass(frozen=True)
class MoseiSynthOptions:
    videos: int = 8                      # without ids_from; with it, every listed video
    seed: int = 0
    long_video_minutes: float = 10.0     # the default corpus's long video (0: none)
    voice: str = "auto"


IEMOCAP_DEFAULTS = IemocapSynthOptions()
MOSEI_DEFAULTS = MoseiSynthOptions()
