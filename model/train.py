"""`mer train`: stream shards into FE2E or MESM, one epoch at a time, with early stopping and resume.

One epoch = one pass over the training shards (shard order and sample order reshuffled per epoch
from the seed), then a pass over the validation shards. After each epoch the run folder gets a
checkpoint and the epoch's metrics (model/checkpoint.py); early stopping watches the validation
mean F1 (thresholds tuned on validation, as the paper's protocol), and the final report evaluates
the best epoch on the test split. `--task sentiment` (CMU-MOSEI only) trains one regression output
on the sentiment score in [-3, 3] with an L1 or MSE loss instead, and early stopping then watches
the validation MAE (lower is better; see selection_score). `--resume RUN/` continues a killed or finished run from its last
complete epoch, with its stored config (the command line's data and model options are ignored).

What a run reads is checked before its folder is written and after every pass (model/shard_check.py:
absolute locations with a fingerprint, no command URLs from a stored config, the shards against
their index and card, --allow-partial); the folder is locked while a process trains into it, and a
new run that fails before its first epoch leaves nothing that blocks the same command again.

Under `torchrun --nproc-per-node N` the same loop runs data parallel in N processes (model/distributed.py:
each reads its share of the shards, DDP averages the gradients, rank 0 alone writes the run folder).

The two-phase baselines (`--model lf-rnn|lf-transformer`, model/baselines.py) run the same loop on a
feature folder instead of shards (`TrainConfig.shards` then names FEATS; model/features/loader.py):
same loss, optimiser, early stopping, checkpoints, resume and metrics.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mer_data.model import checkpoint as ckpt
from mer_data.model import distributed
from mer_data.model.config import TrainConfig
from mer_data.model.kinds import is_feature_model
from mer_data.model.pos_weight import resolve_pos_weight
from mer_data.model.presets import check_inputs_fit_architecture, resolve_preset, resolve_preset_for_data
from mer_data.model.presets import describe as describe_preset
from mer_data.model.report import describe_kept_share
from mer_data.model.shard_check import PARTIAL_FLAG, absolute_sources, check_source_safety, data_changes, data_fingerprint


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    valid_loss: float
    valid_mean_f1: float | None   # None for the sentiment task (valid_mae instead)
    seconds: float
    train_samples: int
    metrics: dict
    train_seconds: float = 0.0   # the training pass alone (no validation): samples/s = train_samples / this
    train_top_p: float | None = None   # MESM: the nucleus mass of the training pass (see training_top_p)
    valid_kept_share: dict | None = None   # MESM: kept share of the positions per modality and resolution (valid)
    valid_samples: int | None = None
    train_samples_expected: int | None = None   # what index.parquet lists for the split (None: not known)
    valid_samples_expected: int | None = None
    data_notes: list[str] | None = None   # --allow-partial: what was read short, and why
    valid_mae: float | None = None   # the sentiment task's validation MAE (the early-stopping figure)

    def summary(self) -> dict:
        row = asdict(self)
        row.pop("metrics")
        return row


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_labels(config: TrainConfig, *, allow_command_urls: bool = False) -> TrainConfig:
    """Fill corpus and label names from the shards' dataset card (mer_data/shards/labels.py), or FEATS' features.json."""
    if is_feature_model(config.model):
        from mer_data.model.features.loader import label_space_of_features, label_task_of_features

        corpus, names = label_space_of_features(config.shards)
        task = label_task_of_features(config.shards)
    else:
        from mer_data.model.data import label_space_of, label_task_of

        corpus, names = label_space_of(config.shards, allow_command_urls=allow_command_urls)
        task = label_task_of(config.shards, allow_command_urls=allow_command_urls)
    config.corpus = config.corpus or corpus
    config.label_names = list(config.label_names or names)
    config.label_task = config.label_task or task
    return check_task_labels(config)


SENTIMENT_LOSSES = ("l1", "mse")


def check_task_labels(config: TrainConfig) -> TrainConfig:
    """Refuse a task the data has no targets for; the sentiment task's label space is SENTIMENT_LABELS.

    A baseline's FEATS folder holds the targets of one task (its card's label names), so it must
    match the run's task."""
    from mer_data.shards.labels import SENTIMENT_LABELS, check_task

    check_task(config.task, config.corpus, ", ".join(map(str, config.shards)))
    if config.task == "sentiment" and config.sentiment_loss not in SENTIMENT_LOSSES:
        raise ValueError(f"--sentiment-loss must be one of {', '.join(SENTIMENT_LOSSES)}, not {config.sentiment_loss!r}")
    sentiment_labels = tuple(config.label_names) == SENTIMENT_LABELS
    if is_feature_model(config.model) and sentiment_labels != (config.task == "sentiment"):
        held = "sentiment" if sentiment_labels else "emotion"
        raise ValueError(f"{config.shards[0]}: this feature folder holds {held} targets, not those of --task"
                         f" {config.task}; extract features with `mer features --task {config.task}`")
    if config.task == "sentiment":
        config.label_names = list(SENTIMENT_LABELS)
    return config


