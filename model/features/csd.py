"""Import CMU Multimodal SDK computational sequences (.csd) into a feature folder (`table.py` layout).

A .csd is an HDF5 file in the SDK's layout (mmsdk `computational_sequence`):

    /<root name>/data/<entry>/features    [N, D] numbers, one row per step
    /<root name>/data/<entry>/intervals   [N, 2] (start, end) seconds of each step
    /<root name>/metadata/<key>           one dataset (or attribute) per metadata key; the SDK
                                          writes each value as a JSON string in a 1-element array

An entry is keyed by a video / dialog id (times in the recording), by an utterance id, or, after
the SDK's `align`, by `<video>[<i>]` (the i-th labelled segment of the video; its intervals stay
in video time). Each entry is matched to our utterances (the shards' index and samples):

- key == utterance id: the whole entry; its intervals are either in recording time or relative
  to the utterance, decided once per file from which of the two the entries fit;
- key == recording id: the rows whose interval overlaps the utterance's [start, end];
- key == `<recording>[<i>]`: the whole entry, for the utterance of that recording its intervals
  overlap most. The index i is the row of the SDK's label file, not our clip number, so the
  match is made by time.

An utterance takes its steps from one entry per file: an utterance-keyed entry first, then a
segment, then a recording. A step's time is the centre of its interval clipped to the utterance,
in seconds from the utterance start. Non-finite values (the SDK's COVAREP holds -inf and nan) are
replaced by 0 and counted per modality; utterances no entry covers get an empty sequence (counted);
entries that match no utterance are counted and named. A file the importer cannot read whole
(not HDF5, no data group, ragged entries) is refused with the file and the entry named.
"""
from __future__ import annotations

import contextlib
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from mer_data.corpora.label_protocol import ONE_VS_REST
from mer_data.model.features.table import (
    CARD_NAME,
    ERRORS_NAME,
    LEADING_COLUMNS,
    SPLITS,
    ModalitySpec,
    arrow_schema,
    feature_card,
    part_path,
    rows_to_table,
    split_parts,
    write_card,
    write_part,
)
from mer_data.corpora.mosei import declared_size_problem
from mer_data.records import Problem
from mer_data.shards.errorlog import write_errors
from mer_data.shards.folder import ShardFolder, ShardFolderError
from mer_data.shards.hashing import sha256_file
from mer_data.shards.layout import CARD_NAME as CARD_NAME_OF_SHARDS
from mer_data.shards.layout import INDEX_NAME
from mer_data.shards.labels import LabelError, label_names_from_card, label_task_from_card, targets

CHUNK_ROWS = 2000
# How far an utterance-keyed entry may reach past the utterance and still count as lying inside
# it, when telling recording-time intervals from utterance-relative ones.
TIME_TOLERANCE_S = 0.1
# A sequence is "regular" (and gets a nominal step_seconds) when this share of its hops lies
# within HOP_TOLERANCE of the median hop; word sequences are not.
REGULAR_SHARE = 0.9
HOP_TOLERANCE = 0.05
HOPS_SAMPLED = 100_000
EXAMPLES_SHOWN = 5
# What one entry's features (or intervals) and one metadata value may declare, checked before
# anything is read: an HDF5 file can declare terabytes it does not hold. The SDK's largest
# (COVAREP, 74 float32 dims at 100 Hz) is about 110 MiB for an hour of recording.
MAX_ENTRY_BYTES = 4 << 30
MAX_METADATA_BYTES = 16 << 20

# Known SDK feature sets -> role; searched in the root name, then in the file name.
KNOWN_ROLES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"covarep|opensmile", re.IGNORECASE), "a"),
    (re.compile(r"facet|openface", re.IGNORECASE), "v"),
    (re.compile(r"glove|bert|words", re.IGNORECASE), "t"),
)
KNOWN_NAMES = "COVAREP, OpenSMILE/opensmile_eb10 (a); FACET, OpenFace (v); GloVe, BERT, words (t)"
SEGMENT_KEY = re.compile(r"^(?P<recording>.+)\[(?P<index>\d+)\]$")
KIND_PRIORITY = {"utterance": 0, "segment": 1, "recording": 2}


class CsdError(ValueError):
    """A .csd, a shard folder or an option the importer cannot use; the message names the file."""


# --------------------------------------------------------------------------------------------
# The report


