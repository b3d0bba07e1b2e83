"""The published networks of Dai et al. (NAACL 2021) as the authors' code builds them: arch "dai2021".

`mer_data.model.architectures.build_model(kind, ..., arch="dai2021")` builds these; the compact nets (model/nets.py) stay the default.

Per face crop [3, 48, 48] and per acoustic chunk [1, 128, 32] (128-band power mel, 32 frames), one
CNN per modality (`PublishedCNN`):

    low level:  conv5x5(in -> 64, pad 2) + BN + ReLU + maxpool2;  VGG(64, 64);  VGG(64, 64)
    level 1:    VGG(64, 128)  + maxpool2       (faces 24x24 -> 12x12; chunks 64x16 -> 32x8)
    level 2:    VGG(128, 256) + maxpool2       (12x12 -> 6x6;  32x8 -> 16x4)
    level 3:    VGG(256, 512) + maxpool2       (6x6 -> 3x3;    16x4 -> 8x2)
    flatten (C, H, W order) -> Linear(512*h*w, 1024) + ReLU -> Linear(1024, 64)

A VGG block is two 3x3 convolutions (with bias), each + BatchNorm + ReLU. Counted forward FLOPs:
0.956 G per face and 1.674 G per chunk in the convolutions, 0.966 G and 1.691 G with the flatten-MLP.

Then, per modality, four post-norm transformer encoder layers (width 64, 4 heads, feed-forward 2048,
dropout 0.1, ReLU: nn.TransformerEncoderLayer's defaults) over the utterance's frames/chunks with a
learned CLS vector prepended and read out, no positional encoding, padding masked (`CLSTemporalEncoder`);
Linear(64, C) on it. Text: Linear(hidden, C) on the text encoder's first-token vector (no dropout).
Fusion: nn.Linear(M, 1, bias=False) over the stacked per-modality logits (PyTorch's default init,
unconstrained weights); with one modality its logits are the output, as in the official code.

MESM (`SparsePublishedCNN`): the low level stays dense; each of the three levels runs sparsely on
the sites its own cross-modal attention keeps:

    level l: a_l = softmax over the image's sites of  w . tanh(W_x x + W_y t) + b   (k = 64/128/256)
             keep the top-p nucleus of a_l (sort descending, keep up to and including the site where
             the cumulative sum reaches p); x <- x * a_l * S_l at the kept sites (S_l: the number of
             sites the softmax ran over); the VGG block as submanifold 3x3 convolutions (no bias) +
             BatchNorm (eps 1e-4, over the active sites) + ReLU, then sparse 2x2 max pooling, which
             activates every coarse cell holding an active site.

t is the utterance's text vector. Level 1's softmax runs over all positions of the dense low-level
map; levels 2 and 3 over the sites that survived (the pooled active set), so the kept share compounds
level by level, as in the official code. After level 3 the sparse map is made dense (zeros at the
inactive sites) and goes through the same flatten-MLP.

Two defects of the official code are fixed here:
1. The official code selects with a detached attention and gathers the kept features unweighted, so
   the attention parameters never receive a gradient and the selection is made by an untrained
   projection. Here the kept features are multiplied by a_l * S_l, their attention weight times the
   number of sites the softmax ran over. Its mean over those sites is 1, so an attention that is still
   flat leaves the features as the official code gathers them, while the loss's gradient reaches
   W_x, W_y, w (and the text vector). The selection itself (which sites) is not differentiable.
2. At level 1 the official code takes the sparse coordinates from attn.permute(1, 2, 0).nonzero()
   (ordered y, x, frame) but the features from attn.nonzero() (frame, y, x), so most feature rows
   land on another site. Here every feature stays at its own coordinates (model/sparse.py's ActiveSet).
Face detection (MTCNN in the official forward pass) and input normalisation are the loader's concern
here: the nets take normalised 48x48 crops and mel chunks as given.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mer_data.model.extractors import channels_last_strides
from mer_data.model.nets import EndToEndModel, SparseExtraction, dataclass_from_options, pad_by_counts
from mer_data.model.sparse import (ActiveSet, SparseBatchNorm, SparseMap, SubmanifoldConv2d, gather_sites,
                          nucleus_by_image, softmax_by_image, sparse_max_pool2d, top_p_mask)

INPUT_SHAPES = {"v": (3, 48, 48), "a": (1, 128, 32)}    # face crop; 128 mel bands x 32 frames
INPUT_NAMES = {"v": "face crops (48x48 px RGB, as the dai2021 preset's loader crops them)",
               "a": "acoustic chunks (128-band power mel x 32 frames: the dai2021 audio front end)"}
LOW_LEVEL_WIDTH = 64
LEVEL_WIDTHS = ((64, 128), (128, 256), (256, 512))
ATTENTION_DIMS = (64, 128, 256)                          # k of each level's attention
FLATTEN_HIDDEN = 1024
SPARSE_BN_EPS = 1e-4                                     # SparseConvNet's BatchNormReLU default


@dataclass
class Dai2021Architecture:
    """The options of the published nets (JSON-able): only the temporal encoders' sizes; the CNNs and
    heads are the published layout. Defaults: the paper's."""

    temporal_width: int = 64
    temporal_layers: int = 4
    temporal_heads: int = 4
    temporal_feedforward: int = 2048
    dropout: float = 0.1

    def __post_init__(self):
        if self.temporal_width % self.temporal_heads:
            raise ValueError(f"temporal_width {self.temporal_width} is not a multiple of"
                             f" temporal_heads {self.temporal_heads}")

    @classmethod
    def from_options(cls, options: dict) -> "Dai2021Architecture":
        return dataclass_from_options(cls, options, "dai2021 model")


