"""Split presets: the published dai2021 lists, leave-one-session-out, deterministic random."""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from mer_data.corpora.iemocap import parse_utterance_id
from mer_data.corpora.splits import SplitSpec, assign_splits, load_dai2021_lists, parse_split_spec
from mer_data.records import Utterance


def make_utterance(utt_id: str) -> Utterance:
    """A minimal IEMOCAP utterance; only id, recording, speaker and session matter for splits."""
    parts = parse_utterance_id(utt_id)
    return Utterance(
        id=utt_id, corpus="iemocap", recording=parts.dialog, speaker=f"Ses{parts.session:02d}_{parts.speaker_gender}",
        gender=parts.speaker_gender, start=0.0, end=1.0, label={"category": "neu", "vad": [2.5, 2.5, 2.5]},
        text="", video_region="left", audio_channel=0, sources={}, session=parts.session,
    )


def synthetic_corpus(per_dialog: int = 40) -> list[Utterance]:
    """Two dialogs per session, both speakers in each: 5 sessions x 2 dialogs x per_dialog."""
    utterances = []
    for session in range(1, 6):
        for marker, dialog in (("F", "impro01"), ("M", "script01_1b")):
            for number in range(per_dialog):
                speaker = "FM"[number % 2]
                utterances.append(make_utterance(f"Ses{session:02d}{marker}_{dialog}_{speaker}{number:03d}"))
    return utterances