@dataclass
class ImportReport:
    feats: Path
    card: dict
    errors: list[Problem]
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        counts = self.card["counts"]
        per_split = ", ".join(f"{split} {counts['per_split'].get(split, 0)}" for split in SPLITS)
        lines = [f"imported {len(self.card['source']['files'])} .csd file(s) into {self.feats}: "
                 f"{counts['total']} utterances ({per_split})"]
        for name, spec in self.card["modalities"].items():
            options = spec["options"]
            kinds = ", ".join(f"{n} by {kind} id" for kind, n in sorted(options["matched_entries"].items())) or "none"
            lines.append(
                f"  {name} (role {spec['role']}, {spec['dim']} dims, from {options['file']}): entries matched: "
                f"{kinds}; unmatched: {options['unmatched_entries']}; empty sequences: "
                f"{counts['empty_sequences'][name]}; non-finite values replaced by 0: {options['non_finite_values']}")
        lines.append(f"errors: {len(self.errors)}" + (f" (see {self.feats / ERRORS_NAME})" if self.errors else ""))
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Our utterances, from the shards


@dataclass(frozen=True)
class LabelledUtterance:
    """One utterance of the shards with its training target: what .csd entries are matched to and a
    table row is made of (not a corpus reader's `mer_data.records.Utterance`)."""

    id: str
    key: str
    split: str
    recording: str | None
    speaker: str | None
    start: float | None
    end: float | None
    target: np.ndarray


@dataclass
class ShardUtterances:
    corpus: str
    label_names: tuple[str, ...]
    fingerprint: str | None
    utterances: list[LabelledUtterance]
    problems: list[Problem]
    label_task: str = ONE_VS_REST   # mer_data.shards.labels.label_task_from_card


def read_shard_utterances(shards: Path) -> ShardUtterances:
    """The shards' utterances in index order, with their metadata and training targets.

    The index gives the order and where each sample is; the samples' own `json` members give the
    metadata, so the targets are exactly the training loader's (`mer_data.shards.labels.targets`).
    """
    folder = ShardFolder(shards)
    try:
        dataset, index = folder.card, folder.index_rows(["key", "split", "shard", "position"])
    except ShardFolderError as error:
        raise CsdError(str(error)) from error
    if dataset is None:
        raise CsdError(f"{folder.path_of(CARD_NAME_OF_SHARDS)}: missing (the dataset card; is it a finished"
                       f" `mer convert` folder?)")
    label_names = label_names_from_card(dataset)
    if index is None:
        raise CsdError(f"{folder.path_of(INDEX_NAME)}: missing; is {shards} a finished `mer convert` folder?")
    metadata = _sample_metadata(folder, index)
    utterances, problems = [], []
    for row in index:
        meta = metadata[row["key"]]
        try:
            target = targets(meta, label_names)
        except LabelError as error:
            problems.append(Problem(row["shard"], None, str(error).split(": ", 1)[-1], row["key"], "labels"))
            continue
        utterances.append(LabelledUtterance(
            id=meta.get("id") or row["key"], key=row["key"], split=row["split"],
            recording=meta.get("recording"), speaker=meta.get("speaker"),
            start=_float_or_none(meta.get("start")), end=_float_or_none(meta.get("end")), target=target))
    return ShardUtterances(dataset.get("corpus"), label_names, dataset.get("options", {}).get("fingerprint"),
                           utterances, problems, label_task_from_card(dataset))


def _sample_metadata(folder: ShardFolder, index: list[dict]) -> dict[str, dict]:
    """key -> the sample's `json` member, reading only those members (tarfile seeks over media)."""
    keys_of: dict[str, set[str]] = defaultdict(set)
    for row in index:
        keys_of[row["shard"]].add(row["key"])
    metadata: dict[str, dict] = {}
    for shard, keys in sorted(keys_of.items()):
        try:
            metadata.update(folder.metadata(shard, keys))
        except ShardFolderError as error:
            raise CsdError(str(error)) from error
        missing = sorted(keys - set(metadata))
        if missing:
            raise CsdError(f"{folder.path_of(shard)}: index.parquet lists {len(missing)} sample(s) the shard does not"
                           f" hold (e.g. {missing[0]})")
    return metadata


def _float_or_none(value) -> float | None:
    return None if value is None else float(value)


# --------------------------------------------------------------------------------------------
# Reading a computational sequence


