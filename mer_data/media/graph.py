"""All clips of one recording from ONE ffmpeg process: decode once, encode per lane, sample faces.

The process decodes the source once and splits it into:
  * one libx264 output per "lane": a lane is a set of non-overlapping utterances of the same crop.
    Its chain selects exactly the utterances' source frames, crops (and scales) them, renumbers them
    as a constant-rate stream, and forces a keyframe at each utterance's first frame; the segment
    muxer cuts the stream there, so each utterance becomes its own MP4. Overlapping utterances
    (speakers talking over each other, MOSEI segments) go to different lanes.
  * one raw gray (luma) output on stdout holding only the frames the face detector needs, read here
    in order (it is the only pipe, so reading it continuously is all it takes not to stall); the
    same frames tell whether a clip is black (black.py).

Starting one encoder per utterance and pushing raw frames through pipes cost more than the
encoding itself; this way there are only a few encoders per recording, whatever its length.

When the process fails (an encoder cannot start, say), each lane is cut again in a process of its
own, so that a failure costs only the utterances of the failing lane.
"""
from __future__ import annotations

import os
import subprocess
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import ffmpeg
import numpy as np

from .black import is_black_frame
from .commands import GLOBAL_ARGS, rate_arg
from .encoding import VideoEncoding
from .mp4 import video_sample_count
from .probe import ffmpeg_path_arg, last_meaningful_line
from .video import (ClipCut, ClipPlan, VideoSource, count_lines, ended_early, face_facts_of,
                    FaceDetector, read_tail, video_facts)



@dataclass
class _Run:
    """What one ffmpeg run produced: per lane its segment files in order, the face detections by
    key, its exit status and the last line of its log."""

    segments: list[list[Path]]
    faces: dict[str, list[tuple[int, "Future[list[int] | None]"]]] = field(default_factory=dict)
    black: dict[str, list[bool]] = field(default_factory=dict)  # per key, whether each face frame is black
    status: int = 0
    why: str = ""
    log_lines: int = 0  # error messages in its log: with status 0, all are the decoder's
    last_face_frame: int = -1  # source index of the last face frame read, -1 if none


def assign_lanes(plans: list[ClipPlan]) -> list[list[ClipPlan]]:
    """Group plans into lanes: same geometry, no two overlapping, each lane in frame order.
    Greedy by start frame: a plan joins the first lane of its geometry that has ended by then."""
    lanes: list[list[ClipPlan]] = []
    for plan in sorted(plans, key=lambda p: (p.first_frame, p.end_frame, p.key)):
        lane = next((lane for lane in lanes
                     if lane[-1].geometry == plan.geometry and lane[-1].end_frame <= plan.first_frame), None)
        if lane is None:
            lanes.append([plan])
        else:
            lane.append(plan)
    return lanes


def cut_clips(source: VideoSource, plans: list[ClipPlan], workdir: Path,
              encoding: VideoEncoding = VideoEncoding()) -> tuple[dict[str, ClipCut], dict[str, str]]:
    """Write every plan's clip (video.py's plans) in one decode of the source: (finished clips,
    reasons of failed ones), both by key (keys must be unique), encoded with `encoding`.

    A clip fails when the source ends (or breaks) before its last frame, or its encoder fails; its
    partial file is removed. The others are unaffected. The work is done by one ffmpeg process
    per recording (or, after a failure, one per lane).
    """
    if not plans:
        return {}, {}
    lanes = assign_lanes(plans)
    done: dict[str, ClipCut] = {}
    failed: dict[str, str] = {}
    run = _run_graph(source, lanes, workdir, "all", encoding)
    if run.status != 0 and len(lanes) > 1:
        _remove_segments(run)
        # Which lane broke the run is unknown: cut each on its own, so it costs only its own clips.
        for index, lane in enumerate(lanes):
            lane_run = _run_graph(source, [lane], workdir, f"lane{index}", encoding)
            _settle(source, [lane], lane_run, done, failed)
    else:
        _settle(source, lanes, run, done, failed)
    for plan in plans:
        if plan.key in failed:
            plan.out_path.unlink(missing_ok=True)
    return done, failed


def _settle(source: VideoSource, lanes: list[list[ClipPlan]], run: _Run,
            done: dict[str, ClipCut], failed: dict[str, str]) -> None:
    """Accept the clips whose segment holds exactly their frames and whose face samples were all
    read (the segment becomes their out_path); the reasons of the others in `failed`."""
    reached = _frames_reached(lanes, run)
    for lane, segments in zip(lanes, run.segments):
        for index, plan in enumerate(lane):
            faces = run.faces.get(plan.key, [])
            complete = (index < len(segments) and _mp4_frames(segments[index]) == plan.frames
                        and len(faces) == len(plan.face_frames))
            if complete:
                os.replace(segments[index], plan.out_path)
                decode_errors = run.log_lines if run.status == 0 else 0
                done[plan.key] = ClipCut(video_facts(plan, source, decode_errors),
                                         face_facts_of(plan, faces, source.fps, run.black[plan.key]))
            else:
                failed[plan.key] = _failure(plan, source, reached, run)
    _remove_segments(run)


