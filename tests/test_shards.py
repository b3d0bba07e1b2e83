"""The shard writer against the shard contract (docs/shard-format.md).

Fake staged samples with real small members (metadata valid against the sample schema, UTF-8
text, a 16 kHz FLAC sine, a tiny H.264 MP4) are packed and read back with plain tarfile,
webdataset and Hugging Face datasets.
"""
from __future__ import annotations

import json
import random
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile

from mer_data import schemas
from mer_data.records import Problem, StagedSample
from mer_data.shards import (
    MEMBER_ORDER,
    SPLITS,
    InvalidCardError,
    InvalidKeyError,
    PackError,
    ShardSizeWarning,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    check_key,
    index_rows,
    pack_shards,
    read_errors,
    sha256_file,
    write_dataset_card,
    write_errors,
    write_index,
)

SAMPLE_RATE = 16000
AUDIO_SECONDS = 0.25
VIDEO_FRAMES = 15  # 0.5 s at 30000/1001 fps
BIG = 1 << 40  # a cap that never binds

# IEMOCAP-style ids plus MOSEI-style ids that start with "-" and "_": the packer is corpus-blind.
MOSEI_STYLE_KEYS = {"-3g5yACwYnA_1": "train", "_0Efpj1tQhI_2": "train", "-9y-fZ3swSY_0": "test"}


def iemocap_metadata(key: str, split: str, recording: str) -> dict:
    """A complete, schema-valid IEMOCAP json member."""
    return {
        "schema_version": "1.0",
        "corpus": "iemocap",
        "id": key,
        "split": split,
        "recording": recording,
        "session": 1,
        "speaker": "Ses01_F",
        "gender": "F",
        "start": 6.2901,
        "end": 8.2357,
        "duration": 1.9456,
        "label": {
            "category": "neu",
            "vad": [2.5, 2.5, 2.5],
            "annotator_categories": [["Neutral"], ["Neutral", "Other"]],
        },
        "text": "Excuse me, café?",
        "text_encoding": "utf-8",
        "audio": {
            "sample_rate": SAMPLE_RATE,
            "samples": int(SAMPLE_RATE * AUDIO_SECONDS),
            "duration": AUDIO_SECONDS,
            "channel": 0,
            "source_start_sample": 100642,
            "source_end_sample": 104642,
        },
        "video": {
            "fps": 30000 / 1001,
            "fps_fraction": "30000/1001",
            "frames": VIDEO_FRAMES,
            "first_frame": 188,
            "width": 64,
            "height": 48,
            "crop": [0, 0, 64, 48],
            "region": "left",
            "duration": 0.5005,
            "start_time": 6.2729,
        },
        "faces": {
            "detector": "opencv-haar-frontalface-default",
            "interval_ms": 500,
            "detection_rate": 0.5,
            "frames": [{"frame": 0, "time": 0.0, "box": [10, 8, 20, 20]}, {"frame": 15, "time": 0.5, "box": None}],
        },
        "alignment": {"audio_minus_interval_s": 0.0, "video_minus_interval_s": 0.012, "video_start_offset_s": -0.0172},
        "sources": {
            "video": f"Session1/dialog/avi/DivX/{recording}.avi",
            "audio": f"Session1/dialog/wav/{recording}.wav",
            "transcript": f"Session1/dialog/transcriptions/{recording}.txt",
            "labels": f"Session1/dialog/EmoEvaluation/{recording}.txt",
            "transcript_line": 3,
            "labels_line": 12,
        },
    }


def sample_plan() -> dict[str, tuple[str, str]]:
    """key -> (split, recording) for 18 samples over 3 splits."""
    plan = {}
    for recording in ("Ses01F_impro01", "Ses01F_script01_1b", "Ses02M_impro05a"):
        for number in range(5):
            split = ("train", "train", "train", "valid", "test")[number]
            plan[f"{recording}_{'FM'[number % 2]}{number:03d}"] = (split, recording)
    for key, split in MOSEI_STYLE_KEYS.items():
        plan[key] = (split, key.rsplit("_", 1)[0])
    return plan


@pytest.fixture(scope="module")
def mp4_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=30000/1001", "-t", "0.5",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )
    return path


