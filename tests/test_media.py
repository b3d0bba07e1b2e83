"""The media cutter on small generated sources whose content says where it came from.

The source video carries its frame index as a row of black/white 16x16 blocks in each half (so
the first and last frame of every clip can be checked), and its halves have different colours
(so the speaker's region can be checked). The source audio has a distinct sample counter per
channel (so every cut can be compared sample by sample).
"""
from __future__ import annotations

import hashlib
import json
import math
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mer_data.media import MediaError, MediaNotFoundError, cut_recording, probe_media
from mer_data.media import graph as graph_module
from mer_data.media import video as video_module
from mer_data.media.faces import DETECTOR_NAME
from mer_data.media.video import clip_geometry, face_sample_frames, frame_range
from mer_data.records import CutRequest

FPS = Fraction(30000, 1001)
WIDTH, HEIGHT, FRAMES = 320, 240, 180  # 6.006 s
AUDIO_SECONDS = 6.5
RATE = 16000
LEFT_BGR, RIGHT_BGR = (40, 40, 200), (200, 60, 40)
COUNTER_BITS, COUNTER_TOP, BLOCK = 9, 208, 16

# Two speakers talking over each other, and a full-frame mixed-down one.
RIGHT = CutRequest("Ses01F_impro01_M000", 1.0, 2.5, "right", 1)
LEFT = CutRequest("Ses01F_impro01_F001", 2.0, 3.2, "left", 0)
FULL = CutRequest("-dash_start_3", 4.2, 5.0, "full", None)


# --- sources ---------------------------------------------------------------------------------

