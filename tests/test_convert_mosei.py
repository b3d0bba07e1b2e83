"""`mer convert mosei` end to end: on a hand-made two-video release (varied size and frame rate,
downscaling, the WAV fallback, SDK .csd labels), then on synthetic releases (`mer synth mosei`),
checked quirk by quirk against their ground truth (synth_truth.json): the exact samples, labels
(.csd and MTurk forms), times and errors; the dai2021 and sdk splits; the shard readers."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mer_data.media.video import frame_range
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


def segment_keys() -> set[str]:
    """The sample key of every labelled segment of the release."""
    return {f"{vid}_{clip}" for vid, segs in SEGMENTS.items() for clip, *_ in segs}


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
    assert set(samples) == segment_keys()


def test_video_is_downscaled_at_source_rate_and_audio_falls_back(mosei_shards):
    _, out, _ = mosei_shards
    samples = read_samples(out)
    assert set(samples) == segment_keys()
    for key, sample in samples.items():
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
    assert set(by_video) == set(SEGMENTS)  # every video was seen
    assert all(len(splits) == 1 for splits in by_video.values())
    present = sum(int(v > 0) for segs in SEGMENTS.values() for *_, labels in segs for v in labels[1:])
    assert sum(sum(c.values()) for c in card["counts"]["per_split_label"].values()) == present


# --------------------------------------------------------------------------------------------
# Synthetic releases (mer synth mosei), checked against their ground truth

CSD_FILE = "../Labels/CMU_MOSEI_Labels.csd"


def mer(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mer_data.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def scheduler():
    """One Dask cluster for the conversions below (through --scheduler), so each does not start its own."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, scheduler):
    """(Raw/, truth, shards, run) of the small synthetic corpus converted with the .csd labels."""
    from tests.test_synth_mosei import small_mosei_corpus

    _, raw, truth = small_mosei_corpus(tmp_path_factory)
    out = tmp_path_factory.mktemp("synthetic-shards")
    run = mer("convert", "mosei", raw, out, "--split", "random:2", "--scheduler", scheduler, "--shard-max-count", "8",
              "--quiet")
    return raw, truth, out, run


def labelled(truth: dict, form: str) -> list[dict]:
    """The segments a reader of the `form` labels ("csd" or "mturk") makes utterances of."""
    return [s for s in truth["segments"] if s[f"in_{form}"]]


def expected_samples(truth: dict, form: str) -> set[str]:
    """Utterances whose media can be cut: inside the media, of a video with a video stream."""
    return {s["id"] for s in labelled(truth, form)
            if s["media"] == "inside" and truth["videos"][s["video"]]["has_video_stream"]}


def expected_media_errors(truth: dict, form: str) -> list[dict]:
    errors = []
    for segment in labelled(truth, form):
        video = truth["videos"][segment["video"]]
        if segment["media"] != "inside":  # the audio is cut first: its end is what the interval passes
            reason = (f"interval [{segment['read_start']}, {segment['end']}] ends past the audio end "
                      f"({video['samples'] / 16000:.3f} s)")
            errors.append(error(segment["id"], video["files"]["audio"], None, reason, "media"))
        elif not video["has_video_stream"]:
            errors.append(error(segment["id"], video["files"]["video"], None, "no video stream in the file", "media"))
    return errors


def error(utterance, file, line, reason, stage) -> dict:
    return {"utterance": utterance, "file": file, "line": line, "reason": reason, "stage": stage}


def no_transcript_reason(video: dict) -> str:
    return (f"video {video['video']} has {len(video['clips'])} labelled segment(s) but no transcript file "
            f"Transcript/Segmented/Combined/{video['video']}.txt")


def expected_csd_errors(truth: dict) -> list[dict]:
    read = [error(None, CSD_FILE, None, f"label interval [{o['interval'][0]}, {o['interval'][1]}] of {o['video']} "
                                        "matches no transcript segment", "read")
            for o in truth["orphan_labels"] if o["interval"]]
    read += [error(None, CSD_FILE, None, no_transcript_reason(video), "read") for video in truth["labels_only_videos"]]
    return read + expected_media_errors(truth, "csd")