def check_input_shape(images: torch.Tensor, modality: str) -> None:
    expected = INPUT_SHAPES[modality]
    if images.dim() != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(f"the dai2021 {'visual' if modality == 'v' else 'acoustic'} CNN takes"
                         f" {INPUT_NAMES[modality]}, shape [N, {', '.join(map(str, expected))}];"
                         f" got {list(images.shape)}")


class VggBlock(nn.Module):
    """(conv3x3 with bias -> BatchNorm2d -> ReLU) x 2, the official VggBasicBlock's layers."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(x)), inplace=True)


class DenseLevel(VggBlock):
    """A VGG block, then 2x2 max pooling (FE2E's levels 1-3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(super().forward(x), 2)


class SparseLevel(nn.Module):
    """A VGG block on the active sites (SparseConvNet's SparseVggNet [C, C, MP 2 2]): submanifold 3x3
    convs without bias + BatchNorm over the active sites + ReLU, twice, then sparse 2x2 max pooling.
    Parameter names as DenseLevel's (its conv biases excepted), so FE2E's weights load into it."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = SubmanifoldConv2d(in_channels, out_channels, 3, bias=False)
        self.bn1 = SparseBatchNorm(out_channels, eps=SPARSE_BN_EPS)
        self.conv2 = SubmanifoldConv2d(out_channels, out_channels, 3, bias=False)
        self.bn2 = SparseBatchNorm(out_channels, eps=SPARSE_BN_EPS)

    def forward(self, x: SparseMap) -> SparseMap:
        for conv, norm in ((self.conv1, self.bn1), (self.conv2, self.bn2)):
            x = norm(conv(x))
            x = x.with_features(F.relu(x.features, inplace=True))
        return sparse_max_pool2d(x)


def low_level(in_channels: int) -> nn.Sequential:
    """The dense first five convolutions: conv5x5 + BN + ReLU + maxpool2, VGG(64, 64), VGG(64, 64)."""
    return nn.Sequential(nn.Conv2d(in_channels, LOW_LEVEL_WIDTH, 5, padding=2), nn.BatchNorm2d(LOW_LEVEL_WIDTH),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2),
                         VggBlock(LOW_LEVEL_WIDTH, LOW_LEVEL_WIDTH), VggBlock(LOW_LEVEL_WIDTH, LOW_LEVEL_WIDTH))


class PublishedCNN(nn.Module):
    """FE2E's per-image CNN: images [n, *INPUT_SHAPES[modality]] -> vectors [n, out_dim]."""

    make_level = DenseLevel

    def __init__(self, modality: str, out_dim: int = 64):
        super().__init__()
        self.modality = modality
        in_channels, height, width = INPUT_SHAPES[modality]
        self.low_level = low_level(in_channels)
        self.levels = nn.ModuleList(self.make_level(a, b) for a, b in LEVEL_WIDTHS)
        final = LEVEL_WIDTHS[-1][1] * (height // 16) * (width // 16)      # four 2x2 poolings
        self.flatten = nn.Sequential(nn.Linear(final, FLATTEN_HIDDEN), nn.ReLU(inplace=True),
                                     nn.Linear(FLATTEN_HIDDEN, out_dim))
        # Channels-last maps and weights: oneDNN's faster CPU layout, and the sparse levels' gather of
        # the kept sites is then a view of the low-level map (as in model/extractors.py).
        for conv in self.modules():
            if isinstance(conv, nn.Conv2d):
                conv.weight.data = channels_last_strides(conv.weight.data)

    @property
    def out_dim(self) -> int:
        return self.flatten[-1].out_features

    def forward(self, images: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        check_input_shape(images, self.modality)
        x = self.low_level(channels_last_strides(images))
        for level in self.levels:
            x = level(x)
        return self.flatten(x.flatten(1))


class AdditiveAttention(nn.Module):
    """Scores w . tanh(W_x x + W_y t) + b of sites x against text vectors t (the official
    CrossModalAttentionLayer's parameters: channel_affine W_x with bias, y_affine W_y without,
    attn_weight_affine w, b); the softmax over each image's sites is the caller's."""

    def __init__(self, channels: int, text_dim: int, k: int):
        super().__init__()
        self.channel_affine = nn.Linear(channels, k)
        self.y_affine = nn.Linear(text_dim, k, bias=False)
        self.attn_weight_affine = nn.Linear(k, 1)

    def forward(self, sites: torch.Tensor, text: torch.Tensor, image_index: torch.Tensor | None = None):
        """sites [n, L, C] with text [n, D] -> [n, L]; or sites [N, C] with image_index [N] -> [N]."""
        projected_text = self.y_affine(text.to(sites.dtype))
        if image_index is None:
            hidden = self.channel_affine(sites) + projected_text.unsqueeze(1)
        else:
            hidden = self.channel_affine(sites) + projected_text.index_select(0, image_index)
        return self.attn_weight_affine(torch.tanh(hidden)).squeeze(-1)


class SparsePublishedCNN(PublishedCNN):
    """MESM's per-image CNN: dense low level, then three sparse levels, each after its own attention
    and top-p (module docstring); `last_active_counts` holds (kept sites, positions) per level."""

    make_level = SparseLevel

    def __init__(self, modality: str, out_dim: int = 64, *, text_dim: int, top_p: float = 0.5):
        super().__init__(modality, out_dim)
        self.attention = nn.ModuleList(AdditiveAttention(a, text_dim, k)
                                       for (a, _), k in zip(LEVEL_WIDTHS, ATTENTION_DIMS))
        self.top_p = top_p
        self.last_active_counts: list[tuple[int, int]] = []

    def forward(self, images: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        check_input_shape(images, self.modality)
        if text is None or text.shape[0] != images.shape[0]:
            raise ValueError("the sparse extractor needs one text vector per image"
                             f" ({images.shape[0]} images, text {None if text is None else tuple(text.shape)})")
        dense = self.low_level(channels_last_strides(images))
        sparse = self._first_selection(dense, text)
        counts = [(sparse.active.n_active, sparse.active.n_positions)]
        sparse = self.levels[0](sparse)
        for level in (1, 2):
            sparse = self._selection(level, sparse, text)
            counts.append((sparse.active.n_active, sparse.active.n_positions))
            sparse = self.levels[level](sparse)
        self.last_active_counts = counts
        return self.flatten(sparse.to_dense().flatten(1))

    def _first_selection(self, dense: torch.Tensor, text: torch.Tensor) -> SparseMap:
        """Level 1: softmax over every position of each image's dense map, its top-p nucleus, the kept
        sites' features weighted by attention x positions."""
        n, channels, height, width = dense.shape
        positions = dense.permute(0, 2, 3, 1).reshape(n, height * width, channels)
        attention = torch.softmax(self.attention[0](positions, text).float(), dim=1)     # [n, H*W]
        active = ActiveSet.from_mask(top_p_mask(attention.detach(), self.top_p).view(n, height, width))
        weights = attention.reshape(-1).index_select(0, active.flat_index) * (height * width)
        return SparseMap(gather_sites(dense, active) * weights.unsqueeze(1).to(dense.dtype), active)

    def _selection(self, level: int, sparse: SparseMap, text: torch.Tensor) -> SparseMap:
        """Levels 2, 3: softmax over each image's surviving sites, its top-p nucleus, the kept sites'
        features weighted by attention x the image's surviving sites."""
        image, n_images = sparse.active.image_index, sparse.active.n_images
        scores = self.attention[level](sparse.features, text, image).float()
        attention = softmax_by_image(scores, image, n_images)
        keep = nucleus_by_image(attention.detach(), image, n_images, self.top_p)
        sites = sparse.active.site_counts().index_select(0, image)
        weighted = sparse.features * (attention * sites).unsqueeze(1).to(sparse.features.dtype)
        return SparseMap(weighted, sparse.active).select(keep)


class CLSTemporalEncoder(nn.Module):
    """Per-image vectors of each sample -> its CLS output: a learned vector prepended to the sample's
    sequence, post-norm transformer layers, no positional encoding, padding masked."""

    def __init__(self, width: int, layers: int, heads: int, feedforward: int, dropout: float):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(width))        # nn.Embedding(1, width)'s N(0, 1) init
        layer = nn.TransformerEncoderLayer(width, heads, feedforward, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, vectors: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        padded, padding = pad_by_counts(vectors, counts)
        sequence = torch.cat((self.cls.to(padded.dtype).expand(padded.shape[0], 1, -1), padded), dim=1)
        padding = F.pad(padding, (1, 0), value=False)       # the CLS position is never padding
        return self.encoder(sequence, src_key_padding_mask=padding)[:, 0]


class Dai2021FE2E(EndToEndModel):
    """FE2E as published: PublishedCNN per modality, CLS temporal encoders, linear fusion."""

    kind = "fe2e"
    arch = "dai2021"

    def __init__(self, label_names, modalities: str = "tav", text_encoder: nn.Module | None = None,
                 text_dim: int | None = None, architecture: Dai2021Architecture | dict | None = None):
        super().__init__()
        self._set_up(label_names, modalities, text_encoder, text_dim, architecture, Dai2021Architecture)
        arch, classes = self.architecture, len(self.label_names)
        for modality in self.modalities:
            if modality == "t":
                self.heads["t"] = nn.Linear(self.text_dim, classes)
                continue
            self.extractors[modality] = self.make_extractor(modality)
            self.temporal[modality] = CLSTemporalEncoder(arch.temporal_width, arch.temporal_layers,
                                                         arch.temporal_heads, arch.temporal_feedforward,
                                                         arch.dropout)
            self.heads[modality] = nn.Linear(arch.temporal_width, classes)
        self.fusion = nn.Linear(len(self.modalities), 1, bias=False) if len(self.modalities) > 1 else None

    def make_extractor(self, modality: str) -> nn.Module:
        return PublishedCNN(modality, self.architecture.temporal_width)

    def fuse(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        """nn.Linear(M, 1, bias=False) over the stacked per-modality logits [B, C, M]."""
        if self.fusion is None:
            return logits[self.modalities].float()
        stacked = torch.stack([logits[m].float() for m in self.modalities], dim=-1)
        return self.fusion(stacked).squeeze(-1)


class Dai2021MESM(SparseExtraction, Dai2021FE2E):
    """MESM as published (with the official code's two defects fixed; module docstring)."""

    def __init__(self, label_names, modalities: str = "tav", text_encoder: nn.Module | None = None,
                 text_dim: int | None = None, architecture: Dai2021Architecture | dict | None = None,
                 top_p: float = 0.5):
        self._set_top_p(modalities, top_p)
        super().__init__(label_names, modalities, text_encoder, text_dim, architecture)

    def make_extractor(self, modality: str) -> nn.Module:
        return SparsePublishedCNN(modality, self.architecture.temporal_width, text_dim=self.text_dim,
                                  top_p=self._top_p)


DAI2021_NETS = {"fe2e": Dai2021FE2E, "mesm": Dai2021MESM}   # by end-to-end kind (model/kinds.py)
