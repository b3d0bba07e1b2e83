"""What a training run depends on (TrainConfig, stored as RUN/config.json), with its defaults.

Apart from model/train.py, which runs it, so that reading a default (the CLI's options show them,
mer_data/cli.py) does not import torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    """Everything a run depends on; stored as RUN/config.json and reused by --resume and evaluate."""

    shards: list[str]                        # shard sources (absolute paths, or URLs); for the baselines: [FEATS]
    model: str = "fe2e"                      # fe2e, mesm, or a baseline: lf-rnn, lf-transformer
    modalities: str = "tav"
    top_p: float = 0.5
    top_p_warmup: int = 0                    # MESM: epochs over which the training top-p falls from 1 to top_p
    text_encoder: str | None = None          # name or local path; None: the bundled MiniLM
    epochs: int = 20
    batch_size: int = 8
    lr: float = 3e-4
    text_lr_factor: float = 0.1
    weight_decay: float = 0.01
    patience: int = 6
    frame_interval_ms: int | None = None     # None: the shards' own face interval
    crop_size: int = 48
    workers: int = 2
    shuffle_buffer: int = 256
    seed: int = 0
    device: str = "cpu"
    amp: bool = False
    model_options: dict = field(default_factory=dict)   # the architecture (nets.Architecture or
                                                        # baselines.BaselineArchitecture fields)
    keep_checkpoints: str = "best-and-last"  # or "all" (checkpoint.prune_checkpoints)
    init_from: str | None = None             # a run folder: start from its best epoch's weights (shared names)
    label_names: list[str] | None = None     # resolved from the shards when not given
    corpus: str | None = None                # resolved from the shards
    label_task: str | None = None            # "single-label" (e.g. iemocap4) or one-vs-rest; resolved from the shards;
                                             # None (runs made before label protocols): one-vs-rest
    data_fingerprint: dict | None = None     # {side file: SHA-256} of the data folders (shard_check.data_fingerprint)
    task: str = "emotion"                    # or "sentiment": MOSEI's score in [-3, 3], one regression output
    sentiment_loss: str = "l1"               # the sentiment task's loss: l1 or mse
    # Fields added with the published setup (model/presets.py); a config stored before them loads with
    # these defaults, which are what every such run trained with.
    preset: str | None = None                # "dai2021": the published setup (model/presets.py), resolved into
                                             # the fields below and above when the run opens
    preset_overrides: list[str] | None = None   # the preset's fields given explicitly (left as given)
    arch: str = "compact"                    # the nets: compact (model/nets.py) or dai2021 (the published ones)
    optimizer: str = "adamw"                 # adamw (decoupled weight decay) or adam (L2 in the gradient: the official)
    slow_text_head: bool = False             # the text head learns at lr * text_lr_factor too (the official code)
    pos_weight: str = "none"                 # "auto": BCE pos_weight = negatives/positives per class
                                             # of the training split (model/pos_weight.py)
    pos_weight_values: list[float] | None = None   # resolved from the training split when the run opens
    audio_frontend: str = "logmel64"         # model/audio.py: logmel64 (compact) or dai2021 (the official)
    face_normalisation: str = "imagenet"     # model/frames.py: imagenet or dai2021 (the official)
