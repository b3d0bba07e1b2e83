"""The label space of a corpus and the training target of one sample.

IEMOCAP: the classes of the conversion's label protocol (`classes` option, mer_data/corpora/
label_protocol.py; by default the six-class setup ang exc fru hap neu sad), one-hot over each sample's
`label.class` (its `label.category` in shards written before classes could merge codes). The task
(`label_task_from_card`): one-vs-rest binary tasks for a protocol that only selects codes (the paper's
six classes), one single-label classifier for a protocol that merges codes (iemocap4).
CMU-MOSEI: the six emotions happy sad anger surprise disgust fear, multi-hot (present when the
intensity is > 0), exactly as the converter writes `label.multi_hot`.
The sentiment task (CMU-MOSEI only, `mer train --task sentiment`): one regression target, the
label's `sentiment` in [-3, 3], under the single label name "sentiment" (SENTIMENT_LABELS).

The label space of a shard folder is ShardFolder.label_space (mer_data/shards/folder.py); of the
sources a run names (files, patterns, URLs), mer_data.model.data.label_space_of.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mer_data.corpora.iemocap import SIX_CLASSES
from mer_data.corpora.mosei import MOSEI_EMOTIONS

CORPORA = ("iemocap", "mosei")
TASKS = ("emotion", "sentiment")
SENTIMENT_LABELS = ("sentiment",)   # the label space of the sentiment task: one regression output


class LabelError(ValueError):
    """A sample whose label does not fit the label space (named by its id)."""


def default_label_names(corpus: str) -> tuple[str, ...]:
    """The label space of a corpus when the dataset card does not name one."""
    if corpus == "iemocap":
        return tuple(SIX_CLASSES)
    if corpus == "mosei":
        return tuple(MOSEI_EMOTIONS)
    raise LabelError(f"unknown corpus {corpus!r}: expected one of {', '.join(CORPORA)}")


def label_names_from_card(card: dict[str, Any]) -> tuple[str, ...]:
    """The label space of a converted dataset, from its dataset.json (already parsed).

    IEMOCAP takes the `classes` option of the conversion (what was kept); MOSEI always has its six
    emotions (the `classes` option does not apply to it).
    """
    corpus = card.get("corpus") or card.get("options", {}).get("corpus")
    if corpus == "iemocap":
        classes = card.get("options", {}).get("classes")
        return _protocol_of(classes).names if classes else default_label_names(corpus)
    return default_label_names(corpus)


def label_task_from_card(card: dict[str, Any]) -> str:
    """"single-label" or "one-vs-rest" (mer_data/corpora/label_protocol.py): how the card's label space trains.
    MOSEI is multi-label, so one-vs-rest; so is every card written before label protocols."""
    from mer_data.corpora.label_protocol import ONE_VS_REST

    return (card.get("label_protocol") or {}).get("task", ONE_VS_REST)


def _protocol_of(classes):
    from mer_data.corpora.label_protocol import ProtocolError, parse_classes

    try:
        return parse_classes(classes)
    except ProtocolError as error:
        raise LabelError(f"the dataset card's options.classes {classes!r}: {error}") from error


def targets(meta: dict[str, Any], label_names: Sequence[str]) -> np.ndarray:
    """The float32 target vector [C] of one sample's metadata over `label_names`.

    IEMOCAP: one-hot of `label.class` (of `label.category` where the sample has no class); a class
    outside the label space is an error naming the sample (a loader must not drop samples silently:
    select the classes at conversion time).
    MOSEI: `label.multi_hot`, reordered to `label_names` (any subset of the six emotions).
    """
    if tuple(label_names) == SENTIMENT_LABELS:
        return sentiment_target(meta)
    sample_id = meta.get("id", "<no id>")
    corpus = meta.get("corpus")
    label = meta.get("label") or {}
    if corpus == "iemocap":
        category = label.get("class", label.get("category"))
        if category not in label_names:
            what = f"class {category!r} (category {label.get('category')!r})" if "class" in label else \
                f"category {category!r}"
            raise LabelError(f"{sample_id}: {what} is outside the label space ({', '.join(label_names)})")
        vector = np.zeros(len(label_names), dtype=np.float32)
        vector[list(label_names).index(category)] = 1.0
        return vector
    if corpus == "mosei":
        multi_hot = label.get("multi_hot")
        if not isinstance(multi_hot, list) or len(multi_hot) != len(MOSEI_EMOTIONS):
            raise LabelError(f"{sample_id}: label.multi_hot must list {len(MOSEI_EMOTIONS)} values "
                             f"({', '.join(MOSEI_EMOTIONS)}), not {multi_hot!r}")
        unknown = [name for name in label_names if name not in MOSEI_EMOTIONS]
        if unknown:
            raise LabelError(f"{sample_id}: {', '.join(unknown)} is not a MOSEI emotion "
                             f"({', '.join(MOSEI_EMOTIONS)})")
        return np.array([multi_hot[MOSEI_EMOTIONS.index(name)] for name in label_names], dtype=np.float32)
    raise LabelError(f"{sample_id}: unknown corpus {corpus!r}: expected one of {', '.join(CORPORA)}")


def sentiment_target(meta: dict[str, Any]) -> np.ndarray:
    """The float32 target [1] of the sentiment task: a MOSEI sample's `label.sentiment` in [-3, 3].

    Any other corpus, or a sample without a finite sentiment, is an error naming the sample."""
    sample_id = meta.get("id", "<no id>")
    if meta.get("corpus") != "mosei":
        raise LabelError(f"{sample_id}: the sentiment task needs CMU-MOSEI samples; this one is "
                         f"{meta.get('corpus')!r}")
    value = (meta.get("label") or {}).get("sentiment")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -3 <= value <= 3:
        raise LabelError(f"{sample_id}: label.sentiment must be a number in [-3, 3], not {value!r}")
    return np.array([value], dtype=np.float32)


def check_task(task: str, corpus: str | None, where: str) -> None:
    """Refuse a task the corpus has no targets for (sentiment: CMU-MOSEI only), naming the data."""
    if task not in TASKS:
        raise LabelError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    if task == "sentiment" and corpus != "mosei":
        raise LabelError(f"{where}: --task sentiment needs CMU-MOSEI data (a sentiment score per utterance);"
                         f" this is {corpus or 'an unknown corpus'}")
