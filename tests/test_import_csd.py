"""`mer features import-csd`: CMU Multimodal SDK computational sequences (HDF5 .csd) -> feature tables.

The .csd files are written here with h5py in the SDK's layout (root group / data / <entry> /
features + intervals, metadata as JSON strings in one-element string arrays) for the utterances of
the `small_shards` fixture (2 IEMOCAP dialogs: Ses01 -> train, Ses02 -> test).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mer_data import schemas
from mer_data.cli import main
from mer_data.model.features.csd import CsdError, import_csd
from mer_data.model.features.table import ERRORS_NAME, read_card, read_split, sequence

FRAME_S = 0.25                     # acoustic frames: exact in binary, so boundaries are unambiguous
COVERED_UNTIL_S = 10.0             # the test dialog's acoustic entry stops here
VISUAL_STEP_S = 0.1
WORD_OFFSETS = ((0.05, 0.35), (0.40, 0.80), (0.85, 1.15))   # three words in each utterance


def write_csd(path: Path, root: str, entries: dict, metadata: dict | None = None, *, as_attributes=False) -> Path:
    """A computational sequence in the SDK's HDF5 layout."""
    with h5py.File(path, "w") as handle:
        group = handle.create_group(root)
        data = group.create_group("data")
        for key, (features, intervals) in entries.items():
            entry = data.create_group(key)
            entry.create_dataset("features", data=features)
            entry.create_dataset("intervals", data=intervals)
        meta = group.create_group("metadata")
        for key, value in (metadata or {}).items():
            if as_attributes:      # what older files hold: raw attributes, bytes or arrays of bytes
                meta.attrs[key] = value
            else:                  # what the SDK's writer does: json.dumps in a 1-element vlen str array
                dataset = meta.create_dataset(key, (1,), dtype=h5py.special_dtype(vlen=str))
                dataset[0] = json.dumps(value)
    return path


@pytest.fixture(scope="module")
def utterances(small_shards) -> pd.DataFrame:
    shards, _ = small_shards
    index = pd.read_parquet(shards / "index.parquet").set_index("key")
    # Exact multiples of a frame would make "overlaps" depend on the comparison; the fixture has none.
    assert not any(math.isclose(t * 4, round(t * 4)) for t in [*index.start, *index.end])
    assert (index.end - index.start > WORD_OFFSETS[-1][1] + 0.05).all()
    return index


def acoustic_entries(utterances):
    """COVAREP keyed by dialog: 0.25 s frames over the recording; features [frame, dialog number, 1]."""
    entries = {}
    for number, (recording, group) in enumerate(sorted(utterances.groupby("recording"))):
        frames = int(math.ceil(group.end.max() / FRAME_S)) + 2
        if group.split.iloc[0] == "test":
            frames = int(COVERED_UNTIL_S / FRAME_S)
        k = np.arange(frames, dtype=np.float64)
        features = np.stack([k, np.full(frames, number), np.ones(frames)], axis=1)
        entries[recording] = (features, np.stack([k * FRAME_S, (k + 1) * FRAME_S], axis=1))
    return entries


def expected_frames(row) -> list[int]:
    """Frames overlapping the utterance, counted from its ends (a different route than the importer's mask)."""
    last = int(math.ceil(row.end / FRAME_S)) - 1
    if row.split == "test":
        last = min(last, int(COVERED_UNTIL_S / FRAME_S) - 1)
    return list(range(int(math.floor(row.start / FRAME_S)), last + 1))


