"""Reader for the CMU-MOSEI release (`CMU_MOSEI/Raw/`): annotations in, `Utterance` records out.

An utterance is a segment of the segmented transcript (`Transcript/Segmented/Combined/<vid>.txt`)
that carries a label, either from the SDK's `CMU_MOSEI_Labels.csd` (HDF5, one row per labelled
interval) or from the raw MTurk CSVs (one row per annotator, averaged here). Media files are not
opened, not even checked for existence: the media stage reports missing media per utterance.

Conventions:
- the utterance id is `<vid>_<clip>` (the id of the Dai et al. split lists); the times are the
  transcript's, a negative start clamped to 0 (with a note and a count);
- MOSEI has one speaker per video (a single YouTube monologue), so the speaker is the video id and
  the gender is unknown (None); the speaker fills the whole frame (`video_region` "full");
- `.csd` label intervals are matched to the segment of the same video with the closest times, both
  ends within MATCH_TOLERANCE_S; segments without a label are counted, not converted;
- paths in `sources` are relative to the Raw directory; label files beside it read `../Labels/...`.

Policy on damaged input, so that nothing vanishes silently: an unreadable transcript line, a label
that matches no segment, an unreadable label row and an id that cannot be a shard key are each a
`Problem` naming file, line (where there is one) and reason; the rest is read.
"""
from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator, Sequence

from mer_data.records import CorpusReading, Problem, Utterance

CORPUS = "mosei"
RAW_DIR_NAME = "Raw"
RELEASE_DIR_NAME = "CMU_MOSEI"
TRANSCRIPT_DIR = "Transcript/Segmented/Combined"
VIDEO_DIR = "Videos/Full/Combined"
AUDIO_DIR = "Audio/Full/WAV_16000"
LABELS_DIR_NAME = "Labels"
CSD_FILE_NAME = "CMU_MOSEI_Labels.csd"
LABEL_SOURCES = ("csd", "mturk")

# The label order in the .csd rows, after sentiment; also the order of the multi-hot vector.
MOSEI_EMOTIONS = ("happy", "sad", "anger", "surprise", "disgust", "fear")
CSD_COLUMNS = 1 + len(MOSEI_EMOTIONS)
# What one video's label arrays may declare: the release labels a few hundred segments at most;
# an HDF5 file can declare terabytes it does not hold, and reading them would try to allocate it.
MAX_CSD_LABEL_BYTES = 64 << 20
SENTIMENT_RANGE = (-3.0, 3.0)
INTENSITY_RANGE = (0.0, 3.0)

MTURK_VIDEO_COLUMN = "Input.VIDEO_ID"
MTURK_CLIP_COLUMN = "Input.CLIP"
MTURK_SENTIMENT_COLUMN = "Answer.sentiment"
MTURK_EMOTION_COLUMNS = {
    "happy": "Answer.happiness",
    "sad": "Answer.sadness",
    "anger": "Answer.anger",
    "surprise": "Answer.surprise",
    "disgust": "Answer.disgust",
    "fear": "Answer.fear",
}
# Extensions that a VIDEO_ID with a path prefix may carry.
MEDIA_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".webm", ".flv", ".mov", ".wav", ".mp3"})
MTURK_COLUMNS = (MTURK_VIDEO_COLUMN, MTURK_CLIP_COLUMN, MTURK_SENTIMENT_COLUMN, *MTURK_EMOTION_COLUMNS.values())

FIELD_SEPARATOR = "___"
# The .csd stores its intervals with float rounding of its own; the segments it labels agree to
# a few milliseconds, and neighbouring segments are further apart than this.
MATCH_TOLERANCE_S = 0.05
EXAMPLES_IN_STATS = 10

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_WHOLE_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class Segment:
    """One line of a segmented transcript. `clamped`: the start was negative and is now 0."""

    video_id: str
    clip: int
    start: float
    end: float
    text: str
    line: int  # 1-based
    clamped: bool = False

    @property
    def utterance_id(self) -> str:
        return f"{self.video_id}_{self.clip}"


