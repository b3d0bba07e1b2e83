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
"""
from __future__ import annotations

import json
from pathlib import Path
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


def read_label_names(dataset_json: str | Path) -> tuple[str, ...]:
    """`label_names_from_card` of a dataset.json file."""
    return label_names_from_card(_read_card(Path(dataset_json)))


def _read_card(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise LabelError(f"{path}: cannot read the dataset card: {error}") from error


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


def label_space_of(sources, *, allow_command_urls: bool = False) -> tuple[str, tuple[str, ...]]:
    """(corpus, label names) of the shards named by `sources` (as model.data.resolve_shards takes).

    From the dataset card (dataset.json) beside the first local shard or inside the first directory;
    where there is none (URLs, loose shards), the corpus of the first sample and its default label space.
    A URL that runs a command to open is refused unless `allow_command_urls` (model/shard_check.py).
    """
    card, first_shard = _card_of(sources, allow_command_urls=allow_command_urls)
    if card is not None:
        return card.get("corpus"), label_names_from_card(card)
    if first_shard is None:
        sources = [sources] if isinstance(sources, (str, Path)) else sources
        raise LabelError(f"no shard in {', '.join(map(str, sources))} to read the label space from")
    return _label_space_of_first_sample(first_shard)


def label_task_of(sources, *, allow_command_urls: bool = False) -> str:
    """How the label space of the shards named by `sources` trains (`label_task_from_card`); shards
    without a card have their corpus's default label space, which trains one-vs-rest."""
    from mer_data.corpora.label_protocol import ONE_VS_REST

    card, _ = _card_of(sources, allow_command_urls=allow_command_urls)
    return ONE_VS_REST if card is None else label_task_from_card(card)


def _card_of(sources, *, allow_command_urls: bool) -> tuple[dict[str, Any] | None, str | None]:
    """(the dataset card beside the first local shard or inside the first directory, or None; the first
    shard seen, or None)."""
    import glob
    import os

    import webdataset as wds

    from model.shard_check import check_source_safety, is_storage

    if isinstance(sources, (str, Path)):
        sources = [sources]
    check_source_safety(map(str, sources), allow_command_urls=allow_command_urls)
    first_shard = None
    for source in map(str, sources):
        expanded = wds.shardlists.expand_urls(source) if "{" in source else [source]
        candidate = expanded[0]
        if is_storage(candidate):
            card, shard = _card_in_storage(candidate)
            if card is not None:
                return card, first_shard
            first_shard = first_shard or shard
            continue
        if os.path.isdir(candidate):
            card = Path(candidate) / "dataset.json"
            shards = sorted(glob.glob(os.path.join(glob.escape(candidate), "*.tar")))
        else:
            card = Path(os.path.dirname(candidate) or ".") / "dataset.json"
            shards = sorted(glob.glob(candidate)) if glob.has_magic(candidate) else [candidate]
        if card.is_file():
            return _read_card(card), first_shard
        first_shard = first_shard or (shards[0] if shards else None)
    return None, first_shard


def _card_in_storage(candidate: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the dataset card of a storage folder or of a shard's folder, or None; its first shard)."""
    from mer_data import storage

    folder = storage.parent_url(candidate) if candidate.endswith(".tar") else candidate.rstrip("/")
    data = storage.read_bytes(storage.join(folder, "dataset.json"))
    if data is not None:
        try:
            return json.loads(data), None
        except ValueError as error:
            raise LabelError(f"{storage.join(folder, 'dataset.json')}: unreadable dataset card: {error}") from error
    if candidate.endswith(".tar"):
        return None, candidate
    shards = [name for name in storage.child_names(folder) if name.endswith(".tar")]
    return None, storage.join(folder, shards[0]) if shards else None


def _label_space_of_first_sample(shard: str) -> tuple[str, tuple[str, ...]]:
    import webdataset as wds

    from model.shard_check import check_is_tar, command_scheme

    if command_scheme(shard) is None and Path(shard).is_file():
        check_is_tar(shard)

    from model.data import _TarSamples

    for sample in wds.DataPipeline(wds.SimpleShardList([shard]), _TarSamples()):
        if "json" in sample:
            corpus = json.loads(sample["json"]).get("corpus")
            return corpus, default_label_names(corpus)
    raise LabelError(f"{shard}: no sample with metadata to read the label space from")
