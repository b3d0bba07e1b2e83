"""VGG-style CNN feature extractors: dense (FE2E) and text-attended sparse (MESM).

Both turn a stack of images (face crops 3xSxS, or log-mel chunks 1x64x32) into one vector per image:

    stem:    conv3x3 -> BN -> ReLU -> maxpool2            (one conv: cheap, always dense)
    block i: (conv3x3 -> BN -> ReLU) x convs_per_block -> maxpool2     for each later width
    global average pool -> [n, channels[-1]]

The stem is one narrow conv on the full-resolution input, a few percent of the FLOPs; the blocks
after it hold the rest, which is what MESM makes sparse. In `SparseCNNExtractor` a cross-modal
attention layer scores every position of the stem's map against the text vector (projected
query . projected key, softmax over the positions of each image), top-p (nucleus) selection keeps the
positions holding p of the attention mass, the map is weighted by the attention (so the attention
is trained through the kept features), and the blocks run as submanifold convolutions and sparse
max pooling on the kept positions only.

Nucleus per level (`nucleus_per_level`, default on): sparse 2x2 pooling activates every coarse cell
that holds a kept site, so a scattered selection re-densifies after one or two poolings (a random
half of the sites touches ~94% of the 2x2 cells) and the deeper blocks would get no savings. After
each pooling we therefore keep only the active cells inside the top-p nucleus of the attention
summed to that resolution, so every resolution runs on the positions carrying p of the attention
mass. An image never loses all of its sites: where the intersection is empty its pooled cells stay.

Dense and sparse blocks have the same parameter names and shapes (`convs.i.weight`, `norms.i.*`), so
an FE2E extractor's weights load into an MESM extractor (strict=False: MESM adds `attention.*`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mer_data.model.sparse import (ActiveSet, SparseBatchNorm, SparseMap, SubmanifoldConv2d, gather_sites,
                          global_average_pool, sparse_max_pool2d, top_p_mask)


def channels_last_strides(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` [n, C, H, W] with NHWC strides, also when C == 1.

    For one channel, .contiguous(memory_format=torch.channels_last) keeps the NCHW strides (both
    layouts are contiguous), and convolutions then choose NCHW: mel chunks would leave the stem NCHW.
    """
    n, channels, height, width = tensor.shape
    strides = (height * width * channels, 1, width * channels, channels)
    if tensor.stride() == strides:
        return tensor
    if channels == 1:
        return tensor.contiguous().as_strided(tensor.shape, strides)
    return tensor.contiguous(memory_format=torch.channels_last)


class DenseBlock(nn.Module):
    """(conv3x3 no bias -> BatchNorm2d -> ReLU) x n_convs, then 2x2 max pooling."""

    def __init__(self, in_channels: int, out_channels: int, n_convs: int):
        super().__init__()
        widths = [in_channels] + [out_channels] * n_convs
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1, bias=False) for a, b in zip(widths, widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm2d(out_channels) for _ in range(n_convs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x)), inplace=True)
        return F.max_pool2d(x, 2)


class SparseBlock(nn.Module):
    """DenseBlock's layers on the active sites: submanifold convs, sparse BN, ReLU, sparse max pool."""

    def __init__(self, in_channels: int, out_channels: int, n_convs: int):
        super().__init__()
        widths = [in_channels] + [out_channels] * n_convs
        self.convs = nn.ModuleList(SubmanifoldConv2d(a, b, 3, bias=False) for a, b in zip(widths, widths[1:]))
        self.norms = nn.ModuleList(SparseBatchNorm(out_channels) for _ in range(n_convs))

    def forward(self, x: SparseMap) -> SparseMap:
        for conv, norm in zip(self.convs, self.norms):
            x = norm(conv(x))
            x = x.with_features(F.relu(x.features, inplace=True))
        return sparse_max_pool2d(x)