@pytest.fixture(scope="module")
def samples(tmp_path_factory, mp4_clip) -> list[StagedSample]:
    root = tmp_path_factory.mktemp("staged")
    staged = []
    for number, (key, (split, recording)) in enumerate(sorted(sample_plan().items())):
        folder = root / key
        folder.mkdir()
        metadata = iemocap_metadata(key, split, recording)
        (folder / "meta.json").write_text(json.dumps(metadata, ensure_ascii=False), encoding="utf-8")
        (folder / "text.txt").write_text(f"Ça va, {key}?", encoding="utf-8")
        _write_sine(folder / "speech.flac", frequency=220 + 20 * number)
        members = {
            "json": folder / "meta.json",
            "txt": folder / "text.txt",
            "flac": folder / "speech.flac",
            "mp4": mp4_clip,
        }
        index_row = {"recording": recording, "label": "neu", "duration": metadata["duration"], "speaker": "Ses01_F"}
        staged.append(StagedSample(key=key, split=split, recording=recording, members=members, index_row=index_row))
    return staged


def _write_sine(path: Path, frequency: float) -> None:
    t = np.arange(int(SAMPLE_RATE * AUDIO_SECONDS)) / SAMPLE_RATE
    soundfile.write(path, 0.3 * np.sin(2 * np.pi * frequency * t), SAMPLE_RATE, subtype="PCM_16", format="FLAC")


def read_shard(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def keys_in_shard(path: Path) -> list[str]:
    """The sample keys of a shard, in order (each key once)."""
    keys = [member.name.split(".", 1)[0] for member in read_shard(path)]
    return list(dict.fromkeys(keys))


def shard_paths(out: Path, result, split: str | None = None) -> list[Path]:
    return [out / shard.name for shard in result.shards if split in (None, shard.split)]


# --- the test data itself -------------------------------------------------------------------


def test_example_metadata_is_valid_against_the_sample_schema(samples):
    assert samples
    for sample in samples:
        assert schemas.errors("sample", json.loads(sample.members["json"].read_text("utf-8"))) == []


# --- atomic writes --------------------------------------------------------------------------


def test_atomic_path_renames_a_temp_file_from_the_same_directory(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_path(target) as temp:
        assert temp.parent == tmp_path and temp.name.startswith(".tmp-")
        assert not target.exists()
        temp.write_bytes(b"done")
    assert target.read_bytes() == b"done"
    assert not temp.exists()


def test_atomic_path_keeps_the_old_file_and_removes_the_temp_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old\r\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temp:
            temp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old\r\n"  # no newline translation either
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_bytes_replaces_content(tmp_path):
    target = atomic_write_bytes(tmp_path / "a", b"1")
    atomic_write_bytes(target, b"22")
    assert target.read_bytes() == b"22"


# --- keys and members ----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["Ses01F_impro01_F000", "-3g5yACwYnA_1", "_0Efpj1tQhI_2"])
def test_corpus_keys_are_accepted(key):
    check_key(key)


@pytest.mark.parametrize(
    "key, why", [("a.b", "'.'"), ("", "empty"), ("__x", "'__'"), ("a/b", "separator"), ("a b", "whitespace")]
)
def test_bad_keys_are_rejected_with_the_reason(key, why):
    with pytest.raises(InvalidKeyError, match=why):
        check_key(key)


def _with(sample: StagedSample, **changes) -> StagedSample:
    fields = {**vars(sample), **changes}
    return StagedSample(**fields)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: _with(s, members={k: v for k, v in s.members.items() if k != "mp4"}), r"missing \['mp4'\]"),
        (lambda s: _with(s, members={**s.members, "npy": s.members["txt"]}), r"unexpected \['npy'\]"),
        (lambda s: _with(s, key="Ses01F.impro01"), "contains '.'"),
        (lambda s: _with(s, split="dev"), "unknown split 'dev'"),
        (lambda s: _with(s, members={**s.members, "flac": Path("/nonexistent/a.flac")}), "cannot read"),
    ],
)
def test_bad_samples_are_rejected_naming_the_key_before_anything_is_written(samples, tmp_path, change, message):
    broken = change(samples[3])
    with pytest.raises(PackError, match=message) as raised:
        pack_shards([*samples[:3], broken, *samples[4:]], tmp_path / "out", seed=0, max_bytes=BIG, max_count=4)
    assert repr(broken.key) in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_duplicate_keys_are_rejected(samples, tmp_path):
    with pytest.raises(PackError, match="more than once"):
        pack_shards([*samples, samples[0]], tmp_path, seed=0, max_bytes=BIG, max_count=4)


