"""The synthetic CMU-MOSEI release: layout, media formats, both label forms, quirks, faces, cues,
determinism, and the --ids-from corpora (planned at full scale, written small)."""
from __future__ import annotations

import hashlib
import json
import subprocess
from collections import Counter
from fractions import Fraction
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import soundfile as sf

from mer_data.corpora.mosei import (MOSEI_EMOTIONS, find_csd_labels, find_mturk_csvs, parse_segmented_transcript,
                                    read_csd_labels, read_mturk_labels)
from mer_data.corpora.splits import load_dai2021_lists, load_mosei_std_folds
from mer_data.media.faces import detect_face
from mer_data.media.video import frame_range
from mer_data.synth import faces
from mer_data.synth.mosei import TRUTH_FILE, synth_mosei, video_paths, write_annotations
from mer_data.synth.mosei_labels import STYLE_CODE
from mer_data.synth.mosei_plan import LONG_FORMAT, TINY_FORMAT, plan_release
from mer_data.synth.mosei_render import render_video
from mer_data.synth.text import EMOTION_WORDS
from tests.conftest import on_one_cpu

SEED = 5
# Five videos: one of each role (see mosei_plan.ROLES), so every quirk is in.
SMALL = dict(videos=5, seed=SEED)
EVERY_QUIRK = {
    "video_id_starts_with_dash", "video_id_starts_with_underscore", "separator_in_text", "trailing_spaces",
    "eleven_decimal_times", "negative_start", "overlapping_segments", "unlabelled_segments", "csd_only", "mturk_only",
    "black_segment", "partly_black_segment", "ends_past_media_end", "starts_past_media_end", "blank_lines",
    "unsorted_lines", "crlf", "mturk_path_prefix", "mturk_empty_rows", "csd_interval_without_segment",
    "mturk_clip_without_segment", "labels_without_transcript", "no_wav", "no_video_stream", "long_video", "formats",
}