def sorted_errors(errors: list[dict]) -> list[dict]:
    return sorted(errors, key=lambda e: (e["utterance"] or "", e["file"], e["line"] or 0, e["reason"]))


def test_every_quirk_ends_as_the_exact_samples_and_errors(synthetic):
    _, truth, out, run = synthetic
    assert run.returncode == 3, run.stderr  # something was rejected, and said so
    assert set(read_samples(out)) == expected_samples(truth, "csd")
    assert read_errors(out) == sorted_errors(expected_csd_errors(truth))
    for quirk in ("black_segment", "partly_black_segment", "negative_start", "overlapping_segments", "no_wav",
                  "separator_in_text", "trailing_spaces", "eleven_decimal_times", "csd_only"):
        ids = truth["quirks"][quirk]
        segments = ids if quirk != "no_wav" else [s["id"] for s in labelled(truth, "csd") if s["video"] in ids]
        assert set(segments) & expected_samples(truth, "csd"), f"{quirk}: no sample shows it"


def test_samples_hold_the_truth_times_labels_and_media(synthetic):
    _, truth, out, _ = synthetic
    by_id = {s["id"]: s for s in truth["segments"]}
    samples = read_samples(out)
    assert set(samples) == expected_samples(truth, "csd") != set()
    for key, sample in samples.items():
        meta, segment = json.loads(sample["json"]), by_id[key]
        video = truth["videos"][segment["video"]]
        start, end = segment["read_start"], segment["end"]
        assert (meta["start"], meta["end"], meta["text"], sample["txt"].decode()) == (start, end, segment["text"],
                                                                                     segment["text"])
        assert meta["label"] == segment["label_csd"]
        assert meta["sources"] == {
            "video": video["files"]["video"], "transcript": video["files"]["transcript"], "labels": CSD_FILE,
            "audio": video["files"]["audio"] if video["has_wav"] else video["files"]["video"],
            "transcript_line": segment["transcript_line"], "labels_line": None}
        speech, rate = sf.read(io.BytesIO(sample["flac"]))
        assert rate == 16000 and len(speech) == meta["audio"]["samples"] == round(end * 16000) - round(start * 16000)
        fps = Fraction(video["format"]["fps_fraction"])
        first, last = frame_range(start, end, fps)
        width, height = video["format"]["width"], video["format"]["height"]
        assert (meta["video"]["fps_fraction"], meta["video"]["first_frame"], meta["video"]["frames"]) == (
            video["format"]["fps_fraction"], first, last - first)
        assert meta["video"]["height"] == min(360, height) and abs(meta["video"]["width"] - width * min(360, height) / height) <= 2
        black = [frame["black"] for frame in meta["faces"]["frames"]]
        assert meta["video"]["is_black"] == (segment["black"] == "full") == all(black)
        if segment["black"] == "none":
            assert meta["video"]["black_fraction"] == 0.0 and meta["faces"]["detection_rate"] >= 0.9, key
        elif segment["black"] == "second_half":
            assert 0.3 <= meta["video"]["black_fraction"] <= 0.7 and not black[0] and black[-1]
        else:
            assert meta["video"]["black_fraction"] == 1.0 and meta["faces"]["detection_rate"] == 0.0


def test_index_flags_black_clips_and_videos_stay_whole(synthetic):
    _, truth, out, _ = synthetic
    index = pd.read_parquet(out / "index.parquet").set_index("key")
    (black,) = truth["quirks"]["black_segment"]
    assert index["video_is_black"].to_dict() == {key: key == black for key in index.index}
    assert index.groupby("recording")["split"].nunique().max() == 1


def test_reader_stats_count_the_transcript_quirks(synthetic):
    _, truth, out, _ = synthetic
    stats = json.loads((out / "dataset.json").read_text())["reader_stats"]
    assert stats["clamped_starts"] == len(truth["quirks"]["negative_start"]) == 1
    assert stats["blank_lines"] == sum(len(v["blank_lines"]) for v in truth["videos"].values())
    assert stats["overlapping_segments"] == len(truth["quirks"]["overlapping_segments"])
    assert stats["segments"] == len(truth["segments"]) and stats["videos"] == len(truth["videos"])
    assert stats["unlabelled_segments"] == len(truth["segments"]) - len(labelled(truth, "csd"))


