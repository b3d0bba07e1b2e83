"""The script of a synthetic CMU-MOSEI video: one speaker, their segments, labels and quirks.

A script is planned once (cheaply, in the parent process) and then both written as annotation
files (transcript, .csd rows, MTurk rows) and rendered as media, so that annotations, audio and
video agree by construction. Times are seconds on the video's timeline.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from mer_data.synth.emotions import Style


@dataclass(frozen=True)
class VideoFormat:
    """Frame size and exact frame rate of a video stream."""

    width: int
    height: int
    fps: Fraction

    @property
    def name(self) -> str:
        rate = str(self.fps.numerator) if self.fps.denominator == 1 else f"{self.fps.numerator}/{self.fps.denominator}"
        return f"{self.width}x{self.height}@{rate}"


@dataclass(frozen=True)
class Rating:
    """One MTurk annotator's answers for one clip: sentiment in -3..3, each emotion in 0..3
    (in MOSEI_EMOTIONS order: happy, sad, anger, surprise, disgust, fear)."""

    sentiment: int
    emotions: tuple[int, ...]


@dataclass(frozen=True)
class SegmentScript:
    """One line of the segmented transcript, and what the label files say about it.

    `start`/`end` are the times as written (`start` may be negative); `start_text`/`end_text` how
    they are written. `text` is the transcript text as a reader gets it back (stripped);
    `trailing_spaces` are written after it. `ratings` are the MTurk annotations (empty: the
    segment is unlabelled); `in_csd`/`in_mturk` say which label files carry them; `csd_interval`
    is the interval the .csd stores (close to, not equal to, the transcript's). `black`: "none",
    "full" (every frame of the segment is black) or "second_half". `speech_end`: where its speech
    ends (the media end for a segment that runs past it).
    """

    clip: int
    start: float
    end: float
    start_text: str
    end_text: str
    text: str
    trailing_spaces: int
    style_code: str  # the emotion profile the voice, face and words follow (hap, sad, ..., neu)
    dominant: str | None  # the MOSEI emotion the annotators were drawn around (None: neutral)
    style: Style
    ratings: tuple[Rating, ...]
    in_csd: bool
    in_mturk: bool
    csd_interval: tuple[float, float] | None
    black: str = "none"

    @property
    def clamped_start(self) -> float:
        return max(0.0, self.start)


@dataclass(frozen=True)
class OrphanLabel:
    """A label record that matches no transcript segment: a .csd interval (`interval` set) or
    MTurk rows of a clip the transcript does not have (`clip` set)."""

    clip: int | None
    interval: tuple[float, float] | None
    ratings: tuple[Rating, ...]


@dataclass(frozen=True)
class VideoScript:
    """Everything needed to write and render one video of the release.

    `format` None: the MP4 holds no video stream (audio only). `repeats` > 1: the first
    `unit_duration` seconds (its segments all lie inside) are rendered once and repeated, which
    keeps a long video cheap to make. `line_order` is the order of clips in the transcript file
    (not sorted where the quirk asks); `blank_lines_after` the transcript lines (1-based, counting
    only segment lines) followed by a blank line. `mturk_video_id` is how the MTurk CSVs name
    the video (maybe with a path prefix). `seed` seeds the rendering of this video alone.
    """

    video_id: str
    speaker: str  # "F" | "M": the voice and the look
    background: str  # "left" | "right": which of the synthetic backgrounds (faces.SIDE_BACKGROUND)
    format: VideoFormat | None
    duration: float
    unit_duration: float
    repeats: int
    segments: tuple[SegmentScript, ...]
    line_order: tuple[int, ...]
    blank_lines_after: tuple[int, ...]
    crlf: bool
    has_wav: bool
    tiny: bool  # written in-process without an audio track (the --ids-from corpora)
    mturk_video_id: str
    mturk_batch: int
    orphan_labels: tuple[OrphanLabel, ...]
    seed: tuple[int, ...]

    @property
    def has_video_stream(self) -> bool:
        return self.format is not None

    def segment(self, clip: int) -> SegmentScript:
        return next(s for s in self.segments if s.clip == clip)

    def rendered_segments(self) -> list[SegmentScript]:
        """The segments whose speech is rendered: those of the first unit, inside the media."""
        return [s for s in self.segments if s.clamped_start < min(self.unit_duration, self.duration)]
