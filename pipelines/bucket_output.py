"""A conversion whose OUT is object storage (`s3://bucket/shards`): the shard contract on a bucket.

Nothing assumes OUT is a local path, on the client or on the workers:
- each task stages its recording in the worker's own temporary space (tempfile: TMPDIR, dask's
  --local-directory is not needed), then uploads the finished folder to `OUT/.staging/<recording>/`
  as one uncompressed tar of its members (`staged.tar`: two requests per recording rather than four
  per utterance, which is what object stores charge for in time) and `_outcome.json` last, so a
  recording counts as staged only once all of it is in the bucket (the same marker the local
  staging uses);
- the client copies the staged recordings into a local temporary folder, packs them with the local
  code (so the bytes are those of a local conversion), and uploads each shard whole (an object
  appears complete or not at all; never a partial object), then excluded.jsonl, errors.jsonl,
  index.parquet and dataset.json last: its presence in the bucket means the conversion finished;
- only then is `OUT/.staging/` removed. A run killed at any point leaves no dataset.json, and the same
  command run again finds the recordings already staged in the bucket and reuses them (resume).

Object stores have no lock: two conversions into one OUT at a time are the user's to avoid (the local
OUT/.lock has no equivalent there).
"""
from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path
from mer_data.shards.layout import CARD_NAME, ERRORS_NAME, EXCLUDED_NAME, INDEX_NAME, SHARD_NAME
from mer_data.storage import filesystem, upload_file

from .options import ConvertOptions
from .recording_task import OUTCOME_FILE, RecordingJob, RecordingOutcome, load_outcome, run_recording

# A staged recording's members, as one object (the marker _outcome.json goes up after it).
STAGED_BUNDLE = "staged.tar"
# Uploaded in this order after the shards: dataset.json, the completion marker, last.
SIDE_FILES_LAST = (EXCLUDED_NAME, ERRORS_NAME, INDEX_NAME, CARD_NAME)


def stage_and_upload(job: RecordingJob, staging_url: str, storage_options: dict, options: ConvertOptions) -> RecordingOutcome:
    """The task body for a bucket OUT: stage in this worker's temporary space, upload the finished
    folder to `staging_url/<recording>/` (`_outcome.json` last), and return the outcome without its
    sample paths (they are this worker's; the client reads the samples from the bucket)."""
    with tempfile.TemporaryDirectory(prefix="mer-stage-") as local:
        outcome = run_recording(job, staging=local, options=options)
        done = Path(local) / job.recording
        if outcome.fault is None and (done / OUTCOME_FILE).is_file():
            try:
                upload_staged(done, staging_url, job.recording, storage_options)
            except Exception as error:  # a lost connection or a full bucket: the machine's, not the data's
                return RecordingOutcome(job.recording, fault=f"uploading the staged recording failed: {error}")
    return RecordingOutcome(outcome.recording, [], outcome.problems, outcome.fault)


def upload_staged(done: Path, staging_url: str, recording: str, storage_options: dict) -> None:
    """A staged recording folder into the bucket: the marker an earlier, killed upload left there is
    removed first, then the members go up as one tar (STAGED_BUNDLE), and `_outcome.json` (the marker) last."""
    fs, root = filesystem(staging_url, storage_options)
    target = f"{root}/{recording}"
    if fs.exists(f"{target}/{OUTCOME_FILE}"):
        fs.rm_file(f"{target}/{OUTCOME_FILE}")
    bundle = done.parent / f"{recording}.{STAGED_BUNDLE}"
    with tarfile.open(bundle, "w") as tar:
        for path in sorted(p for p in done.iterdir() if p.is_file() and p.name != OUTCOME_FILE):
            tar.add(path, arcname=path.name)
    upload_file(bundle, fs, f"{target}/{STAGED_BUNDLE}")
    bundle.unlink()
    upload_file(done / OUTCOME_FILE, fs, f"{target}/{OUTCOME_FILE}")


class BucketFolder:
    """OUT in object storage: its filesystem, its path there, and the URL the user gave."""

    def __init__(self, url: str, storage_options: dict):
        self.url = url.rstrip("/")
        self.storage_options = storage_options
        self.fs, self.root = filesystem(self.url, storage_options)
        self.refresh()

    def refresh(self) -> None:
        """Forget cached listings: workers (other processes) write the bucket while this process waits."""
        self.fs.invalidate_cache()

    def path(self, *names: str) -> str:
        return "/".join([self.root, *names])

    def url_of(self, *names: str) -> str:
        return "/".join([self.url, *names])

    def exists(self, name: str) -> bool:
        return self.fs.exists(self.path(name))

    def read_text(self, name: str) -> str:
        return self.fs.cat_file(self.path(name)).decode("utf-8")

    def remove(self, name: str) -> None:
        if self.fs.exists(self.path(name)):
            self.fs.rm(self.path(name), recursive=True)

    def shard_names(self) -> list[str]:
        if not self.fs.exists(self.root):
            return []
        names = [entry.rstrip("/").rsplit("/", 1)[-1] for entry in self.fs.ls(self.root, detail=False)]
        return sorted(name for name in names if SHARD_NAME.match(name))


def clear_outputs(folder: BucketFolder, staging: str) -> None:
    """--overwrite: the card first (from then on the folder is not a finished conversion), then the rest."""
    for name in reversed(SIDE_FILES_LAST):
        folder.remove(name)
    for name in folder.shard_names():
        folder.remove(name)
    folder.remove(staging)


def download_staged(folder: BucketFolder, staging: str, jobs: list[RecordingJob], local: Path,
                    fingerprint: str) -> dict[str, RecordingOutcome]:
    """The recordings of `jobs` completely staged in the bucket under this fingerprint, copied into
    `local/<recording>/`: {recording: outcome}. Half-uploaded ones (no `_outcome.json`) are not."""
    outcomes = {}
    folder.refresh()
    for job in jobs:
        remote = folder.path(staging, job.recording)
        if not folder.fs.exists(f"{remote}/{OUTCOME_FILE}"):
            continue
        target = local / job.recording
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        folder.fs.get_file(f"{remote}/{STAGED_BUNDLE}", str(target / STAGED_BUNDLE))
        folder.fs.get_file(f"{remote}/{OUTCOME_FILE}", str(target / OUTCOME_FILE))
        with tarfile.open(target / STAGED_BUNDLE) as tar:
            tar.extractall(target, filter="data")   # plain files only, inside target
        (target / STAGED_BUNDLE).unlink()
        outcome = load_outcome(target, fingerprint)
        if outcome is not None:
            outcomes[job.recording] = outcome
    return outcomes


def unaccounted(job: RecordingJob, outcome: RecordingOutcome) -> bool:
    """A task's returned outcome that is not in the bucket must be one that staged nothing on purpose:
    every utterance rejected (a crashed task). Anything else would lose samples without a word."""
    rejected = {problem.utterance for problem in outcome.problems}
    return any(utterance.id not in rejected for utterance in job.utterances)


def upload_outputs(packed: Path, folder: BucketFolder, shard_names: list[str]) -> list[str]:
    """The packed local folder into the bucket: shards (each whole), the side files with dataset.json
    last; then the shards of an earlier conversion there that this one did not write are removed
    (as the local packer removes its stale shards). Returns the removed names."""
    stale = [name for name in folder.shard_names() if name not in set(shard_names)]
    for name in shard_names:
        upload_file(packed / name, folder.fs, folder.path(name))
    for name in stale:  # before the card: a reader of a finished folder never sees a shard it does not list
        folder.remove(name)
    for name in SIDE_FILES_LAST:
        upload_file(packed / name, folder.fs, folder.path(name))
    return stale