@dataclass
class CsdSequence:
    """One open .csd, checked for the SDK layout: every entry has N x D features and N x 2 intervals."""

    path: Path
    root: str
    metadata: dict
    entries: dict[str, int]   # entry key -> its number of steps
    dim: int
    data: Any                 # the h5py group <root>/data

    def features(self, key: str, rows: np.ndarray) -> np.ndarray:
        """float64 [len(rows), D] of the entry's rows (`rows` sorted by time, not necessarily by row)."""
        if rows.size == 0:
            return np.zeros((0, self.dim))
        low, high = int(rows.min()), int(rows.max()) + 1
        block = np.asarray(self.data[key]["features"][low:high], dtype=np.float64)
        return block[rows - low]

    def intervals(self, key: str) -> np.ndarray:
        """float64 [N, 2] intervals of an entry; a non-finite or reversed interval is refused."""
        intervals = np.asarray(self.data[key]["intervals"][()], dtype=np.float64).reshape(-1, 2)
        broken = ~np.isfinite(intervals).all(axis=1) | (intervals[:, 1] < intervals[:, 0])
        if broken.any():
            row = int(np.flatnonzero(broken)[0])
            raise CsdError(f"{self.path}: entry {key!r}: interval row {row} {intervals[row].tolist()} is not a"
                           f" finite (start, end) with end >= start")
        return intervals


def open_csd(path: Path, handle) -> CsdSequence:
    """Check the layout of an open HDF5 file and describe it; CsdError names the file and the entry."""
    import h5py

    roots = [name for name in handle if isinstance(handle[name], h5py.Group)]
    if len(roots) != 1:
        raise CsdError(f"{path}: expected one top-level group (the sequence's root name) in the .csd,"
                       f" found {len(roots)}{': ' + ', '.join(roots) if roots else ''}")
    root = handle[roots[0]]
    data = root.get("data")
    if not isinstance(data, h5py.Group):
        raise CsdError(f"{path}: no 'data' group in the .csd's top-level group {roots[0]!r}")
    entries, dim, first = {}, None, None
    for key in data:
        steps, entry_dim = _entry_shape(path, key, data[key])
        if dim is None:
            dim, first = entry_dim, key
        elif entry_dim != dim:
            raise CsdError(f"{path}: entry {key!r} has {entry_dim} features per step, but entry {first!r} has {dim}")
        entries[key] = steps
    if not entries:
        raise CsdError(f"{path}: the .csd's data group holds no entries")
    metadata = read_metadata(root, path)
    return CsdSequence(path, roots[0], metadata, entries, dim, data)


def _entry_shape(path: Path, key: str, group) -> tuple[int, int]:
    import h5py

    if not isinstance(group, h5py.Group):
        raise CsdError(f"{path}: entry {key!r} is not a group with 'features' and 'intervals'")
    features, intervals = group.get("features"), group.get("intervals")
    if not isinstance(features, h5py.Dataset) or not isinstance(intervals, h5py.Dataset):
        raise CsdError(f"{path}: entry {key!r}: expected 'features' and 'intervals' datasets, found"
                       f" {', '.join(group) or 'nothing'}")
    if features.dtype.kind not in "fiub":
        raise CsdError(f"{path}: entry {key!r}: features are not numbers (dtype {features.dtype}); a sequence of"
                       f" words as text cannot be a feature table: import word vectors (e.g. glove_vectors)")
    if features.ndim != 2 or features.shape[1] < 1:
        raise CsdError(f"{path}: entry {key!r}: features have shape {features.shape}, expected [steps, dims]")
    if intervals.ndim != 2 or intervals.shape[1] != 2 or intervals.dtype.kind not in "fiu":
        raise CsdError(f"{path}: entry {key!r}: intervals have shape {intervals.shape} ({intervals.dtype}),"
                       f" expected [steps, 2] numbers")
    if features.shape[0] != intervals.shape[0]:
        raise CsdError(f"{path}: entry {key!r} has {features.shape[0]} feature rows but {intervals.shape[0]} intervals")
    too_large = declared_size_problem(features, MAX_ENTRY_BYTES) or declared_size_problem(intervals, MAX_ENTRY_BYTES)
    if too_large:
        raise CsdError(f"{path}: entry {key!r}: {too_large}")
    return int(features.shape[0]), int(features.shape[1])