def is_single_label(config: TrainConfig) -> bool:
    """A single-label protocol (iemocap4): one softmax over the classes; otherwise one sigmoid per class."""
    from mer_data.model.metrics import SINGLE_LABEL

    return config.label_task == SINGLE_LABEL


def label_loss(config: TrainConfig, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"):
    """The training loss, `reduction` over the utterances (and, for the binary tasks, the classes):
    L1 or MSE on the regression output (sentiment); cross-entropy of the softmax against the one
    class (single-label); else binary cross-entropy per class."""
    if config.task == "sentiment":
        loss = {"l1": nn.functional.l1_loss, "mse": nn.functional.mse_loss}[config.sentiment_loss]
        return loss(logits, targets, reduction=reduction)
    if is_single_label(config):
        return nn.functional.cross_entropy(logits, targets.argmax(dim=1), reduction=reduction)
    pos_weight = (torch.tensor(config.pos_weight_values, dtype=logits.dtype, device=logits.device)
                  if config.pos_weight_values else None)
    return nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction=reduction, pos_weight=pos_weight)


def output_scores(config: TrainConfig, logits: torch.Tensor) -> np.ndarray:
    """What a split's predictions keep: the raw regression output (sentiment), softmax probabilities
    (single-label) or sigmoid probabilities per class."""
    if config.task == "sentiment":
        return logits.cpu().numpy()
    return (torch.softmax(logits, dim=1) if is_single_label(config) else torch.sigmoid(logits)).cpu().numpy()


def evaluate_predictions(config: TrainConfig, valid: dict, tested: dict, split: str) -> dict:
    """The metrics of `tested` (a `predict` result): sentiment's (MAE, r, Acc-2/7) on `tested` alone;
    the single-label ones (WA, UA, F1) for a single-label protocol; else the one-vs-rest ones with
    thresholds tuned on `valid`."""
    from mer_data.model.metrics import evaluate_scores, sentiment_metrics, single_label_metrics

    if config.task == "sentiment":
        metrics = sentiment_metrics(tested["scores"], tested["targets"], split=split)
        metrics["utterances"]["valid"] = len(valid["ids"])
        metrics["loss"] = config.sentiment_loss
        return metrics
    if is_single_label(config):
        return single_label_metrics(config.corpus, tested["scores"], tested["targets"], list(config.label_names),
                                    split=split, valid_utterances=len(valid["ids"]))
    return evaluate_scores(config.corpus, valid["scores"], valid["targets"], tested["scores"], tested["targets"],
                           list(config.label_names), split=split)


def make_model(config: TrainConfig, *, train_statistics: bool = True) -> nn.Module:
    """The run's net. Baselines normalise with the train split's statistics; with train_statistics=False
    they start with identity statistics instead, for a caller that loads a checkpoint (which holds them)."""
    if is_feature_model(config.model):
        return make_feature_model(config, train_statistics=train_statistics)
    from mer_data.model.architectures import build_model

    # `arch` only when it is not the compact default: build_model of a tree without the published
    # networks does not know the argument.
    arch = {"arch": config.arch} if config.arch != "compact" else {}
    return build_model(config.model, tuple(config.label_names), modalities=config.modalities,
                       text_encoder=config.text_encoder, top_p=config.top_p, **arch, **config.model_options)


