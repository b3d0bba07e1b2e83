"""Benchmark: peak memory of one `mer convert mosei` worker on a 10-minute 1280x720 video against a
1-minute one, with the published approach measured beside it in the same run.

Two synthetic CMU-MOSEI videos (`mer_data.synth.mosei`, its long-video mechanism: a rendered
unit repeated), 1280x720 at 30000/1001 fps, one of ~1 minute and one of ~10 minutes, each with
the same 10 labelled segments (5 at the start, 5 at the end). On each, in a fresh process:

  ours        what one Dask task of `mer convert mosei` runs on a video (mer_data.pipelines.recording_task.
              run_recording: probe, one streaming ffmpeg graph, FLAC/MP4 cuts downscaled to 360 rows,
              faces every 500 ms, metadata, staging), with the converter's defaults;
  reference   the published preparation (Dai et al. 2021, preprocessing/preprocess_mosei.ipynb):
              `read_video(sampling_time=500, limit_time=280)` keeps every round(0.5 * fps)-th frame of
              the first 280 s in a list and np.stack()s it, then for each utterance the sampled frames
              of its interval are written as JPEGs and its WAV piece is written.

Reported per run: the peak of the summed RSS of the process tree (sampled from /proc every 0.1 s:
the Python process and its ffmpeg children), ru_maxrss of the Python process and of its largest
child, wall and CPU seconds, and, for the reference, its decoded-frames footprint computed from
its sampling (frames kept x width x height x 3 bytes, twice while np.stack copies the list) and
how many utterances it lost (segments past its 280 s limit get no frame). Targets (from the
issue): ours < 500 MB on the 10-minute video, and within 1.2x of the 1-minute figure.

    .venv/bin/python benchmarks/convert_mosei.py             # ~5 min on 2 cores (most of it the reference)
    .venv/bin/python benchmarks/convert_mosei.py --quick     # 1 and 3 minutes, 640x360: a smoke run

Scratch data goes to bench-out/convert_mosei/ (git ignores bench-out/); the corpora are reused by
later runs. The last line of the output is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convert_iemocap import (PYTHON, REPO, child_report, measure, report_self_rusage,  # noqa: E402
                             wait_until_idle)

SCRIPT = Path(__file__).resolve()
TARGET_RSS_MB = 500
TARGET_LONG_OVER_SHORT = 1.2
# The published preparation's settings (preprocess_mosei.ipynb): a frame every 500 ms, at most 280 s.
REFERENCE_SAMPLING_MS = 500
REFERENCE_LIMIT_S = 280
SEED = 0


# --------------------------------------------------------------------------------------------
# The corpora: one long video each, made with the MOSEI synthesizer


def ensure_video(folder: Path, minutes: float, width: int, height: int) -> Path:
    """A one-video release in `folder` (made once; the truth file marks it complete); returns Raw/."""
    from mer_data.synth.mosei import TRUTH_FILE, video_paths, write_annotations
    from mer_data.synth.mosei_plan import ReleasePlan, plan_release
    from mer_data.synth.mosei_render import render_video
    from mer_data.synth.mosei_script import VideoFormat
    from mer_data.synth.voice import resolve_voice

    raw = folder / "CMU_MOSEI" / "Raw"
    if (folder / TRUTH_FILE).is_file():
        return raw
    shutil.rmtree(folder, ignore_errors=True)
    video_format = VideoFormat(width, height, Fraction(30000, 1001))
    plan = plan_release(videos=3, seed=SEED, long_video_minutes=minutes, long_video_format=video_format)
    (script,) = [s for s in plan.scripts if s.repeats > 1 or plan.roles.get(s.video_id) == "long"]
    one = ReleasePlan([script], [], {script.video_id: "long"})
    print(f"generating a {script.duration / 60:.1f} min {video_format.name} video in {folder} ...", flush=True)
    write_annotations(one, raw, SEED)
    render_video(script, video_paths(raw, script.video_id), resolve_voice("auto"))
    (folder / TRUTH_FILE).write_text(json.dumps({"video": script.video_id, "duration": script.duration}))
    return raw


def video_job(raw: Path):
    """The conversion job of the release's one video, as `mer convert mosei --split random:0` plans it."""
    from mer_data.pipelines.convert import plan_mosei
    from mer_data.pipelines.options import ConvertOptions

    options = ConvertOptions(corpus="mosei", split="random:0", classes=("all",), max_height=360)
    (job,) = plan_mosei(raw, options).jobs
    return job, options