def small_mosei_corpus(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(out, Raw/, truth) of the small default corpus, made once per test session: the truth file
    is written last, so a folder that has it is complete (tests/test_convert_mosei.py uses it too)."""
    out = tmp_path_factory.getbasetemp() / "synth-mosei-small"
    if not (out / TRUTH_FILE).is_file():
        synth_mosei(out, **SMALL)
    return out, out / "CMU_MOSEI" / "Raw", json.loads((out / TRUTH_FILE).read_text(encoding="utf-8"))


def small_sdk_corpus(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(out, Raw/, truth) of a tiny --ids-from sdk corpus: 3 fold videos and the 2 unfolded ones."""
    out = tmp_path_factory.getbasetemp() / "synth-mosei-sdk"
    if not (out / TRUTH_FILE).is_file():
        synth_mosei(out, ids_from="sdk", videos=3, seed=SEED, voice="synth")
    return out, out / "CMU_MOSEI" / "Raw", json.loads((out / TRUTH_FILE).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return small_mosei_corpus(tmp_path_factory)


def probe(path: Path) -> list[dict]:
    done = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-show_streams", f"file:{path}"],
                          capture_output=True, check=True, text=True)
    return json.loads(done.stdout)["streams"]


def frames_at(path: Path, indices: list[int]) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    found, index = [], 0
    try:
        while index <= max(indices):
            ok, frame = capture.read()
            if not ok:
                break
            if index in indices:
                found.append(frame)
            index += 1
    finally:
        capture.release()
    return found


# --------------------------------------------------------------------------------------------
# Layout and media


def test_release_layout_and_every_quirk(corpus):
    out, raw, truth = corpus
    assert raw == out / "CMU_MOSEI" / "Raw" and truth["release_root"] == "CMU_MOSEI/Raw"
    assert (out / "CMU_MOSEI" / "Labels" / "CMU_MOSEI_Labels.csd").is_file()
    assert find_csd_labels(raw) == out / "CMU_MOSEI" / "Labels" / "CMU_MOSEI_Labels.csd"
    assert [p.name for p in find_mturk_csvs(raw)] == ["mturk_batch_1.csv", "mturk_batch_2.csv"]
    assert set(truth["quirks"]) == EVERY_QUIRK
    assert set(truth["quirks"]["formats"]) == {"640x360@30", "1280x720@30000/1001", "480x360@25", "854x480@24"}
    for video_id, video in truth["videos"].items():
        assert (raw / video["files"]["transcript"]).is_file()
        assert (raw / video["files"]["video"]).is_file()
        assert (raw / video["files"]["audio"]).is_file() == video["has_wav"]


def test_videos_have_the_planned_size_rate_frames_and_an_aac_track(corpus):
    _, raw, truth = corpus
    # Both branches below are exercised: videos with a picture, and the audio-only one(s).
    assert {video["has_video_stream"] for video in truth["videos"].values()} == {True, False}
    for video_id, video in truth["videos"].items():
        streams = probe(raw / video["files"]["video"])
        kinds = [s["codec_type"] for s in streams]
        audio = next(s for s in streams if s["codec_type"] == "audio")
        assert audio["codec_name"] == "aac"
        if not video["has_video_stream"]:
            assert kinds == ["audio"], video_id
            continue
        stream = next(s for s in streams if s["codec_type"] == "video")
        expected = video["format"]
        assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", expected["width"], expected["height"])
        assert stream["r_frame_rate"] == expected["fps_fraction"]
        assert int(stream["nb_frames"]) == video["frames"]
        assert abs(float(stream["duration"]) - video["duration"]) < 1e-3


def test_the_long_video_lasts_ten_minutes(corpus):
    _, raw, truth = corpus
    (long_id,) = truth["quirks"]["long_video"]
    video = truth["videos"][long_id]
    assert video["duration"] >= 600 and video["frames"] == video["duration"] * LONG_FORMAT.fps
    labelled = [s for s in truth["segments"] if s["video"] == long_id and s["in_csd"]]
    assert max(s["end"] for s in labelled) > 570, "labels near the end of the long video"


def test_wavs_are_16k_mono_and_hold_the_speech(corpus):
    _, raw, truth = corpus
    assert any(video["has_wav"] for video in truth["videos"].values())
    heard = []
    for video_id, video in truth["videos"].items():
        if not video["has_wav"]:
            continue
        info = sf.info(raw / video["files"]["audio"])
        assert (info.samplerate, info.channels, info.frames) == (16000, 1, video["samples"])
        assert video["samples"] == round(video["duration"] * 16000)
        if video["repeats"] > 1:
            continue
        audio, _ = sf.read(raw / video["files"]["audio"])
        for segment in (s for s in truth["segments"] if s["video"] == video_id and s["media"] == "inside"):
            speech = audio[round(segment["read_start"] * 16000):round(segment["end"] * 16000)]
            assert np.sqrt(np.mean(speech ** 2)) > 0.01, segment["id"]
            heard.append(segment["id"])
    assert heard, "no segment's speech was checked"


def test_faces_are_found_and_black_segments_are_black(corpus):
    _, raw, truth = corpus
    searched = 0
    for video_id, video in truth["videos"].items():
        if not video["has_video_stream"]:
            continue
        fps = Fraction(video["format"]["fps_fraction"])
        black = {i for s in truth["segments"] if s["video"] == video_id and s["black"] != "none"
                 for i in range(*frame_range(s["read_start"], s["end"], fps))}
        sampled = [i for i in range(0, min(video["frames"], int(12 * fps)), int(fps)) if i not in black]
        assert sampled, video_id
        found = [detect_face(frame) is not None for frame in frames_at(raw / video["files"]["video"], sampled)]
        assert len(found) == len(sampled) and sum(found) >= 0.9 * len(found), video_id
        searched += 1
    assert searched > 0, "no video's faces were searched"
    blacks = 0
    for segment in truth["segments"]:
        if segment["black"] == "none":
            continue
        blacks += 1
        video = truth["videos"][segment["video"]]
        first, end = frame_range(segment["read_start"], segment["end"], Fraction(video["format"]["fps_fraction"]))
        early, late = frames_at(raw / video["files"]["video"], [first + 1, end - 2])
        assert late.max() < 40, "the last frames of a black segment are black"
        assert (early.max() < 40) == (segment["black"] == "full"), segment["id"]
    assert blacks > 0, "the corpus has no black segment to check"


def test_mouth_follows_the_speech(corpus):
    _, raw, truth = corpus
    video_id = truth["quirks"]["video_id_starts_with_dash"][0]
    video = truth["videos"][video_id]
    fps, width, height = video["format"]["fps"], video["format"]["width"], video["format"]["height"]
    audio, _ = sf.read(raw / video["files"]["audio"])
    x, y, w, h = faces.mouth_box((width, height))
    darkness, rms = [], []
    capture = cv2.VideoCapture(str(raw / video["files"]["video"]))
    for index in range(video["frames"]):
        ok, frame = capture.read()
        assert ok
        darkness.append(int((cv2.cvtColor(frame[y:y + h, x:x + w], cv2.COLOR_BGR2GRAY) < 50).sum()))
        centre = index / fps * 16000
        window = audio[max(0, round(centre - 8000 / fps)):round(centre + 8000 / fps)]
        rms.append(float(np.sqrt(np.mean(window ** 2))) if len(window) else 0.0)
    capture.release()
    assert np.corrcoef(darkness, rms)[0, 1] > 0.5


# --------------------------------------------------------------------------------------------
# Annotation files


def test_transcripts_hold_the_quirks_and_read_back_as_the_truth(corpus):
    _, raw, truth = corpus
    for video_id, video in truth["videos"].items():
        path = raw / video["files"]["transcript"]
        data = path.read_bytes()
        assert (b"\r\n" in data) == video["crlf"]
        lines = data.decode("utf-8").replace("\r\n", "\n").split("\n")[:-1]
        assert [number for number, line in enumerate(lines, 1) if not line] == video["blank_lines"]
        segments, problems, counts = parse_segmented_transcript(path, video["files"]["transcript"])
        assert problems == [] and counts["blank_lines"] == len(video["blank_lines"])
        expected = [s for s in truth["segments"] if s["video"] == video_id]
        assert [s.clip for s in segments] == video["line_order"]
        by_clip = {s.clip: s for s in segments}
        for segment in expected:
            line = lines[segment["transcript_line"] - 1]
            assert line == (f"{video_id}___{segment['clip']}___{segment['start_text']}___{segment['end_text']}___"
                            f"{segment['text']}" + " " * segment["trailing_spaces"])
            read = by_clip[segment["clip"]]
            assert (read.start, read.end, read.text, read.line) == (
                segment["read_start"], segment["end"], segment["text"], segment["transcript_line"])
            assert read.clamped == segment["clamped"]
    eleven = truth["quirks"]["eleven_decimal_times"]
    assert any(len(s["start_text"].rpartition(".")[2]) == 11 and s["start_text"][-4:] != "0000"
               for s in truth["segments"] if s["id"] in eleven), "times with digits beyond the 4th decimal"
    assert all("___" in s["text"] for s in truth["segments"] if s["id"] in truth["quirks"]["separator_in_text"])


def test_csd_is_in_the_sdk_layout_and_averages_the_mturk_rows(corpus):
    out, raw, truth = corpus
    path = out / "CMU_MOSEI" / "Labels" / "CMU_MOSEI_Labels.csd"
    with h5py.File(path, "r") as handle:
        assert list(handle) == ["All Labels"]
        root = handle["All Labels"]
        metadata = {key: json.loads(root["metadata"][key][0]) for key in root["metadata"]}
        assert metadata["dimension names"] == ["sentiment", *MOSEI_EMOTIONS]
        assert metadata["root name"] == "All Labels"
        for video_id in root["data"]:
            features, intervals = root["data"][video_id]["features"], root["data"][video_id]["intervals"]
            assert features.dtype == np.float32 and features.shape[1] == 7 and intervals.shape == (len(features), 2)
    csd, csd_problems = read_csd_labels(path)
    mturk, mturk_problems, stats = read_mturk_labels(find_mturk_csvs(raw), relative_to=raw)
    assert csd_problems == [] and mturk_problems == []
    # batch 1: a row of empty cells, a blank line, a returned HIT; batch 2: a blank line
    assert stats["empty_rows"] == 4 and set(stats["annotators_per_clip"]) == {3}
    unsorted = 0
    for segment in truth["segments"]:
        if segment["in_csd"]:
            row = csd[segment["video"]][segment["csd_row"]]
            assert [row.start, row.end] == segment["csd_interval"]
            assert row.sentiment == segment["label_csd"]["sentiment"]
            assert row.emotions == segment["label_csd"]["emotions"]
        if segment["in_mturk"]:
            label = mturk[(segment["video"], segment["clip"])]
            assert (label.file, label.line) == (segment["mturk_file"], segment["mturk_line"])
            assert label.sentiment == segment["label_mturk"]["sentiment"]
        if segment["in_csd"] and segment["in_mturk"]:  # the two forms agree (float32 rounding apart)
            for name in MOSEI_EMOTIONS:
                assert segment["label_csd"]["emotions"][name] == pytest.approx(
                    segment["label_mturk"]["emotions"][name], abs=1e-6)
            assert segment["label_csd"]["multi_hot"] == segment["label_mturk"]["multi_hot"]
    for video_id, rows in csd.items():
        unsorted += [r.start for r in rows] != sorted(r.start for r in rows)
    assert unsorted, "the .csd rows are not in time order"
    prefixed = {truth["videos"][v]["mturk_video_id"] for v in truth["quirks"]["mturk_path_prefix"]}
    assert any(p.startswith("videos/") for p in prefixed) and any(p.startswith("C:\\") for p in prefixed)
    batch = (raw / "Labels" / "mturk_batch_1.csv").read_text(encoding="utf-8")
    assert all(p in batch or p in (raw / "Labels" / "mturk_batch_2.csv").read_text(encoding="utf-8") for p in prefixed)


def test_labels_are_multi_label_and_follow_the_dominant_emotion():
    plan = plan_release(videos=40, seed=1, long_video_minutes=0)
    labelled = [s for script in plan.scripts for s in script.segments if s.ratings]
    assert len(labelled) > 150
    agree = sum(s.dominant is not None and MOSEI_EMOTIONS[int(np.argmax(np.mean([r.emotions for r in s.ratings], axis=0)))]
                == s.dominant for s in labelled)
    with_dominant = sum(s.dominant is not None for s in labelled)
    assert agree >= 0.9 * with_dominant, "the annotators rate the dominant emotion highest"
    present = [sum(np.mean([r.emotions for r in s.ratings], axis=0) > 0) for s in labelled]
    assert max(present) >= 2 and Counter(present)[0] > 0, "multi-label, and some neutral segments"


def test_each_modality_carries_the_emotion():
    """Text: the dominant emotion's words; voice and face: the profile's cues (IEMOCAP's)."""
    plan = plan_release(videos=60, seed=2, long_video_minutes=0)
    segments = [s for script in plan.scripts for s in script.segments if s.dominant is not None]
    words = {name: set(EMOTION_WORDS[STYLE_CODE[name]]) for name in MOSEI_EMOTIONS}
    hits = sum(bool(set(s.text.lower().strip(".!?").replace("___", "").split()) & words[s.dominant])
               for s in segments)
    assert 0.6 * len(segments) < hits < len(segments)
    by_emotion = {name: [s.style for s in segments if s.dominant == name] for name in ("happy", "sad", "anger")}
    assert np.mean([s.mouth_curve for s in by_emotion["happy"]]) > 0.4 > -0.4 > np.mean(
        [s.mouth_curve for s in by_emotion["sad"]])
    assert np.mean([s.energy for s in by_emotion["anger"]]) > 2 * np.mean([s.energy for s in by_emotion["sad"]])
    assert np.mean([s.brow_angle for s in by_emotion["anger"]]) > 10 > -10 > np.mean(
        [s.brow_angle for s in by_emotion["sad"]])


# --------------------------------------------------------------------------------------------
# Determinism and options


# A whole corpus that renders in seconds.
TINY = dict(ids_from="dai2021", videos=2, seed=3, voice="synth")


def _hashes(folder: Path, pattern: str = "*") -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob(pattern)) if p.is_file()}


