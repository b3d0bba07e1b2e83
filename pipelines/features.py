"""The feature graph: shards -> one Dask task per shard -> per-split Parquet feature tables.

    report = extract_features("shards/", "feats/", FeatureOptions(audio="mfcc", text="none"), workers=2)
    print(report.summary())

Each task reads one shard's samples in order (the shard auditor's tar reader, which reports a
damaged tar instead of raising), extracts the chosen modalities of every sample
(mer_data/features/acoustic.py, visual.py, text.py) and writes one part, numbered like its shard:
`train-000003.tar` -> `FEATS/train/part-000003.parquet` (layout and columns: mer_data/features/table.py).
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
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import mer_data
import schemas
from mer_data.corpora.label_protocol import ONE_VS_REST
from mer_data.features.table import (CARD_NAME, ERRORS_NAME, EXTRACTION_TIMING_NAME, SPLITS, ModalitySpec,
                                     arrow_schema, part_path, read_card, rows_to_table, sequence_problem, split_dir,
                                     split_parts, write_card, write_part)
from mer_data.records import Problem
from mer_data.shards.atomic import TEMP_PREFIX, atomic_write_text
from mer_data.shards.errorlog import read_errors, write_errors
from mer_data.shards.hashing import sha256_file
from mer_data.shards.layout import CARD_NAME as DATASET_CARD
from mer_data.shards.layout import SHARD_NAME

from .cluster import TaskFailure, dask_client, map_tasks

RECORD_NAME = ".options.json"
OUTCOME_KEY = b"mer_features.outcome"  # the part's Parquet metadata: its shard's outcome (JSON)
STAGE = "features"
MODALITIES = ("audio", "visual", "text")
CHOICES = {"audio": ("egemaps", "mfcc", "none"), "visual": ("appearance", "none"), "text": ("encoder", "none")}
MEMBER_OF = {"audio": "flac", "visual": "mp4", "text": "txt"}


class FeatureOutputConflict(Exception):
    """FEATS holds features made with other options or from other shards (use overwrite)."""


@dataclass(frozen=True)
class FeatureOptions:
    """Everything that changes the feature values (not the worker count or the scheduler)."""

    audio: str = "egemaps"
    visual: str = "appearance"
    text: str = "encoder"
    text_encoder: str | None = None  # Hugging Face name or local path; None: the bundled all-MiniLM-L6-v2

    def __post_init__(self):
        for modality, choices in CHOICES.items():
            if getattr(self, modality) not in choices:
                raise ValueError(f"--{modality} must be one of {', '.join(choices)}, not {getattr(self, modality)!r}")
        if not self.modalities():
            raise ValueError("every modality is 'none': choose at least one of --audio, --visual, --text")
        if self.text_encoder is not None and self.text == "none":
            raise ValueError("--text-encoder names the encoder of --text encoder, but --text is 'none'")

    def modalities(self) -> dict[str, str]:
        """modality -> extractor kind, for the modalities that are extracted."""
        return {name: getattr(self, name) for name in MODALITIES if getattr(self, name) != "none"}

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ShardJob:
    """One task: a shard and the part it becomes."""

    path: str  # absolute
    name: str  # train-000003.tar
    split: str
    number: int
    expected_keys: tuple[str, ...] | None = None  # the shard's keys in index.parquet, where there is one

    @property
    def part(self) -> str:
        return f"part-{self.number:06d}.parquet"


@dataclass
class ShardOutcome:
    """What one shard gave: a part (None where its task failed) with `rows` rows, and the rejected samples."""

    shard: str
    split: str
    part: str | None
    rows: int = 0
    empty_sequences: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # extractor time per modality (this run only)
    resumed: bool = False

    def to_json(self) -> dict:
        return {"shard": self.shard, "split": self.split, "part": self.part, "rows": self.rows,
                "empty_sequences": self.empty_sequences, "problems": [p.to_json() for p in self.problems]}

    @classmethod
    def from_json(cls, data: dict, resumed: bool = True) -> "ShardOutcome":
        return cls(data["shard"], data["split"], data["part"], data["rows"], dict(data["empty_sequences"]),
                   [Problem(**p) for p in data["problems"]], resumed=resumed)


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
    from mer_data.features.text import resolve_encoder
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
    specs = modality_specs(options, plan)  # before FEATS is touched: an encoder that does not load changes nothing
    record = run_record(plan, options)
    _prepare_output(feats, record, overwrite)
    expected_schema = arrow_schema(specs, len(plan.label_names))
    finished = {job.name: outcome for job in plan.jobs if (outcome := _finished_part(feats, job, expected_schema))}
    if len(finished) == len(plan.jobs) and (feats / CARD_NAME).is_file():
        return _complete_report(feats, finished)
    (feats / CARD_NAME).unlink(missing_ok=True)  # the tables are about to change: not complete until the end
    _remove_leftovers(feats, plan.jobs)
    pending = [job for job in plan.jobs if job.name not in finished]
    outcomes = finished | _run_tasks(pending, feats, options, specs, plan.label_names, workers, scheduler, progress)
    ordered = [outcomes[job.name] for job in plan.jobs]
    problems = [problem for outcome in ordered for problem in outcome.problems]
    write_errors(problems, feats)
    card = feature_card(plan, options, record, specs, ordered, problems, feats)
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


def modality_specs(options: FeatureOptions, plan: FeaturePlan) -> dict[str, ModalitySpec]:
    from mer_data.features.acoustic import acoustic_spec
    from mer_data.features.text import text_spec
    from mer_data.features.visual import visual_spec

    makers = {"audio": acoustic_spec, "visual": lambda kind: visual_spec(kind, plan.frame_interval_ms),
              "text": lambda kind: text_spec(kind, options.text_encoder)}
    # In name order: the card is written with sorted keys, and the table's columns follow the card's order.
    return {name: makers[name](kind) for name, kind in sorted(options.modalities().items())}


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


def _run_tasks(jobs: list[ShardJob], feats: Path, options: FeatureOptions, specs: dict[str, ModalitySpec],
               label_names: tuple[str, ...], workers: int | None, scheduler: str | None,
               progress: bool) -> dict[str, ShardOutcome]:
    if not jobs:
        return {}
    # Largest shards first: the run ends when its longest task does.
    jobs = sorted(jobs, key=lambda job: -os.path.getsize(job.path))
    task = partial(extract_shard, feats=str(feats), options=options, specs=specs, label_names=label_names)
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    with dask_client(workers, scheduler) as client:
        results = map_tasks(client, task, jobs, names=[job.name for job in jobs], progress=progress, desc="shards")
    return {job.name: failed_shard(job, f"the task failed on the cluster: {result.reason}")
            if isinstance(result, TaskFailure) else result for job, result in zip(jobs, results)}


def failed_shard(job: ShardJob, reason: str) -> ShardOutcome:
    """Every sample of the shard rejected with `reason`; no part (a rerun tries again)."""
    from mer_data.shards.samples import sample_keys

    keys = job.expected_keys if job.expected_keys is not None else sample_keys(job.path)
    problems = [Problem(file=job.name, line=None, reason=reason, utterance=key, stage=STAGE) for key in keys]
    if not problems:
        problems = [Problem(file=job.name, line=None, reason=reason, utterance=None, stage=STAGE)]
    return ShardOutcome(job.name, job.split, None, problems=problems)


def extract_shard(job: ShardJob, *, feats: str, options: FeatureOptions, specs: dict[str, ModalitySpec],
                  label_names: tuple[str, ...]) -> ShardOutcome:
    """The task body: every sample of one shard -> one part; the outcome travels in the part's metadata."""
    from mer_data.shards.samples import read_samples

    _one_thread_per_worker()
    findings: list = []
    rows, problems, seen = [], [], set()
    seconds: Counter = Counter()
    for sample in read_samples(job.path, findings.append):
        seen.add(sample.key)
        row, problem = sample_row(sample, job, options, specs, label_names, seconds)
        if problem is not None:
            problems.append(problem)
        else:
            rows.append(row)
    problems += _tar_problems(job, findings, seen)
    empty = {name: sum(len(row[name]) == 0 for row in rows) for name in specs}
    outcome = ShardOutcome(job.name, job.split, job.part, len(rows), empty, problems, dict(seconds), resumed=False)
    table = rows_to_table(rows, arrow_schema(specs, len(label_names)))
    metadata = dict(table.schema.metadata or {})
    metadata[OUTCOME_KEY] = json.dumps(outcome.to_json(), sort_keys=True).encode()
    write_part(part_path(feats, job.split, job.number), table.replace_schema_metadata(metadata))
    return outcome