# --------------------------------------------------------------------------------------------
# Child processes: ours and the reference on one video


def child_ours(raw: Path, out: Path) -> None:
    from mer_data.pipelines.recording_task import run_recording

    job, options = video_job(raw)
    outcome = run_recording(job, str(out), options)
    if outcome.problems:
        print(f"{len(outcome.problems)} problems, first: {outcome.problems[0].format()}", file=sys.stderr)
    print(json.dumps({"utterances": len(job.utterances), "written": len(outcome.samples)}))
    report_self_rusage()


def read_video_as_published(path: str, sampling_time: int, limit_time: int):
    """preprocess_mosei.ipynb's read_video: every round(sampling_time/1000 * fps)-th frame of the
    first limit_time seconds, stacked into one array."""
    import cv2
    import numpy as np

    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS)
    sampling_rate = int(np.round(float(sampling_time) / 1000 * fps))
    success, image = capture.read()
    images, i = [], 0
    while success:
        if i % sampling_rate == 0:
            images.append(image)
        success, image = capture.read()
        i += 1
        if i == int(fps * limit_time):
            break
    return np.stack(images), int(1000 // sampling_time)


def child_reference(raw: Path, out: Path) -> None:
    """The notebook's extract_parallel on one video: its audio/video cuts, int() rounding and all."""
    import cv2
    from scipy.io import wavfile

    job, _ = video_job(raw)
    rate, signal = wavfile.read(Path(job.root) / job.audio)
    images, fps = read_video_as_published(str(Path(job.root) / job.video), REFERENCE_SAMPLING_MS, REFERENCE_LIMIT_S)
    lost = 0
    for utterance in job.utterances:
        folder = out / utterance.id
        folder.mkdir(parents=True, exist_ok=True)
        start = max(utterance.start, 0.0)
        wavfile.write(folder / "audio.wav", rate, signal[int(rate * start):int(rate * utterance.end)])
        frames = images[int(fps * utterance.start):int(fps * utterance.end)]
        lost += len(frames) == 0
        for i in range(frames.shape[0]):
            cv2.imwrite(str(folder / f"image_{i}.jpg"), frames[i])
    print(json.dumps({"utterances": len(job.utterances), "without_frames": lost,
                      "frames_kept": int(images.shape[0]), "frame_bytes": int(images[0].nbytes)}))
    report_self_rusage()


def computed_reference_mb(duration_s: float, fps: Fraction, width: int, height: int) -> dict:
    """The reference's decoded-frames footprint from its sampling alone: the list of kept frames,
    and that again while np.stack builds the array from it."""
    sampling = round(REFERENCE_SAMPLING_MS / 1000 * float(fps))
    read = min(math.floor(duration_s * fps), int(float(fps) * REFERENCE_LIMIT_S))
    kept = math.ceil(read / sampling)
    frames_mb = kept * width * height * 3 / 2**20
    return {"frames_kept": kept, "frames_mb": frames_mb, "at_stack_mb": 2 * frames_mb}


# --------------------------------------------------------------------------------------------
# The benchmark


def run_one(method: str, raw: Path, out: Path, idle_wait_s: float) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if idle_wait_s > 0:
        wait_until_idle(idle_wait_s)
    measured = measure([PYTHON, str(SCRIPT), f"_{method}", str(raw), str(out)])
    lines = [line for line in measured.stdout.splitlines() if line.startswith("{")]
    facts = json.loads(lines[-2])
    report = child_report(measured)
    shutil.rmtree(out, ignore_errors=True)
    return {**facts, "tree_peak_mb": measured.peak_tree_rss_mb, "python_maxrss_mb": report["self_maxrss_mb"],
            "largest_child_maxrss_mb": report["largest_child_maxrss_mb"], "wall_s": measured.wall_s,
            "cpu_s": measured.cpu_s, "other_load_cores": measured.other_load_cores}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 3 minutes at 640x360: a smoke run")
    parser.add_argument("--work", type=Path, default=REPO / "bench-out" / "convert_mosei")
    parser.add_argument("--idle-wait", type=float, default=120.0,
                        help="seconds to wait, at most, for other work on the machine to stop before each run")
    args = parser.parse_args(argv)
    width, height = (640, 360) if args.quick else (1280, 720)
    # At least two repetitions of the ~30 s unit each, so that both videos have the same 10 utterances.
    lengths = {"short": 1.0, "long": 3.0} if args.quick else {"short": 1.0, "long": 10.0}
    figures: dict = {"video": f"{width}x{height}@30000/1001", "methods": {}}
    for label, minutes in lengths.items():
        raw = ensure_video(args.work / f"corpus-{width}x{height}-{minutes:g}min", minutes, width, height)
        job, _ = video_job(raw)
        from mer_data.media.video import VideoSource

        source = VideoSource.probe(Path(job.root) / job.video)
        duration = float(source.frames / source.fps)
        figures.setdefault("videos", {})[label] = {"duration_s": duration, "frames": source.frames,
                                                   "utterances": len(job.utterances)}
        for method in ("ours", "reference"):
            print(f"{method} on the {duration / 60:.1f} min video ...", flush=True)
            result = run_one(method, raw, args.work / f"out-{method}-{label}", args.idle_wait)
            if method == "reference":
                result["computed"] = computed_reference_mb(duration, source.fps, width, height)
            figures["methods"].setdefault(method, {})[label] = result
    for method, runs in figures["methods"].items():
        runs["long_over_short"] = runs["long"]["tree_peak_mb"] / runs["short"]["tree_peak_mb"]
    print_report(figures)
    print("tree peak: summed RSS of the process and its children, sampled every 0.1 s; python/child: ru_maxrss of\n"
          "the process and of its largest child (ffmpeg; for the reference only the launcher's mark); other: cores\n"
          "used meanwhile by other processes")
    print(json.dumps(figures, sort_keys=True))


def print_report(figures: dict) -> None:
    videos = figures["videos"]
    print(f"\nvideos: {figures['video']}; short {videos['short']['duration_s'] / 60:.2f} min, "
          f"long {videos['long']['duration_s'] / 60:.2f} min, {videos['long']['utterances']} utterances each\n")
    print(f"{'method':<11}{'video':>7}{'tree peak MB':>14}{'python MB':>11}{'child MB':>11}{'wall s':>8}"
          f"{'CPU s':>8}{'other':>7}  notes")
    for method, runs in figures["methods"].items():
        for label in ("short", "long"):
            run = runs[label]
            notes = ""
            if method == "reference":
                computed = run["computed"]
                notes = (f"computed: {computed['frames_kept']} frames kept, {computed['frames_mb']:.0f} MB "
                         f"({computed['at_stack_mb']:.0f} MB at np.stack); "
                         f"{run['without_frames']}/{run['utterances']} utterances got no frame")
            else:
                notes = f"{run['written']}/{run['utterances']} utterances written"
            print(f"{method:<11}{label:>7}{run['tree_peak_mb']:>14.0f}{run['python_maxrss_mb']:>11.0f}"
                  f"{run['largest_child_maxrss_mb']:>11.0f}{run['wall_s']:>8.1f}{run['cpu_s']:>8.1f}"
                  f"{run['other_load_cores']:>7.2f}  {notes}")
    ours = figures["methods"]["ours"]
    reference = figures["methods"]["reference"]
    peak_ok = ours["long"]["tree_peak_mb"] < TARGET_RSS_MB
    flat_ok = round(ours["long_over_short"], 2) <= TARGET_LONG_OVER_SHORT
    print(f"\nours peak on the long video < {TARGET_RSS_MB} MB: {'PASS' if peak_ok else 'MISS'} "
          f"({ours['long']['tree_peak_mb']:.0f} MB; the reference {reference['long']['tree_peak_mb']:.0f} MB)")
    print(f"ours long/short <= {TARGET_LONG_OVER_SHORT}: {'PASS' if flat_ok else 'MISS'} "
          f"({ours['long_over_short']:.2f}; the reference {reference['long_over_short']:.2f}, "
          f"capped by its {REFERENCE_LIMIT_S} s read limit)")
    figures["targets"] = {"peak_below_500_mb": peak_ok, "long_over_short_at_most_1_2": flat_ok}


def child_main(command: str, rest: list[str]) -> None:
    raw, out = Path(rest[0]), Path(rest[1])
    if command == "_ours":
        child_ours(raw, out)
    elif command == "_reference":
        child_reference(raw, out)
    else:
        raise SystemExit(f"unknown internal command {command}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        child_main(sys.argv[1], sys.argv[2:])
    else:
        main()