def feature_inputs(config: TrainConfig):
    """(FEATS, [(modality, dim)], Pooling, BaselineArchitecture) of a baseline run: the inputs stored in
    its architecture when it has them (resume, evaluate), else those of FEATS selected by role."""
    from mer_data.model.baselines import BaselineArchitecture
    from mer_data.model.features.loader import Pooling, check_inputs, features_folder, select_modalities

    architecture = BaselineArchitecture.from_options(config.model_options)
    feats = features_folder(config.shards)
    inputs = (check_inputs(feats, architecture.inputs) if architecture.inputs
              else select_modalities(feats, config.modalities))
    return feats, inputs, Pooling(architecture.pool_seconds, architecture.max_steps), architecture


def make_feature_model(config: TrainConfig, *, train_statistics: bool = True) -> nn.Module:
    from mer_data.model.baselines import build_baseline
    from mer_data.model.features.loader import feature_statistics

    feats, inputs, pooling, architecture = feature_inputs(config)
    statistics = feature_statistics(feats, [name for name, _ in inputs], pooling) if train_statistics else None
    return build_baseline(config.model, config.label_names, config.modalities, inputs, statistics, architecture)


def initialise_from(model: nn.Module, source_run: Path, device) -> str:
    """Copy the weights of `source_run`'s best epoch into `model` wherever names and shapes agree.

    E.g. MESM from a trained FE2E: the CNNs, transformers, text encoder and heads carry over and only
    MESM's cross-modal attention starts fresh. Returns a line saying what was and was not copied.
    """
    source_state = ckpt.load_state(source_run)
    if not source_state.best_epoch:
        raise ValueError(f"--init-from {source_run}: that run has no finished epoch")
    weights = ckpt.load_checkpoint(ckpt.checkpoint_path(source_run, source_state.best_epoch), map_location=device)
    own = model.state_dict()
    usable = {k: v for k, v in weights["model"].items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    fresh = sorted(set(own) - set(usable))
    return (f"initialised {len(usable)} of {len(own)} tensors from {source_run} epoch {source_state.best_epoch}"
            + (f"; fresh: {', '.join(sorted({k.rsplit('.', 1)[0] for k in fresh}))}" if fresh else ""))


OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}
TEXT_ENCODER_PREFIX = "text_encoder."
TEXT_HEAD_PREFIX = "heads.t."   # the text modality's head, Linear(hidden, C) (model/nets.py, both architectures)


def is_slow_parameter(name: str, config: TrainConfig) -> bool:
    """Whether a parameter learns at lr * text_lr_factor: the pretrained text encoder's, and with
    slow_text_head its head's too (the official code puts T and t_out in the slow group)."""
    return name.startswith(TEXT_ENCODER_PREFIX) or (config.slow_text_head and name.startswith(TEXT_HEAD_PREFIX))


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or Adam (config.optimizer) with config.weight_decay; the text parameters (is_slow_parameter)
    learn `text_lr_factor` times slower than the rest (as the paper). Groups: the rest, then the text's."""
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, not {config.optimizer!r}")
    text_params, other_params = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (text_params if is_slow_parameter(name, config) else other_params).append(param)
    groups = [{"params": other_params, "lr": config.lr}]
    if text_params:
        groups.append({"params": text_params, "lr": config.lr * config.text_lr_factor})
    return OPTIMIZERS[config.optimizer](groups, weight_decay=config.weight_decay)


def tokenizer_for(config: TrainConfig):
    """The tokenizer the run's loader needs (the text encoder's); None for the baselines (features are precomputed)."""
    if is_feature_model(config.model):
        return None
    from mer_data.model.text import load_tokenizer

    return load_tokenizer(config.text_encoder)


def make_loader(config: TrainConfig, split: str, tokenizer, *, train: bool, epoch: int = 0, allow_partial: bool = False,
                allow_command_urls: bool = False):
    """The run's loader of `split`; `allow_command_urls` only for shard locations typed on the command line
    (model/shard_check.py), never for those of a stored config."""
    if is_feature_model(config.model):
        from mer_data.model.features.loader import make_feature_loader

        feats, inputs, pooling, _ = feature_inputs(config)
        return make_feature_loader(feats, split, [name for name, _ in inputs], pooling,
                                   label_names=config.label_names, batch_size=config.batch_size, shuffle=train,
                                   seed=config.seed, epoch=epoch)
    from mer_data.model.data import make_loader as data_loader

    return data_loader(config.shards, split, tokenizer=tokenizer,
                       batch_size=distributed.per_rank_batch(config.batch_size, train=train),
                       workers=config.workers, shuffle=train, seed=config.seed, epoch=epoch,
                       frame_interval_ms=config.frame_interval_ms, crop_size=config.crop_size,
                       label_names=tuple(config.label_names), shuffle_buffer=config.shuffle_buffer,
                       allow_partial=allow_partial, allow_command_urls=allow_command_urls,
                       audio_frontend=config.audio_frontend, face_normalisation=config.face_normalisation,
                       pin_memory=on_cuda(config))


