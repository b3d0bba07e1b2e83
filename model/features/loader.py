"""Feature tables into batches for the two-phase baselines (`mer train FEATS --model lf-rnn|lf-transformer`).

    FEATS/<split>/part-*.parquet --(read once per split into numpy: one [T, D] array per utterance
    and modality, pooled in time)--> FeatureSplit --(seeded order per epoch when training, file
    order otherwise)--> FeatureBatch: per modality a padded [B, T, D] float32 tensor and lengths [B]

Which modalities: `--modalities` names roles (t, a, v); every modality of the card with a selected
role is used, so two acoustic CSD imports (say COVAREP and an eGeMAPS extraction) both feed the
model. A run stores the names and dimensions it was built with (the baseline's architecture), and
evaluation or resume reads exactly those again.

Normalisation is not done here: the baselines z-score their inputs with per-dimension statistics
of the training split (`feature_statistics`), kept as buffers in the model, so a checkpoint carries
the statistics it was trained with and evaluation on any split (or another FEATS folder) uses them.

An empty sequence (no face in the utterance, no frames in a CSD) stays empty: its length is 0 and
the model treats the modality as missing for that utterance.

Memory: a split is held in memory as float32 numpy arrays after pooling, so a split needs about
(steps after pooling) x (sum of dimensions) x 4 bytes, e.g. CMU-MOSEI's ~16k training utterances
with 74-dimensional COVAREP at 25 steps/s (about 7 s each) take ~0.8 GB. The last few splits read
stay cached in the process, so the model (statistics) and the loader share one read.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import torch

from mer_data.corpora.label_protocol import ONE_VS_REST
from mer_data.model.features.table import ROLES, FeatureTableError, card_modalities, read_card, read_split
from mer_data.model.batches import TensorFields

ROLE_NAMES = {"t": "text", "a": "audio", "v": "video"}


class FeatureSelectionError(ValueError):
    """The requested modalities or inputs do not match what a FEATS folder holds (named in the message)."""


# --------------------------------------------------------------------------------------------
# Which folder, which modalities


def features_folder(sources: str | os.PathLike | Sequence[str | os.PathLike]) -> Path:
    """The one FEATS folder a baseline run reads (`TrainConfig.shards` holds it), checked to have a card."""
    from mer_data.model.shard_check import command_scheme, is_storage

    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    for source in map(str, sources):   # e.g. a crafted RUN/config.json: said plainly, and never opened
        if command_scheme(source):
            raise FeatureSelectionError(f"{source}: FEATS is a local folder; a {command_scheme(source)}: URL is never"
                                        f" opened")
    if len(sources) != 1:
        raise FeatureSelectionError(f"the baselines read one feature folder (FEATS), got {len(sources)}:"
                                    f" {', '.join(map(str, sources)) or 'none'}")
    folder = local_copy(str(sources[0])) if is_storage(str(sources[0])) else Path(sources[0])
    read_card(folder)   # a clear error when it is not a finished feature folder
    return folder


# FEATS folders in object storage, copied once per process: {URL: local copy}. The tables are read
# many times per epoch (random access by row), so they are copied rather than streamed.
_LOCAL_COPIES: dict[str, Path] = {}


def local_copy(url: str) -> Path:
    """A local copy of the FEATS folder at the storage URL `url`, made on first use and removed when the
    process ends."""
    import atexit
    import shutil
    import tempfile

    from mer_data.storage import download_folder, filesystem

    if url not in _LOCAL_COPIES:
        fs, path = filesystem(url)
        work = Path(tempfile.mkdtemp(prefix="mer-feats-"))
        atexit.register(shutil.rmtree, work, True)
        if not download_folder(fs, path, work / "feats"):
            raise FeatureSelectionError(f"{url}: no feature folder in the bucket")
        _LOCAL_COPIES[url] = work / "feats"
    return _LOCAL_COPIES[url]


def label_space_of_features(sources) -> tuple[str, tuple[str, ...]]:
    """(corpus, label names) of a FEATS folder, from its card."""
    card = read_card(features_folder(sources))
    return card["corpus"], tuple(card["label_names"])


def label_task_of_features(sources) -> str:
    """How a FEATS folder's label space trains (its card's label_task; one-vs-rest in earlier cards)."""
    return read_card(features_folder(sources)).get("label_task", ONE_VS_REST)


def select_modalities(feats: str | os.PathLike, letters: str) -> list[tuple[str, int]]:
    """[(modality, dim)] of every modality of FEATS whose role is among `letters`: roles in t, a, v order,
    then the card's order (features.json is written with sorted keys, so by name).

    A requested role with no modality in FEATS is an error naming the folder and what it holds.
    """
    modalities = card_modalities(read_card(feats))
    unknown = sorted(set(letters) - set(ROLES))
    if unknown or not letters:
        raise FeatureSelectionError(f"modalities must be a non-empty subset of {''.join(ROLES)!r}, got {letters!r}")
    missing = [role for role in ROLES if role in letters and not any(s.role == role for s in modalities.values())]
    if missing:
        held = ", ".join(f"{name} ({spec.role}: {ROLE_NAMES[spec.role]})" for name, spec in modalities.items())
        wanted = ", ".join(f"{role} ({ROLE_NAMES[role]})" for role in missing)
        roles = "".join(role for role in ROLES if any(s.role == role for s in modalities.values()))
        raise FeatureSelectionError(f"{feats}: no modality of role {wanted}; it holds {held}."
                                    f" Choose --modalities among {roles} or extract/import that modality")
    return [(name, spec.dim) for role in ROLES if role in letters
            for name, spec in modalities.items() if spec.role == role]


def check_inputs(feats: str | os.PathLike, inputs: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """The stored inputs [(modality, dim)] of a run, checked against FEATS (same names, same dimensions)."""
    modalities = card_modalities(read_card(feats))
    for name, dim in inputs:
        if name not in modalities:
            raise FeatureSelectionError(f"{feats}: the run was trained on modality {name!r}, which this folder"
                                        f" lacks (it holds {', '.join(modalities)})")
        if modalities[name].dim != dim:
            raise FeatureSelectionError(f"{feats}: modality {name!r} has {modalities[name].dim} dimensions;"
                                        f" the run was trained on {dim}")
    return [(str(name), int(dim)) for name, dim in inputs]


# --------------------------------------------------------------------------------------------
# Pooling in time


@dataclass(frozen=True)
class Pooling:
    """How sequences are shortened before the models see them.

    Why: eGeMAPS and COVAREP have 100 steps/s and CMU-MOSEI utterances last up to ~60 s, i.e. up to
    6000 steps. An LSTM over that is slow and forgets its start; self-attention costs T^2 in time and
    memory. Averaging blocks of steps down to ~25 steps/s (`pool_seconds` = 0.04) still resolves the
    syllable rate (4-5/s) that prosody moves at, and is finer than the end-to-end models' 0.32 s
    log-mel chunks; the cap (`max_steps`, 500 = 20 s at 25 steps/s) then averages the rare longer
    utterance into that many equal segments so one long batch cannot blow up time or memory.
    Untimed steps (text tokens) are never averaged in time, only capped.
    """

    pool_seconds: float | None = 0.04   # None: no averaging by time, only the cap
    max_steps: int = 500

    def __post_init__(self):
        if self.pool_seconds is not None and not self.pool_seconds > 0:
            raise ValueError(f"pool_seconds must be positive or None, got {self.pool_seconds}")
        if int(self.max_steps) < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")

    def factor(self, step_seconds: float | None) -> int:
        """How many consecutive steps one pooled step averages, for steps `step_seconds` apart."""
        if self.pool_seconds is None or not step_seconds:
            return 1
        return max(1, round(self.pool_seconds / step_seconds))


def pool_sequence(steps: np.ndarray, factor: int, max_steps: int) -> np.ndarray:
    """Average blocks of `factor` steps (the last block may be shorter), then at most `max_steps` segments."""
    if steps.shape[0] == 0:
        return steps
    if factor > 1:
        steps = _segment_means(steps, np.arange(0, steps.shape[0], factor))
    if steps.shape[0] > max_steps:
        # floor(i * T / max_steps) strictly increases when T > max_steps: no segment is empty.
        steps = _segment_means(steps, (np.arange(max_steps) * steps.shape[0]) // max_steps)
    return steps


def _segment_means(steps: np.ndarray, starts: np.ndarray) -> np.ndarray:
    sums = np.add.reduceat(steps.astype(np.float64), starts, axis=0)
    widths = np.diff(np.append(starts, steps.shape[0]))
    return (sums / widths[:, None]).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Reading a split


@dataclass
class FeatureSplit:
    """One split in memory, in file order: per modality one float32 [T, D] array per utterance."""

    ids: list[str]
    sequences: dict[str, list[np.ndarray]]
    dims: dict[str, int]
    targets: np.ndarray            # float32 [N, C]
    label_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)


def load_split(feats: str | os.PathLike, split: str, modalities: Sequence[str], pooling: Pooling) -> FeatureSplit:
    """`split` of FEATS with the given modalities, pooled; cached (see the module docstring)."""
    card_path = Path(feats).resolve() / "features.json"
    if not card_path.is_file():
        read_card(feats)   # raises the card's own clear error
    # The card is written last, so its modification time changes whenever the tables were rewritten.
    return _load_split_cached(str(card_path.parent), card_path.stat().st_mtime_ns, split, tuple(modalities), pooling)


@lru_cache(maxsize=3)
def _load_split_cached(feats: str, card_stamp: int, split: str, modalities: tuple[str, ...],
                       pooling: Pooling) -> FeatureSplit:
    card = read_card(feats)
    specs = card_modalities(card)
    table = read_split(feats, split, columns=["id", "target", *modalities])
    if table.num_rows == 0:
        raise FeatureTableError(f"{Path(feats) / split}: no rows (the card counts"
                                f" {card['counts']['per_split'].get(split, 0)} {split} utterances)")
    labels = tuple(card["label_names"])
    sequences = {}
    for name in modalities:
        factor = pooling.factor(specs[name].step_seconds)
        sequences[name] = [pool_sequence(steps, factor, pooling.max_steps)
                           for steps in _column_sequences(table.column(name), specs[name].dim)]
    targets = _flat_values(table.column("target").combine_chunks()).reshape(table.num_rows, len(labels))
    return FeatureSplit(ids=table.column("id").to_pylist(), sequences=sequences,
                        dims={name: specs[name].dim for name in modalities}, targets=targets, label_names=labels)


def _column_sequences(column: pa.ChunkedArray, dim: int) -> list[np.ndarray]:
    """A list<fixed_size_list<float32>[dim]> column -> one [T, dim] view per row (no per-value objects)."""
    array = column.combine_chunks()
    offsets = np.asarray(array.offsets, dtype=np.int64)
    offsets = offsets - offsets[0]
    steps = _flat_values(array.flatten()).reshape(-1, dim)
    return [steps[start:end] for start, end in zip(offsets[:-1], offsets[1:])]


def _flat_values(array: pa.Array) -> np.ndarray:
    """The float32 values of a (fixed-size) list array, honouring slicing."""
    return np.asarray(array.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)


def feature_statistics(feats: str | os.PathLike, modalities: Sequence[str],
                       pooling: Pooling) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per modality (mean, std) per dimension over every step of the TRAIN split, as the models see them
    (after pooling). Constant dimensions get std 1 (they become 0, not a division by zero); a
    modality with no step at all in train gets (0, 1)."""
    train = load_split(feats, "train", modalities, pooling)
    return {name: _mean_and_std(train.sequences[name], train.dims[name]) for name in modalities}