def read_metadata(root, path: Path) -> dict:
    """The sequence's metadata as plain JSON values, from datasets or attributes of `<root>/metadata`.

    The SDK writes each value as a JSON string in a one-element string array; older files hold
    plain strings, bytes, or arrays of strings. Unparseable JSON stays the string it is. A
    metadata dataset declaring more than MAX_METADATA_BYTES is refused (CsdError naming `path`).
    """
    import h5py

    metadata: dict = {}
    group = root.get("metadata")
    if isinstance(group, h5py.Group):
        for key in group:
            if isinstance(group[key], h5py.Dataset):
                too_large = declared_size_problem(group[key], MAX_METADATA_BYTES)
                if too_large:
                    raise CsdError(f"{path}: metadata {key!r}: {too_large}")
                metadata[key] = metadata_value(group[key][()])
        for key, value in group.attrs.items():
            metadata.setdefault(key, metadata_value(value))
    for key, value in root.attrs.items():
        metadata.setdefault(key, metadata_value(value))
    return metadata


def metadata_value(raw) -> Any:
    """One metadata value as a JSON value: arrays unwrapped, bytes decoded, JSON strings parsed."""
    if isinstance(raw, np.ndarray):
        if raw.size == 1:
            return metadata_value(raw.reshape(-1)[0])
        return [metadata_value(item) for item in raw.reshape(-1)]
    if isinstance(raw, np.generic):
        raw = raw.item()
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    if isinstance(raw, str):
        try:
            return _json_safe(json.loads(raw))
        except json.JSONDecodeError:
            return raw
    return _json_safe(raw)


def _json_safe(value) -> Any:
    """`value` with non-finite floats as None and tuples as lists, so the card stays valid JSON."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def dimension_names(sequence: CsdSequence) -> tuple[list[str], bool]:
    """(one name per dimension, whether the metadata gave them): "dimension names" or f0..fD-1."""
    names = sequence.metadata.get("dimension names")
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",")]
    if isinstance(names, list) and len(names) == sequence.dim:
        return [str(name) for name in names], True
    return [f"f{index}" for index in range(sequence.dim)], False


# --------------------------------------------------------------------------------------------
# Modality names and roles


def modality_name(root: str, taken: Iterable[str]) -> str:
    """A column-safe modality name from a root name ("FACET 4.2" -> "FACET_4_2"), unique among `taken`."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", root).strip("_-") or "csd"
    if not name[0].isalpha():
        name = f"m_{name}"
    if name in LEADING_COLUMNS or name == "target" or name.endswith("_times"):
        name = f"{name}_csd"
    taken = set(taken)
    unique, number = name, 2
    while unique in taken:
        unique, number = f"{name}_{number}", number + 1
    return unique


def role_of(path: Path, root: str, name: str, roles: dict[str, str]) -> str:
    """The role --role gives (by root name, modality name, file name or stem), else the known-name table's."""
    for given, role in roles.items():
        if given.casefold() in {root.casefold(), name.casefold(), path.name.casefold(), path.stem.casefold()}:
            return role
    for text in (root, path.stem):
        found = {role for pattern, role in KNOWN_ROLES if pattern.search(text)}
        if len(found) == 1:
            return found.pop()
    raise CsdError(f"{path}: cannot tell the modality of sequence {root!r}: it is not a known SDK feature set"
                   f" ({KNOWN_NAMES}); give --role {name}=t, =a or =v")


def _check_roles_used(roles: dict[str, str], sequences: Sequence[CsdSequence], names: Sequence[str]) -> None:
    known = {text.casefold() for sequence, name in zip(sequences, names)
             for text in (sequence.root, name, sequence.path.name, sequence.path.stem)}
    unused = [given for given in roles if given.casefold() not in known]
    if unused:
        roots = ", ".join(f"{sequence.root} ({sequence.path.name})" for sequence in sequences)
        raise CsdError(f"--role {unused[0]}: names none of the imported sequences ({roots})")


# --------------------------------------------------------------------------------------------
# Alignment of one sequence to our utterances


@dataclass(frozen=True)
class Steps:
    """What one utterance takes from one entry: the entry's rows in time order and their times."""

    entry: str
    kind: str                 # "utterance", "segment" or "recording": how the entry was matched
    rows: np.ndarray          # int64 row numbers in the entry
    times: np.ndarray         # float32 seconds from the utterance start


@dataclass
class Alignment:
    steps: dict[str, Steps]                     # utterance id -> its steps
    unmatched: dict[str, str]                   # entry key -> why it feeds no utterance
    matched: Counter                            # entry kind -> entries that feed at least one utterance
    utterance_times: str | None                 # "recording" or "utterance" for utterance-keyed entries
    hops: list[float]                           # a sample of start-to-start hops, for step_seconds