def on_cuda(config: TrainConfig) -> bool:
    """Whether the run trains on a CUDA device: batches then come in pinned memory and are copied
    without blocking (the copy overlaps the previous step's kernels)."""
    return torch.device(config.device).type == "cuda"


def autocast(config: TrainConfig):
    """bf16 autocast on CPU, fp16 on CUDA (with a GradScaler); a no-op without --amp."""
    device_type = torch.device(config.device).type
    dtype = torch.float16 if device_type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device_type, dtype=dtype, enabled=config.amp)


def train_one_epoch(model, loader, optimizer, scaler, config: TrainConfig, progress) -> tuple[float, int]:
    """One pass over the training shards; returns (mean loss per sample, samples seen)."""
    model.train()
    total, samples = 0.0, 0
    # One process: every batch, weight 1. Under torchrun: the steps every process takes together
    # (model/distributed.py), weighted so the averaged gradient is that of the whole global batch.
    for step in distributed.training_steps(progress(loader, desc="train"), model):
        batch = step.batch.to(config.device, non_blocking=on_cuda(config))
        with autocast(config):
            logits = model(batch).logits
        loss = label_loss(config, logits.float(), batch.targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss * step.weight).backward()
        scaler.step(optimizer)
        scaler.update()
        total += float(loss.detach()) * step.samples
        samples += step.samples
    total, samples = distributed.sum_over_ranks(total, samples)
    samples = int(samples)
    if samples == 0:
        raise ValueError("the training split yielded no samples: check the shard paths and split names")
    return total / samples, samples


@torch.no_grad()
def predict(model, loader, config: TrainConfig, progress, desc: str) -> dict:
    """Scores (output_scores), targets, ids and mean loss per utterance over one split, in the loader's order."""
    model.eval()
    ids, scores, targets, total = [], [], [], 0.0
    kept = KeptShare()
    for batch in progress(loader, desc=desc):
        batch = batch.to(config.device, non_blocking=on_cuda(config))
        with autocast(config):
            logits = model(batch).logits.float()
        kept.add(model)
        per_class = 1 if is_single_label(config) else batch.targets.shape[1]
        total += float(label_loss(config, logits, batch.targets, reduction="sum")) / per_class
        ids.extend(batch.ids)
        scores.append(output_scores(config, logits))
        targets.append(batch.targets.cpu().numpy())
    ids, scores, targets, total, kept = distributed.gather_predictions(ids, scores, targets, total, kept)
    if not ids:
        raise ValueError(f"the {desc} split yielded no samples: check the shard paths and split names")
    return {"ids": ids, "scores": np.concatenate(scores), "targets": np.concatenate(targets),
            "loss": total / len(ids), "kept_share": kept.shares()}


class KeptShare:
    """MESM's kept share of the positions over a split, per modality and resolution (stem first).

    The FLOPs a sparse extractor saves follow the positions its trained attention keeps, which can
    be fewer than p of them (a peaked attention reaches the mass p on fewer positions) or more
    (the cells of selection_cell, at least one position per image): measured, not assumed."""

    def __init__(self) -> None:
        self._counts: dict[str, np.ndarray] = {}   # modality -> [levels, 2] (kept, positions) summed

    def add(self, model) -> None:
        """Add the counts of the model's last forward pass (nothing for a dense model)."""
        for modality, levels in getattr(model, "active_counts", dict)().items():
            counts = np.asarray(levels, dtype=np.int64).reshape(-1, 2)
            self._counts[modality] = self._counts.get(modality, 0) + counts

    def merge(self, other: "KeptShare") -> None:
        """Add the counts of `other` (another process's share of the split)."""
        for modality, counts in other._counts.items():
            self._counts[modality] = self._counts.get(modality, 0) + counts

    def shares(self) -> dict[str, list[float]] | None:
        if not self._counts:
            return None
        return {m: [round(float(kept / max(1, positions)), 4) for kept, positions in counts]
                for m, counts in sorted(self._counts.items())}


