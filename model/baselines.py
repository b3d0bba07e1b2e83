"""The two-phase baselines: late-fusion LSTMs (LF-RNN) and late-fusion transformers (LF-Transformer).

Features are computed once (`mer features`, `mer features import-csd`); these models only learn
what comes after them, as the LF-LSTM and LF-Transformer rows of Dai et al. (2021), after the
late-fusion baselines of Tsai et al. (MulT, 2019). Per modality of the FEATS folder:

    sequence [B, T, D] --z-score with the TRAIN split's statistics (buffers)-->
      LF-RNN:          a (bi)LSTM over the packed sequence (padding never seen) -> the last layer's
                       final hidden state of each direction, concatenated
      LF-Transformer:  linear projection + sinusoidal positions -> transformer encoder with a key
                       padding mask -> mean over the real steps
    -> one vector per utterance; where the modality is missing (no step) a learned "missing" vector

Late fusion: the modalities' vectors concatenated -> MLP (dropout, linear, ReLU, dropout, linear)
-> logits, trained with the same BCE, optimiser, early stopping and metrics as FE2E/MESM.

`build_baseline` records a `BaselineConfig` (`model.config.to_dict()`), whose "architecture" holds
every size, the inputs (modality names and dimensions) and the pooling of the sequences, so a run's
config.json rebuilds the same net; the checkpoint carries the normalisation statistics.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from mer_data.model.kinds import BASELINE_KINDS
from mer_data.model.nets import ModelOutput, canonical_modalities, dataclass_from_options, sinusoidal_positions



@dataclass
class BaselineArchitecture:
    """Sizes of the baselines (JSON-able), and the input treatment their statistics were computed on."""

    inputs: tuple[tuple[str, int], ...] = ()   # (modality, dim) in fusion order; filled from FEATS at build
    rnn_hidden: int = 64                 # LF-RNN: LSTM state size per direction
    rnn_layers: int = 1
    bidirectional: bool = True
    transformer_width: int = 64          # LF-Transformer: as FE2E's temporal transformers (width 64, 4 heads)
    transformer_layers: int = 2
    transformer_heads: int = 4
    fusion_hidden: int = 128             # the late-fusion MLP's hidden width
    dropout: float = 0.1
    # Stored with the sizes because the normalisation statistics in a checkpoint are those of
    # sequences pooled this way (model/features/loader.py: Pooling says why pooling is needed).
    pool_seconds: float | None = 0.04
    max_steps: int = 500

    def __post_init__(self):
        self.inputs = tuple((str(name), int(dim)) for name, dim in self.inputs)
        if self.transformer_width % self.transformer_heads:
            raise ValueError(f"transformer_width {self.transformer_width} is not a multiple of"
                             f" transformer_heads {self.transformer_heads}")
        for name in ("rnn_hidden", "rnn_layers", "transformer_width", "transformer_layers", "fusion_hidden",
                     "max_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    @classmethod
    def from_options(cls, options: Mapping) -> "BaselineArchitecture":
        return dataclass_from_options(cls, options, "baseline")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["inputs"] = [[name, dim] for name, dim in self.inputs]
        return data


@dataclass
class BaselineConfig:
    """What rebuilds a baseline: store `to_dict()` (train.py keeps its "architecture" as model_options)."""

    kind: str
    label_names: list[str]
    modalities: str
    architecture: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class RecurrentBody(nn.Module):
    """A (bi)LSTM over the packed steps -> the final hidden state of each direction (last layer)."""

    def __init__(self, dim: int, arch: BaselineArchitecture):
        super().__init__()
        self.directions = 2 if arch.bidirectional else 1
        self.lstm = nn.LSTM(dim, arch.rnn_hidden, arch.rnn_layers, batch_first=True,
                            bidirectional=arch.bidirectional, dropout=arch.dropout if arch.rnn_layers > 1 else 0.0)
        self.out_dim = arch.rnn_hidden * self.directions

    def forward(self, steps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(steps, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)          # [layers * directions, B, H], in the batch's order
        return hidden[-self.directions:].transpose(0, 1).reshape(steps.shape[0], self.out_dim)


class AttentionBody(nn.Module):
    """Projection + positions -> transformer encoder (padding masked) -> mean over the real steps."""

    def __init__(self, dim: int, arch: BaselineArchitecture):
        super().__init__()
        width = arch.transformer_width
        self.project = nn.Linear(dim, width)
        layer = nn.TransformerEncoderLayer(width, arch.transformer_heads, 4 * width, arch.dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, arch.transformer_layers, enable_nested_tensor=False)
        self.out_dim = width

    def forward(self, steps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        padding = torch.arange(steps.shape[1], device=steps.device)[None, :] >= lengths[:, None]
        hidden = self.project(steps)
        hidden = hidden + sinusoidal_positions(hidden.shape[1], hidden.shape[2], hidden.device, hidden.dtype)
        hidden = self.encoder(hidden, src_key_padding_mask=padding)
        real = (~padding).unsqueeze(-1).to(hidden.dtype)
        return (hidden * real).sum(1) / real.sum(1).clamp(min=1)


BODIES = {"lf-rnn": RecurrentBody, "lf-transformer": AttentionBody}   # by baseline kind (model/kinds.py)


class SequenceEncoder(nn.Module):
    """One modality: z-score (train statistics, buffers) -> body -> vector; a learned vector where it is missing."""

    def __init__(self, kind: str, dim: int, arch: BaselineArchitecture,
                 statistics: tuple[np.ndarray, np.ndarray] | None):
        super().__init__()
        mean, std = statistics if statistics is not None else (np.zeros(dim), np.ones(dim))
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != (dim,) or std.shape != (dim,) or bool((std <= 0).any()):
            raise ValueError(f"normalisation statistics must be two [{dim}] vectors with std > 0,"
                             f" got {tuple(mean.shape)} and {tuple(std.shape)}")
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.body = BODIES[kind](dim, arch)
        self.out_dim = self.body.out_dim
        self.missing = nn.Parameter(torch.zeros(self.out_dim))

    def forward(self, steps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        present = lengths > 0
        normalised = (steps - self.mean) / self.std
        # A missing modality still runs through the body as one (padding) step, so that packing and
        # attention always have a real position and nothing turns into NaN; its vector is then
        # replaced, so the padding it saw cannot reach the output.
        vectors = self.body(normalised, lengths.clamp(min=1))
        return torch.where(present[:, None], vectors, self.missing.to(vectors.dtype).expand_as(vectors))


class LateFusionBaseline(nn.Module):
    """Per-modality encoders (LSTM or transformer), their vectors concatenated, an MLP to the logits."""

    def __init__(self, kind: str, label_names: Sequence[str], modalities: str, arch: BaselineArchitecture,
                 statistics: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None):
        super().__init__()
        if kind not in BODIES:
            raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINE_KINDS)}")
        if not arch.inputs:
            raise ValueError("a baseline needs at least one input modality (architecture.inputs)")
        self.kind = kind
        self.label_names = tuple(label_names)
        if not self.label_names:
            raise ValueError("label_names is empty")
        self.modalities = canonical_modalities(modalities)
        self.architecture = arch
        self.input_names = [name for name, _ in arch.inputs]
        if statistics is not None and set(self.input_names) - set(statistics):
            raise ValueError(f"no normalisation statistics for {sorted(set(self.input_names) - set(statistics))}")
        # A list, not a dict keyed by modality name: imported names (any CSD's) could clash with
        # nn.ModuleDict's own attributes; `input_names` says which encoder is which.
        self.encoders = nn.ModuleList(SequenceEncoder(kind, dim, arch, None if statistics is None else statistics[name])
                                      for name, dim in arch.inputs)
        width = sum(encoder.out_dim for encoder in self.encoders)
        self.classifier = nn.Sequential(nn.Dropout(arch.dropout), nn.Linear(width, arch.fusion_hidden), nn.ReLU(),
                                        nn.Dropout(arch.dropout), nn.Linear(arch.fusion_hidden, len(self.label_names)))
        self.config: BaselineConfig | None = None   # set by build_baseline

    def forward(self, batch) -> ModelOutput:
        vectors = [encoder(batch.sequences[name], batch.lengths[name])
                   for name, encoder in zip(self.input_names, self.encoders)]
        # Late fusion by concatenation has no per-modality logits.
        return ModelOutput(logits=self.classifier(torch.cat(vectors, dim=-1)), modality_logits={})


def build_baseline(kind: str, label_names: Sequence[str], modalities: str, inputs: Sequence[tuple[str, int]],
                   statistics: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                   architecture: BaselineArchitecture | Mapping | None = None) -> LateFusionBaseline:
    """LF-RNN or LF-Transformer over `inputs` [(modality, dim)], normalising with `statistics`
    ({modality: (mean, std)} of the train split; None: identity, for a model whose checkpoint will
    bring the statistics). The model carries `model.config` (BaselineConfig)."""
    key = str(kind).lower()
    arch = (architecture if isinstance(architecture, BaselineArchitecture)
            else BaselineArchitecture.from_options(dict(architecture or {})))
    arch = replace(arch, inputs=tuple(inputs))
    model = LateFusionBaseline(key, label_names, modalities, arch, statistics)
    model.config = BaselineConfig(kind=key, label_names=list(model.label_names), modalities=model.modalities,
                                  architecture=arch.to_dict())
    return model