def source_frame(index: int) -> np.ndarray:
    frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    frame[:, : WIDTH // 2] = LEFT_BGR
    frame[:, WIDTH // 2:] = RIGHT_BGR
    for half in (0, WIDTH // 2):
        for bit in range(COUNTER_BITS):
            x = half + bit * BLOCK
            frame[COUNTER_TOP:COUNTER_TOP + BLOCK, x:x + BLOCK] = 255 if index >> bit & 1 else 0
    return frame


def write_video(path: Path) -> None:
    """An MPEG-4 AVI like IEMOCAP's DivX files, at 30000/1001 fps."""
    command = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{WIDTH}x{HEIGHT}",
               "-framerate", "30000/1001", "-i", "pipe:0", "-c:v", "mpeg4", "-q:v", "2", "-g", "15", str(path)]
    frames = b"".join(source_frame(index).tobytes() for index in range(FRAMES))
    subprocess.run(command, input=frames, check=True)


def stereo_counters(samples: int) -> np.ndarray:
    """Channel 0 and 1 hold different sample counters (as int16), so every offset is visible."""
    index = np.arange(samples, dtype=np.int64)
    left = index % 20011 - 10000
    right = (index * 7) % 65536 - 32768
    return np.stack([left, right], axis=1).astype(np.int16)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sources")
    write_video(root / "dialog.avi")
    sf.write(root / "dialog.wav", stereo_counters(int(AUDIO_SECONDS * RATE)), RATE, subtype="PCM_16")
    return {"video": root / "dialog.avi", "audio": root / "dialog.wav", "root": root}


@pytest.fixture(scope="module")
def cut(sources, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("cut")
    results, problems = cut_recording(sources["video"], sources["audio"], [RIGHT, LEFT, FULL], out_dir,
                                      rel_video="dialog/avi/dialog.avi", rel_audio="dialog/wav/dialog.wav")
    return {result.key: result for result in results}, problems, out_dir


# --- reading clips back ----------------------------------------------------------------------

def decode(mp4: Path) -> np.ndarray:
    width, height = (int(v) for v in ffprobe_stream(mp4, "width,height").split(","))
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(mp4), "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def ffprobe_stream(path: Path, entries: str, *extra: str) -> str:
    command = ["ffprobe", "-v", "error", "-select_streams", "v:0", *extra, "-show_entries", f"stream={entries}",
               "-of", "csv=p=0", str(path)]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def counted_frames(mp4: Path) -> int:
    return int(ffprobe_stream(mp4, "nb_read_frames", "-count_frames"))


def frame_counter(frame: np.ndarray) -> int:
    """The source frame index written into the left edge of a clip (either half of the source)."""
    row = frame[COUNTER_TOP + BLOCK // 2]
    bits = [row[bit * BLOCK + BLOCK // 2].mean() > 128 for bit in range(COUNTER_BITS)]
    return sum(1 << bit for bit, on in enumerate(bits) if on)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def problems_by_key(problems) -> dict[str, str]:
    return {problem.utterance: problem.reason for problem in problems}


# --- pure arithmetic -------------------------------------------------------------------------

def test_frame_range_takes_frames_whose_timestamps_fall_in_the_interval():
    assert frame_range(1.0, 2.5, FPS) == (30, 75)  # 29.97 -> 30, 74.925 -> 75 (exclusive)
    # A time exactly on a frame (frame 30 is at 1.001 s) starts there despite float noise.
    assert frame_range(30 * 1001 / 30000, 1.5, FPS)[0] == 30
    assert frame_range(2.0, 2.0, FPS) == (60, 61)  # never an empty clip


def test_face_samples_are_the_nearest_clip_frames_every_interval():
    assert face_sample_frames(45, FPS, 500) == (0, 15, 30)  # 0, 14.985, 29.97; 44.955 rounds past
    assert face_sample_frames(3, FPS, 10) == (0, 1, 2)  # intervals below a frame: each frame once


def test_clip_geometry_crops_halves_to_even_sizes_and_scales_keeping_aspect():
    assert clip_geometry(720, 480, "left", None).crop == [0, 0, 360, 480]
    assert clip_geometry(720, 480, "right", None).crop == [360, 0, 360, 480]
    assert clip_geometry(721, 481, "right", None).crop == [360, 0, 360, 480]  # 1 px dropped each way
    assert clip_geometry(722, 480, "right", None).crop == [362, 0, 360, 480]  # chroma needs an even x
    scaled = clip_geometry(720, 480, "left", 240)
    assert (scaled.out_width, scaled.out_height, scaled.crop) == (180, 240, [0, 0, 360, 480])
    assert not clip_geometry(720, 480, "full", 480).scaled


# --- probing ---------------------------------------------------------------------------------

def test_probe_media_reports_exact_rate_and_stream_facts(sources, tmp_path):
    video = probe_media(sources["video"])["video"]
    assert (video["width"], video["height"], video["frames"]) == (WIDTH, HEIGHT, FRAMES)
    assert video["fps"] == FPS and video["fps_fraction"] == "30000/1001"
    audio = probe_media(sources["audio"])
    assert audio["video"] is None
    assert (audio["audio"]["sample_rate"], audio["audio"]["channels"]) == (RATE, 2)
    assert audio["duration"] == pytest.approx(AUDIO_SECONDS)
    with pytest.raises(MediaNotFoundError):
        probe_media(tmp_path / "absent.avi")
    (tmp_path / "garbage.avi").write_bytes(b"not a video at all" * 100)
    with pytest.raises(MediaError, match="cannot read media file"):
        probe_media(tmp_path / "garbage.avi")


# --- audio -----------------------------------------------------------------------------------

def test_audio_is_the_exact_samples_of_the_requested_channel(cut):
    results, problems, _ = cut
    assert problems == []
    result = results[RIGHT.key]
    first, last = round(RIGHT.start * RATE), round(RIGHT.end * RATE)
    assert result.audio == {"sample_rate": RATE, "samples": last - first, "duration": (last - first) / RATE,
                            "channel": 1, "source_start_sample": first, "source_end_sample": last}
    assert abs(result.audio["duration"] - (RIGHT.end - RIGHT.start)) < 0.001
    samples, rate = sf.read(result.flac, dtype="int16")
    assert rate == RATE and sf.info(result.flac).subtype == "PCM_16" and samples.ndim == 1
    np.testing.assert_array_equal(samples, stereo_counters(last)[first:, 1])


def test_audio_without_a_channel_is_the_rounded_mean_of_all(cut):
    result = cut[0][FULL.key]
    first, last = round(FULL.start * RATE), round(FULL.end * RATE)
    both = stereo_counters(last)[first:].astype(np.float64)
    samples, _ = sf.read(result.flac, dtype="int16")
    np.testing.assert_array_equal(samples, np.round(both.mean(axis=1)).astype(np.int16))
    assert result.audio["channel"] is None


def test_audio_at_another_rate_is_resampled_to_16k(sources, tmp_path):
    seconds = np.arange(int(2.0 * 48000)) / 48000
    sf.write(tmp_path / "48k.wav", (0.5 * np.sin(2 * np.pi * 440 * seconds) * 32767).astype(np.int16), 48000)
    request = CutRequest("u", 0.25, 1.25, "full", None)
    results, problems = cut_recording(sources["video"], tmp_path / "48k.wav", [request], tmp_path / "out")
    assert problems == []
    samples, rate = sf.read(results[0].flac)
    assert rate == RATE and len(samples) == results[0].audio["samples"] == RATE
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.argmax(spectrum) * RATE / len(samples) == pytest.approx(440, abs=2)


# --- video -----------------------------------------------------------------------------------

def test_video_clip_holds_exactly_the_interval_frames_of_the_speaker_half(cut):
    result = cut[0][RIGHT.key]
    first, end = frame_range(RIGHT.start, RIGHT.end, FPS)
    assert result.video == {
        "fps": float(FPS), "fps_fraction": "30000/1001", "frames": end - first, "first_frame": first,
        "width": WIDTH // 2, "height": HEIGHT, "crop": [WIDTH // 2, 0, WIDTH // 2, HEIGHT], "region": "right",
        "duration": float((end - first) / FPS), "start_time": float(first / FPS),
        "rotation": 0, "source_decode_errors": 0,
    }
    assert counted_frames(result.mp4) == end - first
    assert abs(result.video["frames"] - (RIGHT.end - RIGHT.start) * FPS) <= 1
    frames = decode(result.mp4)
    assert (frame_counter(frames[0]), frame_counter(frames[-1])) == (first, end - 1)
    assert np.allclose(frames[:, :100].reshape(-1, 3).mean(axis=0), RIGHT_BGR, atol=6)


def test_overlapping_utterances_are_both_cut_correctly(cut):
    result = cut[0][LEFT.key]
    first, end = frame_range(LEFT.start, LEFT.end, FPS)
    assert first < frame_range(RIGHT.start, RIGHT.end, FPS)[1]  # the two really overlap
    frames = decode(result.mp4)
    assert len(frames) == result.video["frames"] == end - first
    assert (frame_counter(frames[0]), frame_counter(frames[-1])) == (first, end - 1)
    assert np.allclose(frames[:, :100].reshape(-1, 3).mean(axis=0), LEFT_BGR, atol=6)
    assert result.video["crop"] == [0, 0, WIDTH // 2, HEIGHT]


def test_full_region_and_face_samples(cut):
    result = cut[0][FULL.key]
    assert result.video["crop"] == [0, 0, WIDTH, HEIGHT] and result.video["width"] == WIDTH
    assert result.faces["detector"] == DETECTOR_NAME and result.faces["interval_ms"] == 500
    expected = face_sample_frames(result.video["frames"], FPS, 500)
    assert [entry["frame"] for entry in result.faces["frames"]] == list(expected)
    assert [entry["time"] for entry in result.faces["frames"]] == [float(i / FPS) for i in expected]
    # Flat colours hold no face.
    assert result.faces["detection_rate"] == 0.0
    assert all(entry["box"] is None for entry in result.faces["frames"])
    json.dumps([result.audio, result.video, result.faces])  # plain JSON types only


def test_max_height_scales_the_clip_and_faces_are_found_in_clip_pixels(sources, tmp_path, monkeypatch):
    seen_shapes, seen_near = [], []

    def fake_detector(image, near=None):
        seen_shapes.append(image.shape)
        seen_near.append(near)
        return [1, 2, 3 + len(seen_shapes), 4] if len(seen_shapes) % 2 else None  # a face in every other sample

    monkeypatch.setattr(video_module, "detect_face", fake_detector)
    request = CutRequest("scaled", 0.5, 2.5, "left", 0)
    results, problems = cut_recording(sources["video"], sources["audio"], [request], tmp_path,
                                      max_height=120, frame_interval_ms=250)
    assert problems == []
    video, faces = results[0].video, results[0].faces
    assert (video["width"], video["height"], video["crop"]) == (80, 120, [0, 0, WIDTH // 2, HEIGHT])
    assert ffprobe_stream(results[0].mp4, "width,height") == "80,120"
    assert counted_frames(results[0].mp4) == video["frames"]
    assert set(seen_shapes) == {(120, 80)}
    assert len(faces["frames"]) == len(face_sample_frames(video["frames"], FPS, 250)) == len(seen_shapes)
    assert [entry["box"] for entry in faces["frames"][:3]] == [[1, 2, 4, 4], None, [1, 2, 6, 4]]
    assert faces["detection_rate"] == pytest.approx(math.ceil(len(seen_shapes) / 2) / len(seen_shapes))
    # Each sample is searched near the clip's latest face, in frame order (a miss keeps the last one).
    assert seen_near[:4] == [None, [1, 2, 4, 4], [1, 2, 4, 4], [1, 2, 6, 4]]


def test_cutting_twice_gives_identical_bytes(sources, cut, tmp_path):
    results, _ = cut_recording(sources["video"], sources["audio"], [RIGHT], tmp_path)
    first_run = cut[0][RIGHT.key]
    assert sha256(results[0].mp4) == sha256(first_run.mp4)
    assert sha256(results[0].flac) == sha256(first_run.flac)


# --- problems --------------------------------------------------------------------------------

@pytest.fixture
def truncated(sources, tmp_path) -> Path:
    """The source video cut to its first 60% of bytes (roughly the first 100 frames)."""
    data = sources["video"].read_bytes()
    path = tmp_path / "truncated.avi"
    path.write_bytes(data[: int(len(data) * 0.6)])
    return path


def test_truncated_video_rejects_only_the_utterances_past_the_cut(sources, truncated, tmp_path):
    early, late = CutRequest("early", 0.5, 2.0, "left", 0), CutRequest("late", 4.0, 5.0, "right", 1)
    out_dir = tmp_path / "out"
    results, problems = cut_recording(truncated, sources["audio"], [early, late], out_dir,
                                      rel_video="dialog/avi/dialog.avi")
    assert [result.key for result in results] == ["early"]
    assert counted_frames(results[0].mp4) == results[0].video["frames"]
    [problem] = problems
    where = (problem.utterance, problem.file, problem.stage, problem.line)
    assert where == ("late", "dialog/avi/dialog.avi", "media", None)
    assert problem.reason.startswith("video ends at ") and "before the utterance end 5.000 s" in problem.reason
    assert "0x" not in problem.reason  # no run-dependent pointer from the decoder's log
    assert sorted(path.name for path in out_dir.iterdir()) == ["early.flac", "early.mp4"]


def test_missing_or_unreadable_audio_is_a_problem_for_every_utterance(sources, tmp_path):
    results, problems = cut_recording(sources["video"], tmp_path / "absent.wav", [RIGHT, LEFT], tmp_path / "out",
                                      rel_audio="dialog/wav/absent.wav")
    assert results == []
    assert [(p.utterance, p.file, p.reason) for p in problems] == [
        (RIGHT.key, "dialog/wav/absent.wav", "audio file not found"),
        (LEFT.key, "dialog/wav/absent.wav", "audio file not found"),
    ]
    assert list((tmp_path / "out").iterdir()) == []
    (tmp_path / "bad.wav").write_bytes(b"RIFF and then nothing sensible" * 50)
    _, problems = cut_recording(sources["video"], tmp_path / "bad.wav", [RIGHT], tmp_path / "out", rel_audio="s1/bad.wav")
    assert [(p.file, p.reason) for p in problems] == [
        ("s1/bad.wav", "cannot read media file s1/bad.wav: Invalid data found when processing input")]


def test_missing_or_video_less_source_is_a_problem_for_every_utterance(sources, tmp_path):
    _, problems = cut_recording(tmp_path / "absent.avi", sources["audio"], [RIGHT, LEFT], tmp_path / "a")
    assert [(p.utterance, p.reason) for p in problems] == [(RIGHT.key, "video file not found"),
                                                           (LEFT.key, "video file not found")]
    _, problems = cut_recording(sources["audio"], sources["audio"], [RIGHT], tmp_path / "b", rel_video="x.wav")
    assert [(p.utterance, p.file, p.reason) for p in problems] == [(RIGHT.key, "x.wav", "no video stream in the file")]
    # audio=None takes the video's own audio track, which this AVI does not have.
    _, problems = cut_recording(sources["video"], None, [RIGHT], tmp_path / "c", rel_video="v.avi")
    assert [(p.file, p.reason) for p in problems] == [("v.avi", "no audio stream in the file")]
    assert list((tmp_path / "a").iterdir()) == list((tmp_path / "b").iterdir()) == []


def test_intervals_past_the_end_and_invalid_requests_are_problems(sources, tmp_path):
    requests = [
        CutRequest("past_audio", 6.0, 7.0, "left", 0),  # audio ends at 6.5 s
        CutRequest("past_video", 5.8, 6.4, "left", 0),  # video ends at 6.006 s, audio is fine
        CutRequest("backwards", 2.0, 1.0, "left", 0),
        CutRequest("bad_region", 1.0, 2.0, "middle", 0),
        CutRequest("twice", 1.0, 2.0, "left", 0),
        CutRequest("twice", 3.0, 4.0, "left", 0),
        CutRequest("k" * 300, 1.0, 2.0, "left", 0),
        CutRequest("fine", 1.0, 1.5, "left", 2),  # no channel 2 in a stereo file
    ]
    results, problems = cut_recording(sources["video"], sources["audio"], requests, tmp_path)
    assert results == []
    reasons = problems_by_key(problems)
    assert list(reasons) == ["past_audio", "past_video", "backwards", "bad_region", "twice", "k" * 300, "fine"]
    assert reasons["past_audio"] == "interval [6.0, 7.0] ends past the audio end (6.500 s)"
    assert reasons["past_video"] == "interval [5.8, 6.4] ends past the video end (6.006 s, 180 frames)"
    assert reasons["backwards"].startswith("invalid interval")
    assert "unknown video region" in reasons["bad_region"]
    assert reasons["twice"] == "utterance key appears 2 times in this recording"
    assert "too long for a file name" in reasons["k" * 300]
    assert "channel 2" in reasons["fine"]
    assert list(tmp_path.iterdir()) == []


def test_an_utterance_ending_one_sample_and_one_frame_past_the_end_is_clamped(sources, tmp_path):
    audio = tmp_path / "short.wav"
    sf.write(audio, stereo_counters(96160), RATE, subtype="PCM_16")  # 6.01 s
    request = CutRequest("to_the_end", 5.5, 6.01 + 0.6 / RATE, "right", 1)  # sample 96161, frame 181
    results, problems = cut_recording(sources["video"], audio, [request], tmp_path / "out")
    assert problems == []
    assert results[0].audio["source_end_sample"] == 96160
    assert results[0].video["first_frame"] + results[0].video["frames"] == FRAMES
    assert counted_frames(results[0].mp4) == results[0].video["frames"]


def test_a_failing_encoder_costs_only_its_own_utterance(sources, tmp_path, monkeypatch):
    real_options = graph_module._encoder_options

    def broken_for_left(lane, fps, encoding):
        options = real_options(lane, fps, encoding)
        if any(plan.key == LEFT.key for plan in lane):
            options["crf"] = "not-a-number"
        return options

    monkeypatch.setattr(graph_module, "_encoder_options", broken_for_left)
    results, problems = cut_recording(sources["video"], sources["audio"], [RIGHT, LEFT], tmp_path)
    assert [result.key for result in results] == [RIGHT.key]
    assert [problem.utterance for problem in problems] == [LEFT.key]
    assert problems[0].reason.startswith("video encoder failed: ")
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"{RIGHT.key}.flac", f"{RIGHT.key}.mp4"]


def test_many_utterances_of_one_side_adjacent_and_overlapping_are_each_frame_accurate(sources, tmp_path):
    # A and B touch (B starts on the frame after A's last), C overlaps B, D follows later: one
    # encoder lane cuts A, B and D into separate files, C needs a second lane.
    requests = [CutRequest("A", 0.5, 1.0, "left", 0), CutRequest("B", 1.0, 1.6, "left", 0),
                CutRequest("C", 1.2, 2.0, "left", 0), CutRequest("D", 2.5, 3.0, "left", 0),
                CutRequest("E", 0.7, 1.4, "right", 1)]
    results, problems = cut_recording(sources["video"], sources["audio"], requests, tmp_path)
    assert problems == []
    assert [result.key for result in results] == ["A", "B", "C", "D", "E"]
    for request, result in zip(requests, results):
        first, end = frame_range(request.start, request.end, FPS)
        frames = decode(result.mp4)
        assert (result.video["first_frame"], result.video["frames"], len(frames)) == (first, end - first, end - first)
        assert [frame_counter(frame) for frame in frames] == list(range(first, end))
        expected = face_sample_frames(end - first, FPS, 500)
        assert [entry["frame"] for entry in result.faces["frames"]] == list(expected)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        f"{request.key}.{ext}" for request in requests for ext in ("flac", "mp4"))


def test_lanes_hold_non_overlapping_utterances_of_one_region():
    source = video_module.VideoSource(Path("x.avi"), WIDTH, HEIGHT, FPS, FRAMES)

    def plan(key, start, end, region):
        return video_module.plan_clip(key, start, end, region, source, Path(f"{key}.mp4"), max_height=None,
                                      interval_ms=500)

    plans = [plan("b", 1.0, 1.6, "left"), plan("a", 0.5, 1.0, "left"), plan("c", 1.2, 2.0, "left"),
             plan("r", 1.2, 2.0, "right"), plan("d", 2.5, 3.0, "left")]
    lanes = graph_module.assign_lanes(plans)
    assert [[p.key for p in lane] for lane in lanes] == [["a", "b", "d"], ["c"], ["r"]]


def test_truncation_inside_a_lane_keeps_the_clips_before_the_cut(sources, truncated, tmp_path):
    # Same side, no overlap: one encoder lane whose stream is cut off in its second clip.
    early, late = CutRequest("early", 0.5, 2.0, "left", 0), CutRequest("late", 2.5, 5.0, "left", 0)
    out_dir = tmp_path / "out"
    results, problems = cut_recording(truncated, sources["audio"], [early, late], out_dir)
    assert [result.key for result in results] == ["early"]
    frames = decode(results[0].mp4)
    first, end = frame_range(early.start, early.end, FPS)
    assert [frame_counter(frame) for frame in frames] == list(range(first, end))
    assert [problem.utterance for problem in problems] == ["late"]
    assert problems[0].reason.startswith("video ends at ") and "before the utterance end 5.000 s" in problems[0].reason
    assert sorted(path.name for path in out_dir.iterdir()) == ["early.flac", "early.mp4"]


# --- real-world videos: variable frame rate, display rotation, decoder damage ------------------

def write_silence(path: Path, seconds: float) -> Path:
    sf.write(path, np.zeros(int(seconds * RATE), np.int16), RATE, subtype="PCM_16")
    return path


def dominant_colours(frames: np.ndarray) -> list[str]:
    """"b", "g" or "r" for each frame: the channel with the highest mean (the frames are BGR)."""
    return ["bgr"[int(np.argmax(frame.reshape(-1, 3).mean(axis=0)))] for frame in frames]


@pytest.fixture(scope="module")
def vfr_video(tmp_path_factory) -> Path:
    """An H.264 MP4 whose frame rate changes like a phone's: red at 30 fps for 0-3 s, blue at
    5 fps for 3-8 s, green at 10 fps for 8-13 s. Its 165 frames at the nominal 30 fps would
    last 5.5 s; its timestamps run to 12.9 s (the last frame's duration is unknown)."""
    path = tmp_path_factory.mktemp("vfr") / "vfr.mp4"
    inputs = []
    for colour, rate, seconds in (("red", 30, 3), ("blue", 5, 5), ("green", 10, 5)):
        inputs += ["-f", "lavfi", "-i", f"color={colour}:size=64x48:rate={rate}:duration={seconds}"]
    subprocess.run(["ffmpeg", "-v", "error", "-y", *inputs, "-filter_complex", "concat=n=3:v=1",
                    "-c:v", "libx264", "-bf", "0", "-fps_mode", "passthrough", str(path)], check=True)
    assert ffprobe_stream(path, "r_frame_rate,nb_frames") == "30/1,165"  # what misled the frame count
    return path


def test_a_variable_frame_rate_video_lasts_as_long_as_its_timestamps(vfr_video):
    source = video_module.VideoSource.probe(vfr_video)
    assert source.fps == 30
    assert float(source.frames / source.fps) == pytest.approx(12.9, abs=0.04)


def test_a_variable_frame_rate_video_is_cut_by_time_up_to_its_end(vfr_video, tmp_path):
    # Both utterances lie past 5.5 s, where 165 frames at 30 fps would end.
    switch, late = CutRequest("switch", 7.5, 8.5, "full", None), CutRequest("late", 11.0, 12.92, "full", None)
    results, problems = cut_recording(vfr_video, write_silence(tmp_path / "a.wav", 13.0), [switch, late],
                                      tmp_path / "out")
    assert problems == []
    clips = {result.key: result for result in results}
    assert sorted(clips) == ["late", "switch"]
    # Frames i/30 in [7.5, 8.5): 225..254, blue before 8 s and green from 8 s on.
    assert clips["switch"].video["frames"] == 30
    assert dominant_colours(decode(clips["switch"].mp4)) == ["b"] * 15 + ["g"] * 15
    # Up to the last frame (12.9 s): 330..386, all green, one frame past the end clamped.
    late_frames = decode(clips["late"].mp4)
    assert clips["late"].video["frames"] == len(late_frames) == 387 - 330
    assert set(dominant_colours(late_frames)) == {"g"}


@pytest.fixture(scope="module")
def rotated_video(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """(an MP4 of 64x48 frames with a display rotation, its frame as coded): four quadrants
    red, green / blue, white, so that every turn and flip shows."""
    root = tmp_path_factory.mktemp("rotated")
    frame = np.empty((48, 64, 3), np.uint8)
    frame[:24, :32], frame[:24, 32:] = (0, 0, 255), (0, 255, 0)
    frame[24:, :32], frame[24:, 32:] = (255, 0, 0), (255, 255, 255)
    plain, rotated = root / "plain.mp4", root / "rotated.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", "64x48", "-framerate",
                    "10", "-i", "pipe:0", "-c:v", "libx264", "-pix_fmt", "yuv444p", str(plain)],
                   input=frame.tobytes() * 20, check=True)
    # This ffmpeg writes the display matrix from the `rotate` tag when stream-copying.
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90",
                    str(rotated)], check=True)
    return rotated, frame


def quadrant_colours(frame: np.ndarray) -> list[str]:
    """The colour at the centre of each quadrant, row by row: r, g, b or w."""
    height, width = frame.shape[:2]
    names = {(0, 0, 1): "r", (0, 1, 0): "g", (1, 0, 0): "b", (1, 1, 1): "w"}
    return [names[tuple(int(value > 128) for value in frame[y, x])]
            for y in (height // 4, 3 * height // 4) for x in (width // 4, 3 * width // 4)]


def test_a_rotated_video_is_cut_as_displayed_and_its_rotation_recorded(rotated_video, tmp_path):
    path, coded = rotated_video
    full, left = CutRequest("full", 0.5, 1.5, "full", None), CutRequest("left", 0.5, 1.0, "left", None)
    results, problems = cut_recording(path, write_silence(tmp_path / "a.wav", 2.0), [full, left], tmp_path / "out")
    assert problems == []
    clips = {result.key: result for result in results}
    rotation = clips["full"].video["rotation"]
    assert rotation == probe_media(path)["video"]["rotation"] and rotation in (90, 270)
    displayed = np.rot90(coded, k=-rotation // 90)  # np.rot90 turns counter-clockwise
    assert displayed.shape[:2] == (64, 48)
    frames = decode(clips["full"].mp4)
    assert (clips["full"].video["width"], clips["full"].video["height"]) == (48, 64) == frames.shape[2:0:-1]
    assert len(frames) == 10
    assert {tuple(quadrant_colours(frame)) for frame in frames} == {tuple(quadrant_colours(displayed))}
    # The left half of the displayed frame, not of the coded one.
    assert clips["left"].video["crop"] == [0, 0, 24, 64]
    assert quadrant_colours(decode(clips["left"].mp4)[0]) == quadrant_colours(displayed[:, :24])


def test_ordinary_sources_record_no_rotation_and_no_decode_errors(cut):
    results, _, _ = cut
    assert results and all(r.video["rotation"] == 0 and r.video["source_decode_errors"] == 0
                           for r in results.values())


def test_clips_of_a_damaged_source_carry_its_decode_error_count(sources, tmp_path):
    data = bytearray(sources["video"].read_bytes())
    for offset in range(len(data) // 3, len(data) // 2, 97):  # scattered damage in the middle third
        data[offset] ^= 0x55
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(bytes(data))
    decoder_log = subprocess.run(["ffmpeg", "-v", "error", "-threads", "1", "-i", str(damaged), "-f", "null", "-"],
                                 capture_output=True, text=True, check=True).stderr
    assert decoder_log.count("\n") > 10  # the decoder complains, and still decodes to the end
    results, problems = cut_recording(damaged, sources["audio"], [RIGHT, FULL], tmp_path / "out")
    assert problems == [] and len(results) == 2
    assert all(result.video["source_decode_errors"] > 10 for result in results)
