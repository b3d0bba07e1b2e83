"""The annotation files of a synthetic CMU-MOSEI release, with the quirks of the real one.

- Segmented transcripts: `<vid>___<clip>___<start>___<end>___<text>` per line, in the order and
  with the blank lines, trailing spaces, time precisions and line ends each script asks for.
- `CMU_MOSEI_Labels.csd`: HDF5 in the CMU Multimodal SDK's layout (`<root>/data/<vid>/features`
  N x 7 float32: sentiment, happy, sad, anger, surprise, disgust, fear, averaged over the
  annotators; `intervals` N x 2 float64 seconds; `<root>/metadata/<key>` one JSON string each, as
  the SDK's `write_CSD` stores them), rows not in time order.
- MTurk CSVs: one row per annotator and clip, two batches with different column orders,
  `Input.VIDEO_ID` with a path prefix for some videos, empty rows, a multi-line free-text answer.
"""
from __future__ import annotations

import csv
import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mer_data.corpora.mosei import MOSEI_EMOTIONS, MTURK_EMOTION_COLUMNS
from mer_data.synth.mosei_labels import csd_row
from mer_data.synth.mosei_script import OrphanLabel, Rating, VideoScript

CSD_ROOT = "All Labels"
# Column orders of the two MTurk batches (a reader must go by the header, not by position).
MTURK_BATCH_COLUMNS = (
    ("HITId", "WorkerId", "AssignmentStatus", "Input.VIDEO_ID", "Input.CLIP", "Answer.anger", "Answer.disgust",
     "Answer.fear", "Answer.happiness", "Answer.sadness", "Answer.surprise", "Answer.sentiment", "Answer.comment"),
    ("Answer.sentiment", "Input.CLIP", "Input.VIDEO_ID", "Answer.happiness", "Answer.sadness", "Answer.anger",
     "Answer.surprise", "Answer.disgust", "Answer.fear", "HITId", "WorkerId", "AssignmentStatus", "Answer.comment"),
)
MTURK_BATCH_FILES = ("mturk_batch_1.csv", "mturk_batch_2.csv")
MULTILINE_COMMENT = "clear speaker,\ngood audio"


@dataclass(frozen=True)
class LabelsOnlyVideo:
    """Labels of a video that the release has no transcript (nor media) for: each label has a
    clip (MTurk) and an interval (.csd)."""

    video_id: str
    labels: tuple[OrphanLabel, ...]


# --------------------------------------------------------------------------------------------
# Segmented transcripts


def transcript_line(script: VideoScript, clip: int) -> str:
    segment = script.segment(clip)
    return (f"{script.video_id}___{clip}___{segment.start_text}___{segment.end_text}___"
            f"{segment.text}{' ' * segment.trailing_spaces}")


def write_transcript(script: VideoScript, path: Path) -> dict[int, int]:
    """Write the segmented transcript; return each clip's 1-based line number."""
    end = "\r\n" if script.crlf else "\n"
    lines: list[str] = []
    line_of: dict[int, int] = {}
    for written, clip in enumerate(script.line_order, start=1):
        lines.append(transcript_line(script, clip))
        line_of[clip] = len(lines)
        if written in script.blank_lines_after:
            lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(end.join(lines).encode("utf-8") + end.encode())
    return line_of


# --------------------------------------------------------------------------------------------
# The SDK's .csd


def csd_rows(script: VideoScript, rng: np.random.Generator) -> list[tuple[tuple[float, float], np.ndarray, int | None]]:
    """(interval, features, clip or None for an orphan) of every .csd row of a video, shuffled."""
    rows = [(s.csd_interval, csd_row(s.ratings), s.clip) for s in script.segments if s.in_csd]
    rows += [(orphan.interval, csd_row(orphan.ratings), None) for orphan in script.orphan_labels if orphan.interval]
    return [rows[i] for i in rng.permutation(len(rows))]


def write_csd(path: Path, scripts: list[VideoScript], labels_only: list[LabelsOnlyVideo],
              rng: np.random.Generator) -> dict[str, dict[int, int]]:
    """Write CMU_MOSEI_Labels.csd; return {video id: {clip: row}} of the rows of transcript segments."""
    row_of: dict[str, dict[int, int]] = {}
    contents: dict[str, list] = {}
    for script in scripts:
        rows = csd_rows(script, rng)
        if rows:
            contents[script.video_id] = rows
            row_of[script.video_id] = {clip: index for index, (_, _, clip) in enumerate(rows) if clip is not None}
    for video in labels_only:
        contents[video.video_id] = [(label.interval, csd_row(label.ratings), None) for label in video.labels]
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        root = handle.create_group(CSD_ROOT)
        data = root.create_group("data")
        for video_id in sorted(contents):
            group = data.create_group(video_id)
            group.create_dataset("features", data=np.stack([features for _, features, _ in contents[video_id]]))
            group.create_dataset("intervals", data=np.array([interval for interval, _, _ in contents[video_id]],
                                                            dtype=np.float64))
        metadata = root.create_group("metadata")
        for key, value in _csd_metadata().items():
            metadata.create_dataset(key, (1,), dtype=h5py.special_dtype(vlen=str))
            metadata[key][0] = json.dumps(value)
    return row_of


