"""`mer features`: feature tables against their card, the schema and the shards, resume, damaged samples, the CLI."""
from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from mer_data import schemas
from mer_data.model.features.table import card_schema, part_path, read_card, read_split, split_parts
from mer_data.shards.errorlog import read_errors
from mer_data.shards.labels import label_names_from_card, targets
from mer_data.pipelines.features import FeatureOutputConflict, extract_features
from mer_data.pipelines.options import FeatureOptions

MFCC_ONLY = ["--audio", "mfcc", "--visual", "none", "--text", "none"]


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> Path:
    from mer_data.model.text import write_tiny_text_encoder

    return write_tiny_text_encoder(tmp_path_factory.mktemp("features-encoder"))


@pytest.fixture(scope="module")
def scheduler() -> str:
    """One Dask cluster for the module's runs (`--scheduler`): its workers import torch, librosa and
    openSMILE once, instead of once per run; the CLI run below starts a local cluster of its own."""
    import logging

    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def full_feats(small_shards, tiny_encoder, scheduler, tmp_path_factory) -> tuple[Path, object]:
    """Every modality (eGeMAPS, appearance, text) of the small shards."""
    shards, _ = small_shards
    feats = tmp_path_factory.mktemp("feats-full")
    report = extract_features(shards, feats, FeatureOptions(text_encoder=str(tiny_encoder)), scheduler=scheduler,
                              progress=False)
    return feats, report


@pytest.fixture(scope="module")
def mfcc_feats(small_shards, tmp_path_factory) -> tuple[Path, object]:
    """MFCC + prosody only, made through the CLI."""
    from click.testing import CliRunner

    from mer_data.cli import main

    shards, _ = small_shards
    feats = tmp_path_factory.mktemp("feats-mfcc") / "feats"
    result = CliRunner().invoke(main, ["features", str(shards), str(feats), *MFCC_ONLY, "--workers", "1", "-q"])
    return feats, result


def shard_samples(shards: Path) -> dict[str, tuple[str, int, dict]]:
    """key -> (shard name, position, metadata) of every sample of the shard folder."""
    found = {}
    for tar in sorted(shards.glob("*.tar")):
        for position, sample in enumerate(wds.DataPipeline(wds.SimpleShardList([str(tar)]), wds.tarfile_to_samples())):
            found[sample["__key__"]] = (tar.name, position, json.loads(sample["json"]))
    return found


def all_rows(feats: Path) -> list[dict]:
    return [row for split in ("train", "valid", "test") for row in read_split(feats, split).to_pylist()]


def check_one_to_one(shards: Path, feats: Path) -> tuple[list[dict], dict]:
    """Every shard sample is exactly one row of its split or one error record; rows agree with the shards."""
    card = read_card(feats)
    samples = shard_samples(shards)
    rows = all_rows(feats)
    errors = read_errors(feats / "errors.jsonl")
    row_keys = [row["key"] for row in rows]
    error_keys = [error.utterance for error in errors]
    assert len(row_keys) == len(set(row_keys)), "a sample is in the tables twice"
    assert not set(row_keys) & set(error_keys), "a sample is both a row and an error"
    assert sorted(row_keys + error_keys) == sorted(samples), "rows + errors are not the shards' samples"
    label_names = label_names_from_card(json.loads((shards / "dataset.json").read_text()))
    assert card["label_names"] == list(label_names)
    for row in rows:
        shard, position, meta = samples[row["key"]]
        assert (row["id"], row["split"], row["source"]) == (meta["id"], meta["split"], f"{shard}#{position}")
        assert (row["recording"], row["speaker"], row["start"], row["end"]) == (
            meta["recording"], meta["speaker"], meta["start"], meta["end"])
        np.testing.assert_array_equal(np.asarray(row["target"], dtype=np.float32), targets(meta, label_names))
        for name, spec in card["modalities"].items():
            steps = row[name]
            assert all(len(step) == spec["dim"] == len(spec["names"]) for step in steps)
            if not spec["timed"]:
                assert row[f"{name}_times"] is None
                continue
            times = np.asarray(row[f"{name}_times"])
            assert len(times) == len(steps)
            assert np.all(times >= 0) and np.all(times <= meta["duration"] + 1e-3), (row["key"], name, times)
            assert np.all(np.diff(times) > 0)
    assert card["counts"]["total"] == len(rows)
    for split in ("train", "valid", "test"):
        assert card["counts"]["per_split"][split] == sum(row["split"] == split for row in rows)
    assert card["errors"]["count"] == len(errors)
    return rows, samples


# --------------------------------------------------------------------------------------------


