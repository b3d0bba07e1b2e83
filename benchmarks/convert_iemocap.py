"""Benchmark: `mer convert iemocap` against the published approach and a bare-ffmpeg floor.

Measured in one run, on one synthetic corpus (>= 30 min of dialog video by default):

  reference   the published preparation (Dai et al. 2021 notebooks): OpenCV reads each dialog video
              whole into memory, every frame of the utterance interval of BOTH halves is written as
              a JPEG, and the utterance's WAV piece is written; one process.
  floor       one bare ffmpeg process per dialog producing what our converter produces (per
              utterance the speaker's half as H.264 MP4, the speaker's channel as FLAC), one decode
              per dialog, no face detection, no metadata, no shards; one process.
  mer -w1/-w2 the real `mer convert iemocap` (click CLI, Dask cluster start-up and packing included)
              with 1 and 2 workers (--skip-w2: 1 only).
  video2dataset  with --video2dataset PYTHON: video2dataset 1.3.0's exact clipping
              (benchmarks/video2dataset_reference.py), on all utterances and on the non-overlapping ones.

--camera runs on a camera-like copy of the synthetic corpus (benchmarks/camera_corpus.py).

For each: wall seconds, utterances/s, media-seconds/s (dialog video seconds per wall second), CPU
seconds of the process tree (user+sys, from getrusage(RUSAGE_CHILDREN) around the subprocess), the
per-core throughput that follows, peak RSS of the process tree, and output bytes. Then peak RSS of
one worker on a short dialog and on one 4x longer, ours against the reference. Targets (from the
issue) are checked and printed as PASS/MISS; the last line of the output is one JSON object.

    .venv/bin/python benchmarks/convert_iemocap.py --quick          # ~3 min of video, smoke run
    .venv/bin/python benchmarks/convert_iemocap.py                  # the benchmark (10-20 min)
    .venv/bin/python benchmarks/convert_iemocap.py --corpus RAW/    # on an existing release

Each method runs in a fresh subprocess of this file (the internal `_reference`, `_floor`, `_mer` and
`_ours_dialog` subcommands), so that its CPU time and peak memory are its own and nothing is warm
from another. The machine may be shared: each measurement waits (up to --idle-wait) for other work
to stop, and the table says how many cores other processes used while it ran.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
PYTHON = sys.executable
# The children import mer_data and pipelines from the checkout, installed or not (Dask's spawned
# worker processes inherit the environment, so they find them too).
CHILD_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(SCRIPT.parent))
from machine import machine_busy_seconds, wait_until_idle  # noqa: E402

# The targets of the issue.
TARGET_PER_CORE_VS_REFERENCE = 1.0  # ours (1 worker) utterances per CPU-second / the reference's
TARGET_FLOOR_RATIO = 1.5  # ours (1 worker) CPU seconds / the floor's
TARGET_SPEEDUP = 1.7  # wall(1 worker) / wall(2 workers)
TARGET_BYTES_FRACTION = 1 / 5  # ours output bytes / the reference's
TARGET_RSS_MB = 500  # peak RSS of one worker (its Python process and ffmpeg children together)
# "Flat in dialog length": a 4x longer dialog may cost at most this much more peak memory.
FLAT_RSS_RATIO = 1.25

# The converter's settings that the floor must match to be a fair floor (mer_data.media.encoding:
# the default VideoEncoding, keyframes at the face frames included).
FACE_INTERVAL_MS = 500
SAMPLE_RATE = 16000
SPLIT = "random:0"

# One ffmpeg graph holds at most this many utterances. Every output keeps its own libx264 instance
# (lookahead buffers, ~10-20 MB at 360x480) alive until ffmpeg exits, so a whole 100-utterance
# IEMOCAP dialog in one graph would hold 1-2 GB; beyond this count the floor decodes the dialog
# again per batch. The synthetic dialogs here stay under it, so the floor decodes each dialog once.
FLOOR_MAX_UTTERANCES_PER_GRAPH = 64

# Synthetic corpus shape: IEMOCAP's 5 sessions x 2 dialogs (the synthesizer's default); at 30 min
# a dialog is 3 min (real ones average ~5), long enough that per-dialog start-up does not dominate
# and short enough for the reference, which holds a dialog's decoded frames (1 MB each at 720x480,
# ~5.6 GB for 3 min) in memory. --quick uses 2 sessions.
SESSIONS = (1, 2, 3, 4, 5)
QUICK_SESSIONS = (1, 2)


# --------------------------------------------------------------------------------------------
# What is converted: the plan's utterances, as plain JSON for the children


@dataclass
class Dialog:
    name: str
    video: str  # absolute
    audio: str  # absolute
    rel_video: str
    rel_audio: str
    duration: float  # seconds of video
    fps: str  # exact, "30000/1001"
    frames: int
    width: int
    height: int
    utterances: list[dict] = field(default_factory=list)  # id, start, end, region, channel


def plan_dialogs(raw: Path) -> list[Dialog]:
    """The dialogs and utterances that `mer convert iemocap --split random:0` converts.

    Asking the converter's own planner guarantees that all methods cut the same utterance set
    (the six classes) at the same intervals.
    """
    from mer_data.media.video import VideoSource
    from mer_data.pipelines.convert import plan_iemocap
    from mer_data.pipelines.options import ConvertOptions

    plan = plan_iemocap(raw, ConvertOptions(corpus="iemocap", split=SPLIT))
    dialogs = []
    for job in plan.jobs:
        video = VideoSource.probe(Path(job.root) / job.video)
        dialogs.append(Dialog(
            job.recording, str(video.path), str(Path(job.root) / job.audio), job.video, job.audio,
            float(video.frames / video.fps), f"{video.fps.numerator}/{video.fps.denominator}", video.frames,
            video.width, video.height,
            [{"id": u.id, "start": u.start, "end": u.end, "region": u.video_region, "channel": u.audio_channel}
             for u in job.utterances]))
    return dialogs


def save_dialogs(dialogs: list[Dialog], path: Path) -> Path:
    path.write_text(json.dumps([asdict(d) for d in dialogs]), encoding="utf-8")
    return path


def load_dialogs(path: Path) -> list[Dialog]:
    return [Dialog(**d) for d in json.loads(Path(path).read_text(encoding="utf-8"))]


def frame_range(start: float, end: float, fps: Fraction, frames: int | None = None) -> tuple[int, int]:
    """[first, stop) source frames of [start, end): the converter's own rule (frames whose time
    i/fps falls in the interval, at least one), clamped to the video, so all methods cut the same."""
    from mer_data.media.video import frame_range as converter_frame_range

    first, stop = converter_frame_range(start, end, fps)
    return first, stop if frames is None else min(stop, frames)


def sample_range(start: float, end: float) -> tuple[int, int]:
    """[first, stop) audio samples of [start, end) at 16 kHz: the converter's rounding."""
    return round(start * SAMPLE_RATE), round(end * SAMPLE_RATE)


