"""Streaming shards into the nets: the `Batch` they consume and the webdataset pipeline that makes it.

    shards --(shard order: seeded shuffle per epoch when training)--> split by node, by worker
           --> tar members grouped into samples --(sample shuffle buffer, still undecoded bytes)-->
           decode (FLAC -> log-mel chunks, MP4 -> face crops, txt, json -> targets) -->
           batches (frames and chunks concatenated with per-sample counts, texts tokenized)

Work is split between nodes and DataLoader workers by shard (webdataset's `split_by_node` and
`split_by_worker`) when there are at least as many shards as readers (nodes x workers). With fewer
shards, shard splitting would leave readers idle (one shard, two workers: one does everything), so
every reader then reads all the node's shards and decodes only every k-th sample (k = readers):
the tar bytes are read k times, but decoding, the expensive part, is shared, and every sample is
still decoded exactly once.

Evaluation (shuffle=False) reads the shards in the given order; each worker keeps its samples in
shard order and the DataLoader takes batches from the workers in turn, so the order is the same on
every run with the same worker count, and every sample comes exactly once. Training (shuffle=True)
shuffles the shard order with (seed, epoch), identically on every reader, and the undecoded samples
with a buffer seeded by (seed, epoch, node, worker): reproducible for a seed and a worker count.
A training loader that is iterated again starts the next epoch (its workers persist and count).
"""
from __future__ import annotations

import glob
import json
import os
import random
import re
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
import webdataset as wds
from webdataset.utils import PipelineStage, pytorch_worker_info

from mer_data.model.audio import LOGMEL64, check_frontend, mel_chunks
from mer_data.model.batches import TensorFields
from mer_data.model.frames import DEFAULT_CROP_SIZE, IMAGENET, check_face_normalisation, face_crops
from mer_data.shards.folder import ShardFolder
from mer_data.shards.labels import LabelError, default_label_names
from mer_data.shards.labels import targets as label_targets
from mer_data.shards.layout import shard_split
from mer_data.model.shard_check import (ShardCheckError, SplitExpectation, check_is_tar, check_source_safety, command_scheme,
                               expect_split, is_storage, sample_problem, warn)

MEMBERS = ("json", "txt", "flac", "mp4")
MAX_TEXT_TOKENS = 100
DEFAULT_SHUFFLE_BUFFER = 256
STREAM_BLOCK_BYTES = 8 * 1024**2   # object-storage shards are fetched in requests of this size
_URL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, pipe:, s3:, file: ...


class SampleError(ValueError):
    """A sample that cannot be decoded; the message names its id and shard."""


@dataclass
class Batch(TensorFields):
    """What the loader yields and the nets consume (docs/training.md)."""

    ids: list[str]
    frames: torch.Tensor  # float32 [sum(frame_counts), 3, S, S], normalised RGB face crops (model/frames.py)
    frame_counts: torch.Tensor  # int64 [B]
    mel_chunks: torch.Tensor  # float32 [sum(chunk_counts), 1, M, 32]: M = 64 log-mel or 128 power mel (model/audio.py)
    chunk_counts: torch.Tensor  # int64 [B]
    input_ids: torch.Tensor  # int64 [B, T]
    attention_mask: torch.Tensor  # int64 [B, T]
    targets: torch.Tensor  # float32 [B, C]
    label_names: tuple[str, ...]



# --------------------------------------------------------------------------------------------
# Which shards