def align(sequence: CsdSequence, utterances: Sequence[LabelledUtterance]) -> Alignment:
    """Match every entry of `sequence` to utterances and choose, per utterance, the entry it takes."""
    by_id = {u.id: u for u in utterances} | {u.key: u for u in utterances}
    by_recording: dict[str, list[LabelledUtterance]] = defaultdict(list)
    for utterance in utterances:
        if utterance.recording is not None:
            by_recording[utterance.recording].append(utterance)
    claims: dict[str, list[tuple[int, int, Steps]]] = defaultdict(list)
    unmatched: dict[str, str] = {}
    keyed_by_utterance: list[tuple[int, str, LabelledUtterance, np.ndarray]] = []
    hops: list[float] = []
    for order, key in enumerate(sorted(sequence.entries)):
        found = _match_entry(sequence, key, by_id, by_recording, hops)
        if isinstance(found, str):
            unmatched[key] = found
        elif isinstance(found, tuple):
            keyed_by_utterance.append((order, key, *found))
        else:
            for utterance_id, steps in found:
                claims[utterance_id].append((KIND_PRIORITY[steps.kind], order, steps))
    # Utterance-keyed entries wait for the whole file: whether their times are in recording time or
    # relative to the utterance is decided from all of them at once.
    base = _utterance_time_base([(utterance, intervals) for _, _, utterance, intervals in keyed_by_utterance])
    for order, key, utterance, intervals in keyed_by_utterance:
        claims[utterance.id].append((KIND_PRIORITY["utterance"], order,
                                     _utterance_steps(key, intervals, utterance, base)))
    chosen = _choose(claims, unmatched)
    matched = Counter(kind for kind, _ in {(steps.kind, steps.entry) for steps in chosen.values()})
    return Alignment(chosen, unmatched, matched, base if keyed_by_utterance else None, hops)


def _match_entry(sequence: CsdSequence, key: str, by_id: dict[str, LabelledUtterance],
                 by_recording: dict[str, list[LabelledUtterance]], hops: list[float]):
    """(utterance, intervals) for an utterance-keyed entry; [(utterance id, Steps)] for a recording or a
    segment; or the reason the entry matches nothing."""
    segment = SEGMENT_KEY.match(key)
    recording = key if key in by_recording else segment["recording"] if segment else None
    if key not in by_id and recording not in by_recording:
        return _no_match_reason(segment, by_id)
    intervals = sequence.intervals(key)
    _sample_hops(intervals, hops)
    if key in by_id:
        return by_id[key], intervals
    if key == recording:
        return _recording_steps(key, intervals, by_recording[recording])
    return _segment_steps(key, intervals, by_recording[recording])


def _choose(claims: dict[str, list[tuple[int, int, Steps]]], unmatched: dict[str, str]) -> dict[str, Steps]:
    """Per utterance the claim of highest priority (then the first entry); an entry that loses every
    claim it made is added to `unmatched`."""
    chosen = {utterance_id: min(found, key=lambda claim: claim[:2])[2] for utterance_id, found in claims.items()}
    feeding = {steps.entry for steps in chosen.values()}
    for utterance_id, found in sorted(claims.items()):
        for _, _, steps in found:
            if steps.entry not in feeding:
                unmatched.setdefault(steps.entry, f"utterance {utterance_id} takes the steps of entry"
                                                  f" {chosen[utterance_id].entry!r} instead")
    return chosen


def _no_match_reason(segment, by_id: dict[str, LabelledUtterance]) -> str:
    if segment and segment["recording"] in by_id:
        return (f"a piece of utterance {segment['recording']} (pieces <id>[i] are matched only when <id> is a"
                f" recording)")
    return "no utterance or recording of the shards has this id"


def _recording_steps(key: str, intervals: np.ndarray,
                     utterances: list[LabelledUtterance]) -> list[tuple[str, Steps]] | str:
    """Each timed utterance of the recording with the rows overlapping its interval."""
    found = []
    for utterance in utterances:
        if utterance.start is None or utterance.end is None:
            continue
        overlapping = np.flatnonzero((intervals[:, 0] < utterance.end) & (intervals[:, 1] > utterance.start))
        if overlapping.size:
            rows = _time_order(overlapping, intervals)
            found.append((utterance.id, Steps(key, "recording", rows,
                                              _clipped_centres(intervals[rows], utterance.start, utterance.end))))
    if found:
        return found
    span = _span(intervals)
    return f"its intervals ({span}) overlap no utterance of recording {utterances[0].recording}"