def test_same_call_gives_identical_bytes(corpus, tmp_path):
    """The annotation files and a video's media made again are the same bytes; so is a whole
    tiny corpus made twice."""
    out, raw, truth = corpus
    plan = plan_release(**SMALL)
    again = tmp_path / "again" / "CMU_MOSEI" / "Raw"
    write_annotations(plan, again, SEED)
    for pattern in ("*.txt", "*.csv", "*.csd"):
        assert _hashes(again.parent, pattern) == _hashes(raw.parent, pattern) != {}
    script = next(s for s in plan.scripts if plan.roles.get(s.video_id) == "transcript_quirks")
    paths = video_paths(again, script.video_id)
    render_video(script, paths, truth["options"]["voice_engine"])
    for kind in ("video", "audio"):
        assert paths[kind].read_bytes() == video_paths(raw, script.video_id)[kind].read_bytes()
    synth_mosei(tmp_path / "a", **TINY)
    synth_mosei(tmp_path / "b", **TINY)
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")


def test_bytes_do_not_depend_on_the_number_of_cpus(tmp_path):
    # As for IEMOCAP: ffmpeg's BGR -> yuv420p conversion is sliced over as many threads as CPUs.
    synth_mosei(tmp_path / "all-cpus", **TINY)
    with on_one_cpu():
        synth_mosei(tmp_path / "one-cpu", **TINY)
    on_all = _hashes(tmp_path / "all-cpus")
    assert any(name.endswith(".mp4") for name in on_all)
    assert on_all == _hashes(tmp_path / "one-cpu")


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="videos must be at least 1"):
        synth_mosei(tmp_path, videos=0)
    with pytest.raises(ValueError, match="ids_from"):
        synth_mosei(tmp_path, ids_from="iemocap")
    with pytest.raises(ValueError, match="long_video_minutes"):
        synth_mosei(tmp_path, long_video_minutes=-1)
    (tmp_path / "CMU_MOSEI" / "Raw").mkdir(parents=True)  # looks like a real release: never overwritten
    with pytest.raises(FileExistsError):
        synth_mosei(tmp_path, videos=1, long_video_minutes=0)