class CrossModalAttention(nn.Module):
    """Softmax over the positions of each image of (W_q text) . (W_k feature at the position) / sqrt(d)."""

    def __init__(self, channels: int, text_dim: int, dim: int):
        super().__init__()
        self.key = nn.Linear(channels, dim, bias=False)
        self.query = nn.Linear(text_dim, dim)
        self.dim = dim

    def forward(self, feature_map: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """feature_map [n, C, H, W], text [n, text_dim] (each image's utterance) -> attention [n, H, W]."""
        n, channels, height, width = feature_map.shape
        positions = feature_map.permute(0, 2, 3, 1).reshape(n, height * width, channels)  # a view if NHWC
        # (W_k x) . q = x . (W_k^T q): one probe vector per image instead of a key per position
        # (the same scores, a C-long dot product per position instead of a d x C projection).
        query = self.query(text.to(positions.dtype)) / math.sqrt(self.dim)          # [n, d]
        probe = query @ self.key.weight.to(query.dtype)                               # [n, C]
        scores = torch.bmm(positions, probe.unsqueeze(2)).squeeze(2)
        return torch.softmax(scores.float(), dim=1).view(n, height, width)


class CNNExtractor(nn.Module):
    """Dense VGG-style extractor (FE2E): images [n, in_channels, H, W] -> vectors [n, channels[-1]]."""

    def __init__(self, in_channels: int, channels: tuple[int, ...] = (16, 32, 64, 128), convs_per_block: int = 2):
        super().__init__()
        if len(channels) < 2 or convs_per_block < 1:
            raise ValueError(f"need a stem width and at least one block width, and >= 1 conv per block;"
                             f" got channels={channels}, convs_per_block={convs_per_block}")
        self.channels = tuple(channels)
        self.stem = DenseBlock(in_channels, channels[0], 1)
        self.blocks = nn.ModuleList(self.make_block(a, b, convs_per_block) for a, b in zip(channels, channels[1:]))
        # Dense maps are channels-last (NHWC): oneDNN's faster CPU layout (FE2E's extraction ~10% faster
        # than NCHW here), and MESM's gather of the kept sites is then a view of the stem's map. NHWC
        # weights keep the outputs NHWC even for 1-channel input.
        for conv in self.modules():
            if isinstance(conv, nn.Conv2d):
                conv.weight.data = channels_last_strides(conv.weight.data)

    make_block = DenseBlock

    @property
    def out_dim(self) -> int:
        return self.channels[-1]

    def forward(self, images: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        x = self.stem(channels_last_strides(images))
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=(2, 3))


class SparseCNNExtractor(CNNExtractor):
    """MESM's extractor: dense stem, text attention, top-p, then the blocks on the kept positions only."""

    make_block = SparseBlock

    def __init__(self, in_channels: int, channels: tuple[int, ...], convs_per_block: int, *, text_dim: int,
                 attention_dim: int = 32, top_p: float = 0.5, nucleus_per_level: bool = True,
                 selection_cell: int = 2):
        super().__init__(in_channels, channels, convs_per_block)
        if selection_cell < 1:
            raise ValueError(f"selection_cell must be >= 1, got {selection_cell}")
        self.attention = CrossModalAttention(channels[0], text_dim, attention_dim)
        self.top_p = top_p
        self.nucleus_per_level = nucleus_per_level
        self.selection_cell = selection_cell
        self.last_active_counts: list[tuple[int, int]] = []   # (kept, positions) per resolution

    def forward(self, images: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        if text is None or text.shape[0] != images.shape[0]:
            raise ValueError("the sparse extractor needs one text vector per image"
                             f" ({images.shape[0]} images, text {None if text is None else tuple(text.shape)})")
        x = self.stem(channels_last_strides(images))
        attention = self.attention(x, text)                            # [n, H, W]
        active = ActiveSet.from_mask(self._select(attention))
        # Weighted by attention * positions: uniform attention leaves the features unchanged in scale.
        weights = attention.reshape(-1).index_select(0, active.flat_index) * attention[0].numel()
        sparse = SparseMap(gather_sites(x, active) * weights.unsqueeze(1).to(x.dtype), active)
        level_attention = attention.detach()
        counts = [self._counts(sparse)]
        for block in self.blocks:
            sparse = block(sparse)
            if self.nucleus_per_level and self.top_p < 1:
                level_attention = F.avg_pool2d(level_attention.unsqueeze(1), 2).squeeze(1) * 4  # summed mass
                sparse = self._keep_nucleus(sparse, level_attention)
            counts.append(self._counts(sparse))
        self.last_active_counts = counts
        return global_average_pool(sparse)

    def _select(self, attention: torch.Tensor) -> torch.Tensor:
        """Top-p over cells of selection_cell x selection_cell positions (their summed attention).

        Selecting single positions keeps a scattered set while the attention is still diffuse (early
        in training): a 3x3 submanifold convolution then finds few kept neighbours and sees little
        spatial structure. Whole cells keep contiguous patches at the same kept share, and with cells
        of 2 the first pooling's active set is exactly the chosen cells (no re-densification).
        """
        cell = self.selection_cell
        if cell == 1:
            return top_p_mask(attention.flatten(1), self.top_p).view_as(attention)
        n, height, width = attention.shape
        padded = F.pad(attention, (0, -width % cell, 0, -height % cell))    # zeros carry no mass
        cells = F.avg_pool2d(padded.unsqueeze(1), cell).squeeze(1) * (cell * cell)
        kept_cells = top_p_mask(cells.flatten(1), self.top_p).view_as(cells)
        return kept_cells.repeat_interleave(cell, 1).repeat_interleave(cell, 2)[:, :height, :width]

    def _keep_nucleus(self, sparse: SparseMap, level_attention: torch.Tensor) -> SparseMap:
        """Keep the active cells inside the top-p nucleus of `level_attention` [n, h, w] (>= 1 per image)."""
        nucleus = top_p_mask(level_attention.flatten(1), self.top_p).view_as(level_attention)
        keep = nucleus.reshape(-1).index_select(0, sparse.active.flat_index)
        image = sparse.active.image_index
        kept_per_image = torch.bincount(image[keep], minlength=sparse.active.n_images)
        keep = keep | (kept_per_image == 0)[image]
        return sparse.select(keep)

    @staticmethod
    def _counts(sparse: SparseMap) -> tuple[int, int]:
        """(active positions, all positions) at this resolution."""
        return sparse.active.n_active, sparse.active.n_positions