def _csd_metadata() -> dict[str, object]:
    return {
        "root name": CSD_ROOT,
        "computational sequence description": "Labels of a synthetic CMU-MOSEI release (mer-data synth mosei)",
        "computational sequence version": "1.0",
        "alignment compatible": True,
        "dataset name": "CMU-MOSEI (synthetic)",
        "dataset version": "1.0",
        "creator": "mer-data",
        "contact": "none",
        "featureset bib citation": "none",
        "dataset bib citation": "none",
        "dimension names": ["sentiment", *MOSEI_EMOTIONS],
    }


# --------------------------------------------------------------------------------------------
# MTurk CSVs


@dataclass(frozen=True)
class _MturkRow:
    video_id: str  # as the CSV names it (maybe with a path prefix)
    key: tuple[str, int]  # (video id, clip)
    rating: Rating


def write_mturk(folder: Path, scripts: list[VideoScript], labels_only: list[LabelsOnlyVideo],
                rng: np.random.Generator) -> dict[tuple[str, int], tuple[str, int]]:
    """Write the MTurk batches into `folder`, rows shuffled, with empty rows (see _batch_text);
    return {(video id, clip): (file name, first 1-based line of its rows)}."""
    batches: list[list[_MturkRow]] = [[] for _ in MTURK_BATCH_FILES]
    for script in scripts:
        keyed = [(s.clip, s.ratings) for s in script.segments if s.in_mturk]
        keyed += [(orphan.clip, orphan.ratings) for orphan in script.orphan_labels if orphan.clip is not None]
        for clip, ratings in keyed:
            batches[script.mturk_batch] += [_MturkRow(script.mturk_video_id, (script.video_id, clip), r) for r in ratings]
    for video in labels_only:
        batches[-1] += [_MturkRow(video.video_id, (video.video_id, label.clip), r)
                        for label in video.labels for r in label.ratings]
    first_line: dict[tuple[str, int], tuple[str, int]] = {}
    folder.mkdir(parents=True, exist_ok=True)
    for number, (name, columns, rows) in enumerate(zip(MTURK_BATCH_FILES, MTURK_BATCH_COLUMNS, batches)):
        shuffled = [rows[i] for i in rng.permutation(len(rows))]
        text, lines = _batch_text(columns, shuffled, number)
        (folder / name).write_text(text, encoding="utf-8", newline="")
        for row, line in zip(shuffled, lines):  # files and lines in reading order: the first one stays
            first_line.setdefault(row.key, (name, line))
    return first_line


def _batch_text(columns: tuple[str, ...], rows: list[_MturkRow], batch: int) -> tuple[str, list[int]]:
    """The CSV text of a batch and the first line of each row (the header is line 1). Empty rows
    as MTurk downloads have them: in the first batch a row of empty cells after its second row
    and a returned HIT (no answers) at the end; in both a blank line after the fourth row."""
    parts = [_csv_line(columns)]
    line = 2
    lines = []
    for index, row in enumerate(rows):
        values = _answers(row, hit=f"{batch + 1}HIT{index:06d}", comment=MULTILINE_COMMENT if index == 1 else "")
        text = _csv_line([values.get(column, "") for column in columns])
        parts.append(text)
        lines.append(line)
        line += text.count("\n")
        if batch == 0 and index == 1:
            parts.append(_csv_line([""] * len(columns)))  # a row of empty cells
            line += 1
        if index == 3:
            parts.append("\n")  # a blank line
            line += 1
    if batch == 0:
        returned = {"HITId": f"{batch + 1}HIT-returned", "WorkerId": "AWORKER99", "AssignmentStatus": "Returned"}
        parts.append(_csv_line([returned.get(column, "") for column in columns]))
    return "".join(parts), lines


def _answers(row: _MturkRow, hit: str, comment: str) -> dict[str, str]:
    video_id, clip = row.key
    values = {
        "HITId": hit, "WorkerId": f"AWORKER{hash_text(video_id + hit) % 97:02d}", "AssignmentStatus": "Approved",
        "Input.VIDEO_ID": row.video_id, "Input.CLIP": str(clip), "Answer.sentiment": str(row.rating.sentiment),
        "Answer.comment": comment,
    }
    for name, value in zip(MOSEI_EMOTIONS, row.rating.emotions):
        values[MTURK_EMOTION_COLUMNS[name]] = str(value)
    return values


def hash_text(text: str) -> int:
    """A hash that is the same in every process (Python's hash() is not)."""
    return zlib.crc32(text.encode("utf-8"))


def _csv_line(cells) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()
