"""FE2E and MESM (after Dai et al., NAACL 2021): end-to-end multimodal emotion classifiers.

Two architectures (model/architectures.py builds either): "compact", this module's nets
(the default), and "dai2021", the published networks (model/dai2021.py). Both share
`EndToEndModel` (inputs, text encoder, forward pass) and, for MESM, `SparseExtraction` (top_p,
active_counts). The compact nets, per modality (any non-empty subset of "tav"):
- t: the text encoder's CLS vector -> dropout -> linear -> logits.
- v: a CNN per face crop -> one vector per frame -> a small transformer over each utterance's frames
  (sinusoidal positions, key padding mask) -> masked mean -> linear -> logits.
- a: the same over the utterance's log-mel chunks.
The fused logits are the per-modality logits weighted by softmax(learned weights).

FE2E runs dense CNNs (model/extractors.py: CNNExtractor). MESM replaces them by SparseCNNExtractor:
the text vector attends over the positions of the first CNN block's maps, top-p keeps the positions
with p of the attention mass, and the later blocks run sparsely on those. MESM needs the text
vector, so its modalities must include "t".

`mer_data.model.architectures.build_model` loads the text encoder by name or path and records a `NetConfig`
(plain JSON types, `model.config.to_dict()`); `build_model_from_config` rebuilds the same net from it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from mer_data.model.extractors import CNNExtractor, SparseCNNExtractor
from mer_data.model.text import cls_vector, text_hidden_size

MODALITY_ORDER = "tav"
IMAGE_CHANNELS = {"v": 3, "a": 1}     # face crops are RGB, log-mel chunks one channel


def dataclass_from_options(cls, options, what: str):
    """`cls(**options)` for an architecture dataclass, refusing option names it does not have."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown {what} option(s) {unknown}; known: {sorted(known)}")
    return cls(**options)


@dataclass
class Architecture:
    """Sizes of the nets (JSON-able). Widths: the stem's, then one per VGG block."""

    visual_channels: tuple[int, ...] = (16, 32, 64, 128)
    acoustic_channels: tuple[int, ...] = (16, 32, 64, 128)
    convs_per_block: int = 2
    temporal_width: int = 64          # the paper: width 64, 4 layers, 4 heads
    temporal_layers: int = 4
    temporal_heads: int = 4
    dropout: float = 0.1
    attention_dim: int = 32           # MESM's cross-modal attention projections
    nucleus_per_level: bool = True    # MESM: re-apply top-p after each sparse pooling (extractors.py)
    selection_cell: int = 2           # MESM: top-p over cells of this many positions squared (extractors.py)

    def __post_init__(self):
        self.visual_channels = tuple(int(c) for c in self.visual_channels)
        self.acoustic_channels = tuple(int(c) for c in self.acoustic_channels)
        if self.temporal_width % self.temporal_heads:
            raise ValueError(f"temporal_width {self.temporal_width} is not a multiple of"
                             f" temporal_heads {self.temporal_heads}")

    @classmethod
    def from_options(cls, options: dict) -> "Architecture":
        return dataclass_from_options(cls, options, "model")


@dataclass
class NetConfig:
    """What build_model needs to rebuild a model; store `to_dict()` with a checkpoint."""

    kind: str
    label_names: list[str]
    modalities: str
    text_encoder: str | None
    top_p: float | None
    architecture: dict = field(default_factory=dict)
    arch: str = "compact"             # ARCHITECTURES; configs stored before it existed are compact

    def to_dict(self) -> dict:
        data = asdict(self)
        data["architecture"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.architecture.items()}
        return data


@dataclass
class ModelOutput:
    logits: torch.Tensor                          # [B, C] fused
    modality_logits: dict[str, torch.Tensor]      # 't'/'a'/'v' -> [B, C]


def canonical_modalities(modalities: str) -> str:
    """'vt' -> 'tv'; refuses empty, unknown or repeated letters."""
    letters = str(modalities)
    if not letters or set(letters) - set(MODALITY_ORDER) or len(set(letters)) != len(letters):
        raise ValueError(f"modalities must be a non-empty subset of {MODALITY_ORDER!r}, got {modalities!r}")
    return "".join(m for m in MODALITY_ORDER if m in letters)


