"""A synthetic CMU-MOSEI release: the real layout and file formats, one drawn face and synthetic
speech per video, both label forms, and the quirks of the real release.

    synth_mosei(Path("raw"))  ->  raw/CMU_MOSEI/Raw/ (returned), raw/CMU_MOSEI/Labels/, raw/synth_truth.json

Layout (as in the release, for each video `<vid>`):
    CMU_MOSEI/Raw/Videos/Full/Combined/<vid>.mp4              H.264 + AAC; sizes and rates vary (mosei_render.py)
    CMU_MOSEI/Raw/Audio/Full/WAV_16000/<vid>.wav              16 kHz, 16-bit, mono
    CMU_MOSEI/Raw/Transcript/Segmented/Combined/<vid>.txt     `<vid>___<clip>___<start>___<end>___<text>`
    CMU_MOSEI/Raw/Labels/mturk_batch_{1,2}.csv                raw MTurk answers, one row per annotator and clip
    CMU_MOSEI/Labels/CMU_MOSEI_Labels.csd                     the SDK's labels (HDF5): the annotators' averages

The two label forms agree: every .csd row is the average of the MTurk rows of its clip (stored
as float32, as the SDK stores features), except where a quirk says otherwise (a clip labelled in
one form only, a label that matches no segment). Emotion shows in every modality with noise:
words (text), pitch/energy/rate (voice), mouth curvature and brow angle (face); each face's mouth
opens with the speech envelope. See mosei_plan.py for the corpora (default, --ids-from dai2021,
--ids-from sdk) and the quirks of each, and docs/synthetic-corpus.md for the list.

`out/synth_truth.json` (outside the release), keys:
    corpus ("mosei"), generator, version, release_root ("CMU_MOSEI/Raw"), options {videos, seed,
    ids_from, long_video_minutes, voice, voice_engine, voice_engine_version (as for IEMOCAP)},
    label_files {csd, mturk [..]} (paths relative to Raw/, as the reader names them),
    videos {vid: {role, speaker, format {width, height, fps, fps_fraction} or null, has_video_stream,
            has_wav, duration, frames (null without video), samples, sample_rate, repeats, unit_duration,
            files {video, audio, transcript}, crlf, blank_lines [1-based], line_order [clips],
            mturk_video_id}},
    segments [{id, video, clip, start_text, end_text, start (as written, may be negative),
               end, read_start (clamped to 0), text (as read back), transcript_line,
               trailing_spaces, dominant, style_code, in_csd, in_mturk, csd_interval, csd_row,
               label_csd, label_mturk ({sentiment, emotions, multi_hot} or null), mturk_file,
               mturk_line, black ("none" | "full" | "second_half"), media ("inside" |
               "ends_past" | "starts_past"), overlaps_previous, clamped}] in video, clip order,
    orphan_labels [{video, clip, interval, mturk_file, mturk_line}],
    labels_only_videos [{video, clips, intervals, mturk_file, mturk_line}],
    quirks {name: [segment or video ids]}.
Deterministic: the same call gives byte-identical files.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

import mer_data
from mer_data.corpora.mosei import AUDIO_DIR, CSD_FILE_NAME, MOSEI_EMOTIONS, TRANSCRIPT_DIR, VIDEO_DIR, mosei_label
from mer_data.synth.iemocap import TRUTH_FILE, prepare_release_dir
from mer_data.synth.mosei_files import MTURK_BATCH_FILES, LabelsOnlyVideo, write_csd, write_mturk, write_transcript
from mer_data.synth.mosei_labels import averaged, csd_row
from mer_data.synth.mosei_plan import LONG_FORMAT, ReleasePlan, plan_release, stable_hash
from mer_data.synth.mosei_render import render_video
from mer_data.synth.mosei_script import SegmentScript, VideoFormat, VideoScript
from mer_data.synth.options import MOSEI_DEFAULTS
from mer_data.synth.voice import SAMPLE_RATE, engine_version, resolve_voice

RELEASE_DIR = "CMU_MOSEI"
RAW_DIR = "Raw"
LABELS_DIR = "Labels"
CSD_REL = f"../{LABELS_DIR}/{CSD_FILE_NAME}"  # relative to Raw/, as the reader names it
MTURK_REL = tuple(f"{LABELS_DIR}/{name}" for name in MTURK_BATCH_FILES)
# Below this many pixels to render (about a second of work), starting worker processes (each
# imports numpy, OpenCV and scipy) costs more than it saves.
IN_PROCESS_PIXELS = 50e6


def synth_mosei(out: Path, *, videos: int | None = None, seed: int = MOSEI_DEFAULTS.seed, ids_from: str | None = None,
                long_video_minutes: float = MOSEI_DEFAULTS.long_video_minutes,
                long_video_format: VideoFormat = LONG_FORMAT, voice: str = MOSEI_DEFAULTS.voice,
                progress: bool = False) -> Path:
    """Write a synthetic release to out/CMU_MOSEI/ and return its Raw/ directory.

    `videos`: how many videos (default 8; with `ids_from`, every listed video); `ids_from`:
    None, "dai2021" or "sdk"; `long_video_minutes`: length of the default corpus's long video
    (0: none), `long_video_format` its size and rate (480x360 at 25 fps).
    """
    engine = resolve_voice(voice)
    plan = plan_release(videos=videos, seed=seed, ids_from=ids_from, long_video_minutes=long_video_minutes,
                        long_video_format=long_video_format)
    out = Path(out)
    raw = _prepare_output(out)
    files = write_annotations(plan, raw, seed)
    media = _render_all(plan.scripts, raw, engine, progress)
    options = {"videos": len(plan.scripts), "seed": seed, "ids_from": ids_from,
               "long_video_minutes": long_video_minutes if ids_from is None else None,
               "voice": voice, "voice_engine": engine, "voice_engine_version": engine_version(engine)}
    truth = _truth(plan, files, media, options)
    (out / TRUTH_FILE).write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return raw


def _prepare_output(out: Path) -> Path:
    """The empty Raw/ directory of a fresh synthetic release (see prepare_release_dir)."""
    raw = prepare_release_dir(out, RELEASE_DIR) / RAW_DIR
    raw.mkdir(parents=True, exist_ok=True)
    return raw


def video_paths(raw: Path, video_id: str) -> dict[str, Path]:
    return {
        "video": raw / VIDEO_DIR / f"{video_id}.mp4",
        "audio": raw / AUDIO_DIR / f"{video_id}.wav",
        "transcript": raw / TRANSCRIPT_DIR / f"{video_id}.txt",
    }


# --------------------------------------------------------------------------------------------
# Writing


def write_annotations(plan: ReleasePlan, raw: Path, seed: int) -> dict:
    """Transcripts and both label forms; returns where each record went."""
    transcript_lines = {s.video_id: write_transcript(s, video_paths(raw, s.video_id)["transcript"])
                        for s in plan.scripts}
    csd_rows = write_csd(raw.parent / LABELS_DIR / CSD_FILE_NAME, plan.scripts, plan.labels_only,
                         np.random.default_rng([seed, stable_hash("csd rows")]))
    mturk_lines = write_mturk(raw / LABELS_DIR, plan.scripts, plan.labels_only,
                              np.random.default_rng([seed, stable_hash("mturk rows")]))
    return {"transcript": transcript_lines, "csd": csd_rows, "mturk": mturk_lines}


def _worker_count(jobs: int) -> int:
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(jobs, available))


def _render_cost(script: VideoScript) -> float:
    """Roughly what rendering a video costs, in rendered pixels (its unit, once)."""
    video = script.format
    return 0.0 if video is None else float(script.unit_duration * video.fps) * video.width * video.height


def _render_all(scripts: list[VideoScript], raw: Path, engine: str, progress: bool) -> dict[str, dict]:
    """Render every video's media, in parallel processes unless there is too little work to pay
    for starting them; the output does not depend on the order."""
    for folder in (VIDEO_DIR, AUDIO_DIR):
        (raw / folder).mkdir(parents=True, exist_ok=True)
    jobs = sorted(scripts, key=lambda s: (-s.unit_duration * s.repeats, s.video_id))  # longest first
    small = sum(_render_cost(s) for s in jobs) < IN_PROCESS_PIXELS
    workers = 1 if small else _worker_count(len(jobs))
    media: dict[str, dict] = {}
    with tqdm(total=len(jobs), desc="synth mosei", unit="video", disable=not progress) as bar:
        if workers == 1:
            for script in jobs:
                media[script.video_id] = render_video(script, video_paths(raw, script.video_id), engine)
                bar.update()
            return media
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(render_video, s, video_paths(raw, s.video_id), engine): s.video_id for s in jobs}
            for future in as_completed(futures):
                media[futures[future]] = future.result()
                bar.update()
    return media


# --------------------------------------------------------------------------------------------
# The truth file


def _truth(plan: ReleasePlan, files: dict, media: dict, options: dict) -> dict:
    segments = [_segment_truth(script, segment, files) for script in plan.scripts for segment in script.segments]
    return {
        "corpus": "mosei",
        "generator": __name__,
        "version": mer_data.__version__,
        "release_root": f"{RELEASE_DIR}/{RAW_DIR}",
        "options": options,
        "label_files": {"csd": CSD_REL, "mturk": list(MTURK_REL)},
        "videos": {s.video_id: _video_truth(s, plan.roles.get(s.video_id), media[s.video_id]) for s in plan.scripts},
        "segments": segments,
        "orphan_labels": [_orphan_truth(s, orphan, files) for s in plan.scripts for orphan in s.orphan_labels],
        "labels_only_videos": [_labels_only_truth(video, files) for video in plan.labels_only],
        "quirks": _quirks(plan, segments),
    }


def _video_truth(script: VideoScript, role: str | None, media: dict) -> dict:
    video = script.format
    paths = video_paths(Path(), script.video_id)
    return {
        "role": role,
        "speaker": script.speaker,
        "format": None if video is None else {
            "width": video.width, "height": video.height, "fps": float(video.fps),
            "fps_fraction": f"{video.fps.numerator}/{video.fps.denominator}"},
        "has_video_stream": script.has_video_stream,
        "has_wav": script.has_wav,
        "duration": script.unit_duration * script.repeats,
        "frames": media["frames"],
        "samples": media["samples"],
        "sample_rate": SAMPLE_RATE,
        "repeats": script.repeats,
        "unit_duration": script.unit_duration,
        "files": {key: path.as_posix() for key, path in paths.items()},
        "crlf": script.crlf,
        "blank_lines": _blank_line_numbers(script),
        "line_order": list(script.line_order),
        "mturk_video_id": script.mturk_video_id,
    }


def _blank_line_numbers(script: VideoScript) -> list[int]:
    numbers, line = [], 0
    for written in range(1, len(script.line_order) + 1):
        line += 1
        if written in script.blank_lines_after:
            line += 1
            numbers.append(line)
    return numbers


def _segment_truth(script: VideoScript, segment: SegmentScript, files: dict) -> dict:
    video_id = script.video_id
    row = csd_row(segment.ratings) if segment.in_csd else None
    mturk = files["mturk"].get((video_id, segment.clip)) if segment.in_mturk else None
    return {
        "id": f"{video_id}_{segment.clip}",
        "video": video_id,
        "clip": segment.clip,
        "start_text": segment.start_text,
        "end_text": segment.end_text,
        "start": segment.start,
        "end": segment.end,
        "read_start": segment.clamped_start,
        "text": segment.text,
        "transcript_line": files["transcript"][video_id][segment.clip],
        "trailing_spaces": segment.trailing_spaces,
        "dominant": segment.dominant,
        "style_code": segment.style_code,
        "in_csd": segment.in_csd,
        "in_mturk": segment.in_mturk,
        "csd_interval": list(segment.csd_interval) if segment.csd_interval else None,
        "csd_row": files["csd"].get(video_id, {}).get(segment.clip),
        "label_csd": None if row is None else mosei_label(float(row[0]), {
            name: float(value) for name, value in zip(MOSEI_EMOTIONS, row[1:])}),
        "label_mturk": mosei_label(*averaged(segment.ratings)) if segment.in_mturk else None,
        "mturk_file": f"{LABELS_DIR}/{mturk[0]}" if mturk else None,
        "mturk_line": mturk[1] if mturk else None,
        "black": segment.black,
        "media": _media_position(script, segment),
        "overlaps_previous": any(other.start < segment.start < other.end for other in script.segments
                                 if other.clip != segment.clip),
        "clamped": segment.start < 0,
    }


def _media_position(script: VideoScript, segment: SegmentScript) -> str:
    duration = script.unit_duration * script.repeats
    if segment.clamped_start >= duration:
        return "starts_past"
    return "ends_past" if segment.end > duration else "inside"


def _orphan_truth(script: VideoScript, orphan, files: dict) -> dict:
    mturk = files["mturk"].get((script.video_id, orphan.clip)) if orphan.clip is not None else None
    return {"video": script.video_id, "clip": orphan.clip, "interval": list(orphan.interval) if orphan.interval else None,
            "mturk_file": f"{LABELS_DIR}/{mturk[0]}" if mturk else None, "mturk_line": mturk[1] if mturk else None}


def _labels_only_truth(video: LabelsOnlyVideo, files: dict) -> dict:
    """`mturk_file`/`mturk_line`: the first MTurk row of its first clip (where a reader reports it)."""
    name, line = files["mturk"][(video.video_id, min(label.clip for label in video.labels))]
    return {"video": video.video_id, "clips": [label.clip for label in video.labels],
            "intervals": [list(label.interval) for label in video.labels],
            "mturk_file": f"{LABELS_DIR}/{name}", "mturk_line": line}


def _quirks(plan: ReleasePlan, segments: list[dict]) -> dict[str, list[str]]:
    """Where each quirk of the release occurs (segment or video ids): what the tests iterate over."""
    videos = plan.scripts
    found = {
        "video_id_starts_with_dash": [s.video_id for s in videos if s.video_id.startswith("-")],
        "video_id_starts_with_underscore": [s.video_id for s in videos if s.video_id.startswith("_")],
        "separator_in_text": [u["id"] for u in segments if "___" in u["text"]],
        "trailing_spaces": [u["id"] for u in segments if u["trailing_spaces"]],
        "eleven_decimal_times": [u["id"] for u in segments if len(u["end_text"].partition(".")[2]) == 11],
        "negative_start": [u["id"] for u in segments if u["clamped"]],
        "overlapping_segments": [u["id"] for u in segments if u["overlaps_previous"]],
        "unlabelled_segments": [u["id"] for u in segments if not (u["in_csd"] or u["in_mturk"])],
        "csd_only": [u["id"] for u in segments if u["in_csd"] and not u["in_mturk"]],
        "mturk_only": [u["id"] for u in segments if u["in_mturk"] and not u["in_csd"]],
        "black_segment": [u["id"] for u in segments if u["black"] == "full"],
        "partly_black_segment": [u["id"] for u in segments if u["black"] == "second_half"],
        "ends_past_media_end": [u["id"] for u in segments if u["media"] == "ends_past"],
        "starts_past_media_end": [u["id"] for u in segments if u["media"] == "starts_past"],
        "blank_lines": [s.video_id for s in videos if s.blank_lines_after],
        "unsorted_lines": [s.video_id for s in videos if list(s.line_order) != sorted(s.line_order)],
        "crlf": [s.video_id for s in videos if s.crlf],
        "mturk_path_prefix": [s.video_id for s in videos if s.mturk_video_id != s.video_id],
        "mturk_empty_rows": list(MTURK_REL[:1]),
        "csd_interval_without_segment": [s.video_id for s in videos if any(o.interval for o in s.orphan_labels)],
        "mturk_clip_without_segment": [f"{s.video_id}_{o.clip}" for s in videos for o in s.orphan_labels
                                       if o.clip is not None],
        "labels_without_transcript": [video.video_id for video in plan.labels_only],
        "no_wav": [s.video_id for s in videos if not s.has_wav],
        "no_video_stream": [s.video_id for s in videos if not s.has_video_stream],
        "long_video": [s.video_id for s in videos if s.repeats > 1],
        "formats": sorted({s.format.name for s in videos if s.format is not None}),
    }
    return {name: where for name, where in found.items() if where}