def resolve_shards(sources: str | Path | Iterable[str | Path], split: str, *,
                   allow_command_urls: bool = False) -> list[str]:
    """The shard paths/URLs of `split` named by `sources`, in a deterministic order.

    A source is a shard file, a brace pattern (`shards/train-{000000..000003}.tar`) or glob, a
    directory (its `<split>-NNNNNN.tar` shards, sorted: mer_data.shards.ShardFolder), or a URL
    (`http(s)://`, `pipe:`, ...; braces expanded, otherwise passed through). Files and URLs named
    like another split's shard (`valid-000000.tar` when `split` is train) are left out, so the same
    sources serve every split; other names (`valid-1.tar` too: no shard name) are taken as they are. Missing local files and an empty result are errors. A URL that webdataset
    opens by running a command (`pipe:`, http(s), ...) is refused unless `allow_command_urls`
    (model/shard_check.py: only for locations typed on the command line).
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    check_source_safety(map(str, sources), allow_command_urls=allow_command_urls)
    shards: list[str] = []
    for source in map(str, sources):
        shards.extend(_resolve_one(source, split))
    shards = [shard for shard in shards if _belongs_to_split(shard, split)]
    if not shards:
        raise FileNotFoundError(f"no {split} shards ({split}-*.tar) in {', '.join(map(str, sources))}: the {split}"
                                f" split is empty (see dataset.json counts.per_split); training needs train and valid"
                                f" shards, evaluation those of its split: convert again with a --split that puts"
                                f" utterances in every split")
    return list(dict.fromkeys(shards))  # a shard named twice is read once


def _resolve_one(source: str, split: str) -> list[str]:
    if is_storage(source):
        return _resolve_in_storage(source, split)
    if _URL.match(source) and not source.lower().startswith("file:"):
        return wds.shardlists.expand_urls(source) if "{" in source else [source]
    source = re.sub(r"^file://?", "", source, flags=re.IGNORECASE)  # as webdataset opens file: URLs
    if os.path.isdir(source):  # a folder without this split adds nothing (the caller checks the total)
        return ShardFolder(source).shards(split)
    paths = wds.shardlists.expand_urls(source) if "{" in source else [source]
    resolved: list[str] = []
    for path in paths:
        if glob.has_magic(path):
            matches = sorted(glob.glob(path))
            if not matches:
                raise FileNotFoundError(f"{path}: the pattern matches no file")
            resolved.extend(matches)
        elif not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such shard file")
        else:
            resolved.append(path)
    return resolved


def _resolve_in_storage(source: str, split: str) -> list[str]:
    """An object-storage source as a local one: a folder URL (its `<split>-NNNNNN.tar`, sorted), a brace
    pattern or a shard URL; a named shard that is not in the bucket is an error."""
    from mer_data import storage

    if "{" not in source and not source.endswith(".tar"):
        return ShardFolder(source).shards(split)
    urls = wds.shardlists.expand_urls(source) if "{" in source else [source]
    missing = [url for url in urls if storage.object_size(url) is None]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: no such shard in the bucket")
    return urls


def _belongs_to_split(shard: str, split: str) -> bool:
    named_split = shard_split(shard)
    return named_split is None or named_split == split


def label_space_of(sources, *, allow_command_urls: bool = False) -> tuple[str, tuple[str, ...]]:
    """(corpus, label names) of the shards named by `sources` (as resolve_shards takes them).

    From the dataset card of the first folder named, or of the folder of the first shard named
    (ShardFolder.label_space); where there is none (URLs, loose shards), the corpus of the first
    sample and its default label space. A URL that runs a command to open is refused unless
    `allow_command_urls` (model/shard_check.py).
    """
    folder, first_shard = _card_folder_of(sources, allow_command_urls=allow_command_urls)
    if folder is not None:
        return folder.label_space()
    if first_shard is None:
        sources = [sources] if isinstance(sources, (str, Path)) else sources
        raise LabelError(f"no shard in {', '.join(map(str, sources))} to read the label space from")
    return _label_space_of_first_sample(first_shard)


def label_task_of(sources, *, allow_command_urls: bool = False) -> str:
    """How the label space of the shards named by `sources` trains (ShardFolder.label_task); shards
    without a card have their corpus's default label space, which trains one-vs-rest."""
    from mer_data.corpora.label_protocol import ONE_VS_REST

    folder, _ = _card_folder_of(sources, allow_command_urls=allow_command_urls)
    return ONE_VS_REST if folder is None else folder.label_task()


