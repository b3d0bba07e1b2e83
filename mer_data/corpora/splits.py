"""Train/valid/test assignment of utterances, by a preset named in a short spec string.

Specs:
- `dai2021`: the utterance lists published with Dai et al. (NAACL 2021), shipped in
  `mer_data/data/splits/dai2021/<corpus>/{train,valid,test}.txt`. It is a random utterance split:
  utterances of one dialog (and one speaker) fall into several splits.
- `session:N` (IEMOCAP, N in 1..5): leave-one-session-out. Session N is test, the next session
  ((N % 5) + 1) is valid, the other three are train. No speaker is in two splits.
- `random:SEED[:TRAIN,VALID,TEST]`: each utterance goes to a split by a stable hash of SEED and its
  id (SHA-256, the same on every machine and Python run), 80/10/10 unless fractions are given. Like
  the published random protocol, it leaks dialogs and speakers across splits.

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

from mer_data.records import Problem, Utterance

SPLITS = ("train", "valid", "test")
IEMOCAP_SESSIONS = 5
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
EXAMPLES_IN_REPORT = 10

NOT_IN_DAI2021 = "not in the dai2021 split lists"
_RANDOM_LEAK_NOTE = "utterance-level random split: dialogs and speakers leak across splits (see 'leakage')"


@dataclass(frozen=True)
class SplitSpec:
    """A parsed split spec: `kind` is "dai2021", "session" or "random"."""

    kind: str
    session: int | None = None
    seed: int | None = None
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS


def parse_split_spec(spec: str) -> SplitSpec:
    """`dai2021` | `session:N` | `random:SEED[:TRAIN,VALID,TEST]`; ValueError saying what is wrong."""
    kind, _, rest = spec.strip().partition(":")
    if kind == "dai2021" and not rest:
        return SplitSpec("dai2021")
    if kind == "session":
        return SplitSpec("session", session=_parse_session(rest, spec))
    if kind == "random":
        seed_text, _, fractions_text = rest.partition(":")
        seed = _parse_int(seed_text, f"split spec {spec!r}: SEED must be an integer")
        fractions = _parse_fractions(fractions_text, spec) if fractions_text else DEFAULT_FRACTIONS
        return SplitSpec("random", seed=seed, fractions=fractions)
    raise ValueError(f"unknown split spec {spec!r}: expected 'dai2021', 'session:N' or 'random:SEED[:TRAIN,VALID,TEST]'")


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
    elif parsed.kind == "session":
        assignment, problems, report = _assign_by_session(utterances, parsed.session)
    else:
        assignment, problems, report = _assign_random(utterances, parsed.seed, parsed.fractions)
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
        "note": _RANDOM_LEAK_NOTE,
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


def stable_unit_interval(seed: int, utt_id: str) -> float:
    """A number in [0, 1) fixed by seed and id: the same on every machine and Python run."""
    digest = hashlib.sha256(f"{seed}:{utt_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _assign_random(utterances: Sequence[Utterance], seed: int, fractions: tuple[float, float, float]) -> tuple[dict[str, str], list[Problem], dict[str, Any]]:
    train_fraction, valid_fraction, _ = fractions
    assignment: dict[str, str] = {}
    for utterance in utterances:
        position = stable_unit_interval(seed, utterance.id)
        if position < train_fraction:
            assignment[utterance.id] = "train"
        elif position < train_fraction + valid_fraction:
            assignment[utterance.id] = "valid"
        else:
            assignment[utterance.id] = "test"
    return assignment, [], {"seed": seed, "fractions": list(fractions), "note": _RANDOM_LEAK_NOTE}
