"""The conversion graph: corpus reading -> per-recording media tasks (Dask) -> packing.

    plan  = plan_iemocap(raw, options)        # cheap, single process: who goes where, what is rejected
    report = run_conversion(plan, out, ...)   # media on the cluster, then shards + index + card

Output folder layout (the contract of DESIGN.md §3): `{split}-{NNNNNN}.tar`, `index.parquet`,
`errors.jsonl` (every utterance not written, with its reason), `excluded.jsonl` (utterances left
out on purpose, e.g. by the class filter), and `dataset.json`, written last: its presence means
the conversion finished. Work in progress lives in `.staging/` and is removed at the end.
"""
from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import mer_data
from mer_data.corpora.splits import empty_split_warnings
from mer_data.records import Problem, StagedSample, Utterance
from mer_data.shards import (atomic_write_text, index_rows, pack_shards, sha256_file, write_dataset_card,
                             write_errors, write_index)

from .cluster import TaskFailure, dask_client, map_tasks
from .options import ConvertOptions
from .recording_task import RecordingJob, RecordingOutcome, failed_outcome, run_recording

STAGING = ".staging"
CARD = "dataset.json"
OUTPUT_FILES = ("index.parquet", "errors.jsonl", "excluded.jsonl", CARD)


class OutputConflict(Exception):
    """OUT holds a finished conversion made with other options (use overwrite)."""


@dataclass
class ConversionPlan:
    """What the corpus reader decided, before any media work."""

    corpus: str
    root: Path
    jobs: list[RecordingJob]
    problems: list[Problem]  # rejected while reading (malformed lines, unknown split, ...)
    excluded: list[dict]  # left out on purpose: {"utterance", "reason", "label"}
    split_report: dict
    reader_stats: dict = field(default_factory=dict)

    @property
    def utterance_count(self) -> int:
        return sum(len(job.utterances) for job in self.jobs)


@dataclass
class ConversionReport:
    out: Path
    card: dict
    problems: list[Problem]
    resumed_recordings: int = 0
    already_complete: bool = False

    @property
    def rejected(self) -> int:
        return len(self.problems)


def plan_iemocap(raw: Path, options: ConvertOptions) -> ConversionPlan:
    """Read the IEMOCAP annotations, filter classes, assign splits, group by dialog."""
    from mer_data.corpora.iemocap import find_iemocap_root, read_iemocap

    root = find_iemocap_root(Path(raw)).resolve()
    reading = read_iemocap(root)
    chosen, excluded = filter_classes(reading.utterances, options.classes)
    return group_into_jobs("iemocap", root, chosen, excluded, reading.problems, options, reading.stats)


def plan_mosei(raw: Path, options: ConvertOptions, labels: str = "csd") -> ConversionPlan:
    """Read the CMU-MOSEI transcripts and labels (`labels`: "csd" or "mturk"), assign splits,
    group by source video. Every labelled segment is kept: MOSEI labels are multi-label."""
    from mer_data.corpora.mosei import find_mosei_root, read_mosei

    root = find_mosei_root(Path(raw)).resolve()
    reading = read_mosei(root, labels=labels)
    return group_into_jobs("mosei", root, reading.utterances, [], reading.problems, options, reading.stats)


def filter_classes(utterances: list[Utterance], classes: tuple[str, ...]) -> tuple[list[Utterance], list[dict]]:
    """Keep the utterances whose category is in `classes` ("all" keeps everything)."""
    if "all" in classes:
        return list(utterances), []
    keep, excluded = [], []
    for utt in utterances:
        category = utt.label.get("category")
        if category in classes:
            keep.append(utt)
        else:
            excluded.append({"utterance": utt.id, "label": category,
                             "reason": f"category {category!r} not in --classes {','.join(classes)}"})
    return keep, excluded


def group_into_jobs(corpus: str, root: Path, utterances: list[Utterance], excluded: list[dict],
                    problems: list[Problem], options: ConvertOptions, stats: dict) -> ConversionPlan:
    """Assign splits, reject the unplaceable, and make one job per recording (sorted by name)."""
    from mer_data.corpora.splits import assign_splits

    splits, split_problems, split_report = assign_splits(utterances, options.split, corpus=corpus)
    by_recording: dict[str, list[Utterance]] = {}
    for utt in utterances:
        if utt.id in splits:
            by_recording.setdefault(utt.recording, []).append(utt)
    jobs = []
    for name in sorted(by_recording):
        utts = sorted(by_recording[name], key=lambda u: (u.start, u.id))
        first = utts[0]
        jobs.append(RecordingJob(name, str(root), first.sources["video"], first.sources["audio"], tuple(utts),
                                 tuple((u.id, splits[u.id]) for u in utts),
                                 audio_fallback_to_video=corpus == "mosei"))
    return ConversionPlan(corpus, root, jobs, list(problems) + list(split_problems), excluded,
                          split_report, stats)


def run_conversion(plan: ConversionPlan, out: Path, options: ConvertOptions, *, workers: int | None = None,
                   scheduler: str | None = None, overwrite: bool = False, progress: bool = True) -> ConversionReport:
    """Media on Dask, then shards, index, error log and the dataset card (last)."""
    out = Path(out).resolve()
    finished = _prepare_output(out, options, overwrite)
    if finished is not None:
        return finished
    staging = out / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    _remove_half_staged(staging)
    resumed = sum((staging / job.recording / "_outcome.json").is_file() for job in plan.jobs)
    outcomes = _run_media(plan.jobs, staging, options, workers, scheduler, progress)
    report = _pack(plan, outcomes, out, options)
    report.resumed_recordings = resumed
    shutil.rmtree(staging, ignore_errors=True)
    return report