def validation_metrics(config: TrainConfig, valid: dict) -> dict:
    """Validation metrics with thresholds tuned on validation itself (the early-stopping score)."""
    return evaluate_predictions(config, valid, valid, "valid")


def mean_f1(metrics: dict) -> float:
    return float(metrics["mean"]["f1"])


def open_run_config(config: TrainConfig | None, run: Path, *, resume: bool, epochs: int | None,
                    allow_command_urls: bool = False, log=print) -> TrainConfig:
    """The run's config: the stored one when resuming (with a raised epoch budget), else the given one
    with its data locations made absolute and fingerprinted (model/shard_check.py)."""
    if resume:
        stored = read_run_config(run, log)
        if epochs is not None and epochs != stored.epochs:
            stored.epochs = epochs
            ckpt.write_json(run / ckpt.CONFIG, asdict(stored))
        return stored
    if (run / ckpt.CONFIG).exists():
        raise FileExistsError(f"{run} already holds a run: use --resume {run} to continue it, or another --out")
    config = resolve_preset(config)   # first: the checks below apply to the resolved values
    if config.top_p_warmup < 0 or (config.top_p_warmup and config.model != "mesm"):
        raise ValueError(f"--top-p-warmup is MESM's (a number of epochs >= 0); got {config.top_p_warmup}"
                         f" for {config.model}")
    if config.keep_checkpoints not in ckpt.KEEP_CHECKPOINTS:
        raise ValueError(f"keep_checkpoints must be one of {', '.join(ckpt.KEEP_CHECKPOINTS)},"
                         f" not {config.keep_checkpoints!r}")
    if config.top_p_warmup >= config.epochs:
        raise ValueError(f"--top-p-warmup {config.top_p_warmup} leaves no epoch at --top-p within --epochs"
                         f" {config.epochs}: give more epochs than warm-up epochs")
    if config.init_from and is_feature_model(config.model):
        raise ValueError(f"--init-from starts an end-to-end model (fe2e, mesm) from another run; {config.model}"
                         f" trains from scratch on its features")
    check_inputs_fit_architecture(config)
    check_source_safety(config.shards, allow_command_urls=allow_command_urls)
    config.shards = absolute_sources(config.shards)
    config.data_fingerprint = data_fingerprint(config.shards)
    config.init_from = str(Path(config.init_from).resolve()) if config.init_from else None
    config = resolve_preset_for_data(resolve_labels(config, allow_command_urls=allow_command_urls))
    config = resolve_pos_weight(config, allow_command_urls=allow_command_urls)
    if config.preset:
        log(describe_preset(config))
    return config


def read_run_config(run: Path, log=print) -> TrainConfig:
    """RUN/config.json, with a warning for each data location that moved or changed since training."""
    if not (run / ckpt.CONFIG).is_file():
        raise FileNotFoundError(f"{run}: not a training run (no {ckpt.CONFIG}); train one with `mer train`")
    config = TrainConfig(**ckpt.read_json(run / ckpt.CONFIG))
    for note in data_changes(config.shards, config.data_fingerprint):
        log(f"warning: {note}")
    return config


def build_or_restore(config: TrainConfig, run: Path, state: ckpt.RunState, *, resume: bool, log):
    """(model, optimizer): fresh (and written to config.json) for a new run, from the last checkpoint otherwise."""
    model = make_model(config).to(config.device)
    if config.init_from and not state.epochs_done and distributed.is_main():   # the others get rank 0's weights
        log(initialise_from(model, Path(config.init_from), config.device))
    if not resume:
        # The resolved architecture (every size, not only those given) is stored, so evaluate and
        # --resume rebuild the same nets even if the package's defaults change later.
        config.model_options = model.config.to_dict()["architecture"]
        if distributed.is_main():
            ckpt.write_json(run / ckpt.CONFIG, asdict(config))
    optimizer = make_optimizer(model, config)
    if state.epochs_done:
        where = "cpu" if distributed.active() else config.device   # under torchrun: sent to the others, pickled
        restored = distributed.from_main(lambda: ckpt.load_checkpoint(ckpt.checkpoint_path(run, state.epochs_done),
                                                                      map_location=where))
        model.load_state_dict(restored["model"])
        optimizer.load_state_dict(restored["optimizer"])
        for note in ckpt.restore_rng_states(restored):
            log(f"warning: {note}")
        log(f"resumed {run} after epoch {state.epochs_done} (best epoch {state.best_epoch})")
    return model, optimizer