def _failure(plan: ClipPlan, source: VideoSource, reached: int, run: _Run) -> str:
    """A failed run that got through no frame at all could not start (an encoder refused its
    settings, say); otherwise the video ended, or broke, before the clip did."""
    if run.status != 0 and reached == 0:
        return f"video encoder failed: {run.why or f'exit status {run.status}'}"
    return ended_early(plan, source, reached, run.why)


def _frames_reached(lanes: list[list[ClipPlan]], run: _Run) -> int:
    """How many source frames the run got through, as far as its outputs show: the decoder's
    own count is not reported, and its outputs are what the clips depend on."""
    reached = run.last_face_frame + 1
    for lane, segments in zip(lanes, run.segments):
        if segments and len(segments) <= len(lane):
            plan = lane[len(segments) - 1]
            reached = max(reached, plan.first_frame + _mp4_frames(segments[-1]))
    return reached


def _remove_segments(run: _Run) -> None:
    """Remove what is left of the segments: those of failed clips, or of a failed run."""
    for segments in run.segments:
        for segment in segments:
            segment.unlink(missing_ok=True)


# --- running the graph -----------------------------------------------------------------------

def _run_graph(source: VideoSource, lanes: list[list[ClipPlan]], workdir: Path, tag: str,
               encoding: VideoEncoding) -> _Run:
    """Run one ffmpeg over `lanes`, detecting faces in its face output as it comes."""
    out_dir = lanes[0][0].out_path.parent
    # Segments are written next to their final place, so that taking one is a rename.
    patterns = [out_dir / f".mer-cut-{os.getpid()}-{tag}-{index}-%05d.mp4" for index in range(len(lanes))]
    samples = _face_samples(lanes)
    script = workdir / f"graph-{tag}.txt"
    command = graph_command(source, lanes, patterns, sorted(samples), script, encoding)
    log_path = workdir / f"graph-{tag}.log"
    run = _Run(segments=[])
    detector = FaceDetector()
    try:
        # stderr goes to a file: a pipe nobody drains could fill and stall ffmpeg.
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        try:
            _read_faces(process.stdout, source, sorted(samples), samples, detector, run)
        finally:
            process.stdout.close()
            run.status = process.wait()
        # Wait for the detections before the facts are read.
        for faces in run.faces.values():
            for _, detection in faces:
                detection.result()
    finally:
        detector.close()
    run.why = last_meaningful_line(read_tail(log_path))
    run.log_lines = count_lines(log_path)
    run.segments = [_segment_files(pattern, len(lane)) for pattern, lane in zip(patterns, lanes)]
    return run


def _face_samples(lanes: list[list[ClipPlan]]) -> dict[int, list[tuple[ClipPlan, int]]]:
    """Source frame index -> the (plan, clip frame index) pairs that sample it."""
    samples: dict[int, list[tuple[ClipPlan, int]]] = defaultdict(list)
    for lane in lanes:
        for plan in lane:
            for index in plan.face_frames:
                samples[plan.first_frame + index].append((plan, index))
    return samples


def _read_faces(pipe: Any, source: VideoSource, order: list[int], samples: dict[int, list[tuple[ClipPlan, int]]],
                detector: FaceDetector, run: _Run) -> None:
    """Read the face frames (the luma plane of each), submit each plan's crop of them to the
    detector and note whether the crop is black. Stops at the end of the stream or at a cut-off frame."""
    luma_size = source.width * source.height
    for frame_index in order:
        data = _read_exactly(pipe, luma_size)
        if data is None:
            return
        luma = np.frombuffer(data, np.uint8, luma_size).reshape(source.height, source.width)
        for plan, clip_index in samples[frame_index]:
            g = plan.geometry
            crop = luma[g.y:g.y + g.height, g.x:g.x + g.width]
            run.faces.setdefault(plan.key, []).append((clip_index, detector.submit(crop, g, plan.key)))
            run.black.setdefault(plan.key, []).append(is_black_frame(crop))
        run.last_face_frame = frame_index


