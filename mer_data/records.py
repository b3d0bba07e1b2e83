"""The small records that flow between the corpus readers, the media cutter and the shard packer.

One concept per class; every stage speaks in these, so a newcomer can follow an utterance from the
raw release to its shard by following these types.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# The splits an utterance is assigned to and a sample is packed in, in this order everywhere (shards,
# index rows, card counts). Defined here, below both the corpus readers and the shard contract
# (mer_data/shards/layout.py names it with the contract's file names), so neither imports the other.
SPLITS = ("train", "valid", "test")

@dataclass(frozen=True)
class Problem:
    """Something wrong with the input, precise enough to act on: which file, which line, why.

    `utterance` is the corpus id the problem costs (None where a whole file or a line without an
    id is affected). `stage` says who found it: "read" (annotations), "split" (no split for it), "media" (audio/video), "pack".
    """

    file: str
    line: int | None
    reason: str
    utterance: str | None = None
    stage: str = "read"

    def format(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        who = f" [{self.utterance}]" if self.utterance else ""
        return f"{where}:{who} {self.reason}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def sort_key(self) -> tuple:
        """The order of error logs (errors.jsonl, reports): by utterance, then file, line and reason, so
        logs diff cleanly; the trailing fields only break ties, so that equal-looking problems still
        get one order whatever order the workers reported them in."""
        return (self.utterance or "", self.file, self.line or 0, self.reason, self.stage, self.line is None)


@dataclass(frozen=True)
class Utterance:
    """One annotated utterance of a corpus, before any media work.

    Times are seconds in the source recording. `label` holds the label in the corpus's own terms
    (IEMOCAP: {"category": "neu", "vad": [v, a, d]}). `video_region` is "left", "right" or "full";
    `audio_channel` is the channel of the recording's audio that carries this speaker (None: mono
    or downmix). `sources` maps "video", "audio", "transcript", "labels" to paths relative to the
    corpus root; `lines` maps "transcript"/"labels" to 1-based line numbers in those files.
    `words`: the word timings (IEMOCAP's ForcedAlignment, `corpora.wdseg.WordTiming`, seconds from
    the utterance start), None where there are none; `word_timings` says why: "present", "missing"
    (no file), "malformed" (a file out of format), None for a corpus without them (MOSEI).
    """

    id: str
    corpus: str
    recording: str
    speaker: str
    gender: str | None
    start: float
    end: float
    label: dict[str, Any]
    text: str
    video_region: str
    audio_channel: int | None
    sources: dict[str, str]
    lines: dict[str, int | None] = field(default_factory=dict)
    session: int | None = None
    notes: tuple[str, ...] = ()
    words: tuple[Any, ...] | None = None
    word_timings: str | None = None


@dataclass(frozen=True)
class CutRequest:
    """What the media cutter must produce for one utterance of a recording."""

    key: str
    start: float
    end: float
    video_region: str  # "left" | "right" | "full"
    audio_channel: int | None


@dataclass
class CutResult:
    """What the media cutter produced for one utterance: two files and the facts about them.

    audio: sample_rate, samples, duration, channel, source_start_sample, source_end_sample.
    video: fps (float), fps_fraction ("30000/1001"), frames, first_frame (index in the source),
           width, height, crop ([x, y, w, h] in the source frame), region, duration,
           start_time (source time of the first frame).
    faces: detector, interval_ms, detection_rate, frames: [{"frame": i (index in the clip),
           "time": t (seconds from clip start), "box": [x, y, w, h] in clip pixels or None}].
    """

    key: str
    flac: Path
    mp4: Path
    audio: dict[str, Any]
    video: dict[str, Any]
    faces: dict[str, Any]


@dataclass
class StagedSample:
    """A finished sample on disk, waiting to be packed: member extension -> file path."""

    key: str
    split: str
    recording: str
    members: dict[str, Path]
    index_row: dict[str, Any]


@dataclass
class CorpusReading:
    """What a corpus reader found: the same shape for every corpus (one recipe per corpus).

    `recordings` are the corpus's source recordings (IEMOCAP dialogs, MOSEI videos); `root` is the
    directory that every relative path in the utterances starts from.
    """

    utterances: list[Utterance]
    problems: list[Problem]
    recordings: list[Any]
    stats: dict[str, Any]
    root: Path | None = None