def train(config: TrainConfig | None, run: Path, *, resume: bool = False, epochs: int | None = None,
          progress: bool = True, log=print, allow_partial: bool = False,
          allow_command_urls: bool = False) -> ckpt.RunState:
    """Train (or resume) a run in folder `run`; returns its final state. See the module docstring.

    With resume=True the stored config is used and `config` is ignored; `epochs` may raise the
    stored epoch budget (train a finished run further). The run folder is locked for the whole run
    (ckpt.run_lock). A new run that fails before its first epoch is saved leaves nothing behind that
    would block the same command or --resume. `allow_partial` and `allow_command_urls`: see
    model/shard_check.py (the latter applies to a new run's command-line locations only).
    """
    run = Path(run)
    distributed.start()
    if not distributed.is_main():   # under torchrun: rank 0 alone touches the run folder and prints
        return _train_locked(config, run, resume=resume, epochs=epochs, progress=False, log=_silent,
                             allow_partial=allow_partial, allow_command_urls=allow_command_urls and not resume)
    made_folder = not run.exists()
    run.mkdir(parents=True, exist_ok=True)
    try:
        with ckpt.run_lock(run):
            return _train_locked(config, run, resume=resume, epochs=epochs, progress=progress, log=log,
                                 allow_partial=allow_partial, allow_command_urls=allow_command_urls and not resume)
    finally:
        if made_folder:
            ckpt.remove_if_unused(run)


def _train_locked(config: TrainConfig | None, run: Path, *, resume: bool, epochs: int | None, progress: bool, log,
                  allow_partial: bool, allow_command_urls: bool) -> ckpt.RunState:
    config, state = distributed.from_main(lambda: _open_run(config, run, resume=resume, epochs=epochs,
                                                            allow_command_urls=allow_command_urls, log=log))
    config.device = distributed.local_device(config.device)
    if resume and epochs is not None and state.stopped_early:
        state.stopped_early = False   # an explicit new budget overrides an earlier early stop
    tokenizer = tokenizer_for(config)
    # Made once, and before anything is written: making them checks the data (model/shard_check.py).
    # The training loader keeps its workers between passes, and each pass is the next epoch (shard
    # and sample order reseeded by it), starting at the epoch a resumed run is at.
    loaders = dict(allow_partial=allow_partial, allow_command_urls=allow_command_urls)
    train_loader = make_loader(config, "train", tokenizer, train=True, epoch=state.epochs_done + 1, **loaders)
    valid_loader = make_loader(config, "valid", tokenizer, train=False, **loaders)
    for loader in (train_loader, valid_loader):
        for problem in known_problems(loader):
            log(f"warning ({PARTIAL_FLAG}): {problem}")
    seed_everything(config.seed)
    try:
        model, optimizer = build_or_restore(config, run, state, resume=resume, log=log)   # writes config.json
        return _epochs(config, run, state, model, optimizer, train_loader, valid_loader, progress, log)
    except BaseException:
        # A failed start: the same command can be run again (rank 0 owns the folder under torchrun).
        if not resume and not state.epochs_done and distributed.is_main():
            ckpt.remove_unfinished_start(run)
        raise


def _open_run(config: TrainConfig | None, run: Path, *, resume: bool, epochs: int | None, allow_command_urls: bool,
              log) -> tuple[TrainConfig, ckpt.RunState]:
    """(config, state) of the run folder: what rank 0 reads and sends to the others under torchrun,
    refusing there (once) what several processes cannot train."""
    config = open_run_config(config, run, resume=resume, epochs=epochs, allow_command_urls=allow_command_urls, log=log)
    distributed.check_supported(config.model, is_feature_model(config.model))
    if not is_feature_model(config.model):
        distributed.per_rank_batch(config.batch_size, train=True)
    return config, ckpt.load_state(run)