def _card_folder_of(sources, *, allow_command_urls: bool) -> tuple[ShardFolder | None, str | None]:
    """(the first folder named, or holding the first shard named, that has a dataset card, or None;
    the first shard seen, or None)."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    check_source_safety(map(str, sources), allow_command_urls=allow_command_urls)
    first_shard = None
    for source in map(str, sources):
        candidate = (wds.shardlists.expand_urls(source) if "{" in source else [source])[0]
        if command_scheme(candidate) is not None:   # opened by webdataset: no side files to read
            first_shard = first_shard or candidate
            continue
        folder = ShardFolder.containing(candidate)
        if folder.card is not None:
            return folder, first_shard
        first_shard = first_shard or _first_shard_of(candidate, folder)
    return None, first_shard


def _first_shard_of(candidate: str, folder: ShardFolder) -> str | None:
    if is_storage(candidate):
        return candidate if candidate.endswith(".tar") else next(iter(folder.shards()), None)
    if os.path.isdir(candidate):
        return next(iter(folder.shards()), None)
    return next(iter(sorted(glob.glob(candidate)) if glob.has_magic(candidate) else [candidate]), None)


def _label_space_of_first_sample(shard: str) -> tuple[str, tuple[str, ...]]:
    if command_scheme(shard) is None and Path(shard).is_file():
        check_is_tar(shard)
    for sample in wds.DataPipeline(wds.SimpleShardList([shard]), _TarSamples()):
        if "json" in sample:
            corpus = json.loads(sample["json"]).get("corpus")
            return corpus, default_label_names(corpus)
    raise LabelError(f"{shard}: no sample with metadata to read the label space from")


# --------------------------------------------------------------------------------------------
# Decoding and batching


@dataclass
class DecodedSample:
    id: str
    frames: torch.Tensor  # [n, 3, S, S]
    mel_chunks: torch.Tensor  # [m, 1, M, 32]
    text: str
    target: np.ndarray  # [C]


def decode_sample(sample: dict[str, Any], *, label_names: Sequence[str], frame_interval_ms: int | None,
                  crop_size: int, audio_frontend: str = LOGMEL64, face_normalisation: str = IMAGENET) -> DecodedSample:
    """One raw webdataset sample (member bytes by extension) -> its decoded tensors and target
    (`audio_frontend`: mer_data.model.audio.AUDIO_FRONTENDS; `face_normalisation`: mer_data.model.frames.FACE_NORMALISATIONS)."""
    key = sample.get("__key__", "<no key>")
    where = f"{key} (in {sample.get('__url__', '?')})"
    missing = [member for member in MEMBERS if member not in sample]
    if missing:
        raise SampleError(f"{where}: the sample has no {', '.join(missing)} member")
    try:
        meta = json.loads(sample["json"])
        text = sample["txt"].decode("utf-8")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SampleError(f"{where}: cannot read the metadata or transcript: {error}") from error
    try:
        return DecodedSample(
            id=key,
            frames=face_crops(sample["mp4"], meta, interval_ms=frame_interval_ms, size=crop_size,
                              normalisation=face_normalisation),
            mel_chunks=mel_chunks(sample["flac"], key, audio_frontend),
            text=text,
            target=label_targets(meta, label_names),
        )
    except (KeyError, TypeError) as error:
        raise SampleError(f"{where}: the metadata lacks a field the loader needs: {error!r}") from error
    except ValueError as error:  # VideoError, AudioError, LabelError: they name the id already
        raise SampleError(f"{error} (in {sample.get('__url__', '?')})") from error


def collate(samples: list[DecodedSample], *, tokenizer, label_names: Sequence[str],
            max_text_tokens: int = MAX_TEXT_TOKENS) -> Batch:
    """Decoded samples -> a Batch: frames and chunks concatenated in sample order, with counts."""
    tokens = tokenizer([sample.text for sample in samples], padding=True, truncation=True,
                       max_length=max_text_tokens, return_tensors="pt")
    return Batch(
        ids=[sample.id for sample in samples],
        frames=torch.cat([sample.frames for sample in samples]),
        frame_counts=torch.tensor([len(sample.frames) for sample in samples], dtype=torch.int64),
        mel_chunks=torch.cat([sample.mel_chunks for sample in samples]),
        chunk_counts=torch.tensor([len(sample.mel_chunks) for sample in samples], dtype=torch.int64),
        input_ids=tokens["input_ids"].to(torch.int64),
        attention_mask=tokens["attention_mask"].to(torch.int64),
        targets=torch.from_numpy(np.stack([sample.target for sample in samples])),
        label_names=tuple(label_names),
    )


# --------------------------------------------------------------------------------------------
# The pipeline


class _EpochClock:
    """The epoch of one reader's copy of the pipeline: advanced at the start of every pass."""

    def __init__(self, first_epoch: int):
        self.current = first_epoch - 1

    def advance(self) -> int:
        self.current += 1
        return self.current


