"""End to end: a synthetic IEMOCAP release through `mer convert iemocap`, checked against the
synthesizer's ground truth (synth_truth.json)."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mer_data.corpora.iemocap import SIX_CLASSES
from mer_data.synth.faces import SIDE_BACKGROUND
from mer_data.media import cut_recording
from mer_data.records import CutRequest
from tests.conftest import convert, on_one_cpu

SIX = SIX_CLASSES


def read_samples(out: Path) -> dict[str, dict]:
    """key -> {"shard": name, ext: bytes} for every member of every shard in `out`."""
    samples: dict[str, dict] = {}
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                sample = samples.setdefault(key, {"shard": shard.name})
                assert sample["shard"] == shard.name, f"{key} is in two shards"
                sample[ext] = tar.extractfile(member).read()
    return samples


def chosen_truth(truth: dict, classes=SIX) -> dict[str, dict]:
    return {u["id"]: u for u in truth["utterances"] if u["category"] in classes}


def read_errors(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]


def converted_samples(out: Path, expected: dict[str, dict]) -> dict[str, dict]:
    """read_samples(out), checked to be every expected utterance that was not rejected (and some):
    a test that loops over them then checks them all."""
    samples = read_samples(out)
    assert samples, f"no sample in {out}"
    assert set(samples) == set(expected) - {e["utterance"] for e in read_errors(out)}
    return samples


def test_every_chosen_utterance_is_in_one_shard_or_the_error_log(small_corpus, small_shards):
    _, truth = small_corpus
    out, report = small_shards
    samples = read_samples(out)
    rejected = {e["utterance"] for e in read_errors(out)}
    expected = set(chosen_truth(truth))
    assert expected, "the synthetic corpus has no utterance of the six classes"
    assert set(samples) | rejected == expected
    assert not set(samples) & rejected
    for key, sample in samples.items():
        assert set(sample) == {"shard", "json", "txt", "flac", "mp4"}, key
    excluded = {json.loads(line)["utterance"] for line in (out / "excluded.jsonl").read_text().splitlines()}
    others = {u["id"] for u in truth["utterances"] if u["category"] not in SIX}
    assert excluded == others


def test_card_counts_equal_the_index_and_the_shards(small_shards):
    out, report = small_shards
    card = json.loads((out / "dataset.json").read_text())
    index = pd.read_parquet(out / "index.parquet")
    samples = read_samples(out)
    assert card["counts"]["total"] == len(index) == len(samples)
    assert card["counts"]["per_split"] == {s: int((index["split"] == s).sum()) for s in ("train", "valid", "test")}
    for split, labels in card["counts"]["per_split_label"].items():
        assert labels == dict(Counter(index.loc[index["split"] == split, "label"]))
    assert {s["name"]: s["count"] for s in card["shards"]} == dict(Counter(index["shard"]))
    for shard in card["shards"]:
        data = (out / shard["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"]
        assert shard["count"] <= 4 and shard["name"].startswith(shard["split"] + "-")
    for key, row in index.set_index("key").iterrows():
        assert samples[key]["shard"] == row["shard"]
        assert json.loads(samples[key]["json"])["split"] == row["split"]


def test_split_is_leave_session_2_out(small_shards):
    out, _ = small_shards
    index = pd.read_parquet(out / "index.parquet")
    assert set(index.loc[index["split"] == "test", "session"]) == {2}
    assert 2 not in set(index.loc[index["split"] == "train", "session"])


def _frame_background(mp4: bytes, tmp_path: Path) -> np.ndarray:
    path = tmp_path / "clip.mp4"
    path.write_bytes(mp4)
    capture = cv2.VideoCapture(str(path))
    ok, frame = capture.read()
    capture.release()
    assert ok
    h, w = frame.shape[:2]
    # A strip along the right edge, half-way down: background, away from the face and the corner patch.
    return frame[h // 2 - 5: h // 2 + 5, w - 6: w - 2].reshape(-1, 3).mean(axis=0)


def test_media_match_the_annotated_interval_speaker_half_and_channel(small_corpus, small_shards, tmp_path):
    root, truth = small_corpus
    out, _ = small_shards
    expected = chosen_truth(truth)
    sources: dict[str, tuple[np.ndarray, int]] = {}
    for key, sample in converted_samples(out, expected).items():
        meta, want = json.loads(sample["json"]), expected[key]
        interval = want["end"] - want["start"]
        audio, rate = sf.read(io.BytesIO(sample["flac"]), dtype="int16")
        assert rate == 16000 and audio.ndim == 1
        assert abs(len(audio) / rate - interval) <= 0.001, key
        assert meta["audio"]["samples"] == len(audio)
        fps = meta["video"]["fps"]
        assert abs(meta["video"]["frames"] - interval * fps) <= 1, key
        assert meta["video"]["frames"] == _count_frames(sample["mp4"], tmp_path)
        # The speaker's half, by construction of the synthetic video (distinct background per side).
        background = _frame_background(sample["mp4"], tmp_path)
        distances = {side: np.abs(background - np.array(bgr)).sum() for side, bgr in SIDE_BACKGROUND.items()}
        assert min(distances, key=distances.get) == want["side"], key
        assert meta["video"]["region"] == want["side"]
        # The speaker's channel: the FLAC holds exactly that channel's samples of the dialog WAV.
        wav = root / meta["sources"]["audio"]
        if wav not in sources:
            sources[wav] = sf.read(wav, dtype="int16")
        stereo, _ = sources[wav]
        first = meta["audio"]["source_start_sample"]
        np.testing.assert_array_equal(audio, stereo[first:first + len(audio), want["channel"]])
        assert meta["audio"]["channel"] == want["channel"]


def _count_frames(mp4: bytes, tmp_path: Path) -> int:
    path = tmp_path / "count.mp4"
    path.write_bytes(mp4)
    capture = cv2.VideoCapture(str(path))
    frames = 0
    while capture.grab():
        frames += 1
    capture.release()
    return frames


def test_labels_vad_and_text_are_intact(small_corpus, small_shards):
    _, truth = small_corpus
    out, _ = small_shards
    expected = chosen_truth(truth)
    for key, sample in converted_samples(out, expected).items():
        meta, want = json.loads(sample["json"]), expected[key]
        assert meta["label"]["category"] == want["category"]
        assert meta["label"]["vad"] == pytest.approx(want["vad"], abs=1e-4)
        assert sample["txt"].decode("utf-8") == want["text"] == meta["text"]
        assert (meta["start"], meta["end"]) == pytest.approx((want["start"], want["end"]), abs=1e-4)
        assert meta["speaker"].endswith("_" + want["speaker"][-1]) or meta["gender"] == want["speaker"][-1]


def test_faces_are_found_in_the_stored_boxes(small_shards):
    out, _ = small_shards
    index = pd.read_parquet(out / "index.parquet")
    assert index["face_detection_rate"].mean() >= 0.9


def test_shards_read_by_webdataset_and_hugging_face(small_shards, tmp_path, monkeypatch):
    import webdataset as wds

    out, _ = small_shards
    index = pd.read_parquet(out / "index.parquet")
    urls = [str(p) for p in sorted(out.glob("train-*.tar"))]
    seen = {}
    for sample in wds.WebDataset(urls, shardshuffle=False).decode():
        seen[sample["__key__"]] = sample
    assert set(seen) == set(index.loc[index["split"] == "train", "key"])
    some = next(iter(seen.values()))
    assert some["json"]["id"] == some["__key__"] and isinstance(some["txt"], str)

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    table = datasets.load_dataset("webdataset", data_files={"train": urls}, split="train",
                                  cache_dir=str(tmp_path / "hf"))
    assert sorted(table["__key__"]) == sorted(seen)
    row = table[0]
    assert row["json"]["id"] == row["__key__"]
    assert row["flac"]["sampling_rate"] == 16000 if isinstance(row["flac"], dict) else row["flac"] is not None


def sha256_of_outputs(out: Path) -> dict[str, str]:
    names = sorted(p.name for p in out.iterdir() if p.is_file() and not p.name.startswith("."))
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in names}


def test_same_bytes_whatever_the_worker_count(small_corpus, small_shards, tmp_path):
    root, _ = small_corpus
    reference, _ = small_shards
    two = tmp_path / "two"
    convert(root, two, workers=2, shard_max_count=4)
    assert sha256_of_outputs(two) == sha256_of_outputs(reference)


def test_conversion_through_an_existing_dask_cluster(small_corpus, small_shards, tmp_path):
    from distributed import LocalCluster

    root, _ = small_corpus
    reference, _ = small_shards
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        convert(root, tmp_path / "remote", scheduler=cluster.scheduler_address, shard_max_count=4)
    assert sha256_of_outputs(tmp_path / "remote") == sha256_of_outputs(reference)


def test_rerun_reports_complete_and_other_options_need_overwrite(small_corpus, small_shards):
    from mer_data.pipelines.convert import OutputConflict

    root, _ = small_corpus
    out, _ = small_shards
    before = sha256_of_outputs(out)
    again = convert(root, out, shard_max_count=4)
    assert again.already_complete and sha256_of_outputs(out) == before
    with pytest.raises(OutputConflict):
        convert(root, out, shard_max_count=3)


def test_cuts_do_not_depend_on_the_number_of_cpus(small_corpus, tmp_path):
    """ffmpeg sizes its filter threads, and OpenCV its pool, by the CPUs there are: the clips,
    audio and face boxes of a recording are the same bytes and values on one CPU as on all."""
    root, truth = small_corpus
    name, dialog = next(iter(truth["dialogs"].items()))
    requests = [CutRequest(u["id"], u["start"], u["end"], u["side"], u["channel"])
                for u in truth["utterances"] if u["dialog"] == name][:4]
    assert len(requests) == 4

    def cut(out: Path, opencv_threads: int) -> dict[str, tuple]:
        previous = cv2.getNumThreads()
        cv2.setNumThreads(opencv_threads)
        try:
            results, problems = cut_recording(root / dialog["files"]["video"], root / dialog["files"]["audio"],
                                              requests, out)
        finally:
            cv2.setNumThreads(previous)
        assert problems == [] and len(results) == len(requests)
        return {r.key: (r.mp4.read_bytes(), r.flac.read_bytes(), r.faces) for r in results}

    on_all = cut(tmp_path / "all", -1)  # -1: OpenCV's default, a thread per CPU
    with on_one_cpu():
        on_one = cut(tmp_path / "one", 1)
    assert on_all == on_one