# --------------------------------------------------------------------------------------------
# The --ids-from corpora


@pytest.fixture(scope="module")
def dai2021_plan():
    return plan_release(ids_from="dai2021")


def test_dai2021_plan_holds_exactly_the_published_utterances(dai2021_plan):
    plan = dai2021_plan
    labelled = {f"{script.video_id}_{s.clip}" for script in plan.scripts for s in script.segments if s.ratings}
    published = load_dai2021_lists("mosei")
    assert labelled == set(published) and len(labelled) == 20477
    assert Counter(published.values()) == {"train": 14524, "valid": 1765, "test": 4188}
    assert len(plan.scripts) == 3001 and all(s.format == TINY_FORMAT and s.tiny for s in plan.scripts)
    assert all(s.in_csd and s.in_mturk for script in plan.scripts for s in script.segments if s.ratings)


def test_sdk_plan_holds_every_fold_video_two_unlabelled_and_two_unfolded():
    plan = plan_release(ids_from="sdk")
    folds = load_mosei_std_folds()
    videos = {script.video_id: script for script in plan.scripts}
    assert set(folds) < set(videos) and len(videos) == len(folds) + 2
    unlabelled = [v for v, script in videos.items() if not any(s.ratings for s in script.segments)]
    assert len(unlabelled) == 2 and all(folds.get(v) == "test" for v in unlabelled)


def test_a_subset_takes_videos_from_every_split_and_plans_them_as_the_full_corpus(dai2021_plan, tmp_path_factory):
    full = {s.video_id: s for s in dai2021_plan.scripts}
    subset = plan_release(ids_from="dai2021", videos=9).scripts
    split_of = {utt.rpartition("_")[0]: split for utt, split in load_dai2021_lists("mosei").items()}
    assert len(subset) == 9 and Counter(split_of[s.video_id] for s in subset) == {"train": 3, "valid": 3, "test": 3}
    assert all(s == full[s.video_id] for s in subset)
    _, raw, truth = small_sdk_corpus(tmp_path_factory)
    assert len(truth["videos"]) == 3 + 2
    for video_id, video in truth["videos"].items():
        (stream,) = probe(raw / video["files"]["video"])
        assert (stream["codec_name"], stream["width"], stream["height"], stream["r_frame_rate"]) == (
            "mpeg4", TINY_FORMAT.width, TINY_FORMAT.height, "5/1")
