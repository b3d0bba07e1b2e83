"""The script of a synthetic two-actor dialog: who says what, when, feeling what.

A script is planned once (cheaply, in the parent process) and then both written as annotation
files and rendered as media, so that annotations, audio and video agree by construction.
Times are seconds on the audio timeline, rounded to the 4 decimals the annotation files print.
"""
from __future__ import annotations

from dataclasses import dataclass

from mer_data.synth.emotions import Style


@dataclass(frozen=True)
class Turn:
    """One labelled utterance."""

    id: str
    speaker: str  # "F" | "M": the letter before the number in the id
    start: float
    end: float
    text: str  # the decoded transcript text
    category: str
    vad: tuple[float, float, float]
    style: Style


@dataclass(frozen=True)
class Aside:
    """A transcript line that is not a labelled utterance, written right after turn `after`.

    kind "backchannel": an id-less line (`M: Yeah.`); kind "xx": an unlabelled `XX` id with times.
    """

    kind: str
    line: str
    after: int


@dataclass(frozen=True)
class DialogScript:
    """Everything needed to write and render one dialog.

    `left_speaker` is the actor named by the session letter (the marker-wearing actor).
    `av_offset`: seconds by which the audio is later than the video. `seed` seeds the media
    rendering (speech, noise, head motion) of this dialog alone, so dialogs render independently.
    """

    name: str
    session: int
    left_speaker: str
    turns: tuple[Turn, ...]
    asides: tuple[Aside, ...]
    duration: float
    av_offset: float
    transcript_crlf: bool
    labels_crlf: bool
    seed: tuple[int, ...]

    def channel_of(self, speaker: str) -> int:
        """The WAV channel that carries `speaker`: 0 (left) for the left actor, 1 for the other."""
        return 0 if speaker == self.left_speaker else 1

    def side_of(self, speaker: str) -> str:
        return "left" if speaker == self.left_speaker else "right"
