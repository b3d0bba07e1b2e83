"""Sparse 2-D feature maps and the layers MESM runs on them, in plain torch (no spconv/SparseConvNet).

A `SparseMap` is the features of the active sites of a batch of 2-D maps: `features` [N, C] and an
`ActiveSet` (the sites in row-major order, as flat indices (image*H + y)*W + x or as coordinates
[N, 3] = (image, y, x); the map size; the number of images). Layers that keep the active set
(submanifold convolution, batch norm, ReLU) share one `ActiveSet` object, which caches its index
tables: they are built once per active set (neighbours per kernel size, pooling) and reused by every
layer at that resolution.

Submanifold convolution (Graham et al.): outputs exist only at the active sites and only active
neighbours contribute (inactive sites read as zeros). One layer is one gather (im2col of the active
sites, [N, k*k*Cin]) and ONE matrix product with the weight, laid out as nn.Conv2d's [Cout, Cin, k, k].
Its backward is gathers and matrix products too: the input and output active sets are the same, so
site j is the neighbour of site i at offset d exactly when i is j's neighbour at offset -d, and the
input gradient is the im2col of the output gradient times the flipped weight (no scatter-add);
the weight gradient reuses that im2col (the transposed columns times the input features).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class ActiveSet:
    """Where a batch of sparse maps is active, and the index tables built on it (cached).

    Stored as flat indices (image * H + y) * W + x, ascending (row-major order, the order of
    `torch.nonzero` on a mask), which is also each site's row in a channels-last [n*H*W, C] view.
    """

    def __init__(self, flat_index: torch.Tensor, n_images: int, spatial_size: tuple[int, int],
                 coords: torch.Tensor | None = None):
        self.flat_index = flat_index
        self.n_images = int(n_images)
        self.spatial_size = (int(spatial_size[0]), int(spatial_size[1]))
        self._cache: dict = {} if coords is None else {"coords": coords}

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> "ActiveSet":
        """The True sites of a bool mask [n, H, W]."""
        if mask.dim() != 3:
            raise ValueError(f"mask must be [n, H, W], got shape {tuple(mask.shape)}")
        # nonzero gives the coordinates; the flat index from them needs no (slow) int64 division.
        coords = torch.nonzero(mask)
        height, width = mask.shape[1:]
        flat_index = (coords[:, 0] * height + coords[:, 1]) * width + coords[:, 2]
        return cls(flat_index, mask.shape[0], (height, width), coords)

    @property
    def n_active(self) -> int:
        return int(self.flat_index.shape[0])

    @property
    def n_positions(self) -> int:
        """Sites of the dense maps: n_images * H * W."""
        return self.n_images * self.spatial_size[0] * self.spatial_size[1]

    @property
    def coords(self) -> torch.Tensor:
        """[N, 3] int64 (image, y, x) (cached)."""
        if "coords" not in self._cache:
            height, width = self.spatial_size
            flat = self.flat_index
            self._cache["coords"] = torch.stack((flat // (height * width), (flat // width) % height,
                                                  flat % width), dim=1)
        return self._cache["coords"]

    @property
    def image_index(self) -> torch.Tensor:
        return self.coords[:, 0]

    def site_counts(self) -> torch.Tensor:
        """[n_images]: active sites per image."""
        return torch.bincount(self.image_index, minlength=self.n_images)

    def neighbour_table(self, kernel_size: int) -> torch.Tensor:
        """[N, k*k] int64: row of the neighbour at each kernel offset (ky*k + kx), n_active where inactive."""
        key = ("neighbours", kernel_size)
        if key not in self._cache:
            self._cache[key] = self._build_neighbour_table(kernel_size)
        return self._cache[key]

    def _build_neighbour_table(self, kernel_size: int) -> torch.Tensor:
        if kernel_size % 2 != 1:
            raise ValueError(f"submanifold convolution needs an odd kernel size, got {kernel_size}")
        radius = kernel_size // 2
        height, width = self.spatial_size
        padded_h, padded_w = height + 2 * radius, width + 2 * radius
        device = self.flat_index.device
        image, y, x = self.coords.unbind(1)
        # A dense lookup grid (with a border of `radius`) holds each site's row, n_active elsewhere.
        corner = (image * padded_h + y) * padded_w + x        # the (ky, kx) = (0, 0) neighbour, padded grid
        grid = torch.full((self.n_images * padded_h * padded_w,), self.n_active, dtype=torch.long,
                          device=device)
        grid.index_copy_(0, corner + (radius * padded_w + radius), torch.arange(self.n_active, device=device))
        offsets = torch.arange(kernel_size, device=device)
        offsets = (offsets[:, None] * padded_w + offsets[None, :]).reshape(-1)   # ky * padded_w + kx
        neighbours = grid.index_select(0, (corner[:, None] + offsets[None, :]).reshape(-1))
        return neighbours.view(-1, kernel_size ** 2)

    def pooling(self) -> "PoolingTable":
        """The 2x2 stride-2 pooling of this active set (cached)."""
        if "pool" not in self._cache:
            self._cache["pool"] = PoolingTable.build(self)
        return self._cache["pool"]

    def subset(self, keep: torch.Tensor) -> tuple["ActiveSet", torch.Tensor]:
        """(active set of the sites where `keep` [N] bool is true, their rows in this set)."""
        rows = torch.nonzero(keep).squeeze(1)
        coords = self._cache["coords"].index_select(0, rows) if "coords" in self._cache else None
        return ActiveSet(self.flat_index.index_select(0, rows), self.n_images, self.spatial_size, coords), rows


@dataclass(eq=False)
class PoolingTable:
    """2x2 stride-2 pooling of an active set.

    A coarse cell is active when it holds an active site. members [4, M]: the row of the member in
    slot (y%2)*2 + x%2 of each cell; where that member is inactive, the row of the cell's first
    member in slot order (a duplicate: the max is unchanged, and the first maximal slot still names
    the first maximal member). Rows of an odd last row/column belong to no cell (nn.MaxPool2d drops
    them too).
    """

    coarse: ActiveSet
    members: torch.Tensor

    @classmethod
    def build(cls, active: ActiveSet) -> "PoolingTable":
        height, width = active.spatial_size
        out_h, out_w = height // 2, width // 2
        if out_h == 0 or out_w == 0:
            raise ValueError(f"cannot 2x2-pool a {height}x{width} map")
        device = active.flat_index.device
        image, y, x = active.coords.unbind(1)
        inside = (y < 2 * out_h) & (x < 2 * out_w)
        # Coarse position of each row's cell; rows in no cell go to one spare position past the end.
        # (Shifts and masks, not // and %: int64 division is slow on CPU.)
        n_coarse = active.n_images * out_h * out_w
        cell = torch.where(inside, (image * out_h + (y >> 1)) * out_w + (x >> 1), n_coarse)
        occupied = torch.zeros(n_coarse + 1, dtype=torch.bool, device=device).index_fill_(0, cell, True)
        coarse = ActiveSet.from_mask(occupied[:-1].view(active.n_images, out_h, out_w))
        n_cells = coarse.n_active
        cell_row = torch.empty(n_coarse + 1, dtype=torch.long, device=device)
        cell_row.index_copy_(0, coarse.flat_index, torch.arange(n_cells, device=device))
        slot = ((y & 1) << 1) | (x & 1)
        home = torch.where(inside, slot * n_cells + cell_row.index_select(0, cell), 4 * n_cells)
        members = torch.full((4 * n_cells + 1,), active.n_active, dtype=torch.long, device=device)
        members = members.index_copy_(0, home, torch.arange(active.n_active, device=device))[:-1].view(4, n_cells)
        # Rows ascend with the slot (row-major order), so a cell's first member has its lowest row.
        first_member = torch.minimum(torch.minimum(members[0], members[1]), torch.minimum(members[2], members[3]))
        return cls(coarse, torch.where(members < active.n_active, members, first_member))


@dataclass(eq=False)
class SparseMap:
    """Features [N, C] of the active sites of `active`."""

    features: torch.Tensor
    active: ActiveSet

    @classmethod
    def from_dense(cls, dense: torch.Tensor, mask: torch.Tensor) -> "SparseMap":
        """From a dense map [n, C, H, W] and a keep-mask [n, H, W] (bool); gradients flow to `dense`."""
        if dense.dim() != 4 or mask.shape != (dense.shape[0], *dense.shape[2:]):
            raise ValueError(f"dense map {tuple(dense.shape)} and mask {tuple(mask.shape)} do not match")
        active = ActiveSet.from_mask(mask)
        return cls(gather_sites(dense, active), active)

    def to_dense(self, fill: float = 0.0) -> torch.Tensor:
        """[n, C, H, W] with `fill` at the inactive sites."""
        height, width = self.active.spatial_size
        channels = self.features.shape[1]
        dense = self.features.new_full((self.active.n_positions, channels), fill)
        dense = dense.index_copy(0, self.active.flat_index, self.features)
        return dense.view(self.active.n_images, height, width, channels).permute(0, 3, 1, 2).contiguous()

    def with_features(self, features: torch.Tensor) -> "SparseMap":
        return SparseMap(features, self.active)

    def select(self, keep: torch.Tensor) -> "SparseMap":
        """Only the sites where `keep` [N] is true (a new, smaller active set)."""
        active, rows = self.active.subset(keep)
        return SparseMap(self.features.index_select(0, rows), active)


def gather_sites(dense: torch.Tensor, active: ActiveSet) -> torch.Tensor:
    """[N, C]: the values of a dense map [n, C, H, W] at the active sites (free view if channels-last)."""
    channels = dense.shape[1]
    rows = dense.permute(0, 2, 3, 1).reshape(-1, channels)
    return rows.index_select(0, active.flat_index)


def top_p_mask(attention: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus selection per row: the smallest set of positions whose attention mass reaches p.

    attention [n, L] (non-negative; each row's mass is taken relative to its sum). Per row the
    positions are sorted by mass, descending (ties: the lower index first, so the result is
    deterministic), and kept up to and including the one where the cumulative mass first reaches
    p * total. Returns a bool mask [n, L]; at least one position per row is kept. p >= 1 keeps every
    position (in exact arithmetic only the whole row reaches the full mass).
    """
    if not p > 0:
        raise ValueError(f"top-p needs p > 0, got {p}")
    if attention.dim() != 2:
        raise ValueError(f"attention must be [n, L], got shape {tuple(attention.shape)}")
    if p >= 1:
        return torch.ones_like(attention, dtype=torch.bool)
    values, order = torch.sort(attention, dim=1, descending=True, stable=True)
    # Exclusive cumulative sum: the mass of the positions before; 0 for the first, so a row keeps >= 1.
    mass_before = F.pad(torch.cumsum(values, dim=1)[:, :-1], (1, 0))
    keep_sorted = mass_before < p * attention.sum(dim=1, keepdim=True)
    return torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)


