"""The model kinds (`mer train --model`), each with the name tables and figures show.

The one list of them: the CLI's choices, the training loop's choice between shards and a feature
folder, the comparison's row names and the network class maps (model/nets.py, model/dai2021.py,
model/baselines.py, which a test checks against it) all read this module. It imports nothing
heavy, so the CLI can read it when it starts. A new kind is added here first.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelKind:
    name: str            # the --model value, as config.json records it
    display_name: str    # in tables and figures (compare.md, compare.html)
    two_phase: bool      # trained on precomputed features (a FEATS folder), not end to end on shards


KINDS = (
    ModelKind("fe2e", "FE2E", two_phase=False),
    ModelKind("mesm", "MESM", two_phase=False),
    ModelKind("lf-rnn", "LF-RNN", two_phase=True),
    ModelKind("lf-transformer", "LF-Transformer", two_phase=True),
)
KIND_NAMES = tuple(kind.name for kind in KINDS)
END_TO_END_KINDS = tuple(kind.name for kind in KINDS if not kind.two_phase)
BASELINE_KINDS = tuple(kind.name for kind in KINDS if kind.two_phase)
# The networks that build the end-to-end kinds (model/architectures.py): the compact default and the
# published ones of Dai et al. (2021).
ARCHITECTURES = ("compact", "dai2021")


def is_feature_model(kind: str) -> bool:
    """Whether `kind` is a two-phase baseline trained on a FEATS folder (not on shards)."""
    return str(kind).lower() in BASELINE_KINDS


def display_name(kind: str) -> str:
    """The name a table shows for `kind`; a kind this version does not know (a run folder written by
    another version) is shown upper-cased rather than refused, so a comparison still reads it."""
    for known in KINDS:
        if known.name == kind:
            return known.display_name
    return kind.upper()