def _one_thread_per_worker() -> None:
    """Inside a Dask worker, one thread for torch and OpenCV: parallelism is the worker processes."""
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return  # not in a worker: leave the caller's settings alone
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def _tar_problems(job: ShardJob, findings: list, seen: set[str]) -> list[Problem]:
    """Tar damage (the reader's findings), and the index's keys of this shard that it never reached."""
    problems = [Problem(file=job.name, line=None, reason=f"damaged shard: {finding.message}", utterance=finding.id,
                        stage=STAGE) for finding in findings if finding.id not in seen]
    lost = [key for key in (job.expected_keys or ()) if key not in seen]
    reason = "listed in index.parquet for this shard, but not in it (the tar is damaged or cut short before it)"
    return problems + [Problem(file=job.name, line=None, reason=reason, utterance=key, stage=STAGE) for key in lost]


# --------------------------------------------------------------------------------------------
# One sample


def sample_row(sample, job: ShardJob, options: FeatureOptions, specs: dict[str, ModalitySpec],
               label_names: tuple[str, ...], seconds: Counter) -> tuple[dict | None, Problem | None]:
    """The table row of one sample (mer_data.shards.samples.read_samples), or the problem that stops it."""
    from mer_data.shards.labels import LabelError, targets

    def rejected(reason: str) -> tuple[None, Problem]:
        return None, Problem(file=job.name, line=None, reason=reason, utterance=sample.key, stage=STAGE)

    if not sample.complete:
        return rejected("the shard is cut short inside this sample")
    missing = [member for member in ["json", *(MEMBER_OF[name] for name in specs)] if member not in sample.members]
    if missing:
        return rejected(f"the sample has no {', '.join(missing)} member")
    try:
        meta = json.loads(sample.members["json"])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return rejected(f"unreadable metadata (json member): {error}")
    if not isinstance(meta, dict) or not isinstance(meta.get("id"), str) or "split" not in meta:
        return rejected("the metadata (json member) has no id or split")
    if meta["split"] != job.split:
        return rejected(f"its metadata says split {meta['split']!r}, but it is in a {job.split} shard")
    try:
        target = targets(meta, label_names)
    except LabelError as error:
        return rejected(_without_id(str(error), sample.key))
    row = {"id": meta["id"], "key": sample.key, "split": job.split, "source": f"{job.name}#{sample.position}",
           "recording": meta.get("recording"), "speaker": meta.get("speaker"), "start": meta.get("start"),
           "end": meta.get("end"), "target": target}
    for name, spec in specs.items():
        began = time.perf_counter()
        try:
            values, times = _extract(name, options, sample, meta)
        except Exception as error:  # one sample's bad media must not cost the shard; the reason is kept
            return rejected(f"{name}: {_without_id(str(error), sample.key) or type(error).__name__}")
        seconds[name] += time.perf_counter() - began
        problem = sequence_problem(values, times, spec.dim, times_required=spec.timed)
        if problem:
            return rejected(f"{name}: {problem}")
        row[name], row[f"{name}_times"] = values, times
    return row, None


