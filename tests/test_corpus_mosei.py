"""The CMU-MOSEI reader on a hand-made release with the quirks of the real one, and its splits."""
from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from pathlib import Path

import h5py
import numpy as np
import pytest

from mer_data.corpora.mosei import (
    MOSEI_EMOTIONS,
    Segment,
    find_mosei_root,
    parse_segmented_transcript,
    read_csd_labels,
    read_mosei,
    read_mturk_labels,
)
from mer_data.corpora.splits import (
    SplitSpec,
    assign_splits,
    load_dai2021_lists,
    load_mosei_std_folds,
    parse_split_spec,
)
from mer_data.records import Problem, Utterance
from mer_data.schemas import load as load_schema

TRANSCRIPTS = "Transcript/Segmented/Combined"
CSD_REL = "../Labels/CMU_MOSEI_Labels.csd"  # the .csd sits beside Raw/, as in CMU_MOSEI/Labels/

# Line numbers below are 1-based and referred to by the expected results.
VID1_LINES = [
    b"-vid1___2___10.50000000000___14.25___then ___ we left   \r",  # text holds ___; CRLF; trailing spaces
    b"",
    b"-vid1___0___-0.04___3.12345678901___Hello there.",  # negative start: clamped to 0
    b"-vid1___1___3.0___8.5___overlapping words",  # starts before clip 0 ends
    b"-vid1___x___1___2___bad clip",
    b"-vid1___3___20___19___ends before it starts",
    b"other___4___1___2___wrong video",
    b"-vid1___5___30.0___31.0",
    b"-vid1___0___40___41___repeat of clip 0",
    b"-vid1___6___50.0___52.0___never labelled",
]
TRANSCRIPT_FILES = {
    "-vid1": b"\n".join(VID1_LINES) + b"\n",
    "_vid2": b"_vid2___1___5.5___9___second clip\n_vid2___0___0.25___5.0___first clip\n",  # unsorted
    "__vid3": b"__vid3___0___1___2___a key Hugging Face drops\n",
    "v.4": b"v.4___0___0___1.5___a dotted id\n",
    "quiet": b"quiet___0___0___2___nobody labelled this video\n",
}

# (sentiment, happy, sad, anger, surprise, disgust, fear): the averages of the MTurk rows below.
CSD_ROWS = {
    "-vid1": [  # unsorted, one negative start, one interval of no segment, one damaged row
        ([10.5, 14.26], [0, 0, 0, 0, 0, 0, 0]),
        ([-0.0400000001, 3.1234568], [1, 2, 0, 0, 1 / 3, 0, 0]),
        ([3.0, 8.5], [-1.5, 0, 1.5, 0.5, 0, 0, 0]),
        ([60.0, 61.0], [0, 1, 0, 0, 0, 0, 0]),
        ([70.0, 71.0], [math.nan, 0, 0, 0, 0, 0, 0]),
    ],
    "_vid2": [([0.25, 5.0], [3, 3, 0, 0, 0, 0, 0.5]), ([0.27, 5.02], [0, 0, 0, 0, 0, 0, 0])],
    "__vid3": [([1, 2], [0, 0, 0, 0, 0, 0, 0])],
    "v.4": [([0, 1.5], [0, 0, 0, 0, 0, 0, 0])],
    "novid": [([0, 1], [0, 0, 0, 0, 0, 0, 0])],
}

BATCH1_HEADER = ["HITId", "Input.VIDEO_ID", "Input.CLIP", "Answer.anger", "Answer.disgust", "Answer.fear",
                 "Answer.happiness", "Answer.sadness", "Answer.surprise", "Answer.sentiment", "Answer.comment"]
BATCH1_ROWS = [  # line 2 onwards
    ["h1", "videos/-vid1.mp4", "0", "0", "0", "0", "1", "0", "0", "1", ""],
    ["h2", "-vid1", "1", "1", "0", "0", "0", "2", "0", "-2", ""],
    [""] * 11,  # line 4: empty row
    ["h3", "-vid1", "2", "lots", "0", "0", "0", "0", "0", "0", ""],  # line 5: unreadable
    [],  # line 6: blank line
    ["h4", "-vid1", "0", "0", "0", "0", "2", "0", "1", "2", "good\nvideo"],  # lines 7-8
    ["h5", "-vid1", "2", "0", "0", "0", "0", "0", "0", "0", ""],  # line 9
    ["h6", "-vid1", "1", "0", "0", "0", "0", "1", "0", "-1", ""],  # line 10
    ["h7", "", "", "", "", "", "", "", "", "", "returned"],  # line 11: no label data, an empty row too
]
BATCH2_HEADER = ["Answer.sentiment", "Input.CLIP", "Input.VIDEO_ID", "Answer.happiness", "Answer.sadness",
                 "Answer.anger", "Answer.surprise", "Answer.disgust", "Answer.fear"]