def half_crop(width: int, height: int, region: str) -> tuple[int, int, int, int]:
    """[x, y, w, h] of a speaker's half of the side-by-side frame: the converter's crop."""
    from mer_data.media.video import clip_geometry

    return tuple(clip_geometry(width, height, region, None).crop)


# --------------------------------------------------------------------------------------------
# The reference: the published approach


def reference_dialog(dialog: Dialog, out: Path) -> int:
    """Convert one dialog as the published notebooks did; returns the number of utterances written.

    Deliberately naive where they were: the whole video is decoded into a list of frames first
    (memory grows with the dialog), and every frame of both halves is written as a JPEG.
    """
    import cv2
    import soundfile as sf

    capture = cv2.VideoCapture(dialog.video)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    fps = Fraction(dialog.fps)
    audio, rate = sf.read(dialog.audio, dtype="int16", always_2d=True)
    for utt in dialog.utterances:
        folder = out / dialog.name / utt["id"]
        folder.mkdir(parents=True, exist_ok=True)
        first, stop = frame_range(utt["start"], utt["end"], fps, len(frames))
        for number, index in enumerate(range(first, stop)):
            frame = frames[index]
            half = frame.shape[1] // 2
            cv2.imwrite(str(folder / f"left_{number:05d}.jpg"), frame[:, :half])
            cv2.imwrite(str(folder / f"right_{number:05d}.jpg"), frame[:, half:])
        # The speaker's channel only, like IEMOCAP's own sentences/wav cuts; writing both channels
        # would double the reference's audio bytes and flatter our size ratio.
        a, b = round(utt["start"] * rate), round(utt["end"] * rate)
        sf.write(folder / f"{utt['id']}.wav", audio[a:b, utt["channel"] or 0], rate, subtype="PCM_16")
    return len(dialog.utterances)


# --------------------------------------------------------------------------------------------
# The floor: one bare ffmpeg pass per dialog