@pytest.fixture(scope="module")
def imported(small_shards, utterances, tmp_path_factory):
    shards, _ = small_shards
    folder = tmp_path_factory.mktemp("csd")
    train = utterances[utterances.split == "train"].sort_values("start")
    nan_frame = int(math.floor(train.start.iloc[0] / FRAME_S)) + 2
    acoustic = acoustic_entries(utterances)
    acoustic[train.recording.iloc[0]][0][nan_frame, 2] = np.nan
    acoustic[train.recording.iloc[0]][0][nan_frame + 1, 1] = -np.inf
    acoustic["Ses09M_impro09"] = (np.zeros((3, 3)), np.array([[0, 1], [1, 2], [2, 3]], dtype=float))
    covarep = write_csd(folder / "CMU_TEST_COVAREP.csd", "COVAREP", acoustic, {
        "root name": "COVAREP", "dimension names": ["frame", "dialog", "one"],
        "computational sequence description": "COVAREP acoustic features (test)", "dataset name": "IEMOCAP-test",
        "alignment compatible": True})

    skipped = utterances.index[-1]
    visual = {}
    for number, (key, row) in enumerate(utterances.iterrows()):
        if key == skipped:
            continue
        steps = int((row.end - row.start) / VISUAL_STEP_S)
        i = np.arange(steps, dtype=np.float64)
        visual[key] = (np.stack([i, i * 10, np.full(steps, number), np.zeros(steps)], axis=1),
                       np.stack([row.start + i * VISUAL_STEP_S, row.start + (i + 1) * VISUAL_STEP_S], axis=1))
    visual["Ses01F_impro01_F999"] = (np.ones((2, 4)), np.array([[0.0, 0.1], [0.1, 0.2]]))
    facet = write_csd(folder / "facet.csd", "FACET 4.2", visual, {
        "root name": b"FACET 4.2", "dimension names": np.array([b"AU1", b"AU2", b"AU4", b"AU6"]),
        "dataset version": np.array(["1.0"], dtype=h5py.string_dtype())}, as_attributes=True)

    words, word_rows = {}, {}
    for recording, group in utterances.groupby("recording"):
        intervals = [(0.0, 0.1)]          # a silence before every utterance
        for _, row in group.sort_values("start").iterrows():
            intervals += [(row.start + a, row.start + b) for a, b in WORD_OFFSETS]
        intervals = np.array(intervals)
        count = len(intervals)
        words[recording] = (np.stack([np.arange(count)] + [np.full(count, 0.5)] * 4, axis=1), intervals)
        word_rows[recording] = intervals
    glove = write_csd(folder / "glove.csd", "glove_vectors", words)

    feats = folder / "feats"
    messages = []
    report = import_csd([covarep, facet, glove], feats, shards=shards, log=messages.append)
    return dict(feats=feats, report=report, messages=messages, files=[covarep, facet, glove], skipped=skipped,
                nan_frame=nan_frame, nan_recording=train.recording.iloc[0], word_rows=word_rows, shards=shards)


def rows_by_id(feats) -> dict[str, dict]:
    return {row["id"]: row for split in ("train", "valid", "test") for row in read_split(feats, split).to_pylist()}


def test_card_validates_and_describes_the_import(imported, small_shards):
    shards, _ = small_shards
    feats, report = imported["feats"], imported["report"]
    card = read_card(feats)
    assert schemas.errors("features", card) == []
    assert report.errors == [] and (feats / ERRORS_NAME).read_text() == ""
    dataset = json.loads((shards / "dataset.json").read_text())
    assert card["corpus"] == "iemocap" and card["label_names"] == dataset["options"]["classes"]
    assert card["source"]["kind"] == "csd" and card["source"]["path"] == str(shards)
    assert card["source"]["dataset_fingerprint"] == dataset["options"]["fingerprint"]
    files = card["source"]["files"]
    assert [f["root"] for f in files] == ["COVAREP", "FACET 4.2", "glove_vectors"]
    for entry, path in zip(files, imported["files"]):
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert files[0]["metadata"]["dataset name"] == "IEMOCAP-test"          # JSON string decoded
    assert files[0]["metadata"]["alignment compatible"] is True
    assert files[1]["metadata"]["root name"] == "FACET 4.2"                # bytes attribute decoded
    assert files[1]["metadata"]["dataset version"] == 1.0                  # 1-element array unwrapped
    modalities = card["modalities"]
    assert list(modalities) == ["COVAREP", "FACET_4_2", "glove_vectors"]
    assert [m["role"] for m in modalities.values()] == ["a", "v", "t"]
    assert modalities["COVAREP"]["names"] == ["frame", "dialog", "one"]
    assert modalities["FACET_4_2"]["names"] == ["AU1", "AU2", "AU4", "AU6"]
    assert modalities["glove_vectors"]["names"] == ["f0", "f1", "f2", "f3", "f4"]
    assert modalities["COVAREP"]["step_seconds"] == pytest.approx(FRAME_S)
    assert modalities["FACET_4_2"]["step_seconds"] == pytest.approx(VISUAL_STEP_S)
    assert modalities["glove_vectors"]["step_seconds"] is None           # words are not regular steps
    assert modalities["COVAREP"]["description"] == "COVAREP acoustic features (test)"
    assert modalities["FACET_4_2"]["options"]["utterance_entry_times"] == "recording"