def test_mturk_labels_agree_with_the_csd_where_both_label_a_segment(synthetic):
    from mer_data.pipelines.convert import plan_mosei
    from mer_data.pipelines.options import ConvertOptions

    raw, truth, _, _ = synthetic
    options = ConvertOptions(corpus="mosei", split="random:2", classes=("all",))
    readings = {form: {u.id: u for job in plan_mosei(raw, options, labels=form).jobs for u in job.utterances}
                for form in ("csd", "mturk")}
    plan = plan_mosei(raw, options, labels="mturk")
    by_id = {s["id"]: s for s in truth["segments"]}
    assert set(readings["mturk"]) == {s["id"] for s in labelled(truth, "mturk")}
    for utt_id, utterance in readings["mturk"].items():
        segment = by_id[utt_id]
        assert utterance.label == segment["label_mturk"]
        assert (utterance.sources["labels"], utterance.lines["labels"]) == (segment["mturk_file"], segment["mturk_line"])
        if utt_id in readings["csd"]:
            csd_label = readings["csd"][utt_id].label
            assert csd_label["multi_hot"] == utterance.label["multi_hot"]
            assert csd_label["sentiment"] == pytest.approx(utterance.label["sentiment"], abs=1e-6)
            for name, value in utterance.label["emotions"].items():
                assert csd_label["emotions"][name] == pytest.approx(value, abs=1e-6)
    orphans = [o for o in truth["orphan_labels"] if o["clip"] is not None]
    expected = [(o["mturk_file"], o["mturk_line"], f"MTurk label of {o['video']} clip {o['clip']} matches no transcript segment")
                for o in orphans]
    expected += [(v["mturk_file"], v["mturk_line"], no_transcript_reason(v)) for v in truth["labels_only_videos"]]
    assert sorted((p.file, p.line, p.reason) for p in plan.problems) == sorted(expected)
    assert plan.reader_stats["mturk"]["empty_rows"] == 4


def test_synthetic_shards_pass_the_same_readers_as_iemocap(synthetic, tmp_path, monkeypatch):
    import tarfile

    import webdataset as wds

    _, truth, out, _ = synthetic
    index = pd.read_parquet(out / "index.parquet")
    urls = [str(p) for p in sorted(out.glob("train-*.tar"))]
    seen = {sample["__key__"]: sample for sample in wds.WebDataset(urls, shardshuffle=False).decode()}
    assert set(seen) == set(index.loc[index["split"] == "train", "key"])
    assert any(key.startswith(("-", "_")) for key in seen), "ids that start with - or _ survive the readers"
    for key, sample in seen.items():
        assert sample["json"]["id"] == key and isinstance(sample["txt"], str) and sample["mp4"][4:8] == b"ftyp"
    for url in urls:
        with tarfile.open(url) as tar:
            names = tar.getnames()
        assert names == [f"{k}.{ext}" for k in dict.fromkeys(n.split(".", 1)[0] for n in names)
                         for ext in ("json", "txt", "flac", "mp4")]

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    table = datasets.load_dataset("webdataset", data_files={"train": urls}, split="train", cache_dir=str(tmp_path / "hf"))
    assert sorted(table["__key__"]) == sorted(seen)
    for row in table:
        assert row["json"]["id"] == row["__key__"] and row["json"]["label"] == json.loads(
            json.dumps(seen[row["__key__"]]["json"]["label"]))
        assert row["flac"]["sampling_rate"] == 16000 if isinstance(row["flac"], dict) else row["flac"] is not None


def published_counts(chosen_videos: set[str]) -> dict[str, int]:
    from mer_data.corpora.splits import load_dai2021_lists

    counts = Counter(split for utt, split in load_dai2021_lists("mosei").items() if utt.rpartition("_")[0] in chosen_videos)
    return {split: counts[split] for split in ("train", "valid", "test")}