@dataclass(frozen=True)
class CsdLabel:
    """One row of a video in the .csd: the interval as stored (may be negative) and its labels."""

    start: float
    end: float
    sentiment: float
    emotions: dict[str, float]
    row: int  # 0-based row in the video's `features`/`intervals` arrays


@dataclass(frozen=True)
class MturkLabel:
    """The MTurk annotations of one clip, averaged over `annotators` rows.

    `file` and `line` point at the first of those rows (1-based line, the header is line 1).
    """

    sentiment: float
    emotions: dict[str, float]
    annotators: int
    file: str
    line: int


@dataclass(frozen=True)
class MoseiVideo:
    """One video of the release (a transcript file) and where its files are, relative to Raw/."""

    name: str
    video: str
    audio: str
    transcript: str


@dataclass(frozen=True)
class LabelledSegment:
    """A segment and the label found for it, whichever source the label came from."""

    segment: Segment
    sentiment: float
    emotions: dict[str, float]
    labels_file: str
    labels_line: int | None


# --------------------------------------------------------------------------------------------
# The release layout


def _looks_like_raw(path: Path) -> bool:
    return (path / TRANSCRIPT_DIR).is_dir()


def find_mosei_root(path: Path) -> Path:
    """The Raw directory: `path` itself, `path/Raw` or `path/CMU_MOSEI/Raw`."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a directory (expected the CMU-MOSEI release)")
    for candidate in (path, path / RAW_DIR_NAME, path / RELEASE_DIR_NAME / RAW_DIR_NAME):
        if _looks_like_raw(candidate):
            return candidate
    raise FileNotFoundError(
        f"{path} is not a CMU-MOSEI release: expected {TRANSCRIPT_DIR}/ in it, "
        f"in {path / RAW_DIR_NAME} or in {path / RELEASE_DIR_NAME / RAW_DIR_NAME}"
    )


def _relative(path: Path, root: Path) -> str:
    """`path` relative to `root`, POSIX style; `../` where it sits beside root."""
    return Path(os.path.relpath(path, root)).as_posix()


def _is_visible_file(path: Path) -> bool:
    # "._name" files are macOS resource forks that archives of the release often carry.
    return path.is_file() and not path.name.startswith(".")


def _label_search_dirs(raw: Path) -> list[Path]:
    """Where label files live: in Raw/ and beside it, directly or in a `Labels/` folder."""
    return [raw, raw / LABELS_DIR_NAME, raw.parent, raw.parent / LABELS_DIR_NAME]


def find_csd_labels(raw: Path) -> Path | None:
    """The SDK label file, the first found in `_label_search_dirs` order (None if there is none)."""
    for folder in _label_search_dirs(Path(raw)):
        if _is_visible_file(folder / CSD_FILE_NAME):
            return folder / CSD_FILE_NAME
    return None


def find_mturk_csvs(raw: Path) -> list[Path]:
    """Every `*.csv` in a `Labels/` folder in Raw/ or beside it, sorted by path."""
    found: list[Path] = []
    for folder in (Path(raw) / LABELS_DIR_NAME, Path(raw).parent / LABELS_DIR_NAME):
        found += sorted(path for path in folder.rglob("*.csv") if _is_visible_file(path))
    return found


def _video_of(raw: Path, transcript: Path) -> MoseiVideo:
    """The video a transcript file stands for; its media are named whether they exist or not."""
    name = transcript.stem
    return MoseiVideo(
        name=name,
        video=f"{VIDEO_DIR}/{name}.mp4",
        audio=f"{AUDIO_DIR}/{name}.wav",
        transcript=_relative(transcript, raw),
    )


# --------------------------------------------------------------------------------------------
# Numbers


def _parse_number(text: str) -> float | None:
    """A decimal number, or None; unlike float(), no "nan", "inf" or "1_0"."""
    text = text.strip()
    return float(text) if _NUMBER.fullmatch(text) else None


def _parse_clip(text: str) -> int | None:
    text = text.strip()
    return int(text) if _WHOLE_NUMBER.fullmatch(text) else None


def _label_values_problem(sentiment: float, emotions: dict[str, float]) -> str | None:
    """Why these label values cannot be a MOSEI label, or None where they can."""
    if not all(math.isfinite(value) for value in (sentiment, *emotions.values())):
        return "label values are not all finite numbers"
    low, high = SENTIMENT_RANGE
    if not low <= sentiment <= high:
        return f"sentiment {sentiment} is outside [{low:g}, {high:g}]"
    low, high = INTENSITY_RANGE
    outside = [name for name, value in emotions.items() if not low <= value <= high]
    if outside:
        return f"intensity of {', '.join(outside)} is outside [{low:g}, {high:g}]"
    return None


def mosei_label(sentiment: float, emotions: dict[str, float]) -> dict[str, Any]:
    """The label of a sample: sentiment, the six intensities and the multi-hot (intensity > 0)."""
    return {
        "sentiment": float(sentiment),
        "emotions": {name: float(emotions[name]) for name in MOSEI_EMOTIONS},
        "multi_hot": [int(emotions[name] > 0) for name in MOSEI_EMOTIONS],
    }


# --------------------------------------------------------------------------------------------
# Segmented transcripts


def _read_text_lines(path: Path) -> list[bytes]:
    data = Path(path).read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte order mark is not part of the first line
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # what follows the final line end is not a line
    return lines


def _parse_segment_line(text: str, video_id: str, number: int) -> Segment | str:
    """The segment on a stripped, non-blank line, or the reason it is not one.

    Split from the left: the file name gives the video id (which may itself start with `-` or
    `_`), then clip, start and end; the text is the rest and may hold `___` itself.
    """
    prefix = video_id + FIELD_SEPARATOR
    if not text.startswith(prefix):
        return f"line does not start with its file's video id and separator ({prefix})"
    fields = text[len(prefix):].split(FIELD_SEPARATOR, 3)
    if len(fields) < 4:
        return f"expected {video_id}___<clip>___<start>___<end>___<text>"
    clip_text, start_text, end_text, words = fields
    clip = _parse_clip(clip_text)
    if clip is None:
        return f"clip {clip_text!r} is not a whole number"
    start, end = _parse_number(start_text), _parse_number(end_text)
    if start is None or end is None:
        return f"times {start_text!r}, {end_text!r} are not numbers of seconds"
    clamped = start < 0
    start = 0.0 if start <= 0 else start
    if end <= start:
        return f"end {end} <= start {start}"
    return Segment(video_id, clip, start, end, words.strip(), number, clamped)


def _count_overlaps(segments: Sequence[Segment]) -> int:
    """How many segments start before an earlier-starting segment of the file has ended."""
    overlaps, latest_end = 0, -math.inf
    for segment in sorted(segments, key=lambda s: (s.start, s.end)):
        overlaps += segment.start < latest_end
        latest_end = max(latest_end, segment.end)
    return overlaps


def parse_segmented_transcript(path: Path, rel: str) -> tuple[list[Segment], list[Problem], dict[str, int]]:
    """Read one segmented transcript; `rel` is its path as named in problems.

    Returns the segments in file order, a Problem per line that is not a segment (a repeated
    clip keeps its first line), and counts: blank_lines, clamped_starts, overlapping_segments.
    """
    video_id = Path(path).stem
    segments: list[Segment] = []
    problems: list[Problem] = []
    first_line_of_clip: dict[int, int] = {}
    blank_lines = 0
    for number, raw in enumerate(_read_text_lines(path), start=1):
        try:
            text = raw.decode("utf-8").strip()  # also drops CR of CRLF and trailing spaces
        except UnicodeDecodeError:
            problems.append(Problem(rel, number, "not UTF-8 text"))
            continue
        if not text:
            blank_lines += 1
            continue
        segment = _parse_segment_line(text, video_id, number)
        if isinstance(segment, str):
            problems.append(Problem(rel, number, segment))
            continue
        if segment.clip in first_line_of_clip:
            reason = f"duplicate clip {segment.clip} (first at line {first_line_of_clip[segment.clip]}); ignored"
            problems.append(Problem(rel, number, reason, segment.utterance_id))
            continue
        first_line_of_clip[segment.clip] = number
        segments.append(segment)
    counts = {
        "blank_lines": blank_lines,
        "clamped_starts": sum(segment.clamped for segment in segments),
        "overlapping_segments": _count_overlaps(segments),
    }
    return segments, problems, counts


# --------------------------------------------------------------------------------------------
# SDK labels (.csd, HDF5)


def _csd_data_group(handle: Any, path: Path) -> Any:
    """`<root>/data` of an open .csd, whatever the root group is called; ValueError if absent."""
    import h5py

    roots = [name for name in handle if isinstance(handle[name], h5py.Group)]
    if len(roots) != 1:
        raise ValueError(f"{path}: expected one top-level group in the .csd, found {len(roots)} ({', '.join(roots)})")
    root = handle[roots[0]]
    if not isinstance(root.get("data"), h5py.Group):
        raise ValueError(f"{path}: no 'data' group in the .csd's top-level group {roots[0]!r}")
    return root["data"]


def _size_text(size: int) -> str:
    """2.9 TiB, 64.0 MiB, 120 B."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        scale = 1 << {"TiB": 40, "GiB": 30, "MiB": 20, "KiB": 10}[unit]
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def declared_size_problem(dataset: Any, max_bytes: int) -> str | None:
    """Why an HDF5 dataset is too large to read, judged on its declared shape and dtype alone
    (nothing is read), or None; the reason names the dataset's path inside the file."""
    size = math.prod(dataset.shape or ()) * dataset.dtype.itemsize
    if size <= max_bytes:
        return None
    return (f"{dataset.name} declares shape {tuple(dataset.shape)} of {dataset.dtype} ({_size_text(size)}), over "
            f"the {_size_text(max_bytes)} it may hold: not read")