def _run_media(jobs: list[RecordingJob], staging: Path, options: ConvertOptions, workers: int | None,
               scheduler: str | None, progress: bool) -> list[RecordingOutcome]:
    if not jobs:
        return []
    task = partial(run_recording, staging=str(staging), options=options)
    with dask_client(workers, scheduler) as client:
        results = map_tasks(client, task, jobs, names=[job.recording for job in jobs], progress=progress)
    return [failed_outcome(r.item, f"task failed on the cluster: {r.reason}") if isinstance(r, TaskFailure) else r
            for r in results]


def _pack(plan: ConversionPlan, outcomes: list[RecordingOutcome], out: Path, options: ConvertOptions) -> ConversionReport:
    samples: list[StagedSample] = [s for o in outcomes for s in o.samples]
    problems = sorted(list(plan.problems) + [p for o in outcomes for p in o.problems], key=Problem.sort_key)
    packed = pack_shards(samples, out, seed=options.shuffle_seed, max_bytes=options.shard_max_bytes,
                         max_count=options.shard_max_count)
    rows = index_rows(samples, packed.placements)
    index_path = write_index(rows, out)
    errors_path = write_errors(problems, out)
    excluded_path = out / "excluded.jsonl"
    atomic_write_text(excluded_path, "".join(json.dumps(e, sort_keys=True, ensure_ascii=False) + "\n"
                                             for e in sorted(plan.excluded, key=lambda e: e["utterance"])))
    card = dataset_card(plan, options, rows, packed.shards, problems,
                        {p.name: sha256_file(p) for p in (index_path, errors_path, excluded_path)})
    write_dataset_card(card, out)
    return ConversionReport(out, card, problems)


def dataset_card(plan: ConversionPlan, options: ConvertOptions, rows: list[dict], shards, problems: list[Problem],
                 checksums: dict[str, str]) -> dict:
    """The dataset card: enough to know what is in OUT without opening a tar, and nothing
    run-dependent (no times, no host names) so that it is byte-identical across runs."""
    per_split = Counter(row["split"] for row in rows)
    per_split_label: dict[str, Counter] = {}
    for row in rows:
        per_split_label.setdefault(row["split"], Counter()).update(row_labels(row))
    card = {
        "schema_version": "1.0",
        "tool": {"name": "mer-data", "version": mer_data.__version__},
        "corpus": plan.corpus,
        "created_from": str(plan.root),
        "options": dict(options.to_json(), fingerprint=options.fingerprint()),
        "counts": {
            "total": len(rows),
            "per_split": {split: per_split.get(split, 0) for split in ("train", "valid", "test")},
            "per_split_label": {split: dict(sorted(c.items())) for split, c in sorted(per_split_label.items())},
            "planned": plan.utterance_count,
        },
        "shards": [shard.to_json() for shard in shards],
        "errors": {
            "count": len(problems),
            "by_stage": dict(sorted(Counter(p.stage for p in problems).items())),
            "by_kind": dict(sorted(Counter(problem_kind(p) for p in problems).items())),
        },
        "excluded": {"count": len(plan.excluded),
                     "by_label": dict(sorted(Counter(str(e["label"]) for e in plan.excluded).items()))},
        "split_report": plan.split_report,
        "reader_stats": plan.reader_stats,
        "checksums": checksums,
    }
    warnings = empty_split_warnings(per_split, plan.split_report)
    if warnings:  # only then: the cards of conversions with nothing to warn about stay as they were
        card["warnings"] = warnings
    return card


def row_labels(row: dict) -> list[str]:
    """The labels an index row counts under: its IEMOCAP category, or each MOSEI emotion present."""
    if "label" in row:
        return [row["label"]]
    return [name[len("emo_"):] for name, value in sorted(row.items()) if name.startswith("emo_") and value > 0]


def problem_kind(problem: Problem) -> str:
    """A coarse kind for counting: the reason up to its first colon or parenthesis."""
    head = problem.reason.split(":")[0].split("(")[0].strip()
    return " ".join(head.split()[:6])


def _prepare_output(out: Path, options: ConvertOptions, overwrite: bool) -> ConversionReport | None:
    """Clear OUT for --overwrite; return the finished report when OUT is already complete."""
    card_path = out / CARD
    if overwrite and out.exists():
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
        _remove_shards(out)
        shutil.rmtree(out / STAGING, ignore_errors=True)
    if not card_path.is_file():
        return None
    card = json.loads(card_path.read_text(encoding="utf-8"))
    if card.get("options", {}).get("fingerprint") != options.fingerprint():
        raise OutputConflict(f"{out} holds a finished conversion made with other options; "
                             "pass --overwrite to replace it, or choose another OUT")
    problems = [Problem(**json.loads(line)) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()
                if line.strip()]
    return ConversionReport(out, card, problems, already_complete=True)


def _remove_half_staged(staging: Path) -> None:
    """Temporary folders of tasks that were killed: their recordings are redone."""
    for tmp in staging.glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_shards(out: Path) -> None:
    for pattern in ("train-*.tar", "valid-*.tar", "test-*.tar", ".tmp-*"):
        for path in out.glob(pattern):
            if path.is_file():
                path.unlink()