def test_rows_splits_and_targets_follow_the_shards(imported, utterances, small_shards):
    shards, _ = small_shards
    feats, card = imported["feats"], imported["report"].card
    label_names = card["label_names"]
    for split in ("train", "valid", "test"):
        table = read_split(feats, split)
        expected = utterances[utterances.split == split]
        assert sorted(table.column("id").to_pylist()) == sorted(expected.index)
        assert card["counts"]["per_split"][split] == len(expected)
        for row in table.to_pylist():
            source = utterances.loc[row["id"]]
            assert row["split"] == split and row["key"] == row["id"]
            assert row["recording"] == source.recording and row["start"] == source.start
            assert row["source"] == "CMU_TEST_COVAREP.csd + facet.csd + glove.csd"
            assert row["target"] == [float(name == source.label) for name in label_names]
    assert card["counts"]["total"] == len(utterances)
    assert sum(part["rows"] for part in card["parts"]) == len(utterances)


def test_recording_keyed_frames_are_cut_to_each_utterance(imported, utterances):
    rows = rows_by_id(imported["feats"])
    empty = 0
    for key, source in utterances.iterrows():
        frames = expected_frames(source)
        values = sequence(rows[key], "COVAREP", 3)
        times = np.array(rows[key]["COVAREP_times"])
        assert values[:, 0].tolist() == frames, key
        empty += not frames
        starts = np.clip(np.array(frames) * FRAME_S, source.start, source.end)
        ends = np.clip((np.array(frames) + 1) * FRAME_S, source.start, source.end)
        np.testing.assert_allclose(times, (starts + ends) / 2 - source.start, atol=1e-5)
    assert empty >= 2   # the test dialog's entry stops at 10 s: its later utterances have no frames
    card = imported["report"].card
    assert card["counts"]["empty_sequences"]["COVAREP"] == empty
    # One interior frame by hand: frame k spans [k/4, (k+1)/4]; its time is its centre minus the start.
    first = utterances[utterances.split == "train"].sort_values("start").iloc[0]
    k = int(math.floor(first.start / FRAME_S)) + 1
    assert rows[first.name]["COVAREP_times"][1] == pytest.approx(k * FRAME_S + FRAME_S / 2 - first.start, abs=1e-5)


def test_non_finite_values_become_zero_and_are_counted(imported, utterances):
    rows = rows_by_id(imported["feats"])
    frame = imported["nan_frame"]
    hit = 0
    for key, source in utterances[utterances.recording == imported["nan_recording"]].iterrows():
        values = sequence(rows[key], "COVAREP", 3)
        assert np.isfinite(values).all()
        for offset, column in ((0, 2), (1, 1)):
            position = np.flatnonzero(values[:, 0] == frame + offset)
            if position.size:
                hit += 1
                assert values[position[0], column] == 0.0
    assert hit >= 2
    options = imported["report"].card["modalities"]["COVAREP"]["options"]
    assert options["non_finite_values"] == hit
    assert any("non-finite" in message for message in imported["messages"])


def test_utterance_keyed_steps_keep_their_times_and_missing_ones_are_empty(imported, utterances):
    rows = rows_by_id(imported["feats"])
    card = imported["report"].card
    for number, (key, source) in enumerate(utterances.iterrows()):
        values = sequence(rows[key], "FACET_4_2", 4)
        if key == imported["skipped"]:
            assert values.shape == (0, 4) and rows[key]["FACET_4_2_times"] == []
            continue
        steps = int((source.end - source.start) / VISUAL_STEP_S)
        assert values[:, 0].tolist() == list(range(steps)) and (values[:, 2] == number).all()
        np.testing.assert_allclose(rows[key]["FACET_4_2_times"], np.arange(steps) * VISUAL_STEP_S + 0.05, atol=1e-4)
    assert card["counts"]["empty_sequences"]["FACET_4_2"] == 1


