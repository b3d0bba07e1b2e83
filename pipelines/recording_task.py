"""One Dask task: cut every utterance of one source recording and stage its finished samples.

A recording's samples are staged in `STAGING/<recording>/`, built under a temporary name and
renamed when complete, with `_outcome.json` (what was produced and what was rejected) written
last inside it: a rerun finds the completed recordings and reuses them (resume), and a killed
task leaves only a temporary folder that the rerun removes.

A recording that failed because of the machine (a full disk, a missing ffmpeg) is not staged: its
outcome carries the `fault` and no problem, so nothing about its utterances becomes final.
"""
from __future__ import annotations

import json
import shutil
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2

from mer_data import schemas
from mer_data.faults import EnvironmentFault, environment_cause, environment_cause_in_text
from mer_data.media.cut import cut_recording
from mer_data.records import CutRequest, CutResult, Problem, StagedSample, Utterance
from mer_data.shards.metadata import index_row, sample_metadata

from .options import ConvertOptions

OUTCOME_FILE = "_outcome.json"


@dataclass(frozen=True)
class RecordingJob:
    """The media work of one source recording (an IEMOCAP dialog, a MOSEI video)."""

    recording: str
    root: str  # corpus root, absolute
    video: str  # relative to root
    audio: str  # relative to root
    utterances: tuple[Utterance, ...]
    splits: tuple[tuple[str, str], ...]  # (utterance id, split)
    # MOSEI: where the 16 kHz WAV is missing, take the video's own audio track (recorded as such
    # in the sample's sources). IEMOCAP: a missing dialog WAV is an error (its channels matter).
    audio_fallback_to_video: bool = False


@dataclass
class RecordingOutcome:
    recording: str
    samples: list[StagedSample] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    fault: str | None = None  # an environment fault: nothing staged, the recording is redone by a rerun


def run_recording(job: RecordingJob, staging: str, options: ConvertOptions) -> RecordingOutcome:
    """The task body: reuse a completed staging folder, else cut the media; never raises."""
    use_one_opencv_thread()
    done = Path(staging) / job.recording
    reused = load_outcome(done, options.fingerprint())
    if reused is not None:
        return reused
    try:
        return _cut_and_stage(job, Path(staging), options)
    except Exception as exc:  # one recording's crash must not kill a conversion of thousands
        fault = environment_cause(exc)
        if fault:
            shutil.rmtree(Path(staging) / f".tmp-{job.recording}", ignore_errors=True)  # give the space back
            return RecordingOutcome(job.recording, fault=fault)
        reason = f"task failed: {type(exc).__name__}: {exc}"
        detail = traceback.format_exc(limit=3).strip().splitlines()[-1]
        return failed_outcome(job, f"{reason} ({detail})" if detail not in reason else reason)


def use_one_opencv_thread() -> None:
    """Face detection on one OpenCV thread, as ffmpeg decodes on one: a task's parallelism comes
    from the cluster running recordings side by side. OpenCV's own pool would split each small
    detection image over every core of the machine and spend more CPU on the hand-offs than it
    saves (9.5 vs 7.1 ms of CPU per detection on 2 cores; more threads on a bigger machine)."""
    cv2.setNumThreads(1)


def failed_outcome(job: RecordingJob, reason: str) -> RecordingOutcome:
    """Every utterance of the job rejected with the same reason."""
    problems = [Problem(file=job.video, line=None, reason=reason, utterance=u.id, stage="media")
                for u in job.utterances]
    return RecordingOutcome(job.recording, [], problems)


