"""The feature graph: shards -> one Dask task per shard -> per-split Parquet feature tables.

    report = extract_features("shards/", "feats/", FeatureOptions(audio="mfcc", text="none"), workers=2)
    print(report.summary())

This module is the graph: the plan (which shards, which label space), the schedule (one task per
shard through pipelines/runner.py) and the resume. Each task (model/features/shard_task.py) reads one
shard's samples in order (mer_data/shards/samples.py, the tolerant reader: a damaged tar is reported, not
raised), runs the chosen extractors (model/features/registry.py) on every sample and writes one part,
numbered like its shard: `train-000003.tar` -> `FEATS/train/part-000003.parquet` (layout and columns:
model/features/table.py).
Every sample becomes a row or an entry of FEATS/errors.jsonl (file: the shard, the reason, the
utterance id): a sample whose media cannot be decoded, whose metadata is unreadable or whose label
is outside the label space, samples lost in a damaged tar (named from index.parquet), and every
sample of a shard whose task failed on the cluster. A sample without any detected face is a row
with an empty visual sequence (counted in the card's counts.empty_sequences).

Resume: FEATS/.options.json records, before any work, the options, the tool version and which
shards these are (dataset.json's SHA-256, the shard names and sizes). Parts are written atomically
and carry their shard's outcome (rows, empty sequences, rejected samples) in their Parquet
metadata, so a rerun with the same record keeps every finished part and redoes only the missing
ones (a killed run, a deleted part, a task that failed); a rerun with another record is refused
unless `overwrite`. features.json is written last: its presence means the tables are complete.
FEATS/extraction.json then records what the extraction cost (seconds per utterance per modality),
which `mer compare` shows beside the two-phase runs.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import mer_data
from mer_data.corpora.label_protocol import ONE_VS_REST
from mer_data.records import Problem
from mer_data.shards.atomic import TEMP_PREFIX, atomic_write_text
from mer_data.shards.errorlog import read_errors, write_errors
from mer_data.shards.hashing import sha256_file
from mer_data.shards.layout import CARD_NAME as DATASET_CARD
from mer_data.shards.layout import SHARD_NAME
from mer_data.model.features.registry import MODALITIES, Extractor, ExtractorSettings, make_extractor
from mer_data.model.features.shard_task import OUTCOME_KEY, ShardJob, ShardOutcome, extract_shard, failed_shard
from mer_data.model.features.table import (CARD_NAME, ERRORS_NAME, EXTRACTION_TIMING_NAME, SPLITS, ModalitySpec,
                                  arrow_schema, feature_card, part_path, read_card, split_dir, split_parts,
                                  write_card)

from .cluster import TaskFailure
from .options import FeatureOptions
from .runner import run_tasks

RECORD_NAME = ".options.json"


class FeatureOutputConflict(Exception):
    """FEATS holds features made with other options or from other shards (use overwrite)."""


@dataclass
class FeaturePlan:
    """The shards to read and what their dataset card says (corpus, label space, face interval)."""

    source: Path  # the shard folder, as given
    jobs: list[ShardJob]
    corpus: str
    label_names: tuple[str, ...]
    dataset_sha256: str | None
    dataset_fingerprint: str | None
    frame_interval_ms: int | None
    label_task: str = ONE_VS_REST   # mer_data.shards.labels.label_task_from_card


@dataclass
class FeatureReport:
    feats: Path
    card: dict
    errors: list[Problem]
    written_parts: int = 0
    resumed_parts: int = 0
    already_complete: bool = False
    seconds: dict[str, float] = field(default_factory=dict)  # extractor seconds per modality, this run
    processed: int = 0  # samples the extractors ran on in this run (rows and rejected)
    wall_seconds: float = 0.0

    def seconds_per_utterance(self) -> dict[str, float]:
        return {name: value / self.processed for name, value in self.seconds.items()} if self.processed else {}

    def summary(self) -> str:
        counts = self.card["counts"]
        splits = ", ".join(f"{split} {counts['per_split'].get(split, 0)}" for split in SPLITS)
        dims = ", ".join(f"{name} ({spec['extractor']}, {spec['dim']})"
                         for name, spec in self.card["modalities"].items())
        state = "already complete" if self.already_complete else (
            f"{self.written_parts} parts written, {self.resumed_parts} kept from an earlier run, "
            f"{self.wall_seconds:.1f} s")
        lines = [f"features: {counts['total']} utterances ({splits}) in {self.feats}: {state}", f"modalities: {dims}"]
        empty = {name: n for name, n in counts.get("empty_sequences", {}).items() if n}
        if empty:
            lines.append("empty sequences: " + ", ".join(f"{name} {n}" for name, n in empty.items()))
        per_utterance = self.seconds_per_utterance()
        if per_utterance:
            lines.append("extractor seconds per utterance: "
                         + ", ".join(f"{name} {value:.3f}" for name, value in per_utterance.items()))
        for problem in self.errors[:10]:
            lines.append(f"rejected {problem.format()}")
        if len(self.errors) > 10:
            lines.append(f"... and {len(self.errors) - 10} more")
        if self.errors:
            from mer_data.storage import join

            lines.append(f"{len(self.errors)} utterances rejected: see {join(self.feats, ERRORS_NAME)}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The whole run


def extract_features(shards: str | os.PathLike, feats: str | os.PathLike, options: FeatureOptions = FeatureOptions(),
                     *, workers: int | None = None, scheduler: str | None = None, overwrite: bool = False,
                     progress: bool = True, task: str = "emotion", source_name: str | None = None) -> FeatureReport:
    """Extract the features of every sample of the shards in SHARDS into FEATS (module doc).

    `task`: whose training targets the `target` column holds, the emotions (the card's label space)
    or, "sentiment", CMU-MOSEI's sentiment score (for `mer train --task sentiment` baselines).
    SHARDS and FEATS may be object-storage URLs (pipelines/bucket_io.py); `source_name`: the SHARDS the
    card names (default: SHARDS as given)."""
    from mer_data.model.features.text import resolve_encoder
    from mer_data.storage import is_storage_url

    if is_storage_url(shards) or is_storage_url(feats):
        return _extract_through_storage(shards, feats, options, workers=workers, scheduler=scheduler,
                                        overwrite=overwrite, progress=progress, task=task)
    started = time.perf_counter()
    options = replace(options, text_encoder=resolve_encoder(options.text_encoder))
    plan = plan_features(Path(shards), task)
    if source_name is not None:
        plan.source = source_name
    feats = Path(feats).resolve()
    # Before FEATS is touched: an encoder that does not load changes nothing.
    extractors = chosen_extractors(options, plan)
    specs = {name: extractor.spec() for name, extractor in extractors.items()}
    record = run_record(plan, options)
    _prepare_output(feats, record, overwrite)
    expected_schema = arrow_schema(specs, len(plan.label_names))
    finished = {job.name: outcome for job in plan.jobs if (outcome := _finished_part(feats, job, expected_schema))}
    if len(finished) == len(plan.jobs) and (feats / CARD_NAME).is_file():
        return _complete_report(feats, finished)
    (feats / CARD_NAME).unlink(missing_ok=True)  # the tables are about to change: not complete until the end
    _remove_leftovers(feats, plan.jobs)
    pending = [job for job in plan.jobs if job.name not in finished]
    outcomes = finished | _run_tasks(pending, feats, extractors, specs, plan.label_names, workers, scheduler,
                                     progress)
    ordered = [outcomes[job.name] for job in plan.jobs]
    problems = [problem for outcome in ordered for problem in outcome.problems]
    write_errors(problems, feats)
    card = extraction_card(plan, options, record, specs, ordered, problems, feats)
    write_card(feats, card)
    seconds: Counter = Counter()
    for outcome in ordered:
        seconds.update(outcome.seconds)
    fresh = [outcome for outcome in ordered if not outcome.resumed]
    report = FeatureReport(feats, card, sorted(problems, key=Problem.sort_key),
                           written_parts=sum(outcome.part is not None for outcome in fresh),
                           resumed_parts=len(finished), seconds=dict(seconds),
                           processed=sum(outcome.rows + len(outcome.problems) for outcome in fresh),
                           wall_seconds=time.perf_counter() - started)
    if report.processed:
        write_extraction_timing(feats, report)
    return report


def _extract_through_storage(shards, feats, options: FeatureOptions, *, scheduler: str | None,
                             **run_options: Any) -> FeatureReport:
    """extract_features with SHARDS and/or FEATS in object storage: on local copies, FEATS uploaded at the
    end with features.json last (a run that fails uploads nothing; its rerun starts from the bucket's parts)."""
    from .bucket_io import readable_folder, refuse_remote_scheduler, writable_folder

    refuse_remote_scheduler(scheduler, shards, feats)
    with readable_folder(shards, "shards") as local_shards, writable_folder(feats, (CARD_NAME,), "feats") as local:
        report = extract_features(local_shards, local, options, scheduler=None, source_name=str(shards),
                                  **run_options)
    report.feats = feats
    return report


def write_extraction_timing(feats: Path, report: "FeatureReport") -> Path:
    """FEATS/extraction.json: what the first phase cost, for `mer compare` (model/profile.py).

    Kept out of the card on purpose: the card describes the tables and is the same on every run,
    timings are not. The seconds are those of the samples extracted by this run (a resumed run
    times only the parts it wrote), per modality: decoding its member plus the extractor, one thread.
    """
    per_utterance = report.seconds_per_utterance()
    timing = {"utterances": report.processed, "seconds_per_utterance": per_utterance,
              "total_seconds_per_utterance": sum(per_utterance.values()), "threads_per_task": 1,
              "includes": "per modality: decoding its shard member (flac, mp4, txt) and running its extractor",
              "excludes": "reading the tar, Dask start-up and scheduling, writing the parts"}
    return atomic_write_text(Path(feats) / EXTRACTION_TIMING_NAME,
                             json.dumps(timing, indent=2, sort_keys=True) + "\n")


def plan_features(shards: Path, task: str = "emotion") -> FeaturePlan:
    """The shards of the folder (named {split}-NNNNNN.tar) and the label space of their dataset card
    (the sentiment task's for task "sentiment", MOSEI only)."""
    from mer_data.shards.folder import ShardFolder
    from mer_data.shards.labels import CORPORA, SENTIMENT_LABELS, check_task

    if not shards.is_dir():
        raise FileNotFoundError(f"{shards}: not a folder of shards")
    folder = ShardFolder(shards)
    tars = [Path(path) for path in folder.shards()]
    if not tars:
        raise FileNotFoundError(f"{shards}: no shards (train-NNNNNN.tar, valid-..., test-...) in the folder")
    corpus, label_names = folder.label_space()   # loose shards: the label space of the first sample's corpus
    label_task = folder.label_task()
    sha = fingerprint = interval = None
    if folder.card is not None:
        card_path = Path(folder.path_of(DATASET_CARD))
        if corpus not in CORPORA:
            raise ValueError(f"{card_path}: corpus {corpus!r} is not one of {', '.join(CORPORA)}")
        options = folder.card.get("options", {})
        sha, fingerprint = sha256_file(card_path), options.get("fingerprint")
        interval = options.get("frame_interval_ms")
    check_task(task, corpus, str(shards))
    if task == "sentiment":
        label_names = SENTIMENT_LABELS
    keys = folder.keys_by_shard()
    jobs = []
    for tar in tars:
        match = SHARD_NAME.match(tar.name)
        jobs.append(ShardJob(str(tar.resolve()), tar.name, match["split"], int(match["number"]),
                             None if keys is None else tuple(keys.get(tar.name, ()))))
    return FeaturePlan(shards, jobs, corpus, tuple(label_names), sha, fingerprint, interval, label_task)


def chosen_extractors(options: FeatureOptions, plan: FeaturePlan) -> dict[str, Extractor]:
    """The registry's extractors the options choose, per modality."""
    settings = ExtractorSettings(text_encoder=options.text_encoder, frame_interval_ms=plan.frame_interval_ms)
    # In name order: the card is written with sorted keys, and the table's columns follow the card's order.
    return {name: make_extractor(name, kind, settings) for name, kind in sorted(options.modalities().items())}


# --------------------------------------------------------------------------------------------
# Resume


def run_record(plan: FeaturePlan, options: FeatureOptions) -> dict:
    """What must be equal for a rerun to reuse finished parts: options, tool version, the shards."""
    record = {"tool": mer_data.__version__, "options": options.to_json(),
              "shards": {"dataset_sha256": plan.dataset_sha256,
                         "files": [[job.name, os.path.getsize(job.path)] for job in plan.jobs]}}
    if plan.label_names == ("sentiment",):   # only then: emotion records stay as they were
        record["task"] = "sentiment"
    return record


def _prepare_output(feats: Path, record: dict, overwrite: bool) -> None:
    """Clear FEATS for `overwrite`; refuse a FEATS made with another record; write this run's record."""
    record_path = feats / RECORD_NAME
    holds_tables = (feats / CARD_NAME).is_file() or any(split_parts(feats, split) for split in SPLITS)
    if overwrite:
        _clear(feats)
    elif holds_tables and (previous := _read_record(record_path)) is not None:
        if previous != record:
            raise FeatureOutputConflict(f"{feats} holds features made {_difference(previous, record)}; pass "
                                        "--overwrite to replace them, or choose another FEATS")
    elif holds_tables:
        raise FeatureOutputConflict(f"{feats} holds feature tables not made by `mer features` (no {RECORD_NAME}: "
                                    "e.g. a CSD import); pass --overwrite to replace them, or choose another FEATS")
    feats.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record_path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # missing or damaged: the folder's tables cannot be vouched for
    return record if isinstance(record, dict) else None


def _difference(previous: dict, record: dict) -> str:
    changed = [f"--{name.replace('_', '-')} {value} (now {record['options'].get(name)})"
               for name, value in previous.get("options", {}).items() if record["options"].get(name) != value]
    if changed:
        return "with other options: " + ", ".join(changed)
    if previous.get("shards") != record["shards"]:
        return "from other shards (dataset.json, shard names or sizes differ)"
    return f"by another version of mer-data ({previous.get('tool')}; this is {record['tool']})"


def _clear(feats: Path) -> None:
    """Remove what `mer features` writes (and nothing else: FEATS may be a folder the user keeps other things in)."""
    for name in (CARD_NAME, ERRORS_NAME, RECORD_NAME, EXTRACTION_TIMING_NAME):
        (feats / name).unlink(missing_ok=True)
    for split in SPLITS:
        directory = split_dir(feats, split)
        if directory.is_dir():
            for path in [*directory.glob("part-*.parquet"), *directory.glob(f"{TEMP_PREFIX}*")]:
                path.unlink()
            if not any(directory.iterdir()):
                directory.rmdir()


def _finished_part(feats: Path, job: ShardJob, schema) -> ShardOutcome | None:
    """The outcome a finished part of `job` carries, or None (missing, unreadable, another schema or shard)."""
    import pyarrow.parquet as pq

    path = part_path(feats, job.split, job.number)
    if not path.is_file():
        return None
    try:
        found = pq.read_schema(path)
        outcome = ShardOutcome.from_json(json.loads(found.metadata[OUTCOME_KEY]))
    except Exception:  # a damaged part is simply redone
        return None
    if outcome.shard != job.name or not found.equals(schema, check_metadata=False):
        return None
    return outcome


def _remove_leftovers(feats: Path, jobs: list[ShardJob]) -> None:
    """Temporary files of killed tasks, and parts of shards that are no longer there."""
    wanted = {(job.split, job.part) for job in jobs}
    for split in SPLITS:
        directory = split_dir(feats, split)
        if not directory.is_dir():
            continue
        for path in directory.glob(f"{TEMP_PREFIX}*"):
            path.unlink(missing_ok=True)
        for path in directory.glob("part-*.parquet"):
            if (split, path.name) not in wanted:
                path.unlink()


def _complete_report(feats: Path, outcomes: dict[str, ShardOutcome]) -> FeatureReport:
    card = read_card(feats)
    errors_path = feats / ERRORS_NAME
    errors = read_errors(errors_path) if errors_path.is_file() else [p for o in outcomes.values() for p in o.problems]
    return FeatureReport(feats, card, sorted(errors, key=Problem.sort_key), resumed_parts=len(outcomes),
                         already_complete=True)


# --------------------------------------------------------------------------------------------
# The tasks


def _run_tasks(jobs: list[ShardJob], feats: Path, extractors: dict[str, Extractor], specs: dict[str, ModalitySpec],
               label_names: tuple[str, ...], workers: int | None, scheduler: str | None,
               progress: bool) -> dict[str, ShardOutcome]:
    if not jobs:
        return {}
    # Largest shards first: the run ends when its longest task does.
    jobs = sorted(jobs, key=lambda job: -os.path.getsize(job.path))
    task = partial(extract_shard, feats=str(feats), extractors=extractors, specs=specs, label_names=label_names)
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    results = run_tasks(task, jobs, [job.name for job in jobs], "shards", workers=workers, scheduler=scheduler,
                        progress=progress)
    return {job.name: failed_shard(job, f"the task failed on the cluster: {result.reason}")
            if isinstance(result, TaskFailure) else result for job, result in zip(jobs, results)}


# --------------------------------------------------------------------------------------------
# The card


def extraction_card(plan: FeaturePlan, options: FeatureOptions, record: dict, specs: dict[str, ModalitySpec],
                    outcomes: list[ShardOutcome], problems: list[Problem], feats: Path) -> dict:
    """The feature card (model/features/table.py: feature_card) of this run's shards and outcomes."""
    per_split = Counter()
    empty = Counter({name: 0 for name in specs})
    parts = []
    for outcome in outcomes:
        per_split[outcome.split] += outcome.rows
        empty.update(outcome.empty_sequences)
        if outcome.part is not None:
            path = split_dir(feats, outcome.split) / outcome.part
            parts.append({"split": outcome.split, "name": outcome.part, "rows": outcome.rows,
                          "sha256": sha256_file(path), "source": outcome.shard})
    return feature_card(
        corpus=plan.corpus, label_names=plan.label_names, label_task=plan.label_task,
        source={"kind": "shards", "path": str(plan.source), "dataset_fingerprint": plan.dataset_fingerprint},
        modalities=specs,
        options={**options.to_json(), "dataset_sha256": plan.dataset_sha256, "fingerprint": _fingerprint(record)},
        per_split=per_split, empty_sequences=dict(empty), parts=parts,
        error_reasons=[reason_kind(p.reason) for p in problems])


def _fingerprint(record: dict) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def reason_kind(reason: str) -> str:
    """A reason without its specifics, for counting: "audio: cannot decode the audio (812 bytes): ..." ->
    "audio: cannot decode the audio"."""
    head = reason.split(" (")[0]
    parts = head.split(": ")
    head = ": ".join(parts[:2]) if len(parts) > 1 and parts[0] in MODALITIES else parts[0]
    return " ".join(head.split()[:10])