def _csd_arrays(group: Any) -> tuple[Any, Any] | str:
    """(features, intervals) of one video's group as float arrays, or the reason they are not;
    shapes and sizes are checked on what the file declares, before anything is read."""
    import h5py
    import numpy as np

    if not isinstance(group, h5py.Group) or not {"features", "intervals"} <= set(group):
        return "expected 'features' and 'intervals' datasets"
    features, intervals = group["features"], group["intervals"]
    if not isinstance(features, h5py.Dataset) or not isinstance(intervals, h5py.Dataset):
        return "expected 'features' and 'intervals' datasets"
    if features.dtype.kind not in "fiub" or intervals.dtype.kind not in "fiu":
        return "'features' or 'intervals' does not hold numbers"
    if features.ndim != 2 or features.shape[1] != CSD_COLUMNS or intervals.shape != (features.shape[0], 2):
        return f"features {features.shape} and intervals {intervals.shape} are not N x {CSD_COLUMNS} and N x 2"
    too_large = declared_size_problem(features, MAX_CSD_LABEL_BYTES) or declared_size_problem(intervals,
                                                                                             MAX_CSD_LABEL_BYTES)
    if too_large:
        return too_large
    return np.asarray(features[()], dtype=float), np.asarray(intervals[()], dtype=float)