def _readers() -> tuple[int, int]:
    """(this reader's index, number of readers) over nodes x DataLoader workers."""
    rank, world_size, worker, workers = pytorch_worker_info()
    return rank * workers + worker, world_size * workers


class _ShardOrder(PipelineStage):
    """Starts a pass: advances the epoch and, when training, shuffles the shards with (seed, epoch)."""

    def __init__(self, clock: _EpochClock, shuffle: bool, seed: int):
        self.clock, self.shuffle, self.seed = clock, shuffle, seed

    def run(self, shards: Iterable[dict]) -> Iterator[dict]:
        epoch = self.clock.advance()
        shards = list(shards)
        if self.shuffle:  # the same order on every node and worker: the split below relies on it
            random.Random(f"shards:{self.seed}:{epoch}").shuffle(shards)
        return iter(shards)


def _work_split(shard_count: int) -> tuple[str, int, int]:
    """How this reader's work is split (module doc): (which shards it reads, first sample, step).

    "node+worker": its own shards (split by node, then by worker), every sample;
    "node": its node's shards, every `workers`-th sample from its worker index;
    "all": every shard, every `readers`-th sample from its reader index.
    """
    rank, world_size, worker, workers = pytorch_worker_info()
    if shard_count >= world_size * workers:
        return "node+worker", 0, 1
    if shard_count >= world_size:
        return "node", worker, workers
    return "all", rank * workers + worker, world_size * workers


class _ShardSplit(PipelineStage):
    """The shards this reader opens (see _work_split)."""

    def __init__(self, shard_count: int):
        self.shard_count = shard_count

    def run(self, shards: Iterable[dict]) -> Iterator[dict]:
        unit = _work_split(self.shard_count)[0]
        if unit == "node+worker":
            return wds.split_by_worker(wds.split_by_node(shards))
        return wds.split_by_node(shards) if unit == "node" else iter(shards)


class _SampleSplit(PipelineStage):
    """The samples this reader decodes, of the shards it opens (see _work_split)."""

    def __init__(self, shard_count: int):
        self.shard_count = shard_count

    def run(self, samples: Iterable[dict]) -> Iterator[dict]:
        _, first, step = _work_split(self.shard_count)
        return islice(samples, first, None, step) if step > 1 else iter(samples)


class _SampleShuffle(PipelineStage):
    """Buffer shuffle of undecoded samples, seeded by (seed, epoch, reader)."""

    def __init__(self, clock: _EpochClock, seed: int, buffer: int):
        self.clock, self.seed, self.buffer = clock, seed, buffer

    def run(self, samples: Iterable[dict]) -> Iterator[dict]:
        reader, readers = _readers()
        rng = random.Random(f"samples:{self.seed}:{self.clock.current}:{reader}/{readers}")
        return wds.shuffle(self.buffer, initial=self.buffer, rng=rng)(iter(samples))


def make_dataset(shards: Sequence[str], *, tokenizer, batch_size: int, shuffle: bool, seed: int = 0,
                 label_names: Sequence[str], frame_interval_ms: int | None = None,
                 crop_size: int = DEFAULT_CROP_SIZE, epoch: int = 0,
                 shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, partial: bool = True,
                 expectation: SplitExpectation | None = None, audio_frontend: str = LOGMEL64,
                 face_normalisation: str = IMAGENET) -> wds.DataPipeline:
    """The batched webdataset pipeline over resolved `shards` (an IterableDataset of Batch).

    `partial`: keep each reader's last, smaller batch (evaluation needs every sample).
    `expectation`: check every sample against it (model/shard_check.py); None: no check.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if shuffle and shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer must be at least 1, not {shuffle_buffer}")
    shards = list(shards)
    clock = _EpochClock(epoch)
    decode = _Decode(tuple(label_names), frame_interval_ms, crop_size, check_frontend(audio_frontend),
                     check_face_normalisation(face_normalisation))
    batch = _Collate(tokenizer, tuple(label_names))
    return wds.DataPipeline(
        wds.SimpleShardList(shards),
        _ShardOrder(clock, shuffle, seed),
        _ShardSplit(len(shards)),
        _TarSamples(),
        _SampleSplit(len(shards)),
        _CheckSamples(expectation) if expectation is not None else None,
        _SampleShuffle(clock, seed, shuffle_buffer) if shuffle else None,  # before decoding: bytes are cheap
        wds.map(decode),
        wds.batched(batch_size, collation_fn=batch, partial=partial),
    )


class _TarSamples(PipelineStage):
    """webdataset's tarfile_to_samples, but object-storage shards (s3://, gs://, ...) are streamed through
    fsspec with the storage options of the process that built the pipeline (carried to DataLoader
    workers, which do not share its memory); every other location is opened by webdataset as before."""

    def __init__(self):
        from mer_data.storage import default_options

        self.storage_options = default_options()

    def run(self, shards: Iterable[dict]) -> Iterator[dict]:
        from webdataset.tariterators import group_by_keys, tar_file_expander

        return group_by_keys(tar_file_expander(open_shards(shards, self.storage_options)))


def open_shards(shards: Iterable[dict], storage_options: dict | None = None) -> Iterator[dict]:
    """{"url": ...} items with their open `stream`, as webdataset's url_opener yields them."""
    from mer_data.storage import open_url

    for shard in shards:
        url = shard["url"]
        if is_storage(url):
            # Read ahead in large blocks: a shard is read once, front to back.
            yield {**shard, "stream": open_url(url, "rb", storage_options, block_size=STREAM_BLOCK_BYTES,
                                               cache_type="readahead")}
        else:
            yield from wds.tariterators.url_opener([shard])


