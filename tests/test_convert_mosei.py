"""`mer convert mosei` end to end on a hand-made two-video release (no synthetic MOSEI generator
yet): varied size and frame rate, downscaling, the WAV fallback, SDK .csd labels."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf

from tests.test_convert_iemocap import read_errors, read_samples

# video id -> (width, height, fps, seconds, has_wav); ids start with - and _ as real ones do.
VIDEOS = {"-vidA": (1280, 720, 30, 6.0, True), "_vidB": (640, 480, 25, 5.0, False)}
# video id -> [(clip, start, end, (sentiment, happy, sad, anger, surprise, disgust, fear))]
SEGMENTS = {
    "-vidA": [(0, 0.5, 2.25, (1.0, 2.0, 0, 0, 1 / 3, 0, 0)), (1, 3.0, 5.5, (-1.5, 0, 1.5, 0.5, 0, 0, 0))],
    "_vidB": [(0, 0.2, 2.0, (0.5, 1.0, 0, 0, 0, 0, 0)), (1, 2.5, 4.8, (-2.0, 0, 0, 2.0, 0, 1.0, 0))],
}


def _make_release(root: Path) -> Path:
    raw = root / "CMU_MOSEI" / "Raw"
    for folder in ("Videos/Full/Combined", "Audio/Full/WAV_16000", "Transcript/Segmented/Combined", "Labels"):
        (raw / folder).mkdir(parents=True)
    for vid, (width, height, fps, seconds, has_wav) in VIDEOS.items():
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc=size={width}x{height}:rate={fps}",
                        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(seconds),
                        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                        f"file:{raw / 'Videos/Full/Combined' / (vid + '.mp4')}"], check=True)
        if has_wav:
            t = np.arange(int(seconds * 16000)) / 16000
            sf.write(raw / "Audio/Full/WAV_16000" / f"{vid}.wav", 0.3 * np.sin(2 * np.pi * 220 * t), 16000,
                     subtype="PCM_16")
        lines = [f"{vid}___{clip}___{start}___{end}___words of clip {clip}" for clip, start, end, _ in SEGMENTS[vid]]
        (raw / "Transcript/Segmented/Combined" / f"{vid}.txt").write_text("\n".join(lines) + "\n")
    with h5py.File(raw / "Labels" / "CMU_MOSEI_Labels.csd", "w") as csd:
        group = csd.create_group("All Labels")
        for vid, segments in SEGMENTS.items():
            video = group.create_group(f"data/{vid}")
            video["features"] = np.array([labels for *_, labels in segments], dtype=np.float32)
            video["intervals"] = np.array([(start, end) for _, start, end, _ in segments], dtype=np.float64)
        group.create_group("metadata")
    return raw


@pytest.fixture(scope="module")
def mosei_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("mosei")
    raw = _make_release(root)
    out = root / "shards"
    run = subprocess.run([sys.executable, "-m", "mer_data.cli", "convert", "mosei", str(raw.parent), str(out),
                          "--split", "random:1", "--workers", "1", "--quiet"], capture_output=True, text=True)
    return raw, out, run


def test_every_labelled_segment_becomes_a_sample(mosei_shards):
    _, out, run = mosei_shards
    assert run.returncode == 0, run.stderr
    assert read_errors(out) == []
    samples = read_samples(out)
    assert set(samples) == {f"{vid}_{clip}" for vid, segs in SEGMENTS.items() for clip, *_ in segs}


def test_video_is_downscaled_at_source_rate_and_audio_falls_back(mosei_shards):
    _, out, _ = mosei_shards
    for key, sample in read_samples(out).items():
        meta = json.loads(sample["json"])
        vid, clip = key.rsplit("_", 1)
        width, height, fps, _, has_wav = VIDEOS[vid]
        _, start, end, labels = SEGMENTS[vid][int(clip)]
        assert meta["video"]["fps_fraction"] == f"{fps}/1"
        assert meta["video"]["height"] == 360 and abs(meta["video"]["width"] - width * 360 / height) <= 2
        assert abs(meta["video"]["frames"] - (end - start) * fps) <= 1
        audio, rate = sf.read(io.BytesIO(sample["flac"]))
        assert rate == 16000 and abs(len(audio) / rate - (end - start)) <= 0.001
        expected_audio = f"Audio/Full/WAV_16000/{vid}.wav" if has_wav else f"Videos/Full/Combined/{vid}.mp4"
        assert meta["sources"]["audio"] == expected_audio
        assert meta["label"]["sentiment"] == pytest.approx(labels[0], abs=1e-6)
        assert meta["label"]["multi_hot"] == [int(v > 0) for v in labels[1:]]
        assert meta["speaker"] == vid and meta["recording"] == vid


def test_split_by_video_and_card_counts_emotions(mosei_shards):
    _, out, _ = mosei_shards
    card = json.loads((out / "dataset.json").read_text())
    by_video = {}
    for key, sample in read_samples(out).items():
        by_video.setdefault(key.rsplit("_", 1)[0], set()).add(json.loads(sample["json"])["split"])
    assert all(len(splits) == 1 for splits in by_video.values())
    present = sum(int(v > 0) for segs in SEGMENTS.values() for *_, labels in segs for v in labels[1:])
    assert sum(sum(c.values()) for c in card["counts"]["per_split_label"].values()) == present