def _read_csd_video(group: Any, video_id: str, rel: str) -> tuple[list[CsdLabel], list[Problem]]:
    arrays = _csd_arrays(group)
    if isinstance(arrays, str):
        return [], [Problem(rel, None, f"video {video_id}: {arrays}")]
    labels, problems = [], []
    for row, (values, interval) in enumerate(zip(*arrays)):
        start, end = float(interval[0]), float(interval[1])
        sentiment = float(values[0])
        emotions = {name: float(value) for name, value in zip(MOSEI_EMOTIONS, values[1:])}
        reason = _label_values_problem(sentiment, emotions)
        if reason is None and not (math.isfinite(start) and math.isfinite(end) and end > start):
            reason = "is not a time interval (end must be after start)"
        if reason is not None:
            problems.append(Problem(rel, None, f"label interval [{start}, {end}] of {video_id} (row {row}): {reason}"))
            continue
        labels.append(CsdLabel(start, end, sentiment, emotions, row))
    return labels, problems


def read_csd_labels(path: Path, rel: str | None = None) -> tuple[dict[str, list[CsdLabel]], list[Problem]]:
    """Read `CMU_MOSEI_Labels.csd`: video id -> its labels in file row order (unsorted).

    `rel` is the path as named in problems (default: the file name). A file that is not a .csd
    at all raises ValueError; a damaged video or row is a Problem.
    """
    import h5py

    rel = rel or Path(path).name
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path} is not a readable HDF5 (.csd) file: {error}") from None
    labels: dict[str, list[CsdLabel]] = {}
    problems: list[Problem] = []
    with handle:
        data = _csd_data_group(handle, path)
        for video_id in sorted(data):
            video_labels, video_problems = _read_csd_video(data[video_id], video_id, rel)
            labels[video_id] = video_labels
            problems += video_problems
    return labels, problems