def test_tables_match_the_card_and_its_schema(full_feats):
    feats, report = full_feats
    card = read_card(feats)  # validated against schemas/features.schema.json
    assert schemas.errors("features", card) == []
    assert set(card["modalities"]) == {"audio", "visual", "text"}
    roles = {name: spec["role"] for name, spec in card["modalities"].items()}
    assert roles == {"audio": "a", "visual": "v", "text": "t"}
    assert card["modalities"]["audio"]["dim"] == 25 and card["modalities"]["audio"]["extractor"].startswith("opensmile")
    assert card["modalities"]["text"]["dim"] == 32  # the tiny encoder's width
    expected = card_schema(card)
    for part in card["parts"]:
        path = feats / part["split"] / part["name"]
        table = read_split(feats, part["split"])
        assert table.schema.equals(expected, check_metadata=False)
        assert part["source"].replace(".tar", "").split("-") == [part["split"], part["name"][5:11]]
        assert path.is_file()
    listed = sorted((part["split"], part["name"]) for part in card["parts"])
    on_disk = sorted((path.parent.name, path.name) for split in ("train", "valid", "test")
                     for path in split_parts(feats, split))
    assert listed == on_disk
    assert report.errors == [] and "features: " in report.summary()


def test_the_extraction_cost_is_recorded_beside_the_card(full_feats):
    feats, report = full_feats
    timing = json.loads((feats / "extraction.json").read_text())
    assert timing["utterances"] == read_card(feats)["counts"]["total"] == report.processed
    assert set(timing["seconds_per_utterance"]) == {"audio", "visual", "text"}
    assert all(seconds > 0 for seconds in timing["seconds_per_utterance"].values())
    assert timing["total_seconds_per_utterance"] == pytest.approx(sum(timing["seconds_per_utterance"].values()))


def test_rows_are_the_shards_one_to_one(small_shards, full_feats):
    shards, _ = small_shards
    feats, _ = full_feats
    rows, samples = check_one_to_one(shards, feats)
    assert len(rows) == len(samples)  # nothing is damaged in these shards
    card = read_card(feats)
    for row in rows:
        meta = samples[row["key"]][2]
        faces = [entry for entry in meta["faces"]["frames"] if entry["box"] is not None]
        assert len(row["visual"]) == len(faces)  # one step per frame with a detected face
        offset = meta["alignment"]["video_start_offset_s"]
        np.testing.assert_allclose(row["visual_times"], [offset + entry["time"] for entry in faces], atol=1e-5)
        audio = np.asarray(row["audio_times"])
        assert abs(audio[0] - 0.01) < 1e-6 and np.allclose(np.diff(audio)[:-1], 0.01, atol=1e-5)
        assert len(row["text"]) >= 1
    empty = {name: sum(len(row[name]) == 0 for row in rows) for name in card["modalities"]}
    assert card["counts"]["empty_sequences"] == empty


def test_mfcc_tables_through_the_cli(small_shards, mfcc_feats):
    shards, _ = small_shards
    feats, result = mfcc_feats
    assert result.exit_code == 0, result.output
    assert "features: " in result.output
    card = read_card(feats)
    assert list(card["modalities"]) == ["audio"]
    audio = card["modalities"]["audio"]
    assert audio["dim"] == 29 and audio["names"][-3:] == ["log_energy", "f0_hz", "voicing_probability"]
    rows, samples = check_one_to_one(shards, feats)
    for row in rows:
        meta = samples[row["key"]][2]
        assert len(row["audio"]) == 1 + meta["audio"]["samples"] // 160  # centred 10 ms frames
        np.testing.assert_allclose(row["audio_times"], np.arange(len(row["audio"])) * 0.01, atol=1e-5)
        values = np.asarray(row["audio"])
        assert np.all(values[:, -1] >= 0) and np.all(values[:, -1] <= 1)  # a voicing probability
        assert np.all((values[:, -2] == 0) | ((values[:, -2] >= 65) & (values[:, -2] <= 600)))  # F0 in range or 0


