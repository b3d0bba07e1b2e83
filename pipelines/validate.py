"""The validation graph: what PATH is -> one Dask task per recording (raw) or per shard -> report.

    report = validate(Path("shards/"), ValidateOptions(strict=True), workers=4)
    report.ok, report.to_dict()

PATH is a shard folder (it holds dataset.json; or *.tar where it is not a raw release), a raw
IEMOCAP release or a raw CMU-MOSEI release (both found as the corpus readers find them). Planning and the final cross-checks
are cheap and run here; the tasks run through pipelines/runner.py: on a local Dask cluster (`workers`),
on an existing one (`scheduler`), or, with `in_process=True`, one after the other in this process.
A task that crashes, or whose worker dies, becomes a `task-failed` finding naming the recording
or shard: nothing is skipped silently.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from mer_data.validation.findings import Report
from mer_data.validation.options import ValidateOptions

from .cluster import TaskFailure
from .runner import run_tasks

TARGET_KINDS = ("raw-iemocap", "raw-mosei", "shards")


class NotAValidationTarget(ValueError):
    """PATH is neither a raw release nor a shard folder; the message says what was expected."""


def detect_target(path: Path) -> str:
    """"shards", "raw-iemocap" or "raw-mosei"; NotAValidationTarget (with what was looked for) otherwise."""
    from mer_data.corpora.iemocap import find_iemocap_root
    from mer_data.corpora.mosei import find_mosei_root
    from mer_data.shards.layout import CARD_NAME

    path = Path(path)
    if not path.is_dir():
        raise NotAValidationTarget(f"{path} is not a directory")
    if (path / CARD_NAME).is_file():
        return "shards"
    reasons = []
    for kind, find_root in (("raw-iemocap", find_iemocap_root), ("raw-mosei", find_mosei_root)):
        try:
            find_root(path)
            return kind
        except FileNotFoundError as error:
            reasons.append(str(error))
    if any(path.glob("*.tar")):  # a shard folder whose card is missing (the audit says so)
        return "shards"
    raise NotAValidationTarget(f"{path} is not a shard folder (no dataset.json or *.tar in it), and "
                               + "; and ".join(reasons))


def validate(path: Path, options: ValidateOptions = ValidateOptions(), *, workers: int | None = None,
             scheduler: str | None = None, in_process: bool = False, progress: bool = True) -> Report:
    """Audit PATH and return the report (findings sorted, stats filled). PATH may be a folder in object
    storage (s3://...): it is copied to a local temporary folder and audited there (pipelines/bucket_io.py),
    the report naming the URL."""
    from mer_data.storage import is_storage_url

    if is_storage_url(path):
        return _validate_copy(str(path), options, scheduler=scheduler, workers=workers, in_process=in_process,
                              progress=progress)
    kind = detect_target(path)
    run = partial(run_tasks, workers=workers, scheduler=scheduler, in_process=in_process, progress=progress)
    if kind == "shards":
        return _validate_shards(Path(path), options, run)
    return _validate_raw(Path(path), kind, options, run)


def _validate_copy(url: str, options: ValidateOptions, *, scheduler: str | None, **run_options: Any) -> Report:
    from dataclasses import replace

    from .bucket_io import readable_folder, refuse_remote_scheduler

    refuse_remote_scheduler(scheduler, url)
    with readable_folder(url, "shards") as local:
        report = validate(local, options, **run_options)
    local_prefix = str(local)

    def named(text: str | None) -> str | None:
        return None if text is None else text.replace(local_prefix, url.rstrip("/"))

    report.path = url
    report.findings = [replace(f, file=named(f.file), message=named(f.message)) for f in report.findings]
    return report


def _validate_raw(path: Path, kind: str, options: ValidateOptions, run: Callable) -> Report:
    from mer_data.validation import raw_audit

    plan = raw_audit.plan_iemocap_audit(path) if kind == "raw-iemocap" else raw_audit.plan_mosei_audit(path)
    task = partial(raw_audit.audit_recording, options=options)
    results = run(task, plan.jobs, [job.recording for job in plan.jobs], "recordings")
    audits = [raw_audit.failed_recording(r.item, r.reason) if isinstance(r, TaskFailure) else r for r in results]
    return raw_audit.finish_raw_audit(plan, audits, options)


def _validate_shards(path: Path, options: ValidateOptions, run: Callable) -> Report:
    from mer_data.validation import shard_audit, shard_set

    plan = shard_set.plan_shard_audit(path)
    task = partial(shard_audit.audit_shard, options=options)
    results = run(task, plan.shards, [shard.name for shard in plan.shards], "shards")
    audits = [shard_set.failed_shard(r.item, r.reason) if isinstance(r, TaskFailure) else r for r in results]
    return shard_set.finish_shard_audit(plan, audits, options)