def _interval_distance(label: CsdLabel, segment: Segment) -> tuple[float, float]:
    """(worst, total) distance of the two ends, the label's negative start clamped like the segment's."""
    start_difference = abs(max(label.start, 0.0) - segment.start)
    end_difference = abs(label.end - segment.end)
    return max(start_difference, end_difference), start_difference + end_difference


def match_csd_labels(
    labels: Sequence[CsdLabel], segments: Sequence[Segment]
) -> tuple[list[tuple[Segment, CsdLabel]], list[tuple[CsdLabel, str]]]:
    """Pair the labels of one video with its segments, closest pairs first, one label per segment.

    Returns the pairs and, for each label left over, the reason (without the label's name).
    """
    distances = (
        (_interval_distance(label, segment), label_index, segment_index)
        for label_index, label in enumerate(labels)
        for segment_index, segment in enumerate(segments)
    )
    candidates = sorted(candidate for candidate in distances if candidate[0][0] <= MATCH_TOLERANCE_S)
    segment_of_label: dict[int, int] = {}
    taken_segments: set[int] = set()
    for _, label_index, segment_index in candidates:
        if label_index not in segment_of_label and segment_index not in taken_segments:
            segment_of_label[label_index] = segment_index
            taken_segments.add(segment_index)
    pairs = [(segments[segment_index], labels[label_index]) for label_index, segment_index in sorted(segment_of_label.items())]
    near = defaultdict(list)
    for _, label_index, segment_index in candidates:
        near[label_index].append(segments[segment_index].clip)
    leftovers = [
        (label, _unmatched_reason(near[index]))
        for index, label in enumerate(labels)
        if index not in segment_of_label
    ]
    return pairs, leftovers


def _unmatched_reason(near_clips: list[int]) -> str:
    if not near_clips:
        return "matches no transcript segment"
    clips = ", ".join(str(clip) for clip in sorted(near_clips))
    return f"matches only transcript segments that closer labels took (clips {clips})"


# --------------------------------------------------------------------------------------------
# MTurk labels (CSV)


def _mturk_video_id(value: str) -> str:
    """`Input.VIDEO_ID` without a path prefix or media extension (`videos/abc.mp4` -> `abc`).

    Only media extensions are stripped, so that an id with a dot of its own stays whole (and is
    then reported as an id that cannot be a shard key).
    """
    name = PurePosixPath(value.strip().replace("\\", "/")).name
    stem, dot, extension = name.rpartition(".")
    return stem if dot and f".{extension.lower()}" in MEDIA_EXTENSIONS else name