def test_resume_keeps_finished_parts(small_shards, mfcc_feats, scheduler, tmp_path):
    shards, _ = small_shards
    feats = tmp_path / "feats"
    shutil.copytree(mfcc_feats[0], feats)
    options = FeatureOptions(audio="mfcc", visual="none", text="none")
    parts = {path: path.stat().st_mtime_ns
             for split in ("train", "valid", "test") for path in split_parts(feats, split)}
    assert len(parts) >= 3
    removed = sorted(parts)[1]
    removed.unlink()
    (feats / "features.json").unlink()

    report = extract_features(shards, feats, options, scheduler=scheduler, progress=False)
    assert (report.written_parts, report.resumed_parts) == (1, len(parts) - 1)
    assert removed.is_file()
    for path, mtime in parts.items():
        if path != removed:
            assert path.stat().st_mtime_ns == mtime, f"{path} was rewritten"
    check_one_to_one(shards, feats)
    assert read_card(feats)["counts"] == read_card(mfcc_feats[0])["counts"]

    again = extract_features(shards, feats, options, scheduler=scheduler, progress=False)
    assert again.already_complete and again.written_parts == 0

    with pytest.raises(FeatureOutputConflict, match="--audio mfcc .now egemaps"):
        extract_features(shards, feats, FeatureOptions(audio="egemaps", visual="none", text="none"), progress=False)
    assert (feats / "features.json").is_file()  # a refused run leaves the finished folder as it was


def test_other_options_need_overwrite_in_the_cli(small_shards, mfcc_feats, scheduler, tmp_path):
    from click.testing import CliRunner

    from mer_data.cli import main

    shards, _ = small_shards
    feats = tmp_path / "feats"
    shutil.copytree(mfcc_feats[0], feats)
    refused = CliRunner().invoke(main, ["features", str(shards), str(feats), "--visual", "none", "--text", "none",
                                        "-q"])
    assert refused.exit_code == 1 and "--overwrite" in refused.output
    replaced = CliRunner().invoke(main, ["features", str(shards), str(feats), "--visual", "none", "--text", "none",
                                         "--scheduler", scheduler, "--overwrite", "-q"])
    assert replaced.exit_code == 0, replaced.output
    card = read_card(feats)
    assert card["modalities"]["audio"]["dim"] == 25 and card["options"]["audio"] == "egemaps"
    check_one_to_one(shards, feats)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="at least one"):
        FeatureOptions(audio="none", visual="none", text="none")
    with pytest.raises(ValueError, match="--audio"):
        FeatureOptions(audio="covarep")


# --------------------------------------------------------------------------------------------
# Damaged samples


def rewrite_shard(source: Path, target: Path, change) -> list[str]:
    """Copy a shard member by member, `change(key, ext, data)` returning the bytes to write; the keys, in order."""
    keys = []
    with tarfile.open(source) as reader, tarfile.open(target, "w") as writer:
        for info in reader.getmembers():
            data = reader.extractfile(info).read()
            key, _, ext = info.name.partition(".")
            keys.append(key)
            data = change(key, ext, data)
            info.size = len(data)
            writer.addfile(info, io.BytesIO(data))
    return list(dict.fromkeys(keys))


def test_a_damaged_sample_goes_to_the_error_log(small_shards, scheduler, tmp_path):
    shards, _ = small_shards
    damaged = tmp_path / "shards"
    damaged.mkdir()
    for name in ("dataset.json", "index.parquet"):
        shutil.copy(shards / name, damaged / name)
    source = max(shards.glob("train-*.tar"), key=lambda path: path.stat().st_size)
    with tarfile.open(source) as tar:
        keys = list(dict.fromkeys(name.partition(".")[0] for name in tar.getnames()))
    broken_audio, faceless = keys[0], keys[1]

    def change(key, ext, data):
        if key == broken_audio and ext == "flac":
            return data[: len(data) // 2]  # a FLAC cut in the middle
        if key == faceless and ext == "json":
            meta = json.loads(data)
            for frame in meta["faces"]["frames"]:
                frame["box"] = None
            return json.dumps(meta).encode()
        return data

    rewrite_shard(source, damaged / source.name, change)
    options = FeatureOptions(audio="mfcc", visual="appearance", text="none")
    report = extract_features(damaged, tmp_path / "feats", options, scheduler=scheduler, progress=False)
    errors = read_errors(tmp_path / "feats" / "errors.jsonl")
    assert [(e.utterance, e.file) for e in errors] == [(broken_audio, source.name)]
    assert errors[0].reason.startswith("audio: ") and report.errors == errors
    rows = read_split(tmp_path / "feats", "train").to_pylist()
    assert [row["key"] for row in rows] == keys[1:]
    no_face = next(row for row in rows if row["key"] == faceless)
    assert no_face["visual"] == [] and no_face["visual_times"] == []
    card = read_card(tmp_path / "feats")
    assert card["counts"]["empty_sequences"]["visual"] >= 1
    assert card["errors"] == {"count": 1, "by_reason": {"audio: cannot decode the audio": 1}}
    assert card["parts"][0]["name"] == part_path(tmp_path / "feats", "train", int(source.stem[-6:])).name
    assert "1 utterances rejected" in report.summary()