def floor_commands(dialog: Dialog, out: Path) -> list[list[str]]:
    """ffmpeg command lines that cut every utterance of `dialog` into out/<id>.mp4 and .flac.

    One command (one decode) per batch of FLOOR_MAX_UTTERANCES_PER_GRAPH utterances. The video
    graph splits the decoded frames to one branch per utterance (trim by frame index, then crop the
    speaker's half: trimming first lets the branch drop frames before any pixel work); the audio
    graph likewise with atrim by sample index and pan to the speaker's channel. Encoders run with
    -threads 1 like ours, so this is a per-core floor.
    """
    from mer_data.media.encoding import VideoEncoding
    from mer_data.media.video import face_sample_frames

    fps = Fraction(dialog.fps)
    encoding = VideoEncoding()
    x264 = encoding.x264_options(fps)
    x264_args = ["-c:v", "libx264", "-preset", x264["preset"], "-crf", str(x264["crf"]), "-pix_fmt", "yuv420p",
                 "-threads", "1", "-g", str(x264["g"]), "-movflags", "+faststart"]
    if "tune" in x264:
        x264_args += ["-tune", x264["tune"]]
    commands = []
    utts = dialog.utterances
    for batch_start in range(0, len(utts), FLOOR_MAX_UTTERANCES_PER_GRAPH):
        batch = utts[batch_start:batch_start + FLOOR_MAX_UTTERANCES_PER_GRAPH]
        n = len(batch)
        video_graph = [f"[0:v]split={n}" + "".join(f"[s{i}]" for i in range(n))]
        audio_graph = [f"[1:a]asplit={n}" + "".join(f"[t{i}]" for i in range(n))]
        outputs: list[str] = []
        for i, utt in enumerate(batch):
            first, stop = frame_range(utt["start"], utt["end"], fps, dialog.frames)
            x, y, w, h = half_crop(dialog.width, dialog.height, utt["region"])
            video_graph.append(f"[s{i}]trim=start_frame={first}:end_frame={stop},setpts=PTS-STARTPTS,"
                               f"crop={w}:{h}:{x}:{y}[v{i}]")
            a, b = sample_range(utt["start"], utt["end"])
            channel = utt["channel"] or 0
            audio_graph.append(f"[t{i}]atrim=start_sample={a}:end_sample={b},asetpts=PTS-STARTPTS,"
                               f"pan=mono|c0=c{channel}[a{i}]")
            keyframes = [0]
            if encoding.keyframes == "faces":
                keyframes = list(face_sample_frames(stop - first, fps, FACE_INTERVAL_MS))
            forced = "+".join(f"eq(n,{n})" for n in keyframes)
            outputs += ["-map", f"[v{i}]", *x264_args, "-force_key_frames", f"expr:{forced}",
                        f"file:{out / utt['id']}.mp4",
                        "-map", f"[a{i}]", "-c:a", "flac", "-ar", str(SAMPLE_RATE), f"file:{out / utt['id']}.flac"]
        commands.append(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                         "-i", f"file:{dialog.video}", "-i", f"file:{dialog.audio}",
                         "-filter_complex", ";".join(video_graph), "-filter_complex", ";".join(audio_graph),
                         *outputs])
    return commands


def floor_run(dialogs: list[Dialog], out: Path) -> int:
    for dialog in dialogs:
        folder = out / dialog.name
        folder.mkdir(parents=True, exist_ok=True)
        for command in floor_commands(dialog, folder):
            done = subprocess.run(command, capture_output=True)
            if done.returncode != 0:
                why = done.stderr.decode(errors="replace")[-2000:]
                raise SystemExit(f"floor ffmpeg failed on {dialog.name}: {why}")
    return sum(len(d.utterances) for d in dialogs)


# --------------------------------------------------------------------------------------------
# Ours: the mer CLI, with timers around its phases


