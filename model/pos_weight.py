"""`--pos-weight auto`: BCE's pos_weight per class = negatives / positives in the training split.

This is the official code's class balancing (Dai et al. 2021, main.py with getPosWeight in
src/datasets.py): on IEMOCAP's six one-vs-rest tasks the weights run from about 3 (fru) to 11 (hap),
so a rare class's positives count as much in the loss as its negatives. The weights are computed
once when a run starts, from the training split's targets exactly as the loader makes them
(mer_data.shards.labels.targets on each sample's metadata; for a baseline, FEATS' train table), and stored
in the run's config.json (`pos_weight_values`), so evaluation and --resume use the same loss.
"""
from __future__ import annotations

import json
from typing import Sequence

import numpy as np

POS_WEIGHT_MODES = ("auto", "none")


def pos_weight_from_targets(targets: np.ndarray, label_names: Sequence[str], where: str) -> list[float]:
    """negatives / positives per class of binary `targets` [N, C]; a class without positives (its weight
    would be infinite) or without negatives (zero: the class would never be learned) is refused."""
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim != 2 or targets.shape[1] != len(label_names):
        raise ValueError(f"{where}: targets of shape {targets.shape} do not fit the {len(label_names)} classes")
    positives = (targets > 0.5).sum(axis=0)
    negatives = targets.shape[0] - positives
    for name, count, other in zip(label_names, positives, negatives):
        if count == 0 or other == 0:
            which = "positive" if count == 0 else "negative"
            raise ValueError(f"{where}: class {name!r} has no {which} sample in the training split"
                             f" ({targets.shape[0]} samples), so its pos_weight (negatives / positives) is undefined;"
                             f" train with --pos-weight none, or on data where every class occurs")
    return [float(n / p) for n, p in zip(negatives, positives)]


def training_targets(config, *, allow_command_urls: bool = False) -> np.ndarray:
    """float32 [N, C] targets of the run's training split (shards or, for a baseline, FEATS)."""
    from mer_data.model.kinds import is_feature_model

    if is_feature_model(config.model):
        return _feature_targets(config)
    return _shard_targets(config, allow_command_urls=allow_command_urls)


def _shard_targets(config, *, allow_command_urls: bool) -> np.ndarray:
    """The targets of every training sample, from the shards' JSON members only (nothing is decoded)."""
    import webdataset as wds

    from mer_data.model.data import resolve_shards
    from mer_data.shards.labels import targets

    shards = resolve_shards(config.shards, "train", allow_command_urls=allow_command_urls)
    samples = wds.DataPipeline(wds.SimpleShardList(shards),
                               wds.tarfile_to_samples(select_files=lambda name: name.endswith(".json")))
    rows = []
    for sample in samples:
        where = f"{sample.get('__key__')} (in {sample.get('__url__')})"
        try:
            rows.append(targets(json.loads(sample["json"]), config.label_names))
        except (KeyError, json.JSONDecodeError) as error:
            raise ValueError(f"{where}: cannot read the sample's label for pos_weight: {error!r}") from error
    if not rows:
        raise ValueError(f"{', '.join(shards)}: no training sample to compute pos_weight from")
    return np.stack(rows)


def _feature_targets(config) -> np.ndarray:
    from mer_data.model.features.table import read_split
    from mer_data.model.features.loader import features_folder

    table = read_split(features_folder(config.shards), "train", columns=["target"])
    values = table.column("target").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float32).reshape(table.num_rows, len(config.label_names))


def resolve_pos_weight(config, *, allow_command_urls: bool = False):
    """Fill `config.pos_weight_values` for pos_weight "auto" (refused where BCE is not the loss)."""
    from mer_data.model.metrics import SINGLE_LABEL

    if config.pos_weight not in POS_WEIGHT_MODES:
        raise ValueError(f"--pos-weight must be one of {', '.join(POS_WEIGHT_MODES)}, not {config.pos_weight!r}")
    if config.pos_weight == "none":
        config.pos_weight_values = None
        return config
    if config.task != "emotion" or config.label_task == SINGLE_LABEL:
        loss = "the sentiment regression" if config.task != "emotion" else "a single-label softmax (iemocap4)"
        raise ValueError(f"--pos-weight auto weighs the positives of one-vs-rest binary tasks (BCE); this run trains"
                         f" {loss}: use --pos-weight none")
    where = ", ".join(map(str, config.shards))
    config.pos_weight_values = pos_weight_from_targets(training_targets(config, allow_command_urls=allow_command_urls),
                                                       config.label_names, where)
    return config