def _mean_and_std(sequences: Iterable[np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    sequences = [s for s in sequences if s.shape[0]]
    count = sum(s.shape[0] for s in sequences)
    if count == 0:
        return np.zeros(dim, np.float32), np.ones(dim, np.float32)
    # Two passes in float64: sums of squares minus squared means lose the digits of large-valued features.
    mean = sum(s.sum(axis=0, dtype=np.float64) for s in sequences) / count
    variance = sum(((s - mean) ** 2).sum(axis=0) for s in sequences) / count
    std = np.sqrt(variance)
    std[std < 1e-6] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Batches


@dataclass
class FeatureBatch(TensorFields):
    """What the feature loader yields and the baselines consume; train/predict use ids, targets, to, len."""

    ids: list[str]
    sequences: dict[str, torch.Tensor]   # modality -> float32 [B, T, D], zeros past each length
    lengths: dict[str, torch.Tensor]     # modality -> int64 [B]; 0 = the modality is missing for that utterance
    targets: torch.Tensor                # float32 [B, C]
    label_names: tuple[str, ...]


def collate(data: FeatureSplit, indices: Sequence[int]) -> FeatureBatch:
    """The utterances `indices` of `data` as one batch, each modality padded to its longest (at least 1 step)."""
    sequences, lengths = {}, {}
    for name, rows in data.sequences.items():
        chosen = [rows[i] for i in indices]
        counts = np.array([row.shape[0] for row in chosen], dtype=np.int64)
        padded = np.zeros((len(chosen), max(1, int(counts.max(initial=0))), data.dims[name]), dtype=np.float32)
        for i, row in enumerate(chosen):
            padded[i, : row.shape[0]] = row
        sequences[name] = torch.from_numpy(padded)
        lengths[name] = torch.from_numpy(counts)
    return FeatureBatch(ids=[data.ids[i] for i in indices], sequences=sequences, lengths=lengths,
                        targets=torch.from_numpy(np.ascontiguousarray(data.targets[list(indices)])),
                        label_names=data.label_names)


class FeatureLoader:
    """Batches of one split. Training (shuffle=True): a new order per pass, from (seed, epoch), and each
    pass is the next epoch (as mer_data.model.data's training loader), so a resumed run sees the same orders.
    Evaluation: file order, the same on every pass."""

    def __init__(self, data: FeatureSplit, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.data, self.batch_size, self.shuffle, self.seed, self.epoch = data, batch_size, shuffle, seed, epoch

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.data))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.data))

    def __iter__(self) -> Iterator[FeatureBatch]:
        order = self.order(self.epoch)
        if self.shuffle:
            self.epoch += 1
        for start in range(0, len(order), self.batch_size):
            yield collate(self.data, order[start:start + self.batch_size].tolist())

    def __len__(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)


def make_feature_loader(feats: str | os.PathLike, split: str, modalities: Sequence[str], pooling: Pooling, *,
                        label_names: Sequence[str], batch_size: int, shuffle: bool, seed: int = 0,
                        epoch: int = 0) -> FeatureLoader:
    """A loader over `split` of FEATS; its label space must be the run's."""
    data = load_split(feats, split, modalities, pooling)
    if tuple(label_names) != data.label_names:
        raise FeatureSelectionError(f"{feats}: label names {list(data.label_names)} differ from the run's"
                                    f" {list(label_names)}")
    return FeatureLoader(data, batch_size, shuffle=shuffle, seed=seed, epoch=epoch)