def _epochs(config, run, state, model, optimizer, train_loader, valid_loader, progress, log) -> ckpt.RunState:
    scaler = torch.amp.GradScaler(enabled=config.amp and torch.device(config.device).type == "cuda")
    trainer = distributed.data_parallel(model)   # `model` itself in one process
    while state.epochs_done < config.epochs and not state.stopped_early:
        epoch = state.epochs_done + 1
        bar = _epoch_bar(epoch, config.epochs) if progress else _no_bar
        result = run_epoch(model, optimizer, scaler, config, train_loader, valid_loader, epoch, bar, trainer=trainer)
        update_state(state, result, config.patience, eligible=not in_top_p_warmup(config, epoch))
        if distributed.is_main():   # every process holds the same state; one writes it
            _save_epoch(run, epoch, model, optimizer, result, state, config)
        for split, read, expected in (("train", result.train_samples, result.train_samples_expected),
                                      ("valid", result.valid_samples, result.valid_samples_expected)):
            if expected is not None and read != expected:
                log(f"warning ({PARTIAL_FLAG}): epoch {epoch} read {read} of the {expected} {split} samples")
        log(f"epoch {epoch}: train loss {result.train_loss:.4f}  valid loss {result.valid_loss:.4f}  "
            f"{selection_text(result)}  ({result.seconds:.0f} s)"
            + (f"  kept {describe_kept_share(result.valid_kept_share)}" if result.valid_kept_share else "")
            + ("  *best*" if state.best_epoch == epoch else "")
            + (f"  (top-p warm-up: trained at {result.train_top_p:.3g})" if in_top_p_warmup(config, epoch) else ""))
    if state.stopped_early:
        figure = "MAE" if config.task == "sentiment" else "mean F1"
        log(f"early stop: no better validation {figure} for {config.patience} epochs (best epoch {state.best_epoch})")
    return state


def _save_epoch(run: Path, epoch: int, model, optimizer, result: EpochResult, state: ckpt.RunState,
                config: TrainConfig) -> None:
    ckpt.save_checkpoint(run, epoch, model, optimizer)
    ckpt.write_json(run / "metrics" / f"epoch-{epoch:03d}.json", {**result.summary(), "valid": result.metrics})
    ckpt.save_state(run, state)
    if config.keep_checkpoints != "all":
        ckpt.prune_checkpoints(run, state)   # after the state names the new best and last


def known_problems(loader) -> list[str]:
    """What the loader's shards were found to lack before reading (only with --allow-partial: else refused)."""
    expectation = getattr(loader, "expectation", None)   # None: the baselines' feature loaders
    return list(expectation.problems) if expectation is not None else []


def pass_notes(loader, read: int) -> tuple[int | None, list[str]]:
    """(samples the split should have given, what was found wrong) after a full pass over `loader` that
    read `read` samples; raises ShardCheckError on a shortfall unless the loader allows partial reading."""
    expectation = getattr(loader, "expectation", None)
    if expectation is None:   # the baselines' feature loaders: their tables are checked when written
        return None, []
    shortfall = expectation.after_pass(read)
    return expectation.samples, known_problems(loader) + ([shortfall] if shortfall else [])


def training_top_p(config: TrainConfig, epoch: int) -> float | None:
    """MESM's nucleus mass while training epoch `epoch` (1-based); None for the other models.

    With a warm-up of W epochs it falls linearly from 1 (every position kept: the attention is trained
    through the weighting of the whole map) in epoch 1 to `top_p` in epoch W + 1 and after. Without
    it, a freshly initialised attention picks an arbitrary half of each map, and the positions it
    leaves out get no gradient to earn their way back in (the gradual-pruning argument).
    """
    if config.model != "mesm":
        return None
    if not in_top_p_warmup(config, epoch):
        return config.top_p
    return 1.0 - (1.0 - config.top_p) * (epoch - 1) / config.top_p_warmup


def in_top_p_warmup(config: TrainConfig, epoch: int) -> bool:
    """Whether epoch `epoch` trains MESM at a top-p above the run's own (see training_top_p).

    Such epochs are validated at the run's top-p like any other, but none of them can be the best
    epoch: on a small validation split an under-trained early epoch can score high by chance and end
    the run by early stopping before the model ever trained at its own top-p."""
    return config.model == "mesm" and epoch <= config.top_p_warmup