# --- packing -------------------------------------------------------------------------------


@pytest.mark.parametrize("max_bytes, max_count", [(BIG, 3), (64 * 1024, 1000), (80 * 1024, 2)])
def test_shards_are_split_pure_and_respect_both_caps(samples, tmp_path, max_bytes, max_count):
    result = pack_shards(samples, tmp_path, seed=7, max_bytes=max_bytes, max_count=max_count)
    split_of = {s.key: s.split for s in samples}
    for shard in result.shards:
        path = tmp_path / shard.name
        keys = keys_in_shard(path)
        assert shard.name.startswith(f"{shard.split}-") and {split_of[k] for k in keys} == {shard.split}
        assert shard.count == len(keys) <= max_count
        assert shard.bytes == path.stat().st_size <= max_bytes
        assert shard.sha256 == sha256_file(path)
    train = [shard for shard in result.shards if shard.split == "train"]
    assert len(train) > 1, "the caps should bind on this data"
    assert [shard.name for shard in train] == [f"train-{n:06d}.tar" for n in range(len(train))]
    assert [shard.split for shard in result.shards] == sorted((s.split for s in result.shards), key=SPLITS.index)


def test_count_cap_fills_shards_in_order(samples, tmp_path):
    result = pack_shards(samples, tmp_path, seed=7, max_bytes=BIG, max_count=3)
    full, rest = divmod(sum(s.split == "train" for s in samples), 3)
    assert [s.count for s in result.shards if s.split == "train"] == [3] * full + ([rest] if rest else [])


def test_every_key_is_in_exactly_one_shard_at_its_recorded_place(samples, tmp_path):
    result = pack_shards(samples, tmp_path, seed=7, max_bytes=64 * 1024, max_count=3)
    found = [
        (key, path.name, position)
        for path in shard_paths(tmp_path, result)
        for position, key in enumerate(keys_in_shard(path))
    ]
    assert sorted(key for key, _, _ in found) == sorted(s.key for s in samples)
    assert {key: (shard, position) for key, shard, position in found} == {
        key: (place.shard, place.position) for key, place in result.placements.items()
    }


def test_members_are_named_ordered_headed_and_copied_as_is(samples, tmp_path):
    result = pack_shards(samples, tmp_path, seed=7, max_bytes=BIG, max_count=1000)
    by_key = {s.key: s for s in samples}
    checked = 0
    for path in shard_paths(tmp_path, result):
        with tarfile.open(path) as tar:
            members = tar.getmembers()
            checked += len(members)
            keys = keys_in_shard(path)
            assert [m.name for m in members] == [f"{k}.{ext}" for k in keys for ext in MEMBER_ORDER]
            for member in members:
                header = (member.mtime, member.uid, member.gid, member.uname, member.gname, member.mode)
                assert header == (0, 0, 0, "", "", 0o644)
                assert member.isreg()
                key, ext = member.name.split(".", 1)
                assert tar.extractfile(member).read() == by_key[key].members[ext].read_bytes()
    assert checked == len(samples) * len(MEMBER_ORDER) > 0  # every member of every sample was checked


def test_same_samples_in_any_order_give_byte_identical_shards(samples, tmp_path):
    first = pack_shards(samples, tmp_path / "a", seed=7, max_bytes=64 * 1024, max_count=3)
    reordered = list(samples)
    random.Random(1).shuffle(reordered)
    second = pack_shards(reordered, tmp_path / "b", seed=7, max_bytes=64 * 1024, max_count=3)
    assert first.shards == second.shards and first.placements == second.placements
    for shard in first.shards:
        assert (tmp_path / "a" / shard.name).read_bytes() == (tmp_path / "b" / shard.name).read_bytes()


def test_the_seed_shuffles_the_order_within_a_split(samples, tmp_path):
    orders = []
    for seed in (1, 2):
        result = pack_shards(samples, tmp_path / str(seed), seed=seed, max_bytes=BIG, max_count=1000)
        orders.append(keys_in_shard(tmp_path / str(seed) / "train-000000.tar"))
    train_keys = sorted(s.key for s in samples if s.split == "train")
    assert sorted(orders[0]) == sorted(orders[1]) == train_keys
    assert orders[0] != orders[1]
    assert train_keys not in orders