def softmax_by_image(scores: torch.Tensor, image_index: torch.Tensor, n_images: int) -> torch.Tensor:
    """Softmax of `scores` [N] over the sites of each image (`image_index` [N]); differentiable."""
    peak = scores.new_full((n_images,), float("-inf")).scatter_reduce(
        0, image_index, scores.detach(), reduce="amax", include_self=True)
    exp = torch.exp(scores - peak.index_select(0, image_index))
    totals = exp.new_zeros(n_images).index_add(0, image_index, exp)
    return exp / totals.index_select(0, image_index)


def nucleus_by_image(weights: torch.Tensor, image_index: torch.Tensor, n_images: int, p: float) -> torch.Tensor:
    """`top_p_mask` per image over sparse sites: bool [N], per image the sites, sorted by weight
    descending, up to and including the one where the cumulative weight first reaches p x the image's
    total (ties: the lower row first). At least one site per image with sites; p >= 1 keeps all."""
    if not p > 0:
        raise ValueError(f"top-p needs p > 0, got {p}")
    if weights.dim() != 1 or image_index.shape != weights.shape:
        raise ValueError(f"weights and image_index must be [N], got {tuple(weights.shape)}"
                         f" and {tuple(image_index.shape)}")
    if p >= 1:
        return torch.ones_like(weights, dtype=torch.bool)
    # Sites grouped by image, each group sorted by weight descending (two stable sorts).
    order = torch.sort(weights, descending=True, stable=True).indices
    order = order.index_select(0, torch.sort(image_index.index_select(0, order), stable=True).indices)
    values = weights.index_select(0, order).double()          # float64: cumulative sums over many sites
    image = image_index.index_select(0, order)
    totals = values.new_zeros(n_images).index_add(0, image, values)
    group_start = torch.cumsum(totals, 0) - totals           # the mass of the images before
    mass_before = torch.cumsum(values, 0) - values - group_start.index_select(0, image)
    keep_sorted = mass_before < p * totals.index_select(0, image)
    return torch.zeros_like(keep_sorted).scatter(0, order, keep_sorted)


