"""Train/valid/test assignment of utterances, by a preset named in a short spec string.

Specs:
- `dai2021`: the utterance lists published with Dai et al. (NAACL 2021), shipped in
  `mer_data/data/splits/dai2021/<corpus>/{train,valid,test}.txt`. For IEMOCAP it is a random
  utterance split: utterances of one dialog (and one speaker) fall into several splits. For MOSEI
  it follows the SDK standard folds video by video (a subset of their utterances): no video leaks.
- `session:N` (IEMOCAP, N in 1..5): leave-one-session-out. Session N is test, the next session
  ((N % 5) + 1) is valid, the other three are train. No speaker is in two splits.
- `sdk` (MOSEI): the CMU Multimodal SDK's standard folds, lists of video ids shipped in
  `mer_data/data/splits/mosei_std_folds/{train,valid,test}.txt`; every utterance follows its video.
- `random:SEED[:TRAIN,VALID,TEST]`: each utterance goes to a split by a stable hash of SEED and its
  id (SHA-256, the same on every machine and Python run), 80/10/10 unless fractions are given. Like
  the published random protocol, it leaks dialogs and speakers across splits. For MOSEI the hash is
  of the video id instead (the fractions are then of videos), so that a video, which is also its
  one speaker, stays in one split.

Every assignment reports "leakage": how many dialogs (recordings) and speakers are in more than one
split, so that a leaky protocol is visible in the dataset card rather than hidden.
"""
from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from importlib import resources
from typing import Any, Sequence

from mer_data.records import SPLITS, Problem, Utterance

IEMOCAP_SESSIONS = 5
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
EXAMPLES_IN_REPORT = 10

NOT_IN_DAI2021 = "not in the dai2021 split lists"
_RANDOM_LEAK_NOTE = "utterance-level random split: dialogs and speakers leak across splits (see 'leakage')"
_VIDEO_SPLIT_NOTE = "video-level split: every utterance follows its video (and speaker) into one split"
_DAI2021_NOTES = {"iemocap": _RANDOM_LEAK_NOTE, "mosei": _VIDEO_SPLIT_NOTE}
# Corpora whose random split hashes the recording, not the utterance: MOSEI has one speaker per
# video, so an utterance-level split would put the test speakers' other utterances in training.
RANDOM_BY_RECORDING = frozenset({"mosei"})


@dataclass(frozen=True)
class SplitSpec:
    """A parsed split spec: `kind` is "dai2021", "sdk", "session" or "random"."""

    kind: str
    session: int | None = None
    seed: int | None = None
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS


def parse_split_spec(spec: str) -> SplitSpec:
    """`dai2021` | `sdk` | `session:N` | `random:SEED[:TRAIN,VALID,TEST]`; ValueError saying what is wrong."""
    kind, _, rest = spec.strip().partition(":")
    if kind in ("dai2021", "sdk") and not rest:
        return SplitSpec(kind)
    if kind == "session":
        return SplitSpec("session", session=_parse_session(rest, spec))
    if kind == "random":
        seed_text, _, fractions_text = rest.partition(":")
        seed = _parse_int(seed_text, f"split spec {spec!r}: SEED must be an integer")
        fractions = _parse_fractions(fractions_text, spec) if fractions_text else DEFAULT_FRACTIONS
        return SplitSpec("random", seed=seed, fractions=fractions)
    raise ValueError(f"unknown split spec {spec!r}: expected 'dai2021', 'sdk', 'session:N' or 'random:SEED[:TRAIN,VALID,TEST]'")