def test_a_sample_over_the_byte_cap_gets_a_shard_of_its_own_and_a_warning(samples, tmp_path):
    with pytest.warns(ShardSizeWarning, match="shard of its own"):
        result = pack_shards(samples, tmp_path, seed=0, max_bytes=1, max_count=1000)
    assert [shard.count for shard in result.shards] == [1] * len(samples)
    assert sorted(result.oversized) == sorted(s.key for s in samples)


def test_shards_left_by_an_earlier_pack_are_removed(samples, tmp_path):
    for name in ("train-000099.tar", "test-000005.tar", "notes.txt"):
        (tmp_path / name).write_bytes(b"old")
    result = pack_shards(samples, tmp_path, seed=0, max_bytes=BIG, max_count=1000)
    assert result.removed_stale == ["test-000005.tar", "train-000099.tar"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(s.name for s in result.shards), "notes.txt"])


# --- readers --------------------------------------------------------------------------------


@pytest.fixture
def packed(samples, tmp_path):
    out = tmp_path / "shards"
    return out, pack_shards(samples, out, seed=3, max_bytes=64 * 1024, max_count=4)


def test_webdataset_reads_every_sample_with_all_members(samples, packed):
    import webdataset

    out, result = packed
    urls = [str(path) for path in shard_paths(out, result)]
    read = {row["__key__"]: row for row in webdataset.WebDataset(urls, shardshuffle=False, empty_check=False)}
    assert sorted(read) == sorted(s.key for s in samples)
    for sample in samples:
        row = read[sample.key]
        assert json.loads(row["json"]) == json.loads(sample.members["json"].read_text("utf-8"))
        assert row["txt"].decode("utf-8") == f"Ça va, {sample.key}?"
        assert row["flac"] == sample.members["flac"].read_bytes()
        assert row["mp4"] == sample.members["mp4"].read_bytes()


def test_hugging_face_datasets_reads_the_shards(samples, packed, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    out, result = packed
    data_files = {split: [str(p) for p in shard_paths(out, result, split)] for split in SPLITS}
    train = datasets.load_dataset("webdataset", data_files=data_files, split="train", cache_dir=str(tmp_path / "hf"))

    expected = sorted(s.key for s in samples if s.split == "train")
    assert sorted(train["__key__"]) == expected
    for row in train:
        assert isinstance(row["json"], dict) and row["json"]["id"] == row["__key__"]
        assert row["json"]["label"]["category"] == "neu"
        assert row["txt"] == f"Ça va, {row['__key__']}?"
        audio = row["flac"]
        assert audio["sampling_rate"] == SAMPLE_RATE
        assert len(np.asarray(audio["array"]).reshape(-1)) == int(SAMPLE_RATE * AUDIO_SECONDS)
        assert row["mp4"].metadata.num_frames == VIDEO_FRAMES  # a torchcodec VideoDecoder
    assert isinstance(train.features["flac"], datasets.Audio) and isinstance(train.features["mp4"], datasets.Video)


# --- index.parquet -------------------------------------------------------------------------


def test_index_agrees_with_the_pack_and_is_reproducible(samples, packed, tmp_path):
    out, result = packed
    rows = index_rows(samples, result.placements)
    table = pq.read_table(write_index(rows, out)).to_pylist()

    in_shard_order = [(path.name, key) for path in shard_paths(out, result) for key in keys_in_shard(path)]
    assert [(row["shard"], row["key"]) for row in table] == in_shard_order
    by_key = {s.key: s for s in samples}
    for row in table:
        assert row["split"] == by_key[row["key"]].split
        place = result.placements[row["key"]]
        assert (row["shard"], row["position"]) == (place.shard, place.position)
        assert row["recording"] == by_key[row["key"]].recording and row["label"] == "neu"

    (tmp_path / "again").mkdir()
    again = write_index(list(reversed(rows)), tmp_path / "again")
    assert sha256_file(again) == sha256_file(out / "index.parquet")


def test_index_rejects_rows_without_a_place(tmp_path):
    with pytest.raises(ValueError, match="lacks \\['shard', 'position'\\]"):
        write_index([{"key": "a", "split": "train"}], tmp_path)
    assert not (tmp_path / "index.parquet").exists()


# --- dataset.json --------------------------------------------------------------------------


def make_card(samples, result) -> dict:
    per_split = {split: sum(s.split == split for s in samples) for split in SPLITS}
    return {
        "schema_version": "1.0",
        "tool": {"name": "mer-data", "version": "0.1.0"},
        "corpus": "iemocap",
        "created_from": "RAW/",
        "options": {
            "split": "dai2021", "classes": ["ang", "exc", "fru", "hap", "neu", "sad"], "frame_interval_ms": 500,
            "shuffle_seed": 3, "shard_max_bytes": 64 * 1024, "shard_max_count": 4, "members": list(MEMBER_ORDER),
        },
        "counts": {
            "total": len(samples),
            "per_split": per_split,
            "per_split_label": {split: {"neu": n} for split, n in per_split.items()},
            "planned": len(samples) + 2,
        },
        "shards": [shard.to_json() for shard in result.shards],
        "errors": {"count": 2, "by_stage": {"read": 1, "media": 1}, "by_kind": {"no-audio": 1, "bad-line": 1}},
        "excluded": {"count": 3, "by_label": {"xxx": 2, "oth": 1}},
        "split_report": {"recordings_in_several_splits": 3},
        "checksums": {"index.parquet": "0" * 64, "errors.jsonl": "f" * 64},
        "notes": ["synthetic test data"],
    }


def test_a_valid_card_is_written_with_sorted_keys(samples, packed):
    out, result = packed
    card = make_card(samples, result)
    path = write_dataset_card(card, out)
    text = path.read_text("utf-8")
    assert json.loads(text) == card
    assert list(json.loads(text)) == sorted(card) and text.startswith('{\n  "checksums": {\n    "errors.jsonl"')
    assert text.endswith("}\n")


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda c: c["shards"][0].update(sha256="not-a-digest"), "shards/0/sha256"),
        (lambda c: c["options"].pop("shuffle_seed"), "options: 'shuffle_seed' is a required property"),
        (lambda c: c.update(created_at="2024-01-01T00:00:00"), "'created_at' was unexpected"),
        (lambda c: c["counts"].update(total=999), "counts/total"),
        (lambda c: c["counts"]["per_split"].update(train=0, test=22), "the train shards hold"),
        (lambda c: c["counts"].update(planned=-1), "counts/planned"),
        (lambda c: c["errors"]["by_stage"].update(read=5), "errors/by_stage"),
    ],
)
def test_a_broken_card_is_rejected_naming_the_field(samples, packed, breakage, message):
    out, result = packed
    card = make_card(samples, result)
    breakage(card)
    with pytest.raises(InvalidCardError, match=message):
        write_dataset_card(card, out)
    assert not (out / "dataset.json").exists()