def _parse_mturk_row(row: dict[str, str]) -> tuple[tuple[str, int], float, dict[str, float]] | str:
    """((video id, clip), sentiment, intensities) of one annotator's row, or the reason it is unreadable."""
    video_id = _mturk_video_id(row[MTURK_VIDEO_COLUMN])
    if not video_id:
        return f"{MTURK_VIDEO_COLUMN} is empty"
    clip = _parse_clip(row[MTURK_CLIP_COLUMN])
    if clip is None:
        return f"{MTURK_CLIP_COLUMN} {row[MTURK_CLIP_COLUMN]!r} is not a whole number"
    numbers: dict[str, float] = {}
    for column in (MTURK_SENTIMENT_COLUMN, *MTURK_EMOTION_COLUMNS.values()):
        value = _parse_number(row[column])
        if value is None:
            return f"{column} {row[column]!r} is not a number"
        numbers[column] = value
    sentiment = numbers[MTURK_SENTIMENT_COLUMN]
    emotions = {name: numbers[column] for name, column in MTURK_EMOTION_COLUMNS.items()}
    reason = _label_values_problem(sentiment, emotions)
    return reason if reason is not None else ((video_id, clip), sentiment, emotions)


def _csv_rows(path: Path, rel: str) -> Iterator[tuple[int, dict[str, str]] | Problem]:
    """The data rows of a CSV as (1-based first line, column -> value), or a single Problem where
    the header lacks a needed column."""
    # The columns read here are ids and numbers: bytes that are not UTF-8 (in free-text answers
    # of some batches) must not cost the row, so they are replaced rather than refused.
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        missing = [column for column in MTURK_COLUMNS if column not in header]
        if missing:
            yield Problem(rel, 1, f"missing columns: {', '.join(missing)}")
            return
        first_line = reader.line_num + 1
        for cells in reader:
            row = dict(zip(header, [*cells, *[""] * len(header)]))  # short rows: missing cells are empty
            yield first_line, row
            first_line = reader.line_num + 1


def _is_empty_row(row: dict[str, str]) -> bool:
    """A row with no label data: a blank line, only separators, or a returned HIT's comment."""
    return not any(row[column].strip() for column in MTURK_COLUMNS)


def _average(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values)


def _averaged(annotations: list[tuple[float, dict[str, float]]], file: str, line: int) -> MturkLabel:
    return MturkLabel(
        sentiment=_average(sentiment for sentiment, _ in annotations),
        emotions={name: _average(emotions[name] for _, emotions in annotations) for name in MOSEI_EMOTIONS},
        annotators=len(annotations),
        file=file,
        line=line,
    )


def read_mturk_labels(
    paths: Iterable[Path], relative_to: Path | None = None
) -> tuple[dict[tuple[str, int], MturkLabel], list[Problem], dict[str, Any]]:
    """Read MTurk CSVs: (video id, clip) -> the intensities averaged over its annotators.

    Files are named in problems relative to `relative_to` (default: as given). Rows without any
    label data (ids and answers all blank) are skipped and counted; an unreadable row is a Problem (file, 1-based line).
    """
    annotations: dict[tuple[str, int], list[tuple[float, dict[str, float]]]] = defaultdict(list)
    first_row: dict[tuple[str, int], tuple[str, int]] = {}
    problems: list[Problem] = []
    counts = Counter()
    for path in paths:
        rel = _relative(Path(path), relative_to) if relative_to is not None else str(path)
        for item in _csv_rows(Path(path), rel):
            if isinstance(item, Problem):
                problems.append(item)
                continue
            line, row = item
            if _is_empty_row(row):
                counts["empty_rows"] += 1
                continue
            parsed = _parse_mturk_row(row)
            if isinstance(parsed, str):
                problems.append(Problem(rel, line, parsed))
                continue
            key, sentiment, emotions = parsed
            annotations[key].append((sentiment, emotions))
            first_row.setdefault(key, (rel, line))
            counts["rows"] += 1
    labels = {key: _averaged(annotations[key], *first_row[key]) for key in sorted(annotations)}
    stats = {
        "rows": counts["rows"],
        "empty_rows": counts["empty_rows"],
        "annotators_per_clip": dict(sorted(Counter(label.annotators for label in labels.values()).items())),
    }
    return labels, problems, stats