def run_mer_cli(args: list[str], phases_path: Path) -> None:
    """`mer <args>` exactly as the console script runs it, timing plan / cluster / media / pack.

    The timers wrap module attributes that `mer_data.pipelines.convert` and its task runner (pipelines/runner.py)
    look up at call time; they change nothing else. "media" is the task map on a running cluster;
    "cluster" is the rest of the Dask part (start-up and shut-down of the LocalCluster). A name that is
    missing is simply not timed.
    """
    import atexit

    import mer_data.pipelines.convert as convert
    import mer_data.pipelines.runner as runner

    phases: dict[str, float] = {}

    def timed(name: str, fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    for module, attribute, name in ((convert, "plan_iemocap", "plan"), (convert, "_run_media", "cluster+media"),
                                    (runner, "map_tasks", "media"), (convert, "_pack", "pack"),
                                    (convert, "run_conversion", "conversion")):
        if hasattr(module, attribute):
            setattr(module, attribute, timed(name, getattr(module, attribute)))
    atexit.register(lambda: phases_path.write_text(json.dumps(phases), encoding="utf-8"))
    from mer_data.cli import main

    main(args, prog_name="mer")


# --------------------------------------------------------------------------------------------
# Measuring a subprocess: wall, CPU of the whole tree, peak RSS of the tree


class TreeRssSampler(threading.Thread):
    """The peak of the summed RSS of a process and all its descendants, sampled from /proc.

    ru_maxrss gives the peak of each process alone; a worker's real footprint is its Python
    process plus the ffmpeg children alive at the same moment, which only sampling sees.
    """

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_bytes = pid, interval, 0
        self._stop_event = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_bytes = max(self.peak_bytes, self._tree_rss())
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def _tree_rss(self) -> int:
        parents: dict[int, int] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    with open(f"/proc/{entry.name}/stat", "rb") as handle:
                        stat = handle.read()
                except OSError:
                    continue
                # Fields after the ")" that closes the command name: state, ppid, ...
                parents[int(entry.name)] = int(stat[stat.rindex(b")") + 2:].split()[1])
        tree, frontier = {self.pid}, [self.pid]
        while frontier:
            parent = frontier.pop()
            children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
            tree.update(children)
            frontier += children
        total = 0
        for pid in tree:
            try:
                with open(f"/proc/{pid}/statm", "rb") as handle:
                    total += int(handle.read().split()[1]) * self._page
            except OSError:
                pass
        return total


@dataclass
class Measured:
    wall_s: float
    cpu_s: float
    peak_tree_rss_mb: float
    other_load_cores: float  # CPU used by processes outside the measured tree, per wall second
    returncode: int
    stdout: str
    stderr: str


def measure(command: list[str], ok_codes: tuple[int, ...] = (0,)) -> Measured:
    """Run `command`, timing it and summing the CPU time of it and every descendant it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before = machine_busy_seconds()
    t0 = time.perf_counter()
    # Started through a small shell that forks it: Linux carries a process's RSS high-water mark
    # across exec, so a child spawned straight from this (large) process would report this
    # process's peak as its own ru_maxrss.
    launcher = ["sh", "-c", '"$@"; exit $?', "sh", *command]
    proc = subprocess.Popen(launcher, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CHILD_ENV, cwd=REPO)
    sampler = TreeRssSampler(proc.pid)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # Everything the machine did minus what our tree did: other people's work (and this
    # process's sampler, a few percent of a core).
    other = max(0.0, machine_busy_seconds() - busy_before - cpu) / wall
    result = Measured(wall, cpu, sampler.peak_bytes / 2**20, other, proc.returncode,
                      stdout.decode(errors="replace"), stderr.decode(errors="replace"))
    if proc.returncode not in ok_codes:
        raise SystemExit(f"{' '.join(command[:6])} ... failed ({proc.returncode}):\n{result.stderr[-3000:]}")
    return result


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


# --------------------------------------------------------------------------------------------
# Corpora


# The synthetic dialog timeline (mer_data.synth.iemocap.FULL_TIMING: turns of 1-4 s, gaps of
# 0.15-0.8 s, some overlaps) gives ~2.75-2.8 s of video per utterance (measured on its planner),
# plus ~3.25 s of lead-in and tail per dialog. The margin makes the corpus reach --minutes.
SYNTH_SECONDS_PER_UTTERANCE = 2.75
SYNTH_SECONDS_AROUND = 3.25
SYNTH_MARGIN = 1.04


def ensure_corpus(path: Path, minutes: float, *, sessions: tuple[int, ...] = SESSIONS,
                  dialogs_per_session: int = 2) -> Path:
    """The release in `path`, or a synthetic one generated there with about `minutes` of dialog video."""
    from mer_data.corpora.iemocap import find_iemocap_root

    try:
        return find_iemocap_root(path)
    except (FileNotFoundError, ValueError):
        pass
    from mer_data.synth.iemocap import synth_iemocap

    dialogs = len(sessions) * dialogs_per_session
    per_dialog = minutes * 60 / dialogs
    utterances = max(2, math.ceil(SYNTH_MARGIN * (per_dialog - SYNTH_SECONDS_AROUND) / SYNTH_SECONDS_PER_UTTERANCE))
    print(f"generating {path}: {dialogs} dialogs x {utterances} utterances (~{per_dialog / 60:.1f} min each) ...",
          flush=True)
    t0 = time.perf_counter()
    root = synth_iemocap(path, sessions=tuple(sessions), dialogs_per_session=dialogs_per_session,
                         utterances_per_dialog=utterances, seed=0)
    print(f"  generated in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


# --------------------------------------------------------------------------------------------
# Child entry points


def child_reference(dialogs_json: Path, out: Path, dialog: str | None) -> None:
    dialogs = [d for d in load_dialogs(dialogs_json) if dialog is None or d.name == dialog]
    for d in dialogs:
        reference_dialog(d, out)
    report_self_rusage()


def child_floor(dialogs_json: Path, out: Path) -> None:
    floor_run(load_dialogs(dialogs_json), out)
    report_self_rusage()


def child_ours_one_dialog(dialogs_json: Path, out: Path, dialog: str) -> None:
    """One worker's media work on one dialog: what a Dask task runs, without the cluster."""
    from mer_data.media.cut import cut_recording
    from mer_data.records import CutRequest
    from mer_data.pipelines.recording_task import use_one_opencv_thread

    use_one_opencv_thread()  # as the Dask task does
    d = next(d for d in load_dialogs(dialogs_json) if d.name == dialog)
    out.mkdir(parents=True, exist_ok=True)
    requests = [CutRequest(u["id"], u["start"], u["end"], u["region"], u["channel"]) for u in d.utterances]
    _, problems = cut_recording(Path(d.video), Path(d.audio), requests, out, frame_interval_ms=500,
                                   rel_video=d.rel_video, rel_audio=d.rel_audio)
    if problems:
        print(f"{len(problems)} problems, first: {problems[0].format()}", file=sys.stderr)
    report_self_rusage()


def report_self_rusage() -> None:
    """The last stdout line of every child: its own peak RSS and CPU, and its children's (ffmpeg).

    The children's ru_maxrss is the largest child's, and at least this process's RSS at the moment
    it spawned them (the high-water mark survives exec): an upper bound for a small ffmpeg."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"self_maxrss_mb": own.ru_maxrss / 1024, "largest_child_maxrss_mb": children.ru_maxrss / 1024,
                      "self_cpu_s": own.ru_utime + own.ru_stime,
                      "children_cpu_s": children.ru_utime + children.ru_stime}))


def child_report(measured: Measured) -> dict:
    return json.loads(measured.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# The benchmark


@dataclass
class MethodResult:
    name: str
    wall_s: float
    cpu_s: float
    utterances: int
    media_s: float
    out_bytes: int
    peak_tree_rss_mb: float
    other_load_cores: float
    notes: dict = field(default_factory=dict)

    @property
    def utt_per_s(self) -> float:
        return self.utterances / self.wall_s

    @property
    def media_per_s(self) -> float:
        return self.media_s / self.wall_s

    @property
    def utt_per_cpu_s(self) -> float:
        return self.utterances / self.cpu_s

    def to_json(self) -> dict:
        return dict(asdict(self), utt_per_s=self.utt_per_s, media_per_s=self.media_per_s,
                    utt_per_cpu_s=self.utt_per_cpu_s)


def run_method(name: str, command: list[str], out: Path, dialogs: list[Dialog], *, idle_wait_s: float,
               ok_codes: tuple[int, ...] = (0,)) -> MethodResult:
    """Measure one method's whole run into an empty `out` (kept: the caller reads and removes it)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if idle_wait_s > 0:
        wait_until_idle(idle_wait_s)
    print(f"running {name} ...", flush=True)
    measured = measure(command, ok_codes)
    result = MethodResult(name, measured.wall_s, measured.cpu_s, sum(len(d.utterances) for d in dialogs),
                          sum(d.duration for d in dialogs), folder_bytes(out), measured.peak_tree_rss_mb,
                          measured.other_load_cores)
    print(f"  {measured.wall_s:.1f} s wall, {measured.cpu_s:.1f} s CPU, {result.out_bytes / 1e6:.1f} MB out, "
          f"other work on the machine: {measured.other_load_cores:.2f} cores", flush=True)
    return result


def benchmark_throughput(raw: Path, work: Path, dialogs: list[Dialog], *, keep: bool, idle_wait_s: float,
                         worker_counts: tuple[int, ...] = (1, 2),
                         video2dataset_python: str | None = None) -> dict[str, MethodResult]:
    dialogs_json = save_dialogs(dialogs, work / "dialogs.json")
    results: dict[str, MethodResult] = {}
    if video2dataset_python:
        results.update(benchmark_video2dataset(video2dataset_python, dialogs_json, work, dialogs, keep=keep,
                                               idle_wait_s=idle_wait_s))
    for key, name, sub in (("reference", "reference (OpenCV, JPEG frames, 1 proc)", "_reference"),
                           ("floor", "floor (bare ffmpeg, 1 proc, no faces)", "_floor")):
        out = work / f"out-{key}"
        results[key] = run_method(name, [PYTHON, str(SCRIPT), sub, str(dialogs_json), str(out)], out, dialogs,
                                  idle_wait_s=idle_wait_s)
        if not keep:
            shutil.rmtree(out, ignore_errors=True)
    for workers in worker_counts:
        out = work / f"out-mer-w{workers}"
        phases = work / f"phases-w{workers}.json"
        phases.unlink(missing_ok=True)
        # Exit status 3 means some utterances were rejected (listed in errors.jsonl); counted below.
        result = run_method(
            f"mer convert --workers {workers}",
            [PYTHON, str(SCRIPT), "_mer", str(phases), "convert", "iemocap", str(raw), str(out),
             "--split", SPLIT, "--workers", str(workers), "--overwrite", "--quiet"],
            out, dialogs, idle_wait_s=idle_wait_s, ok_codes=(0, 3))
        card = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
        result.utterances = card["counts"]["total"]
        result.notes = {"phases_s": json.loads(phases.read_text(encoding="utf-8")) if phases.is_file() else {},
                        "rejected": card["errors"]["count"], "planned": card["counts"]["planned"]}
        results[f"mer_w{workers}"] = result
        if not keep:
            shutil.rmtree(out, ignore_errors=True)
    return results


def benchmark_video2dataset(python: str, dialogs_json: Path, work: Path, dialogs: list[Dialog], *, keep: bool,
                            idle_wait_s: float) -> dict[str, MethodResult]:
    """video2dataset's exact clipping (benchmarks/video2dataset_reference.py) on every utterance, and
    on each dialog's non-overlapping ones: its utterances are the clips it wrote, its failures noted."""
    results = {}
    for mode in ("all", "non-overlapping"):
        key = f"video2dataset_{mode.replace('-', '_')}"
        out = work / f"out-{key}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        if idle_wait_s > 0:
            wait_until_idle(idle_wait_s)
        print(f"running video2dataset ({mode}) ...", flush=True)
        command = [python, str(SCRIPT.parent / "video2dataset_reference.py"), str(dialogs_json), str(out), mode]
        measured = measure(command)
        outcome = json.loads(measured.stdout.strip().splitlines()[-1])
        shards = out / "shards"
        result = MethodResult(f"video2dataset 1.3.0 exact ({mode})", measured.wall_s, measured.cpu_s,
                              outcome["clips_written"], sum(d.duration for d in dialogs),
                              sum(f.stat().st_size for f in shards.glob("*.tar")), measured.peak_tree_rss_mb,
                              measured.other_load_cores, notes=outcome)
        print(f"  {measured.wall_s:.1f} s wall, {measured.cpu_s:.1f} s CPU, {outcome['clips_written']} of "
              f"{outcome['clips_asked']} clips written, {outcome['dialogs_failed']} of {outcome['dialogs']} dialogs "
              f"failed {outcome['errors'][:2]}", flush=True)
        results[key] = result
        if not keep:
            shutil.rmtree(out, ignore_errors=True)
    return results


def benchmark_rss(work: Path, short_minutes: float, *, keep: bool, idle_wait_s: float) -> dict:
    """Peak RSS of one worker on a short dialog and on one 4x longer: ours and the reference."""
    figures: dict = {}
    for label, minutes in (("short", short_minutes), ("long", 4 * short_minutes)):
        raw = ensure_corpus(work / f"corpus-rss-{label}", minutes, sessions=(1,), dialogs_per_session=1)
        dialogs = plan_dialogs(raw)
        dialog = max(dialogs, key=lambda d: d.duration)
        dialogs_json = save_dialogs([dialog], work / f"dialogs-rss-{label}.json")
        for method, sub in (("ours", "_ours_dialog"), ("reference", "_reference")):
            out = work / f"out-rss-{method}-{label}"
            shutil.rmtree(out, ignore_errors=True)
            if idle_wait_s > 0:
                wait_until_idle(idle_wait_s)
            print(f"peak RSS: {method} on a {dialog.duration / 60:.1f} min dialog ...", flush=True)
            measured = measure([PYTHON, str(SCRIPT), sub, str(dialogs_json), str(out), "--dialog", dialog.name])
            report = child_report(measured)
            figures.setdefault(method, {})[label] = {
                "dialog_s": dialog.duration, "utterances": len(dialog.utterances),
                "python_maxrss_mb": report["self_maxrss_mb"],
                "largest_child_maxrss_mb": report["largest_child_maxrss_mb"],
                "tree_peak_mb": measured.peak_tree_rss_mb, "wall_s": measured.wall_s,
                "python_cpu_s": report["self_cpu_s"], "children_cpu_s": report["children_cpu_s"],
                "other_load_cores": measured.other_load_cores}
            if not keep:
                shutil.rmtree(out, ignore_errors=True)
    for method in figures:
        short, long = figures[method]["short"], figures[method]["long"]
        figures[method]["long_over_short"] = long["tree_peak_mb"] / short["tree_peak_mb"]
    return figures


# --------------------------------------------------------------------------------------------
# Report


def as_printed(ratio: float) -> float:
    """Verdicts judge a ratio as printed (2 decimals): run-to-run noise is far above 0.01, and a
    printed "1.70" next to MISS for a 1.7 target would only confuse."""
    return round(ratio, 2)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(results: dict[str, MethodResult], rss: dict | None, corpus: dict) -> dict:
    print()
    print(f"corpus: {corpus['dialogs']} dialogs, {corpus['video_s'] / 60:.1f} min of dialog video, "
          f"{corpus['utterances']} utterances (six classes), {corpus['frame_size']} @ {corpus['fps']} fps; "
          f"machine: {os.cpu_count()} cores")
    header = (f"{'method':<40}{'wall s':>8}{'utt/s':>8}{'media s/s':>10}{'CPU s':>8}{'utt/CPU-s':>10}"
              f"{'out MB':>9}{'peak MB':>9}{'other':>7}")
    print(header)
    print("-" * len(header))
    for r in results.values():
        print(f"{r.name:<40}{r.wall_s:>8.1f}{r.utt_per_s:>8.2f}{r.media_per_s:>10.2f}{r.cpu_s:>8.1f}"
              f"{r.utt_per_cpu_s:>10.2f}{r.out_bytes / 1e6:>9.1f}{r.peak_tree_rss_mb:>9.0f}{r.other_load_cores:>7.2f}")
    print("media s/s: dialog video seconds per wall second; CPU s: user+sys of the whole process tree;\n"
          "peak MB: summed RSS of the process tree, sampled every 0.1 s; other: cores used meanwhile by\n"
          "processes outside the tree (a shared machine; figures with other > 0.25 are suspect).\n"
          "The floor does no face detection and writes no metadata or shards.")
    for key in ("mer_w1", "mer_w2"):
        if key not in results:
            continue
        phases = results[key].notes.get("phases_s", {})
        if phases.get("media"):
            cluster = phases.get("cluster+media", 0.0) - phases["media"]
            print(f"{results[key].name}: plan {phases.get('plan', 0):.1f} s, Dask start/stop {cluster:.1f} s, "
                  f"media {phases['media']:.1f} s ({results[key].media_s / phases['media']:.2f} media s/s), "
                  f"pack {phases.get('pack', 0):.1f} s; rejected {results[key].notes['rejected']} "
                  f"of {results[key].notes['planned']}")
    suspect = [r.name for r in results.values() if r.other_load_cores > 0.25]
    if suspect:
        print(f"WARNING: other work ran on the machine during: {'; '.join(suspect)}")

    ref, floor, w1, w2 = results["reference"], results["floor"], results["mer_w1"], results.get("mer_w2")
    ratios = {
        "per_core_vs_reference": w1.utt_per_cpu_s / ref.utt_per_cpu_s,
        "wall_vs_reference": ref.wall_s / w1.wall_s,
        "cpu_vs_floor": w1.cpu_s / floor.cpu_s,
        "wall_vs_floor": w1.wall_s / floor.wall_s,
        "reference_bytes_over_ours": ref.out_bytes / w1.out_bytes,
    }
    for key, v2d in results.items():
        if key.startswith("video2dataset") and v2d.utterances:
            ratios[f"per_core_vs_{key}"] = w1.utt_per_cpu_s / v2d.utt_per_cpu_s
            print(f"{v2d.name}: {v2d.notes['clips_written']} of {v2d.notes['clips_asked']} clips written "
                  f"({v2d.notes['dialogs_failed']} of {v2d.notes['dialogs']} dialogs failed), "
                  f"{v2d.cpu_s / v2d.utterances:.2f} CPU-s per clip written; ours (1 worker) "
                  f"{w1.cpu_s / w1.utterances:.2f} per utterance")
        elif key.startswith("video2dataset"):
            print(f"{v2d.name}: no clip written ({v2d.notes['dialogs_failed']} of {v2d.notes['dialogs']} dialogs "
                  f"failed: {'; '.join(v2d.notes['errors'][:2])}), {v2d.cpu_s:.1f} CPU-s spent")
    if w2:
        ratios["speedup_2_vs_1"] = w1.wall_s / w2.wall_s
    phases1, phases2 = w1.notes.get("phases_s", {}), (w2.notes.get("phases_s", {}) if w2 else {})
    if phases1.get("media") and phases2.get("media"):
        ratios["media_only_speedup_2_vs_1"] = phases1["media"] / phases2["media"]
        ratios["media_only_wall_vs_floor"] = phases1["media"] / floor.wall_s
    targets = {
        "per core at least as fast as the reference": (
            as_printed(ratios["per_core_vs_reference"]) >= TARGET_PER_CORE_VS_REFERENCE,
            f"ours(1 worker)/reference utterances per CPU-second = {ratios['per_core_vs_reference']:.2f} "
            f"(>= {TARGET_PER_CORE_VS_REFERENCE}); wall: reference/ours = {ratios['wall_vs_reference']:.2f}"),
        "within 1.5x of the floor": (
            as_printed(ratios["cpu_vs_floor"]) <= TARGET_FLOOR_RATIO,
            f"ours(1 worker)/floor CPU seconds = {ratios['cpu_vs_floor']:.2f} (<= {TARGET_FLOOR_RATIO}), "
            f"floor/ours = {1 / ratios['cpu_vs_floor']:.2f}; wall ours/floor = {ratios['wall_vs_floor']:.2f}"
            + (f" (media phase only: {ratios['media_only_wall_vs_floor']:.2f})" if "media_only_wall_vs_floor" in ratios
               else "")),
    }
    if w2:
        targets["2 workers >= 1.7x of 1"] = (
            as_printed(ratios["speedup_2_vs_1"]) >= TARGET_SPEEDUP,
            f"wall(1)/wall(2) = {ratios['speedup_2_vs_1']:.2f} (>= {TARGET_SPEEDUP})"
            + (f"; media phase only: {ratios['media_only_speedup_2_vs_1']:.2f}" if "media_only_speedup_2_vs_1" in ratios
               else "")
            + f"; 1 worker already keeps {w1.cpu_s / w1.wall_s:.2f} cores busy")
    targets["output at most 1/5 of the reference's bytes"] = (
        ratios["reference_bytes_over_ours"] >= 1 / TARGET_BYTES_FRACTION,
        f"reference/ours bytes = {ratios['reference_bytes_over_ours']:.1f} (>= {1 / TARGET_BYTES_FRACTION:.0f})")
    if rss:
        print()
        print(f"{'one worker, one dialog':<24}{'dialog':>8}{'utts':>6}{'python MB':>11}{'ffmpeg MB':>11}"
              f"{'tree MB':>9}{'python CPU s':>14}{'ffmpeg CPU s':>14}")
        for method in ("ours", "reference"):
            for label in ("short", "long"):
                f = rss[method][label]
                print(f"{method + ' ' + label:<24}{f['dialog_s'] / 60:>7.1f}m{f['utterances']:>6}"
                      f"{f['python_maxrss_mb']:>11.0f}{f['largest_child_maxrss_mb']:>11.0f}{f['tree_peak_mb']:>9.0f}"
                      f"{f['python_cpu_s']:>14.1f}{f['children_cpu_s']:>14.1f}")
            print(f"{method + ' long/short tree peak':<24}{rss[method]['long_over_short']:>59.2f}")
        print("python/ffmpeg MB: ru_maxrss of the process and of its largest child; tree: their sum, sampled;\n"
              "python CPU includes face detection (ours); ffmpeg CPU is the decoder and all encoders.")
        ours = rss["ours"]
        peak = max(ours["short"]["tree_peak_mb"], ours["long"]["tree_peak_mb"])
        targets["peak RSS < 500 MB and flat in dialog length"] = (
            peak < TARGET_RSS_MB and as_printed(ours["long_over_short"]) <= FLAT_RSS_RATIO,
            f"ours peak {peak:.0f} MB (< {TARGET_RSS_MB}), long/short {ours['long_over_short']:.2f} "
            f"(<= {FLAT_RSS_RATIO}); reference long/short {rss['reference']['long_over_short']:.2f}")
    print()
    for name, (ok, detail) in targets.items():
        print(f"{verdict(ok)}  {name}: {detail}")
    return {"corpus": corpus, "machine_cores": os.cpu_count(), "methods": {k: r.to_json() for k, r in results.items()},
            "ratios": ratios, "rss": rss,
            "targets": {name: {"pass": ok, "detail": detail} for name, (ok, detail) in targets.items()}}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].startswith("_"):
        return child_main(argv[0], argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="an IEMOCAP-layout release to use (generated there if absent)")
    parser.add_argument("--minutes", type=float, default=30.0, help="minutes of dialog video to generate [30]")
    parser.add_argument("--quick", action="store_true", help="a ~3 min corpus and short RSS dialogs: a smoke run")
    parser.add_argument("--work", type=Path, default=REPO / "bench-out" / "convert_iemocap",
                        help="scratch folder for corpora and outputs [bench-out/convert_iemocap]")
    parser.add_argument("--rss-minutes", type=float, default=None,
                        help="length of the short dialog of the RSS test; the long one is 4x [1; quick: 0.5]")
    parser.add_argument("--skip-rss", action="store_true", help="skip the peak RSS part")
    parser.add_argument("--idle-wait", type=float, default=None,
                        help="before each measurement wait up to this many seconds for other work on the "
                             "machine to stop [120; quick: 20]")
    parser.add_argument("--keep", action="store_true", help="keep the outputs of every method")
    parser.add_argument("--camera", action="store_true",
                        help="run on a camera-like copy of the synthetic corpus (benchmarks/camera_corpus.py: "
                             "textured moving background, sensor noise, MPEG-4 Part 2 AVI)")
    parser.add_argument("--video2dataset", metavar="PYTHON",
                        help="an interpreter with video2dataset 1.3.0 installed: adds it as a second reference")
    parser.add_argument("--skip-w2", action="store_true", help="measure ours with 1 worker only")
    args = parser.parse_args(argv)

    minutes = 3.0 if args.quick else args.minutes
    rss_minutes = args.rss_minutes or (0.5 if args.quick else 1.0)
    idle_wait = args.idle_wait if args.idle_wait is not None else (20.0 if args.quick else 120.0)
    work = args.work / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    corpus_dir = args.corpus or work / f"corpus-{minutes:g}min"
    raw = ensure_corpus(corpus_dir, minutes, sessions=QUICK_SESSIONS if args.quick else SESSIONS)
    if args.camera:
        from camera_corpus import make_camera_corpus

        print("making the camera-like copy ...", flush=True)
        raw = make_camera_corpus(raw, Path(f"{corpus_dir}-camera"))
    dialogs = plan_dialogs(raw)
    video_s = sum(d.duration for d in dialogs)
    corpus = {"path": str(raw), "dialogs": len(dialogs), "video_s": video_s,
              "utterances": sum(len(d.utterances) for d in dialogs),
              "frame_size": f"{dialogs[0].width}x{dialogs[0].height}", "fps": dialogs[0].fps,
              "kind": "camera-like" if args.camera else "synthetic"}
    print(f"corpus {raw}: {len(dialogs)} dialogs, {video_s / 60:.1f} min of dialog video, "
          f"{corpus['utterances']} utterances", flush=True)
    if video_s < minutes * 60 and not args.quick:
        print(f"WARNING: {video_s / 60:.1f} min of video is less than the {minutes:g} min asked for", flush=True)
    results = benchmark_throughput(raw, work, dialogs, keep=args.keep, idle_wait_s=idle_wait,
                                   worker_counts=(1,) if args.skip_w2 else (1, 2),
                                   video2dataset_python=args.video2dataset)
    rss = None if args.skip_rss else benchmark_rss(work, rss_minutes, keep=args.keep, idle_wait_s=idle_wait)
    figures = report(results, rss, corpus)
    print(json.dumps(figures, sort_keys=True))


def child_main(command: str, rest: list[str]) -> None:
    """The internal subcommands, each run by the benchmark in a fresh process."""
    if command == "_mer":  # _mer PHASES_JSON <mer arguments...>
        return run_mer_cli(rest[1:], Path(rest[0]))
    parser = argparse.ArgumentParser(prog=f"{SCRIPT.name} {command}")
    parser.add_argument("dialogs_json", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--dialog")
    args = parser.parse_args(rest)
    if command == "_reference":
        child_reference(args.dialogs_json, args.out, args.dialog)
    elif command == "_floor":
        child_floor(args.dialogs_json, args.out)
    elif command == "_ours_dialog":
        child_ours_one_dialog(args.dialogs_json, args.out, args.dialog)
    else:
        raise SystemExit(f"unknown internal command {command}")


if __name__ == "__main__":
    main()