def test_a_card_reports_all_problems_at_once(samples, packed):
    out, result = packed
    card = make_card(samples, result)
    card.pop("corpus")
    card["tool"]["version"] = ""
    with pytest.raises(InvalidCardError) as raised:
        write_dataset_card(card, out)
    assert len(raised.value.messages) == 2


# --- errors.jsonl --------------------------------------------------------------------------


EMO_EVALUATION = "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"


def test_errors_are_sorted_deterministically_and_round_trip(tmp_path):
    problems = [
        Problem("Session1/dialog/wav/Ses01F_impro01.wav", None, "audio ends early", "Ses01F_impro01_F012", "media"),
        Problem("Session1/dialog/transcriptions/Ses01F_impro01.txt", 7, "no id", None, "read"),
        Problem(EMO_EVALUATION, 40, "bad VAD «n/a»", "Ses01F_impro01_F003", "read"),
        Problem(EMO_EVALUATION, 12, "bad VAD", "Ses01F_impro01_F003", "read"),
        Problem("Session1/dialog/transcriptions/Ses01F_impro01.txt", 3, "no id", None, "read"),
    ]
    path = write_errors(problems, tmp_path)
    lines = path.read_text("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [p.to_json() for p in read_errors(path)]
    assert [(p.utterance, p.line) for p in read_errors(path)] == [
        (None, 3), (None, 7), ("Ses01F_impro01_F003", 12), ("Ses01F_impro01_F003", 40), ("Ses01F_impro01_F012", None),
    ]
    assert sorted(read_errors(path), key=problems.index) == problems
    again = write_errors(list(reversed(problems)), tmp_path, name="again.jsonl")
    assert again.read_bytes() == path.read_bytes()


def test_no_errors_give_an_empty_file(tmp_path):
    assert write_errors([], tmp_path).read_bytes() == b""