def test_word_intervals_go_to_every_utterance_they_overlap(imported, utterances):
    rows = rows_by_id(imported["feats"])
    assert len(utterances) > 0
    for key, source in utterances.iterrows():
        intervals = imported["word_rows"][source.recording]
        expected = [number for number, (start, end) in enumerate(intervals)
                    if start < source.end and end > source.start]
        assert sequence(rows[key], "glove_vectors", 5)[:, 0].tolist() == expected, key
        own = [number for number, (start, _) in enumerate(intervals) if math.isclose(start, source.start + 0.05)]
        assert own and own[0] in expected
        position = expected.index(own[0])
        assert rows[key]["glove_vectors_times"][position] == pytest.approx(0.2, abs=1e-5)   # centre of 0.05-0.35


def test_unmatched_entries_are_counted_and_named(imported):
    card, messages = imported["report"].card, imported["messages"]
    assert card["counts"]["unmatched_entries"] == {"COVAREP": 1, "FACET_4_2": 1, "glove_vectors": 0}
    assert card["modalities"]["COVAREP"]["options"]["unmatched_examples"] == ["Ses09M_impro09"]
    assert any("Ses09M_impro09" in m and "match no utterance" in m for m in messages)
    assert any("Ses01F_impro01_F999" in m for m in messages)
    summary = imported["report"].summary()
    assert "COVAREP (role a, 3 dims" in summary and "unmatched: 1" in summary


def test_sdk_aligned_segment_keys_and_relative_times(small_shards, utterances, tmp_path):
    """`<video>[i]` entries (the SDK's align output) match by time; i is not our clip number."""
    shards, _ = small_shards
    train = utterances[utterances.split == "train"].sort_values("end", ascending=False)
    # The SDK numbers a video's segments by its label rows; here in the reverse of our clip order.
    segments = {f"{row.recording}[{n}]": (np.array([[float(n)]]), np.array([[row.start + 0.01, row.end - 0.01]]))
                for n, (_, row) in enumerate(train.iterrows())}
    relative = {key: (np.array([[1.0], [2.0]]), np.array([[0.0, 0.5], [0.5, 1.0]])) for key in train.index}
    files = [write_csd(tmp_path / "aligned.csd", "opensmile_eb10", segments),
             write_csd(tmp_path / "faces.csd", "OpenFace_2.0", relative)]
    report = import_csd(files, tmp_path / "feats", shards=shards, log=lambda _: None)
    rows = rows_by_id(tmp_path / "feats")
    for n, (key, row) in enumerate(train.iterrows()):
        assert rows[key]["opensmile_eb10"] == [[float(n)]]
        assert rows[key]["opensmile_eb10_times"] == pytest.approx([(row.end - row.start) / 2], abs=1e-5)
        assert rows[key]["OpenFace_2_0_times"] == pytest.approx([0.25, 0.75])
    options = report.card["modalities"]
    assert options["opensmile_eb10"]["options"]["matched_entries"] == {"segment": len(train)}
    assert options["OpenFace_2_0"]["options"]["utterance_entry_times"] == "utterance"
    assert options["OpenFace_2_0"]["role"] == "v" and options["opensmile_eb10"]["role"] == "a"


def test_an_utterance_takes_its_own_entry_before_a_segment_or_its_recording(small_shards, utterances, tmp_path):
    shards, _ = small_shards
    first = utterances[utterances.split == "train"].sort_values("start").iloc[0]
    recording = first.recording
    frames = np.arange(100, dtype=np.float64)
    entries = {
        recording: (np.ones((100, 1)), np.stack([frames * FRAME_S, (frames + 1) * FRAME_S], axis=1)),
        first.name: (np.full((2, 1), 2.0), np.array([[0.0, 0.5], [0.5, 1.0]])),
        f"{recording}[0]": (np.full((1, 1), 3.0), np.array([[first.start, first.end]])),
    }
    report = import_csd([write_csd(tmp_path / "COVAREP.csd", "COVAREP", entries)], tmp_path / "feats",
                        shards=shards, log=lambda _: None)
    rows = rows_by_id(tmp_path / "feats")
    assert rows[first.name]["COVAREP"] == [[2.0], [2.0]]
    others = utterances[(utterances.recording == recording) & (utterances.index != first.name)].index
    assert all(rows[key]["COVAREP"] and {v for (v,) in rows[key]["COVAREP"]} == {1.0} for key in others)
    options = report.card["modalities"]["COVAREP"]["options"]
    assert options["matched_entries"] == {"recording": 1, "utterance": 1}
    assert options["unmatched_examples"] == [f"{recording}[0]"]
    assert any(f"{recording}[0]: utterance {first.name} takes the steps of entry {first.name!r} instead" in w
               for w in report.warnings)