class _CheckSamples(PipelineStage):
    """Samples against what the index says their shard holds (shard_check.sample_problem): a problem
    stops the pass, or, when the expectation allows partial reading, the sample is left out with a warning."""

    def __init__(self, expectation: SplitExpectation):
        self.expectation = expectation

    def run(self, samples: Iterable[dict]) -> Iterator[dict]:
        for sample in samples:
            problem = sample_problem(sample, self.expectation.keys.get(sample.get("__url__")))
            if problem is None:
                yield sample
            elif self.expectation.allow_partial:
                warn(f"{problem}: left out ({self.expectation.split})")
            else:
                raise ShardCheckError(problem)


class _Decode:
    """decode_sample with the loader's options, picklable for DataLoader workers."""

    def __init__(self, label_names: tuple[str, ...], frame_interval_ms: int | None, crop_size: int,
                 audio_frontend: str = LOGMEL64, face_normalisation: str = IMAGENET):
        self.label_names, self.frame_interval_ms, self.crop_size = label_names, frame_interval_ms, crop_size
        self.audio_frontend, self.face_normalisation = audio_frontend, face_normalisation

    def __call__(self, sample: dict) -> DecodedSample:
        return decode_sample(sample, label_names=self.label_names, frame_interval_ms=self.frame_interval_ms,
                             crop_size=self.crop_size, audio_frontend=self.audio_frontend,
                             face_normalisation=self.face_normalisation)


class _Collate:
    def __init__(self, tokenizer, label_names: tuple[str, ...]):
        self.tokenizer, self.label_names = tokenizer, label_names

    def __call__(self, samples: list[DecodedSample]) -> Batch:
        return collate(samples, tokenizer=self.tokenizer, label_names=self.label_names)