def sinusoidal_positions(length: int, width: int, device, dtype) -> torch.Tensor:
    """[length, width] fixed sine/cosine position codes (Vaswani et al.)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width))
    codes = torch.zeros(length, width, device=device)
    codes[:, 0::2] = torch.sin(position * rate)
    codes[:, 1::2] = torch.cos(position * rate)[:, : width // 2]
    return codes.to(dtype)


def pad_by_counts(vectors: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Contiguous per-sample rows [sum(counts), D] -> (padded [B, T, D], padding mask [B, T], True = pad)."""
    batch = counts.shape[0]
    longest = int(counts.max())
    sample = torch.repeat_interleave(torch.arange(batch, device=vectors.device), counts)
    starts = torch.cumsum(counts, 0) - counts
    step = torch.arange(vectors.shape[0], device=vectors.device) - starts[sample]
    padded = vectors.new_zeros(batch, longest, vectors.shape[1]).index_put((sample, step), vectors)
    padding = torch.arange(longest, device=vectors.device)[None, :] >= counts[:, None]
    return padded, padding


class TemporalEncoder(nn.Module):
    """Per-image vectors of each sample -> one vector per sample (transformer over time, masked mean)."""

    def __init__(self, in_dim: int, width: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.project = nn.Linear(in_dim, width)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, vectors: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        padded, padding = pad_by_counts(self.project(vectors), counts)
        padded = padded + sinusoidal_positions(padded.shape[1], padded.shape[2], padded.device, padded.dtype)
        hidden = self.encoder(padded, src_key_padding_mask=padding)
        valid = (~padding).unsqueeze(-1).to(hidden.dtype)
        return (hidden * valid).sum(1) / valid.sum(1).clamp(min=1)


class EndToEndModel(nn.Module):
    """What FE2E and MESM of every architecture share: labels, modalities, text encoder, the batch's
    images per modality, and the forward pass (per-modality logits, then `fuse`)."""

    kind = "fe2e"
    arch = "compact"

    def _set_inputs(self, label_names, modalities: str, text_encoder: nn.Module | None,
                    text_dim: int | None) -> None:
        self.label_names = tuple(label_names)
        if not self.label_names:
            raise ValueError("label_names is empty")
        self.modalities = canonical_modalities(modalities)
        self.config: NetConfig | None = None      # set by build_model
        self.text_encoder = text_encoder if self.uses_text() else None
        if self.uses_text():
            if text_encoder is None:
                raise ValueError(f"{self.kind.upper()} with modalities {self.modalities!r} needs a text encoder")
            self.text_dim = int(text_dim) if text_dim is not None else text_hidden_size(text_encoder)

    def _set_up(self, label_names, modalities: str, text_encoder: nn.Module | None, text_dim: int | None,
                architecture, options_class) -> None:
        """What every architecture's constructor starts with: the inputs, its options (an instance of
        `options_class`, or a dict of its fields) and the per-modality module dicts it then fills."""
        self._set_inputs(label_names, modalities, text_encoder, text_dim)
        self.architecture = (architecture if isinstance(architecture, options_class)
                             else options_class.from_options(architecture or {}))
        self.extractors = nn.ModuleDict()
        self.temporal = nn.ModuleDict()
        self.heads = nn.ModuleDict()

    def uses_text(self) -> bool:
        return "t" in self.modalities

    def encode_text(self, batch) -> torch.Tensor | None:
        """[B, text_dim] CLS vectors, or None when the model has no text encoder."""
        if self.text_encoder is None:
            return None
        return cls_vector(self.text_encoder, batch.input_ids, batch.attention_mask)

    def images_and_counts(self, batch, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, counts = ((batch.frames, batch.frame_counts) if modality == "v"
                          else (batch.mel_chunks, batch.chunk_counts))
        if counts.shape[0] != len(batch.ids) or int(counts.sum()) != images.shape[0] or bool((counts < 1).any()):
            name = "frame" if modality == "v" else "chunk"
            raise ValueError(f"batch of {len(batch.ids)} samples: {name}_counts {counts.tolist()} do not"
                             f" describe {images.shape[0]} stacked {name}s (each count >= 1, sum = rows)")
        return images, counts

    def extract(self, batch, modality: str, text_vector: torch.Tensor | None) -> torch.Tensor:
        """Feature extraction of one modality ('v' or 'a'): one vector per frame/chunk [rows, D]."""
        images, _ = self.images_and_counts(batch, modality)
        return self.extractors[modality](images)

    def extract_features(self, batch, text_vector: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return {m: self.extract(batch, m, text_vector) for m in self.extractors}

    def forward(self, batch) -> ModelOutput:
        text_vector = self.encode_text(batch)
        logits = {}
        for modality in self.modalities:
            if modality == "t":
                logits["t"] = self.heads["t"](text_vector)
                continue
            _, counts = self.images_and_counts(batch, modality)
            per_image = self.extract(batch, modality, text_vector)
            logits[modality] = self.heads[modality](self.temporal[modality](per_image, counts))
        return ModelOutput(logits=self.fuse(logits), modality_logits=logits)

    def fuse(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class FE2E(EndToEndModel):
    """Fully end-to-end model with dense CNN feature extractors (the compact architecture)."""

    kind = "fe2e"

    def __init__(self, label_names, modalities: str = "tav", text_encoder: nn.Module | None = None,
                 text_dim: int | None = None, architecture: Architecture | dict | None = None):
        super().__init__()
        self._set_up(label_names, modalities, text_encoder, text_dim, architecture, Architecture)
        arch, classes = self.architecture, len(self.label_names)
        for modality in self.modalities:
            if modality == "t":
                self.heads["t"] = nn.Sequential(nn.Dropout(arch.dropout), nn.Linear(self.text_dim, classes))
                continue
            channels = arch.visual_channels if modality == "v" else arch.acoustic_channels
            self.extractors[modality] = self.make_extractor(IMAGE_CHANNELS[modality], channels)
            self.temporal[modality] = TemporalEncoder(channels[-1], arch.temporal_width, arch.temporal_layers,
                                                      arch.temporal_heads, arch.dropout)
            self.heads[modality] = nn.Linear(arch.temporal_width, classes)
        self.fusion_weights = nn.Parameter(torch.zeros(len(self.modalities)))

    def make_extractor(self, in_channels: int, channels: tuple[int, ...]) -> nn.Module:
        return CNNExtractor(in_channels, channels, self.architecture.convs_per_block)

    def fuse(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        """The per-modality logits weighted by softmax(fusion_weights)."""
        weights = torch.softmax(self.fusion_weights, dim=0)
        return sum(weights[i] * logits[m].float() for i, m in enumerate(self.modalities))


class SparseExtraction:
    """MESM's part of every architecture (a mixin before the FE2E class): the text vector each sparse
    extractor attends with, the nucleus mass `top_p` (settable: evaluation at another p) and the
    positions kept in the last forward pass. Extractors have `top_p` and `last_active_counts`."""

    kind = "mesm"

    def _set_top_p(self, modalities: str, top_p: float) -> None:
        """Call before the FE2E __init__ (the extractors it makes read `_top_p`)."""
        if "t" not in canonical_modalities(modalities):
            raise ValueError(f"MESM attends over the visual/acoustic maps with the text vector, so its"
                             f" modalities must include 't' (got {modalities!r}); use FE2E without text")
        self._top_p = self._checked_top_p(top_p)

    @staticmethod
    def _checked_top_p(top_p: float) -> float:
        if not 0 < float(top_p) <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        return float(top_p)

    @property
    def top_p(self) -> float:
        return self._top_p

    @top_p.setter
    def top_p(self, value: float) -> None:
        self._top_p = self._checked_top_p(value)
        for extractor in self.extractors.values():
            extractor.top_p = self._top_p

    def extract(self, batch, modality: str, text_vector: torch.Tensor | None) -> torch.Tensor:
        images, counts = self.images_and_counts(batch, modality)
        return self.extractors[modality](images, text_vector.repeat_interleave(counts, dim=0))

    def active_fractions(self) -> dict[str, list[float]]:
        """Per modality, the active share of positions at each resolution of the last forward pass."""
        return {m: [kept / max(1, positions) for kept, positions in levels]
                for m, levels in self.active_counts().items()}

    def active_counts(self) -> dict[str, list[tuple[int, int]]]:
        """Per modality, (active, all) positions at each resolution of the last forward pass."""
        return {m: list(e.last_active_counts) for m, e in self.extractors.items()}


class MESM(SparseExtraction, FE2E):
    """FE2E with text-attended sparse CNNs: top-p of the cross-modal attention, sparse blocks after it."""

    def __init__(self, label_names, modalities: str = "tav", text_encoder: nn.Module | None = None,
                 text_dim: int | None = None, architecture: Architecture | dict | None = None,
                 top_p: float = 0.5):
        self._set_top_p(modalities, top_p)
        super().__init__(label_names, modalities, text_encoder, text_dim, architecture)

    def make_extractor(self, in_channels: int, channels: tuple[int, ...]) -> nn.Module:
        arch = self.architecture
        return SparseCNNExtractor(in_channels, channels, arch.convs_per_block, text_dim=self.text_dim,
                                  attention_dim=arch.attention_dim, top_p=self._top_p,
                                  nucleus_per_level=arch.nucleus_per_level,
                                  selection_cell=arch.selection_cell)


COMPACT_NETS = {"fe2e": FE2E, "mesm": MESM}   # by end-to-end kind (model/kinds.py)