def _parse_int(text: str, message: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(message) from None


def _parse_session(text: str, spec: str) -> int:
    session = _parse_int(text, f"split spec {spec!r}: N in 'session:N' must be an integer")
    if not 1 <= session <= IEMOCAP_SESSIONS:
        raise ValueError(f"split spec {spec!r}: session must be 1..{IEMOCAP_SESSIONS}")
    return session


def _parse_fractions(text: str, spec: str) -> tuple[float, float, float]:
    message = f"split spec {spec!r}: fractions must be three non-negative numbers summing to 1, e.g. 0.8,0.1,0.1"
    try:
        values = tuple(float(value) for value in text.split(","))
    except ValueError:
        raise ValueError(message) from None
    if len(values) != 3 or any(not math.isfinite(v) or v < 0 for v in values) or not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise ValueError(message)
    return values  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------


def assign_splits(
    utterances: Sequence[Utterance], spec: str, corpus: str = "iemocap"
) -> tuple[dict[str, str], list[Problem], dict[str, Any]]:
    """Place each utterance in "train", "valid" or "test" according to `spec`.

    Returns (id -> split for every utterance it could place, a Problem for each it could not,
    a report with counts per split, leakage and the preset's own findings).
    """
    parsed = parse_split_spec(spec)
    if parsed.kind == "dai2021":
        assignment, problems, report = _assign_dai2021(utterances, corpus)
    elif parsed.kind == "sdk":
        assignment, problems, report = _assign_sdk_folds(utterances, corpus)
    elif parsed.kind == "session":
        assignment, problems, report = _assign_by_session(utterances, parsed.session)
    else:
        assignment, problems, report = _assign_random(utterances, parsed.seed, parsed.fractions, corpus)
    counts = Counter(assignment.values())
    return assignment, problems, {
        "spec": spec,
        "counts": {split: counts[split] for split in SPLITS},
        "unassigned": len(problems),
        "leakage": measure_leakage(utterances, assignment),
        **report,
    }


def measure_leakage(utterances: Sequence[Utterance], assignment: dict[str, str]) -> dict[str, int]:
    """How many dialogs (recordings) and speakers have utterances in more than one split."""
    splits_of_dialog: dict[str, set[str]] = defaultdict(set)
    splits_of_speaker: dict[str, set[str]] = defaultdict(set)
    for utterance in utterances:
        split = assignment.get(utterance.id)
        if split is not None:
            splits_of_dialog[utterance.recording].add(split)
            splits_of_speaker[utterance.speaker].add(split)
    return {
        "dialogs": sum(len(splits) > 1 for splits in splits_of_dialog.values()),
        "speakers": sum(len(splits) > 1 for splits in splits_of_speaker.values()),
    }


def load_dai2021_lists(corpus: str) -> dict[str, str]:
    """The published dai2021 lists of `corpus` as id -> split (ValueError for an unknown corpus)."""
    folder = resources.files("mer_data").joinpath("data", "splits", "dai2021", corpus)
    if not folder.is_dir():
        raise ValueError(f"no dai2021 split lists for corpus {corpus!r}")
    split_of: dict[str, str] = {}
    for split in SPLITS:
        for utt_id in folder.joinpath(f"{split}.txt").read_text(encoding="utf-8").split():
            if split_of.setdefault(utt_id, split) != split:
                raise ValueError(f"dai2021 {corpus} lists put {utt_id} in both {split_of[utt_id]} and {split}")
    return split_of


def _assign_dai2021(utterances: Sequence[Utterance], corpus: str) -> tuple[dict[str, str], list[Problem], dict[str, Any]]:
    published = load_dai2021_lists(corpus)
    lists_name = f"mer_data/data/splits/dai2021/{corpus}"
    assignment: dict[str, str] = {}
    problems: list[Problem] = []
    for utterance in utterances:
        split = published.get(utterance.id)
        if split is None:
            problems.append(Problem(lists_name, None, NOT_IN_DAI2021, utterance.id, stage="split"))
        else:
            assignment[utterance.id] = split
    not_found = [utt_id for utt_id in published if utt_id not in assignment]
    published_counts = Counter(published.values())
    return assignment, problems, {
        "published": {split: published_counts[split] for split in SPLITS},
        "published_not_found": {"count": len(not_found), "first": not_found[:EXAMPLES_IN_REPORT]},
        "note": _DAI2021_NOTES.get(corpus, _RANDOM_LEAK_NOTE),
    }


def load_mosei_std_folds() -> dict[str, str]:
    """The CMU-MOSEI standard folds of the SDK as video id -> split."""
    folder = resources.files("mer_data").joinpath("data", "splits", "mosei_std_folds")
    return {
        video_id: split
        for split in SPLITS
        for video_id in folder.joinpath(f"{split}.txt").read_text(encoding="utf-8").split()
    }


def _assign_sdk_folds(utterances: Sequence[Utterance], corpus: str) -> tuple[dict[str, str], list[Problem], dict[str, Any]]:
    if corpus != "mosei":
        raise ValueError(f"the 'sdk' split is the CMU-MOSEI standard folds; corpus {corpus!r} has none")
    folds = load_mosei_std_folds()
    lists_name = "mer_data/data/splits/mosei_std_folds"
    assignment: dict[str, str] = {}
    problems: list[Problem] = []
    for utterance in utterances:
        split = folds.get(utterance.recording)
        if split is None:
            problems.append(Problem(lists_name, None, f"video {utterance.recording} is in no standard fold", utterance.id, stage="split"))
        else:
            assignment[utterance.id] = split
    videos_found = {utterance.recording for utterance in utterances}
    # A fold video without utterances is missing from the release or has no labels (two test
    # videos of the SDK folds have none): reported, as the folds are not met in full.
    not_found = [video_id for video_id in folds if video_id not in videos_found]
    unfolded = sorted({utterance.recording for utterance in utterances if utterance.recording not in folds})
    fold_counts = Counter(folds.values())
    return assignment, problems, {
        "fold_videos": {split: fold_counts[split] for split in SPLITS},
        "fold_videos_not_found": {"count": len(not_found), "first": not_found[:EXAMPLES_IN_REPORT]},
        "videos_in_no_fold": {"count": len(unfolded), "first": unfolded[:EXAMPLES_IN_REPORT]},
        "note": _VIDEO_SPLIT_NOTE,
    }


def _assign_by_session(utterances: Sequence[Utterance], test_session: int) -> tuple[dict[str, str], list[Problem], dict[str, Any]]:
    valid_session = test_session % IEMOCAP_SESSIONS + 1
    assignment: dict[str, str] = {}
    problems: list[Problem] = []
    for utterance in utterances:
        if utterance.session is None:
            problems.append(Problem(utterance.sources.get("labels", utterance.recording), None,
                                    "no session number: cannot place it in a session split", utterance.id, stage="split"))
        elif utterance.session == test_session:
            assignment[utterance.id] = "test"
        elif utterance.session == valid_session:
            assignment[utterance.id] = "valid"
        else:
            assignment[utterance.id] = "train"
    return assignment, problems, {"sessions": {"test": test_session, "valid": valid_session}}


def empty_split_warnings(written: dict[str, int], split_report: dict[str, Any]) -> list[str]:
    """One sentence per split without samples (`written`: samples per split), saying why where the
    split report knows it and what to do: `mer train` needs train and valid samples."""
    warnings = []
    planned = split_report.get("counts", {})
    for split in SPLITS:
        if written.get(split, 0):
            continue
        why = (f"all {planned[split]} utterances assigned to it were rejected (errors.jsonl)" if planned.get(split)
               else _why_nothing_assigned(split, split_report))
        use = "mer train needs train and valid samples" if split != "test" else "nothing to evaluate on"
        warnings.append(f"the {split} split is empty: {why}; {use}")
    return warnings


def _why_nothing_assigned(split: str, split_report: dict[str, Any]) -> str:
    spec = split_report.get("spec", "the split")
    session = split_report.get("sessions", {}).get(split)
    if session is None:
        return f"split {spec} assigned no utterance to it; choose another --split (e.g. random:SEED:0.8,0.1,0.1)"
    other = split_report["sessions"]["test" if split == "valid" else "valid"]
    return (f"split {spec} puts session {session} in {split} (leave-one-session-out: test session N, valid "
            f"session N+1, train the rest) and the release has no utterance of session {session}; convert a "
            f"release that holds sessions {other} and {session} and at least one other, or use --split "
            "random:SEED:0.8,0.1,0.1")


def stable_unit_interval(seed: int, utt_id: str) -> float:
    """A number in [0, 1) fixed by seed and id: the same on every machine and Python run."""
    digest = hashlib.sha256(f"{seed}:{utt_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _assign_random(utterances: Sequence[Utterance], seed: int, fractions: tuple[float, float, float],
                   corpus: str) -> tuple[dict[str, str], list[Problem], dict[str, Any]]:
    train_fraction, valid_fraction, _ = fractions
    by_recording = corpus in RANDOM_BY_RECORDING
    assignment: dict[str, str] = {}
    for utterance in utterances:
        position = stable_unit_interval(seed, utterance.recording if by_recording else utterance.id)
        if position < train_fraction:
            assignment[utterance.id] = "train"
        elif position < train_fraction + valid_fraction:
            assignment[utterance.id] = "valid"
        else:
            assignment[utterance.id] = "test"
    note = _VIDEO_SPLIT_NOTE if by_recording else _RANDOM_LEAK_NOTE
    return assignment, [], {"seed": seed, "fractions": list(fractions), "note": note}