# --------------------------------------------------------------------------------------------
# Spec parsing


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("dai2021", SplitSpec("dai2021")),
        ("session:3", SplitSpec("session", session=3)),
        ("random:7", SplitSpec("random", seed=7, fractions=(0.8, 0.1, 0.1))),
        ("random:7:0.7,0.2,0.1", SplitSpec("random", seed=7, fractions=(0.7, 0.2, 0.1))),
    ],
)
def test_parse_split_spec(spec, expected):
    assert parse_split_spec(spec) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("dai2022", "unknown split spec"),
        ("dai2021:1", "unknown split spec"),
        ("session:", "must be an integer"),
        ("session:6", "session must be 1..5"),
        ("session:0", "session must be 1..5"),
        ("random:abc", "SEED must be an integer"),
        ("random:1:0.8,0.1", "three non-negative numbers"),
        ("random:1:0.8,0.1,0.2", "summing to 1"),
        ("random:1:1.2,-0.1,-0.1", "non-negative"),
    ],
)
def test_parse_split_spec_rejects_with_a_clear_error(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_split_spec(spec)


# --------------------------------------------------------------------------------------------
# dai2021


def test_dai2021_lists_have_the_published_sizes():
    counts = Counter(load_dai2021_lists("iemocap").values())
    assert counts == {"train": 5162, "valid": 737, "test": 1481}


def test_dai2021_places_listed_ids_and_reports_the_rest():
    published = load_dai2021_lists("iemocap")
    chosen = {split: [i for i, s in published.items() if s == split][:n] for split, n in (("train", 30), ("valid", 7), ("test", 11))}
    listed = [make_utterance(utt_id) for ids in chosen.values() for utt_id in ids]
    unlisted = make_utterance("Ses01F_impro01_F999")
    assert unlisted.id not in published

    assignment, problems, report = assign_splits(listed + [unlisted], "dai2021")

    assert assignment == {utt_id: split for split, ids in chosen.items() for utt_id in ids}
    assert report["counts"] == {"train": 30, "valid": 7, "test": 11}
    assert [(p.utterance, p.reason) for p in problems] == [("Ses01F_impro01_F999", "not in the dai2021 split lists")]
    assert report["unassigned"] == 1
    assert report["published"] == {"train": 5162, "valid": 737, "test": 1481}
    assert report["published_not_found"]["count"] == 7380 - 48
    assert len(report["published_not_found"]["first"]) == 10
    assert not set(report["published_not_found"]["first"]) & set(assignment)


def test_dai2021_unknown_corpus():
    with pytest.raises(ValueError, match="no dai2021 split lists for corpus 'nope'"):
        assign_splits([], "dai2021", corpus="nope")


# --------------------------------------------------------------------------------------------
# Leave one session out


@pytest.mark.parametrize("test_session, valid_session", [(1, 2), (3, 4), (5, 1)])
def test_session_split_keeps_the_test_session_out_of_training(test_session, valid_session):
    utterances = synthetic_corpus()
    assignment, problems, report = assign_splits(utterances, f"session:{test_session}")

    assert problems == [] and len(assignment) == len(utterances)
    speakers_in = {split: {u.speaker for u in utterances if assignment[u.id] == split} for split in ("train", "valid", "test")}
    assert speakers_in["test"] == {f"Ses{test_session:02d}_F", f"Ses{test_session:02d}_M"}
    assert speakers_in["valid"] == {f"Ses{valid_session:02d}_F", f"Ses{valid_session:02d}_M"}
    assert not speakers_in["train"] & (speakers_in["test"] | speakers_in["valid"])
    assert report["counts"] == {"train": 240, "valid": 80, "test": 80}
    assert report["sessions"] == {"test": test_session, "valid": valid_session}
    assert report["leakage"] == {"dialogs": 0, "speakers": 0}


def test_leave_session_out_of_two_sessions_warns_that_valid_is_empty_and_what_to_do():
    from mer_data.corpora.splits import empty_split_warnings

    two_sessions = [u for u in synthetic_corpus(per_dialog=2) if u.session in (1, 2)]
    assignment, _, report = assign_splits(two_sessions, "session:2")
    written = Counter(assignment.values())
    assert written == {"train": 4, "test": 4}
    (warning,) = empty_split_warnings(written, report)
    assert warning.startswith("the valid split is empty: split session:2 puts session 3 in valid")
    assert "random:SEED" in warning and "mer train needs train and valid samples" in warning
    # Session 1 out: session 2 is valid, and nothing is left to train on.
    assignment, _, report = assign_splits(two_sessions, "session:1")
    assert [w.split(":")[0] for w in empty_split_warnings(Counter(assignment.values()), report)] == [
        "the train split is empty"]
    # Planned but every one rejected: said so, not blamed on the split.
    assert empty_split_warnings({"train": 4, "valid": 0, "test": 4}, {"counts": {"valid": 3}}) == [
        "the valid split is empty: all 3 utterances assigned to it were rejected (errors.jsonl); "
        "mer train needs train and valid samples"]
    assert empty_split_warnings({"train": 8, "valid": 1, "test": 1}, report) == []


def test_session_split_reports_utterances_without_a_session():
    orphan = Utterance(
        id="clip_1", corpus="other", recording="clip", speaker="clip", gender=None, start=0.0, end=1.0,
        label={}, text="", video_region="full", audio_channel=None, sources={"labels": "labels.csv"},
    )
    assignment, problems, _ = assign_splits([orphan], "session:1")
    assert assignment == {}
    assert [(p.file, p.utterance) for p in problems] == [("labels.csv", "clip_1")]


# --------------------------------------------------------------------------------------------
# Random


def test_random_split_is_deterministic_and_about_80_10_10():
    utterances = synthetic_corpus(per_dialog=500)  # 5000 utterances
    first, problems, report = assign_splits(utterances, "random:13")
    again, _, _ = assign_splits(list(reversed(utterances)), "random:13")
    other_seed, _, _ = assign_splits(utterances, "random:14")

    assert problems == [] and first == again
    assert first != other_seed
    fractions = {split: count / len(utterances) for split, count in report["counts"].items()}
    assert fractions["train"] == pytest.approx(0.8, abs=0.02)
    assert fractions["valid"] == pytest.approx(0.1, abs=0.015)
    assert fractions["test"] == pytest.approx(0.1, abs=0.015)
    # An utterance-level split puts every dialog and speaker of this corpus in several splits.
    assert report["leakage"] == {"dialogs": 10, "speakers": 10}
    assert "leak" in report["note"]


def test_random_split_honours_fractions():
    utterances = synthetic_corpus(per_dialog=500)
    _, _, report = assign_splits(utterances, "random:1:0.5,0.5,0")
    assert report["counts"]["test"] == 0
    assert report["counts"]["train"] / len(utterances) == pytest.approx(0.5, abs=0.03)


def test_random_split_does_not_depend_on_python_hash_seed():
    # Python's hash() of a str changes with PYTHONHASHSEED; the split must not.
    program = (
        "from mer_data.corpora.splits import stable_unit_interval;"
        "print([round(stable_unit_interval(5, f'Ses01F_impro01_F{i:03d}'), 12) for i in range(20)])"
    )
    outputs = {
        subprocess.run([sys.executable, "-c", program], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