def _segment_steps(key: str, intervals: np.ndarray,
                   utterances: list[LabelledUtterance]) -> list[tuple[str, Steps]] | str:
    """The whole entry, for the recording's utterance its intervals (in recording time) overlap most."""
    if not len(intervals):
        return "it has no steps to match by time"
    low, high = float(intervals[:, 0].min()), float(intervals[:, 1].max())
    centre = (low + high) / 2
    best, best_overlap = None, -1.0
    for utterance in utterances:
        if utterance.start is None or utterance.end is None:
            continue
        if not utterance.start - TIME_TOLERANCE_S <= centre <= utterance.end + TIME_TOLERANCE_S:
            continue
        overlap = min(high, utterance.end) - max(low, utterance.start)
        if overlap > best_overlap:
            best, best_overlap = utterance, overlap
    if best is None:
        return f"no utterance of recording {utterances[0].recording} covers its span ({_span(intervals)})"
    rows = _time_order(np.arange(len(intervals)), intervals)
    return [(best.id, Steps(key, "segment", rows, _clipped_centres(intervals[rows], best.start, best.end)))]


def _utterance_steps(key: str, intervals: np.ndarray, utterance: LabelledUtterance, base: str) -> Steps:
    rows = _time_order(np.arange(len(intervals)), intervals)
    ordered = intervals[rows]
    if utterance.start is None or utterance.end is None:
        origin = float(ordered[0, 0]) if len(ordered) else 0.0
        times = _clipped_centres(ordered, origin, float(ordered[:, 1].max()) if len(ordered) else 0.0)
    elif base == "utterance":
        times = _clipped_centres(ordered, 0.0, utterance.end - utterance.start)
    else:
        times = _clipped_centres(ordered, utterance.start, utterance.end)
    return Steps(key, "utterance", rows, times)


def _utterance_time_base(entries: list[tuple[LabelledUtterance, np.ndarray]]) -> str:
    """"recording" when utterance-keyed intervals are in recording time, "utterance" when relative.

    Decided for the whole file from the entries that fit only one reading; recording time (the
    SDK's own convention) when none tells them apart.
    """
    recording_only = utterance_only = 0
    for utterance, intervals in entries:
        if utterance.start is None or utterance.end is None or not len(intervals):
            continue
        low, high = intervals[:, 0].min(), intervals[:, 1].max()
        in_recording = utterance.start - TIME_TOLERANCE_S <= low and high <= utterance.end + TIME_TOLERANCE_S
        in_utterance = -TIME_TOLERANCE_S <= low and high <= utterance.end - utterance.start + TIME_TOLERANCE_S
        recording_only += in_recording and not in_utterance
        utterance_only += in_utterance and not in_recording
    return "utterance" if utterance_only > recording_only else "recording"


def _time_order(rows: np.ndarray, intervals: np.ndarray) -> np.ndarray:
    return rows[np.argsort(intervals[rows, 0], kind="stable")].astype(np.int64)


def _clipped_centres(intervals: np.ndarray, start: float, end: float) -> np.ndarray:
    """Centre of each interval clipped to [start, end], minus start: the step's time in the utterance."""
    clipped = np.clip(intervals, start, end)
    return ((clipped[:, 0] + clipped[:, 1]) / 2 - start).astype(np.float32)


def _span(intervals: np.ndarray) -> str:
    if not len(intervals):
        return "no steps"
    return f"{intervals[:, 0].min():.3f}-{intervals[:, 1].max():.3f} s"


def _sample_hops(intervals: np.ndarray, hops: list[float]) -> None:
    if len(hops) < HOPS_SAMPLED and len(intervals) > 1:
        hops.extend(np.diff(np.sort(intervals[:, 0]))[: HOPS_SAMPLED - len(hops)].tolist())


def nominal_step(hops: list[float]) -> float | None:
    """The median hop where the steps are regular (frames), None where they are not (words)."""
    positive = np.asarray([hop for hop in hops if hop > 0])
    if not positive.size:
        return None
    median = float(np.median(positive))
    regular = np.abs(positive - median) <= HOP_TOLERANCE * median
    return round(median, 9) if regular.mean() >= REGULAR_SHARE else None


# --------------------------------------------------------------------------------------------
# The import


@dataclass
class ImportedModality:
    name: str
    role: str
    sequence: CsdSequence
    alignment: Alignment
    sha256: str
    non_finite: int = 0
    empty: int = 0


