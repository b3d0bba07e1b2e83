"""The conversion graph: corpus reading -> per-recording media tasks (Dask) -> packing.

    plan  = plan_iemocap(raw, options)        # cheap, single process: who goes where, what is rejected
    report = run_conversion(plan, out, ...)   # media on the cluster, then shards + index + card

Output folder layout (the shard contract, docs/shard-format.md): `{split}-{NNNNNN}.tar`, `index.parquet`,
`errors.jsonl` (every utterance not written, with its reason), `excluded.jsonl` (utterances left
out on purpose, e.g. by the class filter), and `dataset.json`, written last: its presence means
the conversion finished. Work in progress lives in `.staging/` and is removed at the end.

Faults of the machine (a full disk, a missing ffmpeg, a killed worker) are not data errors: they
stop the run with an EnvironmentFault before dataset.json is written and record nothing as final,
so the same command run again retries them (mer_data/faults.py). `OUT/.lock` keeps a second
conversion out of OUT while one runs.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from mer_data.faults import (FREE_SPACE, INSTALL_FFMPEG, MEDIA_TOOLS, RERUN, TOOL_MISSING, EnvironmentFault, advice,
                             environment_cause)
from mer_data.folder_lock import folder_lock
from mer_data.locations import local_folder
from mer_data.storage import default_options, is_storage_url
from mer_data.records import Problem, StagedSample, Utterance
from mer_data.shards import (index_rows, key_problem, pack_shards, sha256_file, write_dataset_card, write_errors,
                             write_index)
from mer_data.shards.atomic import TEMP_PREFIX
from mer_data.shards.card import dataset_card
from mer_data.shards.errorlog import write_excluded
from mer_data.shards.folder import ShardFolder
from mer_data.shards.layout import CARD_NAME, ERRORS_NAME, EXCLUDED_NAME, INDEX_NAME, SHARD_NAME
from mer_data.shards.tarwriter import archive_bytes, sample_bytes

from .cluster import TaskFailure
from .options import ConvertOptions
from .recording_task import RecordingJob, RecordingOutcome, run_recording
from .runner import run_tasks

STAGING = ".staging"
OUTPUT_FILES = (INDEX_NAME, ERRORS_NAME, EXCLUDED_NAME, CARD_NAME)
# Beyond the estimates below: room for index.parquet, the logs and the file system's own blocks.
SPACE_MARGIN = 64 * 1024**2
WORKER_FAILED = "the task's worker failed"


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
    """Keep the utterances whose category is in a class of the protocol `classes` (mer_data/corpora/
    label_protocol.py; "all" keeps everything), each labelled with its class as `label["class"]`."""
    from mer_data.corpora.label_protocol import parse_classes

    protocol = parse_classes(classes)
    keep, excluded = [], []
    for utt in utterances:
        category = utt.label.get("category")
        merged = protocol.class_of(category)
        if merged is not None:
            keep.append(replace(utt, label={**utt.label, "class": merged}))
        else:
            excluded.append({"utterance": utt.id, "label": category,
                             "reason": f"category {category!r} not in --classes {','.join(classes)}"})
    return keep, excluded


def group_into_jobs(corpus: str, root: Path, utterances: list[Utterance], excluded: list[dict],
                    problems: list[Problem], options: ConvertOptions, stats: dict) -> ConversionPlan:
    """Assign splits, reject the unplaceable, and make one job per recording (sorted by name)."""
    from mer_data.corpora.splits import assign_splits

    utterances, key_problems = reject_unusable_keys(utterances)
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
    return ConversionPlan(corpus, root, jobs, list(problems) + key_problems + list(split_problems), excluded,
                          split_report, stats)


def reject_unusable_keys(utterances: list[Utterance]) -> tuple[list[Utterance], list[Problem]]:
    """The utterances whose id can be a sample key, and a Problem for each other one: caught here,
    before any media work, rather than by the packer, which refuses the whole set for one bad key."""
    usable, problems = [], []
    for utt in utterances:
        why = key_problem(utt.id)
        if why is None:
            usable.append(utt)
            continue
        source = "transcript" if utt.sources.get("transcript") else "labels"
        reason = f"utterance id {utt.id!r} cannot be a sample key: {why}"
        problems.append(Problem(file=utt.sources.get(source) or utt.sources.get("video", ""),
                                line=utt.lines.get(source), reason=reason, utterance=utt.id, stage="read"))
    return usable, problems


def run_conversion(plan: ConversionPlan, out: Path | str, options: ConvertOptions, *, workers: int | None = None,
                   scheduler: str | None = None, overwrite: bool = False, progress: bool = True,
                   storage_options: dict | None = None) -> ConversionReport:
    """Media on Dask, then shards, index, error log and the dataset card (last).

    `out`: a local folder (or file:// URL), or an object-storage URL (s3://bucket/x; see
    pipelines/bucket_output.py) opened with `storage_options` (None: the process's defaults).
    Raises EnvironmentFault (nothing final written, a rerun retries), FolderLocked (another
    conversion writes OUT), OutputConflict, UnsupportedLocation."""
    if is_storage_url(out):
        return _run_conversion_to_bucket(plan, str(out), options, workers=workers, scheduler=scheduler,
                                         overwrite=overwrite, progress=progress,
                                         storage_options=default_options() if storage_options is None
                                         else dict(storage_options))
    out = local_folder(out).resolve()
    with folder_lock(out):
        finished = _prepare_output(out, options, overwrite)
        if finished is not None:
            return finished
        _remove_stray_temp_files(out)
        staging = out / STAGING
        staging.mkdir(parents=True, exist_ok=True)
        _remove_half_staged(staging)
        to_cut = [job for job in plan.jobs if not (staging / job.recording / "_outcome.json").is_file()]
        if to_cut and not scheduler:
            require_media_tools()
        require_free_space(out, staging_bytes_needed(plan.root, to_cut), "staging the media")
        outcomes = _run_media(plan.jobs, staging, options, workers, scheduler, progress)
        require_free_space(out, packing_bytes_needed(outcomes), "packing the shards")
        try:
            report = _pack(plan, outcomes, out, options)
        except OSError as error:
            cause = environment_cause(error)
            if cause is None:
                raise
            raise EnvironmentFault(f"packing the shards failed: {cause}; {advice(cause)}") from error
        report.resumed_recordings = len(plan.jobs) - len(to_cut)
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _run_conversion_to_bucket(plan: ConversionPlan, url: str, options: ConvertOptions, *, workers: int | None,
                              scheduler: str | None, overwrite: bool, progress: bool,
                              storage_options: dict) -> ConversionReport:
    """run_conversion into object storage (pipelines/bucket_output.py): tasks stage on their workers
    and upload; the client packs in a local temporary folder with the code of a local conversion and
    uploads the result, dataset.json last."""
    import tempfile

    from . import bucket_output as bucket

    folder = bucket.BucketFolder(url, storage_options)
    if overwrite:
        bucket.clear_outputs(folder, STAGING)
    finished = ShardFolder(url, storage_options)
    if finished.card is not None:
        if finished.card.get("options", {}).get("fingerprint") != options.fingerprint():
            raise OutputConflict(f"{url} holds a finished conversion made with other options; "
                                 "pass --overwrite to replace it, or choose another OUT")
        return ConversionReport(url, finished.card, finished.errors(), already_complete=True)
    with tempfile.TemporaryDirectory(prefix="mer-convert-") as work:
        staging, packed = Path(work) / STAGING, Path(work) / "out"
        staged = bucket.download_staged(folder, STAGING, plan.jobs, staging, options.fingerprint())
        to_cut = [job for job in plan.jobs if job.recording not in staged]
        if to_cut and not scheduler:
            require_media_tools()
        task = partial(bucket.stage_and_upload, staging_url=folder.url_of(STAGING), storage_options=storage_options,
                       options=options)
        returned = {outcome.recording: outcome
                    for outcome in _run_media(to_cut, staging, options, workers, scheduler, progress, task)}
        staged.update(bucket.download_staged(folder, STAGING, to_cut, staging, options.fingerprint()))
        # A recording whose task failed without staging (a crash of the task) has its problems only.
        missing = [job.recording for job in to_cut
                   if job.recording not in staged and bucket.unaccounted(job, returned[job.recording])]
        if missing:
            raise EnvironmentFault(f"{len(missing)} recordings were cut but are not staged in {url} ({missing[0]}: "
                                   f"its upload did not arrive); nothing was recorded; {RERUN.removeprefix('then ')}")
        outcomes = [staged.get(job.recording) or returned[job.recording] for job in plan.jobs]
        packed.mkdir()
        require_free_space(packed, packing_bytes_needed(outcomes), "packing the shards")
        report = _pack(plan, outcomes, packed, options)
        bucket.upload_outputs(packed, folder, [shard["name"] for shard in report.card["shards"]])
    folder.remove(STAGING)
    report.out = url
    report.resumed_recordings = len(plan.jobs) - len(to_cut)
    return report


def require_media_tools() -> None:
    """Refuse at once, before any task runs, when ffmpeg or ffprobe is missing on this machine
    (the local cluster's workers run them); remote workers are checked by their own tasks."""
    missing = [tool for tool in MEDIA_TOOLS if shutil.which(tool) is None]
    if missing:
        raise EnvironmentFault(f"{' and '.join(missing)} {TOOL_MISSING} (not found on PATH): {INSTALL_FFMPEG}")


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def require_free_space(out: Path, needed: int, step: str) -> None:
    """Refuse to start `step` unless OUT's disk has `needed` bytes plus SPACE_MARGIN free."""
    needed += SPACE_MARGIN
    available = free_bytes(out)
    if available < needed:
        raise EnvironmentFault(f"not enough free space in {out} for {step}: needs about {needed:,} bytes, "
                               f"{available:,} available; {FREE_SPACE}")


def staging_bytes_needed(root: Path, jobs: list[RecordingJob]) -> int:
    """An upper estimate of what staging `jobs` writes to OUT: the size of their source files.

    A recording's clips are its utterances' share of it, cropped to a speaker (or downscaled),
    re-encoded at the source frame rate, with 16 kHz mono FLAC for audio: on the synthetic
    releases the shards take 16% (IEMOCAP) and 25% (MOSEI) of the sources' bytes. A source of
    unusually low bit rate could re-encode larger; a disk that fills up anyway is an environment
    fault like any other (nothing final, the rerun resumes), so the check only spares a long run
    that could not have finished."""
    files = {Path(root) / rel for job in jobs for rel in (job.video, job.audio)}
    return sum(path.stat().st_size for path in files if path.is_file())


def packing_bytes_needed(outcomes: list[RecordingOutcome]) -> int:
    """What packing writes: every staged sample as tar members (exact), plus each shard's end
    blocks and padding, counted as if every sample had a shard of its own (staging is removed only
    after packing, so both are on disk at once)."""
    samples = [sample for outcome in outcomes for sample in outcome.samples]
    content = sum(sample_bytes(sample.key, {ext: Path(path).stat().st_size for ext, path in sample.members.items()})
                  for sample in samples)
    return content + len(samples) * archive_bytes(0)


def _run_media(jobs: list[RecordingJob], staging: Path, options: ConvertOptions, workers: int | None,
               scheduler: str | None, progress: bool, task=None) -> list[RecordingOutcome]:
    """Every job's outcome; raises EnvironmentFault, once every task has ended, when any of them
    failed because of the machine (their recordings are not staged, the others are kept).
    `task`: the task body (default: run_recording staging into `staging`)."""
    if not jobs:
        return []
    task = task or partial(run_recording, staging=str(staging), options=options)
    results = run_tasks(task, jobs, [job.recording for job in jobs], "recordings", workers=workers,
                        scheduler=scheduler, progress=progress)
    faults = {}
    for result in results:
        if isinstance(result, TaskFailure):
            # run_recording never raises: a task that did not return lost its worker (KilledWorker,
            # out of memory, a lost connection), which says nothing about the recording.
            faults[result.item.recording] = f"{WORKER_FAILED} ({result.reason})"
        elif result.fault:
            faults[result.recording] = result.fault
    if faults:
        raise EnvironmentFault(_media_fault_message(faults, len(jobs)))
    return results


def _media_fault_message(faults: dict[str, str], total: int) -> str:
    first = sorted(faults)[0]
    cause = faults[first]
    what_to_do = advice(cause)
    if cause.startswith(WORKER_FAILED):
        what_to_do = f"{RERUN.removeprefix('then ')} (with fewer --workers if the workers ran out of memory)"
    return (f"{len(faults)} of {total} recordings were not converted because of the machine, not the data "
            f"({first}: {cause}); nothing was recorded as rejected; {what_to_do}")


def _pack(plan: ConversionPlan, outcomes: list[RecordingOutcome], out: Path, options: ConvertOptions) -> ConversionReport:
    samples: list[StagedSample] = [s for o in outcomes for s in o.samples]
    problems = sorted(list(plan.problems) + [p for o in outcomes for p in o.problems], key=Problem.sort_key)
    packed = pack_shards(samples, out, seed=options.shuffle_seed, max_bytes=options.shard_max_bytes,
                         max_count=options.shard_max_count)
    rows = index_rows(samples, packed.placements)
    index_path = write_index(rows, out)
    errors_path = write_errors(problems, out)
    excluded_path = write_excluded(plan.excluded, out)
    card = dataset_card(plan, options, rows, packed.shards, problems,
                        {p.name: sha256_file(p) for p in (index_path, errors_path, excluded_path)})
    write_dataset_card(card, out)
    return ConversionReport(out, card, problems)


def _prepare_output(out: Path, options: ConvertOptions, overwrite: bool) -> ConversionReport | None:
    """Clear OUT for --overwrite; return the finished report when OUT is already complete."""
    if overwrite and out.exists():
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
        _remove_shards(out)
        shutil.rmtree(out / STAGING, ignore_errors=True)
    finished = ShardFolder(out)
    if finished.card is None:
        return None
    if finished.card.get("options", {}).get("fingerprint") != options.fingerprint():
        raise OutputConflict(f"{out} holds a finished conversion made with other options; "
                             "pass --overwrite to replace it, or choose another OUT")
    return ConversionReport(out, finished.card, finished.errors(), already_complete=True)


def _remove_half_staged(staging: Path) -> None:
    """Temporary folders of tasks that were killed: their recordings are redone."""
    for tmp in staging.glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_shards(out: Path) -> None:
    for path in out.iterdir():
        if SHARD_NAME.match(path.name) and path.is_file():
            path.unlink()
    _remove_stray_temp_files(out)


def _remove_stray_temp_files(out: Path) -> None:
    """Temporary files of our outputs left by a run killed while writing them (atomic_path's
    `.tmp-<name>.<random>`); under the lock of OUT no other run can be writing them."""
    for path in out.glob(f"{TEMP_PREFIX}*.*"):
        name = path.name[len(TEMP_PREFIX):].rsplit(".", 1)[0]
        if (SHARD_NAME.match(name) or name in OUTPUT_FILES) and path.is_file():
            path.unlink()