class ShardLoader(torch.utils.data.DataLoader):
    """A DataLoader over the batched pipeline (batch_size=None) that also says what it reads."""

    def __init__(self, dataset: wds.DataPipeline, *, shards: list[str], label_names: tuple[str, ...],
                 expectation: SplitExpectation | None = None, **kwargs):
        super().__init__(dataset, batch_size=None, **kwargs)
        self.shards = shards
        self.label_names = label_names
        self.expectation = expectation   # what a full pass must read (None: unchecked)

    def __iter__(self) -> Iterator[Batch]:
        batches = super().__iter__()
        try:
            yield from batches
        except Exception as error:
            # A failed sample ends the pass: stop the workers now. Otherwise they outlive the error
            # until its traceback (which holds the iterator) is garbage-collected, and DataLoader's
            # shutdown from the garbage collector then waits 5 s per loader.
            shutdown = getattr(batches, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
                self._iterator = None  # persistent workers: the next pass starts new ones
            if isinstance(error, ValueError) and _WORKER_ERROR.match(str(error)):
                raise type(error)(_original_message(error)) from error
            raise


_WORKER_ERROR = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")


def _original_message(error: Exception) -> str:
    """The message a worker raised, from torch's re-raised copy (whose message is the worker's whole
    traceback, ending in `module.Type: message`): SampleError and ShardCheckError name the sample
    and shard already, and the command prints them as one line."""
    last = str(error).rstrip().splitlines()[-1]
    name = type(error).__name__
    _, found, message = last.partition(f"{name}: ")
    return message if found else last


def _limit_worker_threads(_worker_id: int) -> None:
    """One thread per worker: the parallelism is the worker processes (torch already sets its own)."""
    import cv2

    cv2.setNumThreads(1)


def make_loader(sources, split: str, *, tokenizer, batch_size: int, workers: int, shuffle: bool,
                seed: int = 0, frame_interval_ms: int | None = None, crop_size: int = DEFAULT_CROP_SIZE,
                label_names: Sequence[str] | None = None, epoch: int = 0,
                shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, pin_memory: bool = False,
                allow_partial: bool = False, allow_command_urls: bool = False, audio_frontend: str = LOGMEL64,
                face_normalisation: str = IMAGENET) -> ShardLoader:
    """An iterable of Batch over the `split` shards of `sources` (see resolve_shards and the module doc).

    label_names None: the label space of the shards' dataset card (label_space_of).
    Training loaders (shuffle=True) keep their workers between passes; each pass is the next epoch.
    The shards are checked against their folder's index and card (model/shard_check.py), now and
    while streaming; the loader's `expectation` says what a full pass must read.
    """
    shards = resolve_shards(sources, split, allow_command_urls=allow_command_urls)
    expectation = expect_split(shards, split, allow_partial=allow_partial)
    names = (tuple(label_names) if label_names is not None
             else label_space_of(shards, allow_command_urls=allow_command_urls)[1])
    dataset = make_dataset(shards, tokenizer=tokenizer, batch_size=batch_size, shuffle=shuffle, seed=seed,
                           label_names=names, frame_interval_ms=frame_interval_ms, crop_size=crop_size,
                           epoch=epoch, shuffle_buffer=shuffle_buffer, expectation=expectation,
                           audio_frontend=audio_frontend, face_normalisation=face_normalisation)
    return loader_over(dataset, shards=shards, label_names=names, workers=workers, persistent=shuffle,
                       pin_memory=pin_memory, expectation=expectation, preload=(type(tokenizer).__module__,))


def loader_over(dataset: wds.DataPipeline, *, shards: list[str], label_names: tuple[str, ...], workers: int,
                persistent: bool, pin_memory: bool = False, expectation: SplitExpectation | None = None,
                preload: Sequence[str] = ()) -> ShardLoader:
    """The ShardLoader of a make_dataset pipeline with `workers` processes (persistent: kept between passes;
    `preload`: modules the workers need beyond the loader's own, e.g. the tokenizer's)."""
    if workers > 0:
        # The tokenizer is used in forked workers: its own thread pool would warn (or deadlock) after a fork.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return ShardLoader(dataset, shards=shards, label_names=label_names, expectation=expectation, num_workers=workers,
                       persistent_workers=workers > 0 and persistent, pin_memory=pin_memory,
                       worker_init_fn=_limit_worker_threads if workers > 0 else None,
                       multiprocessing_context=_worker_context(preload) if workers > 0 else None)


def _worker_context(preload: Sequence[str] = ()):
    """forkserver where the platform has it: a plainly forked worker inherits this process's thread
    pools, and once OpenCV's pool has run here (the face detector, say) a forked worker hangs
    forever in its first OpenCV call (seen with gdb). Workers from the fork server start clean."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods:
        return multiprocessing.get_context(methods[0])
    context = multiprocessing.get_context("forkserver")
    # The fork server imports the loader's modules once (torch, OpenCV, PyAV, webdataset; librosa's
    # filters with scipy.signal, which the mel filterbank loads lazily; the tokenizer's module, which
    # unpickling the dataset loads: ~5 s in all); each worker is then a fork of it with them loaded
    # instead of importing them all again: a pass that starts its workers (validation, evaluation)
    # waited ~8.5 s for its first batch on 2 cores. Importing starts no thread pool, so the server
    # stays safe to fork. Takes effect when the server starts (the first loader with workers).
    context.set_forkserver_preload([__name__, "librosa.filters", *preload])
    return context