def import_csd(files: Sequence[str | Path], feats: str | Path, *, shards: str | Path,
               roles: dict[str, str] | None = None, overwrite: bool = False,
               log: Callable[[str], Any] = print) -> ImportReport:
    """Import the .csd `files` into the feature folder `feats`, aligned to the utterances of `shards`."""
    import h5py

    files, feats, roles = [Path(path) for path in files], Path(feats), dict(roles or {})
    if not files:
        raise CsdError("no .csd file to import")
    _check_distinct(files)
    _check_output(feats, overwrite)
    corpus = read_shard_utterances(Path(shards))
    with contextlib.ExitStack() as stack:
        sequences = []
        for path in files:
            try:
                handle = stack.enter_context(h5py.File(path, "r"))
            except OSError as error:
                raise CsdError(f"{path}: not an HDF5 computational sequence (.csd): {error}") from None
            sequences.append(open_csd(path, handle))
        names: list[str] = []
        for sequence in sequences:
            names.append(modality_name(sequence.root, names))
        _check_roles_used(roles, sequences, names)
        modalities = [_prepare_modality(sequence, name, roles, corpus.utterances, log)
                      for sequence, name in zip(sequences, names)]
        source = " + ".join(path.name for path in files)
        # Columns in modality-name order: the card is stored with sorted keys, and `read_split`
        # derives the expected column order from it.
        modalities.sort(key=lambda modality: modality.name)
        _clear_output(feats)
        parts = _write_parts(feats, corpus, modalities, source)
    write_errors(corpus.problems, feats)
    card = _card(shards, corpus, modalities, parts, files)
    write_card(feats, card)
    report = ImportReport(feats, card, list(corpus.problems), _warnings(modalities))
    for warning in report.warnings:
        log(f"warning: {warning}")
    return report


def _check_distinct(files: list[Path]) -> None:
    seen: dict[Path, Path] = {}
    for path in files:
        resolved = path.resolve()
        if resolved in seen:
            raise CsdError(f"{path}: given twice (also as {seen[resolved]})")
        seen[resolved] = path


def _check_output(feats: Path, overwrite: bool) -> None:
    if feats.exists() and not feats.is_dir():
        raise CsdError(f"{feats}: exists and is not a folder")
    if overwrite:
        return
    if (feats / CARD_NAME).is_file():
        raise CsdError(f"{feats}: already holds finished feature tables ({CARD_NAME});"
                       f" pass --overwrite to replace them")
    if any(split_parts(feats, split) for split in SPLITS):
        raise CsdError(f"{feats}: holds parts of an unfinished feature run; pass --overwrite to replace them")


def _clear_output(feats: Path) -> None:
    """Remove what an earlier run wrote (the card first: a folder without it reads as unfinished)."""
    feats.mkdir(parents=True, exist_ok=True)
    (feats / CARD_NAME).unlink(missing_ok=True)
    for split in SPLITS:
        for path in split_parts(feats, split):
            path.unlink()
    (feats / ERRORS_NAME).unlink(missing_ok=True)


def _prepare_modality(sequence: CsdSequence, name: str, roles: dict[str, str], utterances: Sequence[LabelledUtterance],
                      log: Callable[[str], Any]) -> ImportedModality:
    role = role_of(sequence.path, sequence.root, name, roles)
    alignment = align(sequence, utterances)
    if not alignment.steps:
        examples = ", ".join(sorted(sequence.entries)[:EXAMPLES_SHOWN])
        ours = ", ".join(u.id for u in utterances[:EXAMPLES_SHOWN])
        raise CsdError(f"{sequence.path}: no entry matches an utterance of the shards (entries: {examples}; "
                       f"utterances: {ours}); are the features of another corpus?")
    kinds = ", ".join(f"{n} by {kind} id" for kind, n in sorted(alignment.matched.items()))
    log(f"{sequence.path.name}: sequence {sequence.root!r} -> modality {name} (role {role}, {sequence.dim} dims):"
        f" {len(sequence.entries)} entries, matched {kinds}, {len(alignment.unmatched)} unmatched,"
        f" {len(alignment.steps)} of {len(utterances)} utterances covered")
    return ImportedModality(name, role, sequence, alignment, sha256_file(sequence.path))


def _write_parts(feats: Path, corpus: ShardUtterances, modalities: list[ImportedModality], source: str) -> list[dict]:
    schema = arrow_schema({m.name: _spec(m) for m in modalities}, len(corpus.label_names))
    parts = []
    for split in SPLITS:
        members = [u for u in corpus.utterances if u.split == split]
        for number, first in enumerate(range(0, len(members), CHUNK_ROWS)):
            rows = [_row(utterance, source, modalities) for utterance in members[first:first + CHUNK_ROWS]]
            path = write_part(part_path(feats, split, number), rows_to_table(rows, schema))
            parts.append({"split": split, "name": path.name, "rows": len(rows), "sha256": sha256_file(path),
                          "source": source})
    return parts