def _broken_entries(kind):
    good = (np.zeros((2, 3)), np.array([[0.0, 1.0], [1.0, 2.0]]))
    if kind == "ragged":
        return {"Ses01F_impro01": good, "Ses02F_impro05a": (np.zeros((3, 3)), np.array([[0.0, 1.0], [1.0, 2.0]]))}
    if kind == "dimensions":
        return {"Ses01F_impro01": good, "Ses02F_impro05a": (np.zeros((2, 4)), good[1])}
    if kind == "words":
        return {"Ses01F_impro01": (np.array([[b"hello"], [b"world"]]), good[1])}
    if kind == "reversed":
        return {"Ses01F_impro01": (good[0], np.array([[0.0, 1.0], [2.0, 1.5]]))}


@pytest.mark.parametrize("kind, message", [
    ("not-hdf5", "not an HDF5 computational sequence"),
    ("no-data", "no 'data' group"),
    ("ragged", "entry 'Ses02F_impro05a' has 3 feature rows but 2 intervals"),
    ("dimensions", "entry 'Ses02F_impro05a' has 4 features per step, but entry 'Ses01F_impro01' has 3"),
    ("words", "entry 'Ses01F_impro01': features are not numbers"),
    ("reversed", "entry 'Ses01F_impro01': interval row 1"),
])
def test_a_broken_csd_is_refused_naming_file_and_entry(small_shards, tmp_path, kind, message):
    shards, _ = small_shards
    path = tmp_path / "COVAREP.csd"
    if kind == "not-hdf5":
        path.write_text("COVAREP,not,hdf5\n")
    elif kind == "no-data":
        with h5py.File(path, "w") as handle:
            handle.create_group("COVAREP").create_group("metadata")
    else:
        write_csd(path, "COVAREP", _broken_entries(kind))
    with pytest.raises(CsdError) as caught:
        import_csd([path], tmp_path / "feats", shards=shards, log=lambda _: None)
    assert str(path) in str(caught.value) and message in str(caught.value)
    assert not (tmp_path / "feats" / "features.json").exists()