BATCH2_ROWS = [  # line 2 onwards
    ["0", "0", "-vid1", "3", "0", "0", "0", "0", "0"],
    ["3", "0", "C:\\clips\\_vid2.mp4", "3", "0", "0", "0", "0", "0"],
    ["3", "0", "_vid2", "3", "0", "0", "0", "0", "1"],
    ["0", "0", "__vid3", "0", "0", "0", "0", "0", "0"],
    ["0", "0", "v.4", "0", "0", "0", "0", "0", "0"],
    ["0", "9", "-vid1", "0", "0", "0", "0", "0", "0"],  # line 7: no such segment
    ["0", "0", "novid", "0", "0", "0", "0", "0", "0"],  # line 8: no such transcript
    ["5", "1", "_vid2", "0", "0", "0", "0", "0", "0"],  # line 9: sentiment out of range
]


def write_csd(path: Path, rows_of_video: dict, root_name: str = "All Labels") -> None:
    """A label file in the CMU Multimodal SDK layout: <root>/data/<vid>/{features,intervals}, <root>/metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        root = handle.create_group(root_name)
        data = root.create_group("data")
        for video_id, rows in rows_of_video.items():
            group = data.create_group(video_id)
            group["intervals"] = np.array([interval for interval, _ in rows], dtype=float)
            group["features"] = np.array([values for _, values in rows], dtype=float)
        root.create_group("metadata")["root name"] = root_name


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def release(tmp_path) -> Path:
    """CMU_MOSEI/ with Raw/ (transcripts, MTurk CSVs in Raw/Labels) and Labels/ (the .csd)."""
    raw = tmp_path / "CMU_MOSEI" / "Raw"
    (raw / TRANSCRIPTS).mkdir(parents=True)
    for video_id, data in TRANSCRIPT_FILES.items():
        (raw / TRANSCRIPTS / f"{video_id}.txt").write_bytes(data)
    write_csd(tmp_path / "CMU_MOSEI" / "Labels" / "CMU_MOSEI_Labels.csd", CSD_ROWS)
    write_csv(raw / "Labels" / "batch1.csv", BATCH1_HEADER, BATCH1_ROWS)
    write_csv(raw / "Labels" / "batch2.csv", BATCH2_HEADER, BATCH2_ROWS)
    return tmp_path / "CMU_MOSEI"


def label(sentiment: float, **emotions: float) -> dict:
    intensities = {name: float(emotions.get(name, 0.0)) for name in MOSEI_EMOTIONS}
    return {"sentiment": sentiment, "emotions": intensities, "multi_hot": [int(intensities[n] > 0) for n in MOSEI_EMOTIONS]}


EXPECTED_LABELS = {
    "-vid1_0": label(1.0, happy=2.0, surprise=1 / 3),
    "-vid1_1": label(-1.5, sad=1.5, anger=0.5),
    "-vid1_2": label(0.0),
    "_vid2_0": label(3.0, happy=3.0, fear=0.5),
}
# id -> (start, end, text, transcript line, MTurk labels file and first line)
EXPECTED_SEGMENTS = {
    "-vid1_0": (0.0, 3.12345678901, "Hello there.", 3, "Labels/batch1.csv", 2),
    "-vid1_1": (3.0, 8.5, "overlapping words", 4, "Labels/batch1.csv", 3),
    "-vid1_2": (10.5, 14.25, "then ___ we left", 1, "Labels/batch1.csv", 9),
    "_vid2_0": (0.25, 5.0, "first clip", 2, "Labels/batch2.csv", 3),
}


def assert_label(actual: dict, expected: dict) -> None:
    """Equal labels, the intensities up to float rounding (1/3 is stored, then averaged)."""
    assert actual.keys() == expected.keys()
    assert actual["sentiment"] == pytest.approx(expected["sentiment"])
    assert actual["emotions"] == pytest.approx(expected["emotions"])
    assert actual["multi_hot"] == expected["multi_hot"]


def transcript_problems() -> list[Problem]:
    rel = f"{TRANSCRIPTS}/-vid1.txt"
    return [
        Problem(rel, 5, "clip 'x' is not a whole number"),
        Problem(rel, 6, "end 19.0 <= start 20.0"),
        Problem(rel, 7, "line does not start with its file's video id and separator (-vid1___)"),
        Problem(rel, 8, "expected -vid1___<clip>___<start>___<end>___<text>"),
        Problem(rel, 9, "duplicate clip 0 (first at line 3); ignored", "-vid1_0"),
    ]


def id_problems() -> list[Problem]:
    return [
        Problem(f"{TRANSCRIPTS}/__vid3.txt", 1,
                "utterance id starts with '__': the Hugging Face webdataset reader silently drops such keys", "__vid3_0"),
        Problem(f"{TRANSCRIPTS}/v.4.txt", 1,
                "utterance id contains '.': tar readers take what follows the first '.' as the member extension", "v.4_0"),
    ]


def by_key(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=Problem.sort_key)


# --------------------------------------------------------------------------------------------
# Layout


def test_find_mosei_root_accepts_raw_release_and_parent(release):
    raw = release / "Raw"
    assert find_mosei_root(raw) == raw
    assert find_mosei_root(release) == raw
    assert find_mosei_root(release.parent) == raw


def test_find_mosei_root_says_what_it_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a CMU-MOSEI release: expected Transcript/Segmented/Combined/"):
        find_mosei_root(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        find_mosei_root(tmp_path / "missing")


# --------------------------------------------------------------------------------------------
# Transcripts


def test_parse_segmented_transcript_handles_every_quirk(release):
    path = release / "Raw" / TRANSCRIPTS / "-vid1.txt"
    segments, problems, counts = parse_segmented_transcript(path, f"{TRANSCRIPTS}/-vid1.txt")

    assert segments == [
        Segment("-vid1", 2, 10.5, 14.25, "then ___ we left", 1, False),
        Segment("-vid1", 0, 0.0, 3.12345678901, "Hello there.", 3, True),
        Segment("-vid1", 1, 3.0, 8.5, "overlapping words", 4, False),
        Segment("-vid1", 6, 50.0, 52.0, "never labelled", 10, False),
    ]
    assert problems == transcript_problems()
    assert counts == {"blank_lines": 1, "clamped_starts": 1, "overlapping_segments": 1}


# --------------------------------------------------------------------------------------------
# SDK labels


def test_read_csd_labels_keeps_rows_as_stored_and_reports_damaged_rows(release):
    labels, problems = read_csd_labels(release / "Labels" / "CMU_MOSEI_Labels.csd", CSD_REL)

    assert sorted(labels) == ["-vid1", "__vid3", "_vid2", "novid", "v.4"]
    assert [(l.start, l.end, l.row) for l in labels["-vid1"]] == [
        (10.5, 14.26, 0), (-0.0400000001, 3.1234568, 1), (3.0, 8.5, 2), (60.0, 61.0, 3)]
    assert labels["-vid1"][2].sentiment == -1.5
    assert labels["-vid1"][2].emotions == {"happy": 0.0, "sad": 1.5, "anger": 0.5, "surprise": 0.0, "disgust": 0.0, "fear": 0.0}
    assert problems == [Problem(CSD_REL, None, "label interval [70.0, 71.0] of -vid1 (row 4): label values are not all finite numbers")]


def test_read_csd_labels_takes_any_root_group_name(tmp_path):
    write_csd(tmp_path / "labels.csd", {"abc": [([0, 1], [1, 0, 0, 0, 0, 0, 2])]}, root_name="Opinion Labels")
    labels, problems = read_csd_labels(tmp_path / "labels.csd")
    assert problems == [] and labels["abc"][0].emotions["fear"] == 2.0


def test_read_csd_labels_refuses_a_video_whose_arrays_declare_terabytes_without_reading_them(tmp_path):
    path = tmp_path / "labels.csd"
    write_csd(path, {"abc": [([0, 1], [1, 0, 0, 0, 0, 0, 2])]})
    with h5py.File(path, "r+") as handle:  # chunked and never written: the file stays small
        group = handle["All Labels"]["data"].create_group("huge")
        group.create_dataset("features", shape=(50_000_000_000, 7), dtype="float64", chunks=(1024, 7))
        group.create_dataset("intervals", shape=(50_000_000_000, 2), dtype="float64", chunks=(1024, 2))
    assert path.stat().st_size < 1 << 20
    labels, problems = read_csd_labels(path, CSD_REL)
    assert labels["huge"] == [] and labels["abc"][0].emotions["fear"] == 2.0  # the other video is read
    assert problems == [Problem(CSD_REL, None, "video huge: /All Labels/data/huge/features declares shape "
                                "(50000000000, 7) of float64 (2.5 TiB), over the 64.0 MiB it may hold: not read")]


def test_read_csd_labels_rejects_files_that_are_not_csd(tmp_path):
    (tmp_path / "text.csd").write_text("not HDF5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        read_csd_labels(tmp_path / "text.csd")
    with h5py.File(tmp_path / "two.csd", "w") as handle:
        handle.create_group("a")
        handle.create_group("b")
    with pytest.raises(ValueError, match="expected one top-level group in the .csd, found 2"):
        read_csd_labels(tmp_path / "two.csd")


def test_read_mosei_with_csd_labels(release):
    reading = read_mosei(release, labels="csd")

    assert reading.root == release / "Raw"
    assert [u.id for u in reading.utterances] == list(EXPECTED_LABELS)
    for utterance in reading.utterances:
        start, end, text, line, _, _ = EXPECTED_SEGMENTS[utterance.id]
        assert (utterance.start, utterance.end, utterance.text) == (start, end, text)
        assert_label(utterance.label, EXPECTED_LABELS[utterance.id])
        assert utterance.lines == {"transcript": line, "labels": None}
        assert utterance.sources["labels"] == CSD_REL

    assert by_key(reading.problems) == by_key(transcript_problems() + id_problems() + [
        Problem(CSD_REL, None, "label interval [70.0, 71.0] of -vid1 (row 4): label values are not all finite numbers"),
        Problem(CSD_REL, None, "label interval [60.0, 61.0] of -vid1 matches no transcript segment"),
        Problem(CSD_REL, None, "label interval [0.27, 5.02] of _vid2 matches only transcript segments that closer labels took (clips 0)"),
        Problem(CSD_REL, None, "video novid has 1 labelled segment(s) but no transcript file Transcript/Segmented/Combined/novid.txt"),
    ])
    assert reading.stats == {
        "labels": "csd", "labels_files": [CSD_REL], "label_records": 9,
        "videos": 5, "videos_without_labels": 1, "segments": 9, "utterances": 4,
        "unlabelled_segments": 3, "unlabelled_segments_examples": ["-vid1_6", "_vid2_1", "quiet_0"],
        "blank_lines": 1, "clamped_starts": 1, "overlapping_segments": 1,
        "emotion_present": {"happy": 2, "sad": 1, "anger": 1, "surprise": 1, "disgust": 0, "fear": 1},
        "problems": 11,
    }


def test_utterance_fields_follow_the_mosei_conventions(release):
    reading = read_mosei(release / "Raw")
    first = reading.utterances[0]

    assert (first.corpus, first.recording, first.speaker, first.gender, first.session) == ("mosei", "-vid1", "-vid1", None, None)
    assert (first.video_region, first.audio_channel) == ("full", None)
    assert first.sources == {
        "video": "Videos/Full/Combined/-vid1.mp4",
        "audio": "Audio/Full/WAV_16000/-vid1.wav",  # named even though it does not exist: media decides
        "transcript": f"{TRANSCRIPTS}/-vid1.txt",
        "labels": CSD_REL,
    }
    assert first.notes == ("negative start time in the transcript clamped to 0",)
    assert [u.notes for u in reading.utterances[1:]] == [(), (), ()]
    assert [v.name for v in reading.recordings] == ["-vid1", "__vid3", "_vid2", "quiet", "v.4"]


def test_labels_validate_against_the_sample_schema(release):
    import jsonschema

    schema = load_schema("sample")
    mosei_label_schema = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": "#/$defs/mosei_label"}
    for labels in ("csd", "mturk"):
        for utterance in read_mosei(release, labels=labels).utterances:
            jsonschema.validate(utterance.label, mosei_label_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**label(0.0), "multi_hot": [0] * 5}, mosei_label_schema)


# --------------------------------------------------------------------------------------------
# MTurk labels


def test_read_mturk_labels_averages_annotators(release):
    paths = sorted((release / "Raw" / "Labels").glob("*.csv"))
    labels, problems, stats = read_mturk_labels(paths, relative_to=release / "Raw")

    clip0 = labels[("-vid1", 0)]
    assert (clip0.annotators, clip0.file, clip0.line, clip0.sentiment) == (3, "Labels/batch1.csv", 2, 1.0)
    assert clip0.emotions == pytest.approx({"happy": 2.0, "sad": 0.0, "anger": 0.0, "surprise": 1 / 3, "disgust": 0.0, "fear": 0.0})
    assert labels[("_vid2", 0)].annotators == 2  # one row named it with a Windows path and extension
    assert sorted(labels) == [("-vid1", 0), ("-vid1", 1), ("-vid1", 2), ("-vid1", 9), ("__vid3", 0), ("_vid2", 0), ("novid", 0), ("v.4", 0)]
    assert problems == [
        Problem("Labels/batch1.csv", 5, "Answer.anger 'lots' is not a number"),
        Problem("Labels/batch2.csv", 9, "sentiment 5.0 is outside [-3, 3]"),
    ]
    assert stats == {"rows": 12, "empty_rows": 3, "annotators_per_clip": {1: 5, 2: 2, 3: 1}}


def test_read_mturk_labels_reports_missing_columns(tmp_path):
    write_csv(tmp_path / "old.csv", [c for c in BATCH2_HEADER if c != "Answer.fear"], [["0"] * 8])
    labels, problems, _ = read_mturk_labels([tmp_path / "old.csv"], relative_to=tmp_path)
    assert labels == {}
    assert problems == [Problem("old.csv", 1, "missing columns: Answer.fear")]


def test_read_mosei_with_mturk_labels(release):
    reading = read_mosei(release, labels="mturk")

    assert [u.id for u in reading.utterances] == list(EXPECTED_LABELS)
    for utterance in reading.utterances:
        _, _, _, line, labels_file, labels_line = EXPECTED_SEGMENTS[utterance.id]
        assert utterance.lines == {"transcript": line, "labels": labels_line}
        assert utterance.sources["labels"] == labels_file
        assert_label(utterance.label, EXPECTED_LABELS[utterance.id])
    assert by_key(reading.problems) == by_key(transcript_problems() + id_problems() + [
        Problem("Labels/batch1.csv", 5, "Answer.anger 'lots' is not a number"),
        Problem("Labels/batch2.csv", 9, "sentiment 5.0 is outside [-3, 3]"),
        Problem("Labels/batch2.csv", 7, "MTurk label of -vid1 clip 9 matches no transcript segment"),
        Problem("Labels/batch2.csv", 8, "video novid has 1 labelled segment(s) but no transcript file Transcript/Segmented/Combined/novid.txt"),
    ])
    assert reading.stats["labels_files"] == ["Labels/batch1.csv", "Labels/batch2.csv"]
    assert reading.stats["mturk"] == {"rows": 12, "empty_rows": 3, "annotators_per_clip": {1: 5, 2: 2, 3: 1}}
    assert (reading.stats["utterances"], reading.stats["unlabelled_segments"], reading.stats["label_records"]) == (4, 3, 8)


def test_csd_and_mturk_labels_agree(release):
    from_csd = {u.id: u for u in read_mosei(release, labels="csd").utterances}
    from_mturk = {u.id: u for u in read_mosei(release, labels="mturk").utterances}

    assert from_csd.keys() == from_mturk.keys() and from_csd
    for utt_id, csd_utterance in from_csd.items():
        mturk_utterance = from_mturk[utt_id]
        assert (csd_utterance.start, csd_utterance.end, csd_utterance.text) == (mturk_utterance.start, mturk_utterance.end, mturk_utterance.text)
        assert_label(csd_utterance.label, mturk_utterance.label)


def test_read_mosei_names_a_missing_label_source(tmp_path):
    (tmp_path / "Raw" / TRANSCRIPTS).mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no CMU_MOSEI_Labels.csd in"):
        read_mosei(tmp_path, labels="csd")
    with pytest.raises(FileNotFoundError, match=r"no \*\.csv in"):
        read_mosei(tmp_path, labels="mturk")
    with pytest.raises(ValueError, match="labels must be one of csd, mturk"):
        read_mosei(tmp_path, labels="sdk")


# --------------------------------------------------------------------------------------------
# Splits


def mosei_utterance(video_id: str, clip: int) -> Utterance:
    """A minimal MOSEI utterance; only id and recording matter for splits."""
    return Utterance(
        id=f"{video_id}_{clip}", corpus="mosei", recording=video_id, speaker=video_id, gender=None,
        start=float(clip), end=clip + 1.0, label=label(0.0), text="", video_region="full", audio_channel=None, sources={},
    )


def test_dai2021_lists_for_mosei():
    published = load_dai2021_lists("mosei")
    assert Counter(published.values()) == {"train": 14524, "valid": 1765, "test": 4188}
    chosen = {split: [i for i, s in published.items() if s == split][:n] for split, n in (("train", 20), ("valid", 5), ("test", 7))}
    listed = [mosei_utterance(utt_id.rsplit("_", 1)[0], int(utt_id.rsplit("_", 1)[1])) for ids in chosen.values() for utt_id in ids]

    assignment, problems, report = assign_splits(listed + [mosei_utterance("-unlisted", 0)], "dai2021", corpus="mosei")

    assert report["counts"] == {"train": 20, "valid": 5, "test": 7}
    assert assignment == {utt_id: split for split, ids in chosen.items() for utt_id in ids}
    assert [(p.utterance, p.reason) for p in problems] == [("-unlisted_0", "not in the dai2021 split lists")]
    assert report["published_not_found"]["count"] == 14524 + 1765 + 4188 - 32
    assert report["leakage"] == {"dialogs": 0, "speakers": 0}
    assert "video-level" in report["note"]


def test_parse_sdk_spec():
    assert parse_split_spec("sdk") == SplitSpec("sdk")
    with pytest.raises(ValueError, match="unknown split spec"):
        parse_split_spec("sdk:1")


def test_sdk_folds_keep_videos_whole_and_report_the_rest():
    folds = load_mosei_std_folds()
    assert Counter(folds.values()) == {"train": 2249, "valid": 300, "test": 678}
    videos = {split: [v for v, s in folds.items() if s == split][:n] for split, n in (("train", 3), ("valid", 2), ("test", 1))}
    utterances = [mosei_utterance(video_id, clip) for ids in videos.values() for video_id in ids for clip in range(4)]
    utterances += [mosei_utterance("-notfolded", clip) for clip in range(2)]

    assignment, problems, report = assign_splits(utterances, "sdk", corpus="mosei")

    assert report["counts"] == {"train": 12, "valid": 8, "test": 4}
    assert all(assignment[u.id] == folds[u.recording] for u in utterances if u.recording in folds)
    assert [(p.utterance, p.reason, p.stage) for p in problems] == [
        ("-notfolded_0", "video -notfolded is in no standard fold", "split"),
        ("-notfolded_1", "video -notfolded is in no standard fold", "split"),
    ]
    assert report["videos_in_no_fold"] == {"count": 1, "first": ["-notfolded"]}
    assert report["fold_videos_not_found"]["count"] == 2249 + 300 + 678 - 6
    assert len(report["fold_videos_not_found"]["first"]) == 10
    assert report["leakage"] == {"dialogs": 0, "speakers": 0}


def test_sdk_folds_are_mosei_only():
    with pytest.raises(ValueError, match="'sdk' split is the CMU-MOSEI standard folds"):
        assign_splits([], "sdk", corpus="iemocap")


def test_random_split_of_mosei_never_leaks_a_video():
    utterances = [mosei_utterance(f"v{video:03d}", clip) for video in range(300) for clip in range(5)]

    assignment, problems, report = assign_splits(utterances, "random:11", corpus="mosei")
    again, _, _ = assign_splits(list(reversed(utterances)), "random:11", corpus="mosei")

    assert problems == [] and assignment == again
    splits_of_video = defaultdict(set)
    for utterance in utterances:
        splits_of_video[utterance.recording].add(assignment[utterance.id])
    assert all(len(splits) == 1 for splits in splits_of_video.values())
    video_counts = Counter(next(iter(splits)) for splits in splits_of_video.values())
    assert video_counts["train"] / 300 == pytest.approx(0.8, abs=0.07)
    assert report["leakage"] == {"dialogs": 0, "speakers": 0}
    # The same utterances under the utterance-level rule leak videos: the corpus switch matters.
    _, _, utterance_level = assign_splits(utterances, "random:11", corpus="iemocap")
    assert utterance_level["leakage"]["dialogs"] > 100