def _row(utterance: LabelledUtterance, source: str, modalities: list[ImportedModality]) -> dict:
    row = {"id": utterance.id, "key": utterance.key, "split": utterance.split, "source": source,
           "recording": utterance.recording, "speaker": utterance.speaker, "start": utterance.start,
           "end": utterance.end, "target": utterance.target}
    for modality in modalities:
        steps = modality.alignment.steps.get(utterance.id)
        if steps is None or not steps.rows.size:
            modality.empty += 1
            row[modality.name] = np.zeros((0, modality.sequence.dim), dtype=np.float32)
            row[f"{modality.name}_times"] = np.zeros(0, dtype=np.float32)
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            values = modality.sequence.features(steps.entry, steps.rows).astype(np.float32)
        non_finite = ~np.isfinite(values)
        modality.non_finite += int(non_finite.sum())
        values[non_finite] = 0.0
        row[modality.name] = values
        row[f"{modality.name}_times"] = steps.times
    return row


def _spec(modality: ImportedModality) -> ModalitySpec:
    sequence, alignment = modality.sequence, modality.alignment
    names, named = dimension_names(sequence)
    description = sequence.metadata.get("computational sequence description")
    return ModalitySpec(
        role=modality.role,
        extractor=f"csd:{sequence.root}",
        names=names,
        description=str(description) if description else f"{sequence.root} from {sequence.path.name}",
        step_seconds=nominal_step(alignment.hops),
        timed=True,
        options={
            "file": sequence.path.name,
            "root": sequence.root,
            "dimension_names_from_metadata": named,
            "entries": len(sequence.entries),
            "matched_entries": dict(sorted(alignment.matched.items())),
            "unmatched_entries": len(alignment.unmatched),
            "unmatched_examples": sorted(alignment.unmatched)[:EXAMPLES_SHOWN],
            "utterance_entry_times": alignment.utterance_times,
            "non_finite_values": modality.non_finite,
            "non_finite_replacement": 0.0,
        },
    )


def _card(shards, corpus: ShardUtterances, modalities: list[ImportedModality], parts: list[dict],
          files: list[Path]) -> dict:
    modalities_in_file_order = sorted(modalities, key=lambda m: files.index(m.sequence.path))
    source = {
        "kind": "csd",
        "path": str(shards),
        "dataset_fingerprint": corpus.fingerprint,
        "files": [{"path": str(m.sequence.path), "sha256": m.sha256, "root": m.sequence.root,
                   "modality": m.name, "role": m.role, "metadata": m.sequence.metadata}
                  for m in modalities_in_file_order],
    }
    options = {
        "files": [path.name for path in files],
        "roles": {m.name: m.role for m in modalities},
        "non_finite_replacement": 0.0,
        "time_tolerance_s": TIME_TOLERANCE_S,
    }
    return feature_card(
        corpus=corpus.corpus, label_names=corpus.label_names, label_task=corpus.label_task, source=source,
        modalities={m.name: _spec(m) for m in modalities}, options=options,
        per_split=Counter(u.split for u in corpus.utterances), empty_sequences={m.name: m.empty for m in modalities},
        parts=parts, error_reasons=[p.reason for p in corpus.problems],
        extra_counts={"unmatched_entries": {m.name: len(m.alignment.unmatched) for m in modalities}})


def _warnings(modalities: list[ImportedModality]) -> list[str]:
    warnings = []
    for modality in modalities:
        file = modality.sequence.path.name
        if modality.empty:
            warnings.append(f"{modality.name} ({file}): {modality.empty} utterance(s) have no steps (empty sequences)")
        unmatched = modality.alignment.unmatched
        if unmatched:
            examples = "; ".join(f"{key}: {reason}" for key, reason in sorted(unmatched.items())[:EXAMPLES_SHOWN])
            more = f" (and {len(unmatched) - EXAMPLES_SHOWN} more)" if len(unmatched) > EXAMPLES_SHOWN else ""
            warnings.append(f"{modality.name} ({file}): {len(unmatched)} entries match no utterance: {examples}{more}")
        if modality.non_finite:
            warnings.append(f"{modality.name} ({file}): {modality.non_finite} non-finite value(s) replaced by 0")
    return warnings