@pytest.mark.parametrize("where", ["features", "intervals", "metadata"])
def test_a_csd_declaring_terabytes_is_refused_before_reading(small_shards, tmp_path, where):
    shards, _ = small_shards
    path = write_csd(tmp_path / "COVAREP.csd", "COVAREP", {"Ses01F_impro01": (np.zeros((2, 74), dtype=np.float32),
                                                                              np.array([[0.0, 1.0], [1.0, 2.0]]))})
    steps = 10_000_000_000  # 74 float32 features each: 2.7 TiB, declared but never written (chunked)
    with h5py.File(path, "r+") as handle:
        sequence = handle["COVAREP"]
        if where == "metadata":
            sequence["metadata"].create_dataset("dimension names", shape=(steps,), dtype="float64", chunks=(4096,))
        else:
            entry = sequence["data"].create_group("Ses02F_impro05a")
            entry.create_dataset("features", shape=(steps, 74), dtype="float32", chunks=(1024, 74))
            entry.create_dataset("intervals", shape=(steps, 2), dtype="float64", chunks=(1024, 2))
            if where == "intervals":  # features within the bound (0.9 GiB), the intervals alone over it
                del entry["features"], entry["intervals"]
                entry.create_dataset("features", shape=(steps // 10, 1), dtype="uint8", chunks=(4096, 1))
                entry.create_dataset("intervals", shape=(steps // 10, 2), dtype="float64", chunks=(1024, 2))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(CsdError) as caught:
        import_csd([path], tmp_path / "feats", shards=shards, log=lambda _: None)
    message = str(caught.value)
    dataset = {"features": "/COVAREP/data/Ses02F_impro05a/features (10000000000, 74) of float32 (2.7 TiB)",
               "intervals": "/COVAREP/data/Ses02F_impro05a/intervals (1000000000, 2) of float64 (14.9 GiB)",
               "metadata": "/COVAREP/metadata/dimension names (10000000000,) of float64 (74.5 GiB)"}[where]
    name, shape = dataset.split(" (", 1)
    assert message.startswith(str(path)) and f"{name} declares shape ({shape}" in message and "not read" in message


def test_an_unknown_sequence_needs_a_role(small_shards, tmp_path):
    shards, _ = small_shards
    path = write_csd(tmp_path / "mine.csd", "MyFeatures",
                     {"Ses01F_impro01": (np.ones((1, 2)), np.array([[5.0, 6.0]]))})
    refusal = r"mine\.csd: cannot tell the modality of sequence 'MyFeatures'.*--role MyFeatures="
    with pytest.raises(CsdError, match=refusal):
        import_csd([path], tmp_path / "feats", shards=shards, log=lambda _: None)
    with pytest.raises(CsdError, match="--role Other: names none of the imported sequences"):
        import_csd([path], tmp_path / "feats", shards=shards, roles={"MyFeatures": "a", "Other": "v"},
                   log=lambda _: None)
    report = import_csd([path], tmp_path / "feats", shards=shards, roles={"MyFeatures": "a"}, log=lambda _: None)
    assert report.card["modalities"]["MyFeatures"]["role"] == "a"


def test_a_csd_of_another_corpus_is_refused(small_shards, tmp_path):
    shards, _ = small_shards
    path = write_csd(tmp_path / "COVAREP.csd", "COVAREP", {"-vidA": (np.ones((1, 2)), np.array([[0.0, 1.0]]))})
    with pytest.raises(CsdError, match=r"COVAREP\.csd: no entry matches an utterance of the shards \(entries: -vidA;"):
        import_csd([path], tmp_path / "feats", shards=shards, log=lambda _: None)


def test_a_finished_folder_is_kept_unless_overwrite(small_shards, tmp_path):
    shards, _ = small_shards
    path = write_csd(tmp_path / "COVAREP.csd", "COVAREP",
                     {"Ses01F_impro01": (np.ones((1, 2)), np.array([[5.0, 6.0]]))})
    feats = tmp_path / "feats"
    import_csd([path], feats, shards=shards, log=lambda _: None)
    with pytest.raises(CsdError, match="already holds finished feature tables.*--overwrite"):
        import_csd([path], feats, shards=shards, log=lambda _: None)
    write_csd(path, "COVAREP", {"Ses01F_impro01": (np.full((1, 2), 7.0), np.array([[5.0, 6.0]]))})
    import_csd([path], feats, shards=shards, overwrite=True, log=lambda _: None)
    values = [v for row in read_split(feats, "train").to_pylist() for v in row["COVAREP"]]
    assert values == [[7.0, 7.0]]


def test_cli_imports_and_reports_errors(small_shards, tmp_path):
    shards, _ = small_shards
    path = write_csd(tmp_path / "mine.csd", "MyFeatures",
                     {"Ses02F_impro05a": (np.ones((1, 2)), np.array([[2.0, 3.0]]))})
    feats = tmp_path / "feats"
    runner = CliRunner()
    refused = runner.invoke(main, ["features", "import-csd", str(path), str(feats), "--shards", str(shards)])
    assert refused.exit_code == 1 and "mine.csd: cannot tell the modality" in refused.output
    result = runner.invoke(main, ["features", "import-csd", str(path), str(feats), "--shards", str(shards),
                                  "--role", "MyFeatures=v"])
    assert result.exit_code == 0, result.output
    assert "imported 1 .csd file(s)" in result.output
    card = read_card(feats)
    assert card["modalities"]["MyFeatures"]["role"] == "v"
    assert card["counts"]["empty_sequences"]["MyFeatures"] == card["counts"]["total"] - 1