# --------------------------------------------------------------------------------------------
# Joining transcripts and labels into utterances


def _no_transcript_problem(file: str, line: int | None, video_id: str, records: int) -> Problem:
    return Problem(file, line, f"video {video_id} has {records} labelled segment(s) but no transcript file "
                               f"{TRANSCRIPT_DIR}/{video_id}.txt")


def _labels_from_csd(raw: Path, segments_of: dict[str, list[Segment]]) -> tuple[list[LabelledSegment], list[Problem], dict[str, Any]]:
    path = find_csd_labels(raw)
    if path is None:
        searched = ", ".join(str(folder) for folder in _label_search_dirs(raw))
        raise FileNotFoundError(f"no {CSD_FILE_NAME} in {searched}; use labels='mturk' for the MTurk CSVs")
    rel = _relative(path, raw)
    labels_of, problems = read_csd_labels(path, rel)
    labelled: list[LabelledSegment] = []
    for video_id, labels in labels_of.items():
        if video_id not in segments_of:
            problems.append(_no_transcript_problem(rel, None, video_id, len(labels)))
            continue
        pairs, leftovers = match_csd_labels(labels, segments_of[video_id])
        labelled += [LabelledSegment(segment, label.sentiment, label.emotions, rel, None) for segment, label in pairs]
        problems += [Problem(rel, None, f"label interval [{label.start}, {label.end}] of {video_id} {reason}")
                     for label, reason in leftovers]
    records = sum(len(labels) for labels in labels_of.values())
    return labelled, problems, {"labels_files": [rel], "label_records": records}


def _labels_from_mturk(raw: Path, segments_of: dict[str, list[Segment]]) -> tuple[list[LabelledSegment], list[Problem], dict[str, Any]]:
    paths = find_mturk_csvs(raw)
    if not paths:
        raise FileNotFoundError(f"no *.csv in {raw / LABELS_DIR_NAME} or {raw.parent / LABELS_DIR_NAME}; "
                                f"use labels='csd' for {CSD_FILE_NAME}")
    labels, problems, mturk_stats = read_mturk_labels(paths, relative_to=raw)
    segment_of = {(s.video_id, s.clip): s for segments in segments_of.values() for s in segments}
    labelled: list[LabelledSegment] = []
    clips_without_transcript: dict[str, list[MturkLabel]] = defaultdict(list)
    for (video_id, clip), label in labels.items():
        segment = segment_of.get((video_id, clip))
        if segment is not None:
            labelled.append(LabelledSegment(segment, label.sentiment, label.emotions, label.file, label.line))
        elif video_id not in segments_of:
            clips_without_transcript[video_id].append(label)
        else:
            problems.append(Problem(label.file, label.line, f"MTurk label of {video_id} clip {clip} matches no transcript segment"))
    for video_id, video_labels in clips_without_transcript.items():
        problems.append(_no_transcript_problem(video_labels[0].file, video_labels[0].line, video_id, len(video_labels)))
    stats = {"labels_files": [_relative(path, raw) for path in paths], "label_records": len(labels), "mturk": mturk_stats}
    return labelled, problems, stats


def utterance_id_problem(utt_id: str) -> str | None:
    """Why `utt_id` cannot be a shard key (`__key__`), or None where it can."""
    if "." in utt_id:
        return "utterance id contains '.': tar readers take what follows the first '.' as the member extension"
    if utt_id.startswith("__"):
        return "utterance id starts with '__': the Hugging Face webdataset reader silently drops such keys"
    return None


def _utterance(item: LabelledSegment, video: MoseiVideo) -> Utterance:
    segment = item.segment
    notes = ("negative start time in the transcript clamped to 0",) if segment.clamped else ()
    return Utterance(
        id=segment.utterance_id,
        corpus=CORPUS,
        recording=video.name,
        speaker=video.name,  # one speaker per MOSEI video
        gender=None,
        start=segment.start,
        end=segment.end,
        label=mosei_label(item.sentiment, item.emotions),
        text=segment.text,
        video_region="full",
        audio_channel=None,
        sources={"video": video.video, "audio": video.audio, "transcript": video.transcript, "labels": item.labels_file},
        lines={"transcript": segment.line, "labels": item.labels_line},
        notes=notes,
    )