def run_epoch(model, optimizer, scaler, config, train_loader, valid_loader, epoch: int, bar,
              trainer=None) -> EpochResult:
    """One training pass (through `trainer`: the DistributedDataParallel wrapper under torchrun) and
    one validation pass of `model`."""
    started = time.perf_counter()
    # Dropout and other model randomness are reseeded per epoch, so a resumed run continues exactly
    # as an uninterrupted one would (under torchrun each process with its own seed).
    seed_everything(config.seed + epoch)
    distributed.seed_rank(config.seed + epoch)
    top_p = training_top_p(config, epoch)
    if top_p is not None:
        model.top_p = top_p
    try:
        train_loss, seen = train_one_epoch(model if trainer is None else trainer, train_loader, optimizer, scaler,
                                           config, bar)
    finally:
        # Validation (early stopping), the checkpoint and evaluation always see the run's own top-p:
        # every epoch is judged as the model the run is asked for, also during the warm-up.
        if top_p is not None:
            model.top_p = config.top_p
    train_seconds = time.perf_counter() - started
    train_expected, train_notes = pass_notes(train_loader, seen)   # before the epoch's checkpoint is saved
    valid = predict(model, valid_loader, config, bar, "valid")
    valid_expected, valid_notes = pass_notes(valid_loader, len(valid["ids"]))
    metrics = validation_metrics(config, valid)
    sentiment = config.task == "sentiment"
    return EpochResult(epoch=epoch, train_loss=train_loss, valid_loss=valid["loss"],
                       valid_mean_f1=None if sentiment else mean_f1(metrics),
                       valid_mae=metrics["mean"]["mae"] if sentiment else None,
                       seconds=time.perf_counter() - started, train_samples=seen, metrics=metrics,
                       train_seconds=train_seconds, train_top_p=top_p, valid_kept_share=valid["kept_share"],
                       valid_samples=len(valid["ids"]), train_samples_expected=train_expected,
                       valid_samples_expected=valid_expected, data_notes=(train_notes + valid_notes) or None)


def selection_score(result: EpochResult) -> float:
    """The early-stopping and model-selection score of an epoch; HIGHER is better.

    Emotion: the validation mean F1. Sentiment: minus the validation MAE (a lower MAE is better).
    Either way the validation loss breaks ties (lower is better)."""
    figure = -result.valid_mae if result.valid_mae is not None else result.valid_mean_f1
    return figure - 1e-6 * result.valid_loss


def selection_text(result: EpochResult) -> str:
    if result.valid_mae is not None:
        return f"valid MAE {result.valid_mae:.4f}"
    return f"valid mean F1 {100 * result.valid_mean_f1:.1f}"


def update_state(state: ckpt.RunState, result: EpochResult, patience: int, *, eligible: bool = True) -> None:
    """Early stopping on the selection_score (validation mean F1, or minus the sentiment MAE).

    An epoch that is not `eligible` (MESM's top-p warm-up) is recorded but can neither become the best
    nor use up patience."""
    state.epochs_done = result.epoch
    state.history.append(result.summary())
    if not eligible:
        return
    score = selection_score(result)
    if state.best_score is None or score > state.best_score or math.isnan(state.best_score):
        state.best_epoch, state.best_score = result.epoch, score
        state.epochs_without_improvement = 0
    else:
        state.epochs_without_improvement += 1
        state.stopped_early = state.epochs_without_improvement >= patience


def _epoch_bar(epoch: int, epochs: int):
    """The progress bars of one epoch: "epoch 2/3 train", "epoch 2/3 valid"."""
    return lambda loader, desc: _progress_bar(loader, f"epoch {epoch}/{epochs} {desc}")


def _progress_bar(loader, desc: str):
    """A bar counting samples against those the split's index lists (so it shows an ETA), advanced
    after each batch is processed; without a known total (feature tables) it counts batches."""
    from tqdm import tqdm

    expectation = getattr(loader, "expectation", None)
    total = expectation.samples if expectation is not None else None
    if total is not None and distributed.active():
        total = math.ceil(total / distributed.world_size())   # this process's share, about
    with tqdm(total=total, desc=desc, unit="sample" if total is not None else "batch", leave=False) as bar:
        for batch in loader:
            yield batch
            bar.update(len(batch) if total is not None else 1)


def _no_bar(iterable, desc: str):
    return iterable


def _silent(message: str) -> None:
    """The log of the processes other than rank 0 under torchrun."""