def _extract(name: str, options: FeatureOptions, sample, meta: dict) -> tuple[Any, Any]:
    """(values [T, D], times [T] or None) of one modality of one sample."""
    if name == "audio":
        from mer_data.features.acoustic import acoustic_features
        from model.audio import decode_flac

        waveform = decode_flac(sample.members["flac"], sample.key)
        expected = (meta.get("audio") or {}).get("samples")
        if expected is not None and len(waveform) != expected:  # a FLAC cut at a frame boundary still decodes
            raise ValueError(f"the flac member decodes to {len(waveform)} samples, its metadata says {expected}")
        _, values, times = acoustic_features(options.audio, waveform)
    elif name == "visual":
        from mer_data.features.visual import appearance

        _, values, times = appearance(sample.members["mp4"], meta)
    else:
        from mer_data.features.text import token_embeddings

        _, values, times = token_embeddings(sample.members["txt"].decode("utf-8"), options.text_encoder)
    return values, times


def _without_id(message: str, key: str) -> str:
    """Error messages of the decoders start with the sample id; the error record names it already."""
    prefix = f"{key}: "
    return message[len(prefix):] if message.startswith(prefix) else message


# --------------------------------------------------------------------------------------------
# The card


def feature_card(plan: FeaturePlan, options: FeatureOptions, record: dict, specs: dict[str, ModalitySpec],
                 outcomes: list[ShardOutcome], problems: list[Problem], feats: Path) -> dict:
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
    return {
        "schema_version": schemas.FEATURES_SCHEMA_VERSION,
        "tool": {"name": "mer-data", "version": mer_data.__version__},
        "corpus": plan.corpus,
        "label_names": list(plan.label_names),
        "label_task": plan.label_task,
        "source": {"kind": "shards", "path": str(plan.source), "dataset_fingerprint": plan.dataset_fingerprint},
        "modalities": {name: spec.to_json() for name, spec in specs.items()},
        "options": {**options.to_json(), "dataset_sha256": plan.dataset_sha256,
                    "fingerprint": _fingerprint(record)},
        "counts": {"per_split": {split: per_split.get(split, 0) for split in SPLITS},
                   "total": sum(per_split.values()), "empty_sequences": dict(empty)},
        "parts": parts,
        "errors": {"count": len(problems),
                   "by_reason": dict(sorted(Counter(reason_kind(p.reason) for p in problems).items()))},
    }


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