def _utterances(labelled: list[LabelledSegment], video_of_name: dict[str, MoseiVideo]) -> tuple[list[Utterance], list[Problem]]:
    utterances, problems = [], []
    for item in sorted(labelled, key=lambda item: (item.segment.video_id, item.segment.clip)):
        video = video_of_name[item.segment.video_id]
        reason = utterance_id_problem(item.segment.utterance_id)
        if reason is None:
            utterances.append(_utterance(item, video))
        else:
            problems.append(Problem(video.transcript, item.segment.line, reason, item.segment.utterance_id))
    return utterances, problems


def _read_transcripts(raw: Path) -> tuple[list[MoseiVideo], dict[str, list[Segment]], list[Problem], Counter]:
    videos: list[MoseiVideo] = []
    segments_of: dict[str, list[Segment]] = {}
    problems: list[Problem] = []
    counts: Counter = Counter()
    for path in sorted((raw / TRANSCRIPT_DIR).glob("*.txt")):
        if not _is_visible_file(path):
            continue
        video = _video_of(raw, path)
        segments, file_problems, file_counts = parse_segmented_transcript(path, video.transcript)
        videos.append(video)
        segments_of[video.name] = segments
        problems += file_problems
        counts.update(file_counts)
    return videos, segments_of, problems, counts


def _stats(labels: str, videos: list[MoseiVideo], segments_of: dict[str, list[Segment]], labelled: list[LabelledSegment],
           utterances: list[Utterance], problems: list[Problem], transcript_counts: Counter, label_stats: dict[str, Any]) -> dict[str, Any]:
    labelled_keys = {(item.segment.video_id, item.segment.clip) for item in labelled}
    unlabelled = [s.utterance_id for segments in segments_of.values() for s in segments if (s.video_id, s.clip) not in labelled_keys]
    labelled_videos = {video_id for video_id, _ in labelled_keys}
    return {
        "labels": labels,
        **label_stats,
        "videos": len(videos),
        "videos_without_labels": sum(video.name not in labelled_videos for video in videos),
        "segments": sum(len(segments) for segments in segments_of.values()),
        "utterances": len(utterances),
        "unlabelled_segments": len(unlabelled),
        "unlabelled_segments_examples": unlabelled[:EXAMPLES_IN_STATS],
        "blank_lines": transcript_counts["blank_lines"],
        "clamped_starts": transcript_counts["clamped_starts"],
        "overlapping_segments": transcript_counts["overlapping_segments"],
        "emotion_present": {name: sum(u.label["multi_hot"][i] for u in utterances) for i, name in enumerate(MOSEI_EMOTIONS)},
        "problems": len(problems),
    }


def read_mosei(root: Path, labels: str = "csd") -> CorpusReading:
    """Read the release (Raw/, CMU_MOSEI/ or a parent) into utterances, problems and stats.

    `labels` picks the label source: "csd" (the SDK's CMU_MOSEI_Labels.csd) or "mturk" (the raw
    MTurk CSVs under Labels/); FileNotFoundError where it is absent.
    """
    if labels not in LABEL_SOURCES:
        raise ValueError(f"labels must be one of {', '.join(LABEL_SOURCES)}, not {labels!r}")
    raw = find_mosei_root(Path(root))
    videos, segments_of, problems, transcript_counts = _read_transcripts(raw)
    read_labels = _labels_from_csd if labels == "csd" else _labels_from_mturk
    labelled, label_problems, label_stats = read_labels(raw, segments_of)
    utterances, id_problems = _utterances(labelled, {video.name: video for video in videos})
    problems += label_problems + id_problems
    stats = _stats(labels, videos, segments_of, labelled, utterances, problems, transcript_counts, label_stats)
    return CorpusReading(utterances, problems, videos, stats, raw)