class _Workspace(threading.local):
    """One reusable scratch buffer per thread, device and dtype, for the im2col columns.

    The columns ([N, k*k*C], the largest temporaries of MESM) live only until the matrix product that
    consumes them returns. Allocating them fresh for every layer costs more than the gather itself on
    CPU: blocks that large are mmapped and page-faulted (and zeroed by the kernel) on every call.
    """

    def __init__(self):
        self.buffers: dict = {}

    def take(self, numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (dtype, device)
        buffer = self.buffers.get(key)
        if buffer is None or buffer.numel() < numel:
            buffer = torch.empty(numel, dtype=dtype, device=device)
            self.buffers[key] = buffer
        return buffer[:numel]


_WORKSPACE = _Workspace()


# On CPU the products run as 1x1 convolutions of this many "images" (see _rows_times_matrix).
_ROW_BLOCKS = 16


def _padded_rows(rows: int, device: torch.device) -> int:
    """Rows of the im2col columns: on CPU a multiple of _ROW_BLOCKS (the extra rows are zeros)."""
    return rows if device.type != "cpu" else -(-rows // _ROW_BLOCKS) * _ROW_BLOCKS


def _im2col(features: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """[R, K*C] in the thread's workspace: for each site the features of its K neighbours (zeros where
    inactive), R = _padded_rows(N) with zero rows after the N sites'. Valid until the next _im2col call
    of this thread: consume it at once."""
    rows, neighbours = table.shape
    channels = features.shape[1]
    padded = torch.cat((features, features.new_zeros(1, channels)))
    all_rows = _padded_rows(rows, features.device)
    columns = _WORKSPACE.take(all_rows * neighbours * channels, features.dtype, features.device)
    columns = columns.view(all_rows, neighbours * channels)
    torch.index_select(padded, 0, table.reshape(-1), out=columns[:rows].view(rows * neighbours, channels))
    columns[rows:].zero_()
    return columns


def _rows_times_matrix(columns: torch.Tensor, matrix_rows: torch.Tensor) -> torch.Tensor:
    """columns [R, K] @ matrix_rows.t() (matrix_rows [Cout, K]) -> [R, Cout]; one matrix product.

    On CPU it runs as a 1x1 convolution (the same product: FlopCounterMode counts the same FLOPs) of
    _ROW_BLOCKS NHWC images of R / _ROW_BLOCKS x 1 pixels, a view of the columns. ATen gives 1x1
    convolutions to oneDNN only from a batch of 16 up when single-threaded (else to the same sgemm
    as torch.mm), and oneDNN's kernels run these narrow products (Cout 16-128) 1.2-1.5x faster than
    the MKL sgemm behind torch.mm on this CPU (measured per layer shape; see benchmarks/README.md).
    """
    if columns.device.type != "cpu":
        return columns @ matrix_rows.t()
    rows, depth = columns.shape
    images = columns.view(_ROW_BLOCKS, rows // _ROW_BLOCKS, 1, depth).permute(0, 3, 1, 2)
    out = F.conv2d(images, matrix_rows.reshape(-1, depth, 1, 1))
    return out.permute(0, 2, 3, 1).reshape(rows, -1)       # a view: the output is NHWC too


class _SubmanifoldConvolution(torch.autograd.Function):
    """out = im2col(x) @ W; grads by gathers and matrix products only (see the module docstring)."""

    @staticmethod
    def forward(ctx, features, weight, table):
        out_channels, in_channels, k, _ = weight.shape
        weight_rows = weight.permute(0, 2, 3, 1).reshape(out_channels, k * k * in_channels)
        # Under autocast: the autocast dtype. The columns are rebuilt in backward rather than kept:
        # k*k times the features' memory.
        out = _rows_times_matrix(_im2col(features, table), weight_rows)[: table.shape[0]]
        ctx.save_for_backward(features, weight, table)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        features, weight, table = ctx.saved_tensors
        out_channels, in_channels, k, _ = weight.shape
        rows = table.shape[0]
        grad_out = grad_out.to(features.dtype).contiguous()
        # One gather serves both gradients: the im2col of the output gradient, whose block e holds
        # G[neighbour of j at offset e]. Input gradient: those columns times the flipped weight.
        # Weight gradient at offset d: sum_i G[i] X[neighbour of i at d]^T = sum_j G[neighbour of j
        # at -d] X[j]^T (the same symmetry), i.e. block -d of the columns, transposed, times X.
        grad_columns = _im2col(grad_out, table)
        grad_features = grad_weight = None
        if ctx.needs_input_grad[0]:
            # Offset index ky*k+kx of the flipped kernel is the opposite offset of the original.
            flipped_rows = weight.flip(2, 3).permute(1, 2, 3, 0).reshape(in_channels, k * k * out_channels)
            grad_features = _rows_times_matrix(grad_columns, flipped_rows.to(features.dtype))[:rows]
        if ctx.needs_input_grad[1]:
            grad_matrix = grad_columns[:rows].t() @ features          # [k*k*Cout, Cin], block e: offset -e
            grad_weight = grad_matrix.view(k, k, out_channels, in_channels).flip(0, 1).permute(2, 3, 0, 1)
            grad_weight = grad_weight.to(weight.dtype)
        return grad_features, grad_weight, None


def submanifold_conv2d(x: SparseMap, weight: torch.Tensor, bias: torch.Tensor | None = None) -> SparseMap:
    """Submanifold convolution, stride 1, 'same' padding; weight [Cout, Cin, k, k] as nn.Conv2d."""
    if weight.dim() != 4 or weight.shape[2] != weight.shape[3]:
        raise ValueError(f"weight must be [Cout, Cin, k, k], got {tuple(weight.shape)}")
    if x.features.shape[1] != weight.shape[1]:
        raise ValueError(f"{x.features.shape[1]} input channels, the weight expects {weight.shape[1]}")
    table = x.active.neighbour_table(weight.shape[2])
    out = _SubmanifoldConvolution.apply(x.features, weight, table)
    if bias is not None:
        out = out + bias.to(out.dtype)
    return x.with_features(out)


class SubmanifoldConv2d(nn.Module):
    """nn.Conv2d(in, out, k, padding=k//2)'s parameters (same names, shapes and init), run sparsely."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True):
        super().__init__()
        reference = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        self.weight = reference.weight
        self.bias = reference.bias

    def forward(self, x: SparseMap) -> SparseMap:
        return submanifold_conv2d(x, self.weight, self.bias)


class SparseBatchNorm(nn.BatchNorm1d):
    """Batch norm over the active sites only (statistics of the features [N, C]); BatchNorm2d's state."""

    def forward(self, x: SparseMap) -> SparseMap:
        return x.with_features(super().forward(x.features))


class _SparseMaxPool(torch.autograd.Function):
    """Max over the 4 member rows of each cell; the gradient goes to the first maximal member.

    "First" in slot order (y%2)*2 + x%2, the scan order of nn.MaxPool2d's window, so ties are
    resolved as the dense pooling resolves them.
    """

    @staticmethod
    def forward(ctx, features, table: PoolingTable):
        cells = table.members.shape[1]
        slots = features.index_select(0, table.members.reshape(-1)).view(4, cells, features.shape[1])
        values = torch.maximum(torch.maximum(slots[0], slots[1]), torch.maximum(slots[2], slots[3]))
        # The first maximal slot, 3 - [max in slots 0..0] - [.. 0..1] - [.. 0..2]: a few cheap passes
        # (torch.max(dim=0) with indices takes 10x the maxima's time here).
        upto_0 = slots[0] == values
        upto_1 = upto_0 | (slots[1] == values)
        upto_2 = upto_1 | (slots[2] == values)
        first_max_slot = 3 - (upto_0.to(torch.uint8) + upto_1 + upto_2)
        # The row each (cell, channel) maximum came from: [M, C], the scatter index of the backward.
        ctx.save_for_backward(table.members.t().contiguous().gather(1, first_max_slot.long()))
        ctx.n_rows = features.shape[0]
        return values

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        (winning_row,) = ctx.saved_tensors
        # Each fine row is in one cell at most, so no two (cell, channel) maxima share a target.
        grad = grad_out.new_zeros(ctx.n_rows, grad_out.shape[1])
        return grad.scatter_(0, winning_row, grad_out), None


def sparse_max_pool2d(x: SparseMap) -> SparseMap:
    """2x2 stride-2 max pooling: a coarse cell is active when it holds an active site; max over those."""
    table = x.active.pooling()
    return SparseMap(_SparseMaxPool.apply(x.features, table), table.coarse)


def global_average_pool(x: SparseMap) -> torch.Tensor:
    """[n_images, C]: mean over each image's active sites (zeros for an image without any)."""
    image = x.active.image_index
    sums = x.features.new_zeros(x.active.n_images, x.features.shape[1]).index_add(0, image, x.features)
    counts = x.active.site_counts().clamp(min=1).to(sums.dtype)
    return sums / counts[:, None]


def global_max_pool(x: SparseMap) -> torch.Tensor:
    """[n_images, C]: max over each image's active sites (-inf for an image without any)."""
    image = x.active.image_index
    out = x.features.new_full((x.active.n_images, x.features.shape[1]), float("-inf"))
    index = image[:, None].expand_as(x.features)
    return out.scatter_reduce(0, index, x.features, reduce="amax", include_self=True)