def test_dai2021_ids_convert_to_the_published_split_with_mturk_labels(tmp_path, scheduler):
    """Six of the published videos, two per split (every listed clip of each), converted end to
    end; the full-scale run is the slow test below."""
    made = mer("synth", "mosei", tmp_path / "raw", "--ids-from", "dai2021", "--videos", "6", "--voice", "synth")
    assert made.returncode == 0, made.stderr
    truth = json.loads((tmp_path / "raw" / "synth_truth.json").read_text())
    run = mer("convert", "mosei", tmp_path / "raw", tmp_path / "out", "--split", "dai2021", "--labels", "mturk",
              "--scheduler", scheduler, "--quiet")
    assert run.returncode == 0, run.stderr[-2000:]
    card = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert card["counts"]["per_split"] == published_counts(set(truth["videos"]))
    assert card["split_report"]["leakage"] == {"dialogs": 0, "speakers": 0}
    by_id = {s["id"]: s for s in truth["segments"]}
    for key, sample in read_samples(tmp_path / "out").items():
        meta = json.loads(sample["json"])
        assert meta["label"] == by_id[key]["label_mturk"] and meta["sources"]["labels"].startswith("Labels/mturk")
        assert meta["label"]["multi_hot"] == by_id[key]["label_csd"]["multi_hot"]


def test_sdk_split_keeps_every_video_whole_in_its_fold(tmp_path, tmp_path_factory, scheduler):
    from mer_data.corpora.splits import load_mosei_std_folds
    from tests.test_synth_mosei import small_sdk_corpus

    _, raw, truth = small_sdk_corpus(tmp_path_factory)
    run = mer("convert", "mosei", raw, tmp_path / "out", "--split", "sdk", "--scheduler", scheduler, "--quiet")
    folds = load_mosei_std_folds()
    unfolded = sorted(v for v in truth["videos"] if v not in folds)
    assert len(unfolded) == 2 and run.returncode == 3
    samples = {key: json.loads(sample["json"]) for key, sample in read_samples(tmp_path / "out").items()}
    assert {key.rpartition("_")[0] for key in samples} | set(unfolded) == {
        v for v in truth["videos"] if any(s["in_csd"] for s in truth["segments"] if s["video"] == v)}
    assert all(meta["split"] == folds[meta["recording"]] for meta in samples.values())
    assert {(e["utterance"].rpartition("_")[0], e["stage"], e["reason"]) for e in read_errors(tmp_path / "out")} == {
        (v, "split", f"video {v} is in no standard fold") for v in unfolded}
    report = json.loads((tmp_path / "out" / "dataset.json").read_text())["split_report"]
    assert report["videos_in_no_fold"]["count"] == 2 and report["leakage"] == {"dialogs": 0, "speakers": 0}


@pytest.mark.slow
def test_dai2021_split_gives_the_published_counts_at_full_scale(tmp_path):
    """All 20,477 published utterances in 3,001 tiny videos, synthesized and converted (see the
    report for the time: several minutes on 2 cores, most of it one ffprobe and one ffmpeg start
    per video)."""
    made = mer("synth", "mosei", tmp_path / "raw", "--ids-from", "dai2021", "--voice", "synth", timeout=1800)
    assert made.returncode == 0, made.stderr
    run = mer("convert", "mosei", tmp_path / "raw", tmp_path / "out", "--split", "dai2021", "--workers", "2",
              "--quiet", "--shard-max-count", "5000", timeout=3600)
    assert run.returncode == 0, run.stderr[-2000:]
    card = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert card["counts"]["per_split"] == {"train": 14524, "valid": 1765, "test": 4188}
    index = pd.read_parquet(tmp_path / "out" / "index.parquet")
    for split in ("train", "valid", "test"):
        published = set((Path(__file__).parents[1] / "mer_data/data/splits/dai2021/mosei" / f"{split}.txt").read_text().split())
        assert set(index.loc[index["split"] == split, "key"]) == published