def _read_exactly(pipe: Any, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = pipe.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _segment_files(pattern: Path, count: int) -> list[Path]:
    """The segment files written, in order (the muxer numbers them from 0 without gaps)."""
    files = []
    # One more than planned is looked for too, only so that it is cleaned up should it exist.
    for index in range(count + 1):
        path = Path(str(pattern) % index)
        if not path.exists():
            break
        files.append(path)
    return files


# --- the command -----------------------------------------------------------------------------

def graph_command(source: VideoSource, lanes: list[list[ClipPlan]], patterns: list[Path], face_frames: list[int],
                  script: Path, encoding: VideoEncoding = VideoEncoding()) -> list[str]:
    """The ffmpeg command, built with ffmpeg-python. The filter graph goes to `script`
    (-filter_complex_script): with thousands of selected frames it outgrows the 128 KiB limit
    of one command-line argument."""
    # One decoding thread: parallelism comes from the workers, one recording each. The fps filter
    # makes the frames constant-rate from time 0, as -vsync cfr -r did for the raw-frame decoder,
    # so that frame n of the graph is at n/fps.
    decoded = ffmpeg.input(ffmpeg_path_arg(source.path), threads=1)["v:0"]
    decoded = decoded.filter("fps", fps=rate_arg(source.fps), start_time=0)
    branches = decoded.split()
    outputs = [_lane_output(branches[index], lane, pattern, source.fps, encoding)
               for index, (lane, pattern) in enumerate(zip(lanes, patterns))]
    faces = branches[len(lanes)].filter("select", _member_expr([(n, n) for n in face_frames]))
    # Only the luma plane, exactly as decoded (extractplanes copies it; a gray conversion would
    # rescale its range): it is the gray image the detector wants, and chroma would only be
    # piped to be thrown away.
    faces = faces.filter("format", "yuv420p").filter("extractplanes", "y")
    outputs.append(faces.output("pipe:1", format="rawvideo", pix_fmt="gray", vsync="passthrough"))
    command = ffmpeg.merge_outputs(*outputs).global_args(*GLOBAL_ARGS).overwrite_output().compile()
    at = command.index("-filter_complex")
    script.write_text(command[at + 1])
    return command[:at] + ["-filter_complex_script", str(script)] + command[at + 2:]


def _lane_output(stream: Any, lane: list[ClipPlan], pattern: Path, fps: Fraction, encoding: VideoEncoding) -> Any:
    """the lane's frames -> crop -> scale -> renumbered 0, 1, ... -> libx264 -> one MP4 per plan."""
    g = lane[0].geometry
    # Select first: a lane keeps only its utterances' frames (a few segments of a long MOSEI video),
    # and cropping and scaling every other frame of the source would be work thrown away. `n` counts
    # the frames arriving at select, the same numbers wherever it stands, so the output is unchanged.
    stream = stream.filter("select", _member_expr([(plan.first_frame, plan.end_frame - 1) for plan in lane]))
    stream = stream.crop(g.x, g.y, g.width, g.height)
    if g.scaled:
        stream = stream.filter("scale", g.out_width, g.out_height, flags="area")
    stream = stream.filter("setpts", "N/(FRAME_RATE*TB)")
    # The muxer cuts where each clip after the first starts. A lane of one clip gets a cut point
    # at its end, where no frame follows: without any, the muxer would cut at the first keyframe
    # after every 2 s (its default segment_time) and the clip would come out in pieces.
    starts = _output_starts(lane)
    cut_frames = starts[1:] or [lane[0].frames]
    return stream.output(ffmpeg_path_arg(pattern), **_encoder_options(lane, fps, encoding), format="segment",
                         reset_timestamps=1, segment_format="mp4", segment_format_options="movflags=+faststart",
                         segment_frames=",".join(str(frame) for frame in cut_frames))


def _encoder_options(lane: list[ClipPlan], fps: Fraction, encoding: VideoEncoding) -> dict[str, Any]:
    """The encoding's libx264 options on one thread with bitexact flags (the same bytes on every run
    and machine), plus the forced keyframes: where each clip starts (the segment muxer can only cut
    there) and, with keyframes="faces", at each clip's face frames (the frames a loader keeps)."""
    keyframes = _member_expr([(frame, frame) for frame in _keyframes(lane, encoding)])
    return {**encoding.x264_options(fps), "vsync": "passthrough", "map_metadata": -1,
            "fflags": "+bitexact", "flags:v": "+bitexact", "force_key_frames": f"expr:{keyframes}"}


def _keyframes(lane: list[ClipPlan], encoding: VideoEncoding) -> list[int]:
    """The output frame indices forced to be keyframes, ascending."""
    frames = set(_output_starts(lane))
    if encoding.keyframes == "faces":
        for start, plan in zip(_output_starts(lane), lane):
            frames.update(start + index for index in plan.face_frames)
    return sorted(frames)


def _output_starts(lane: list[ClipPlan]) -> list[int]:
    """The output frame index at which each plan of the lane starts."""
    starts, total = [], 0
    for plan in lane:
        starts.append(total)
        total += plan.frames
    return starts


def _member_expr(ranges: list[tuple[int, int]]) -> str:
    """An ffmpeg expression true when n lies in one of the sorted, disjoint [first, last] ranges.

    A binary search tree of if()s (ffmpeg evaluates only the branch taken): evaluated on every
    frame, a flat sum of thousands of terms would cost more than the decoding."""
    if len(ranges) == 1:
        first, last = ranges[0]
        return f"eq(n,{first})" if first == last else f"between(n,{first},{last})"
    middle = len(ranges) // 2
    return (f"if(lt(n,{ranges[middle][0]}),{_member_expr(ranges[:middle])},"
            f"{_member_expr(ranges[middle:])})")


# --- checking a clip -------------------------------------------------------------------------

def _mp4_frames(path: Path) -> int:
    """The number of video samples of a clip written by ffmpeg, read without starting a process;
    -1 when the file holds no sample table (cut off)."""
    return video_sample_count(path.read_bytes())