def _cut_and_stage(job: RecordingJob, staging: Path, options: ConvertOptions) -> RecordingOutcome:
    work = staging / f".tmp-{job.recording}"
    done = staging / job.recording
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    root = Path(job.root)
    requests = [CutRequest(u.id, u.start, u.end, u.video_region, u.audio_channel) for u in job.utterances]
    audio_path, audio_rel = root / job.audio, job.audio
    if job.audio_fallback_to_video and not audio_path.is_file():
        audio_path, audio_rel = None, job.video  # None: cut_recording takes the video's own audio track
    cuts, problems = cut_recording(root / job.video, audio_path, requests, work,
                                   frame_interval_ms=options.frame_interval_ms, max_height=options.max_height,
                                   encoding=options.encoding,
                                   rel_video=job.video, rel_audio=audio_rel)
    _raise_environment_fault(problems)
    by_id = {u.id: replace(u, sources=dict(u.sources, audio=audio_rel)) for u in job.utterances}
    splits = dict(job.splits)
    samples = []
    for cut in sorted(cuts, key=lambda c: c.key):
        sample, problem = _stage_sample(by_id[cut.key], splits[cut.key], cut, work)
        if problem:
            problems.append(problem)
        else:
            samples.append(sample)
    outcome = RecordingOutcome(job.recording, samples, sorted(problems, key=Problem.sort_key))
    _write_outcome(work, outcome, options.fingerprint())
    shutil.rmtree(done, ignore_errors=True)
    work.rename(done)
    return load_outcome(done, options.fingerprint())


def _raise_environment_fault(problems: list[Problem]) -> None:
    """ffmpeg reports a full disk as its own failure ("video encoder failed: ... No space left on
    device"): such a rejection is the machine's, not the utterance's, and must not be staged as final."""
    for problem in problems:
        fault = environment_cause_in_text(problem.reason)
        if fault:
            raise EnvironmentFault(f"{fault} (while cutting {problem.file})")


def _stage_sample(utt: Utterance, split: str, cut: CutResult, work: Path) -> tuple[StagedSample | None, Problem | None]:
    meta = sample_metadata(utt, split, cut)
    broken = schemas.errors("sample", meta)
    if broken:
        for path in (cut.flac, cut.mp4):
            Path(path).unlink(missing_ok=True)
        return None, Problem(file=utt.sources.get("labels", ""), line=utt.lines.get("labels"),
                             reason="metadata breaks sample schema: " + "; ".join(broken[:3]),
                             utterance=utt.id, stage="pack")
    (work / f"{utt.id}.json").write_text(json.dumps(meta, sort_keys=True, ensure_ascii=False), encoding="utf-8")
    (work / f"{utt.id}.txt").write_text(utt.text, encoding="utf-8")
    members = {"json": f"{utt.id}.json", "txt": f"{utt.id}.txt",
               "flac": Path(cut.flac).name, "mp4": Path(cut.mp4).name}
    return StagedSample(utt.id, split, utt.recording, members, index_row(meta, utt.word_timings)), None


def _write_outcome(work: Path, outcome: RecordingOutcome, fingerprint: str) -> None:
    data = {
        "fingerprint": fingerprint,
        "recording": outcome.recording,
        "samples": [{"key": s.key, "split": s.split, "recording": s.recording,
                     "members": {k: str(v) for k, v in s.members.items()}, "index_row": s.index_row}
                    for s in outcome.samples],
        "problems": [asdict(p) for p in outcome.problems],
    }
    (work / OUTCOME_FILE).write_text(json.dumps(data, sort_keys=True, ensure_ascii=False), encoding="utf-8")


def load_outcome(done: Path, fingerprint: str) -> RecordingOutcome | None:
    """The outcome staged in `done`, if complete and made with the same options; else None."""
    marker = done / OUTCOME_FILE
    if not marker.is_file():
        return None
    data = json.loads(marker.read_text(encoding="utf-8"))
    if data.get("fingerprint") != fingerprint:
        return None
    samples = [StagedSample(s["key"], s["split"], s["recording"],
                            {k: done / v for k, v in s["members"].items()}, s["index_row"])
               for s in data["samples"]]
    return RecordingOutcome(data["recording"], samples, [Problem(**p) for p in data["problems"]])
