"""model/sparse.py against dense references: convolution, pooling, top-p, conversions."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from mer_data.model.sparse import (ActiveSet, SparseMap, SubmanifoldConv2d, global_average_pool, global_max_pool,
                          sparse_max_pool2d, submanifold_conv2d, top_p_mask)


def random_mask(generator, n, height, width, density):
    """A random keep-mask with at least one active site per image."""
    mask = torch.rand(n, height, width, generator=generator) < density
    mask.view(n, -1)[:, 0] |= ~mask.view(n, -1).any(dim=1)
    return mask


def dense_at_sites(dense, mask):
    """[N, C] values of a dense map [n, C, H, W] at the mask's sites, row-major (the sparse order)."""
    return dense.permute(0, 2, 3, 1)[mask]


CONV_CASES = [
    # (images, in_channels, out_channels, kernel, height, width, density)
    (2, 3, 5, 3, 7, 9, 0.5),      # odd map
    (3, 4, 2, 3, 8, 6, 0.25),     # even map, sparse
    (1, 1, 4, 3, 5, 5, 1.0),      # everything active
    (2, 6, 3, 3, 6, 7, 0.05),     # nearly empty: mostly isolated sites
    (2, 2, 3, 5, 9, 8, 0.6),      # a larger kernel
    (2, 3, 3, 1, 4, 5, 0.5),      # 1x1
]


@pytest.mark.parametrize("n,c_in,c_out,kernel,height,width,density", CONV_CASES)
def test_submanifold_conv_equals_dense_conv_on_masked_input(n, c_in, c_out, kernel, height, width, density):
    generator = torch.Generator().manual_seed(hash((n, c_in, kernel, height, width)) % 2**31)
    mask = random_mask(generator, n, height, width, density)
    dense_input = torch.randn(n, c_in, height, width, generator=generator, dtype=torch.float64)
    masked = (dense_input * mask[:, None]).requires_grad_()
    conv = torch.nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2).double()
    sparse_conv = SubmanifoldConv2d(c_in, c_out, kernel).double()
    sparse_conv.load_state_dict(conv.state_dict())          # same names, shapes, layout

    features = dense_at_sites(dense_input, mask).requires_grad_()
    out = sparse_conv(SparseMap(features, ActiveSet.from_mask(mask)))
    reference = dense_at_sites(conv(masked), mask)
    assert out.features.shape == reference.shape
    torch.testing.assert_close(out.features, reference)

    upstream = torch.randn(reference.shape, generator=generator, dtype=torch.float64)
    sparse_grads = torch.autograd.grad((out.features * upstream).sum(),
                                       [features, sparse_conv.weight, sparse_conv.bias])
    dense_grads = torch.autograd.grad((reference * upstream).sum(), [masked, conv.weight, conv.bias])
    torch.testing.assert_close(sparse_grads[0], dense_at_sites(dense_grads[0], mask))
    torch.testing.assert_close(sparse_grads[1], dense_grads[1])
    torch.testing.assert_close(sparse_grads[2], dense_grads[2])


def test_submanifold_conv_passes_gradcheck():
    generator = torch.Generator().manual_seed(1)
    mask = random_mask(generator, 2, 4, 3, 0.5)
    active = ActiveSet.from_mask(mask)
    features = torch.randn(active.n_active, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 2, 3, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, w: submanifold_conv2d(SparseMap(f, active), w).features,
                                    (features, weight), fast_mode=True)


def test_neighbour_tables_are_built_once_per_active_set():
    mask = random_mask(torch.Generator().manual_seed(2), 2, 6, 6, 0.5)
    active = ActiveSet.from_mask(mask)
    assert active.neighbour_table(3) is active.neighbour_table(3)
    assert active.pooling() is active.pooling()
    table = active.neighbour_table(3)
    assert table.shape == (active.n_active, 9)
    assert torch.equal(table[:, 4], torch.arange(active.n_active))     # the centre is the site itself


def test_submanifold_conv_refuses_bad_shapes():
    active = ActiveSet.from_mask(torch.ones(1, 3, 3, dtype=torch.bool))
    features = torch.randn(9, 2)
    with pytest.raises(ValueError, match="odd kernel"):
        submanifold_conv2d(SparseMap(features, active), torch.randn(4, 2, 2, 2))
    with pytest.raises(ValueError, match="input channels"):
        submanifold_conv2d(SparseMap(features, active), torch.randn(4, 3, 3, 3))


@pytest.mark.parametrize("height,width,density", [(8, 6, 0.4), (7, 9, 0.3), (5, 5, 1.0), (6, 7, 0.05)])
def test_sparse_max_pool_equals_dense_max_pool_with_inactive_at_minus_infinity(height, width, density):
    generator = torch.Generator().manual_seed(height * 100 + width)
    mask = random_mask(generator, 3, height, width, density)
    dense_input = torch.randn(3, 4, height, width, generator=generator, dtype=torch.float64)
    features = dense_at_sites(dense_input, mask).requires_grad_()
    pooled = sparse_max_pool2d(SparseMap(features, ActiveSet.from_mask(mask)))

    masked = dense_input.masked_fill(~mask[:, None], float("-inf")).requires_grad_()
    reference = F.max_pool2d(masked, 2)
    coarse_mask = torch.isfinite(reference[:, 0])
    assert torch.equal(pooled.active.coords, torch.nonzero(coarse_mask))   # cells that hold an active site
    torch.testing.assert_close(pooled.features, dense_at_sites(reference, coarse_mask))
    torch.testing.assert_close(pooled.to_dense(float("-inf")), reference)

    upstream = torch.randn(pooled.features.shape, generator=generator, dtype=torch.float64)
    (sparse_grad,) = torch.autograd.grad((pooled.features * upstream).sum(), [features])
    dense_upstream = torch.zeros_like(reference).permute(0, 2, 3, 1)
    dense_upstream[coarse_mask] = upstream
    (dense_grad,) = torch.autograd.grad(reference, [masked], dense_upstream.permute(0, 3, 1, 2))
    torch.testing.assert_close(sparse_grad, dense_at_sites(dense_grad, mask))


def test_sparse_max_pool_gives_a_tie_to_the_first_member_as_dense_pooling_does():
    mask = torch.tensor([[[True, True], [True, False]]])
    features = torch.tensor([[1.0], [3.0], [3.0]], requires_grad=True)   # (0,0), (0,1), (1,0)
    pooled = sparse_max_pool2d(SparseMap(features, ActiveSet.from_mask(mask)))
    pooled.features.sum().backward()
    dense = torch.tensor([[[[1.0, 3.0], [3.0, float("-inf")]]]], requires_grad=True)
    F.max_pool2d(dense, 2).sum().backward()
    assert features.grad.flatten().tolist() == [0.0, 1.0, 0.0]
    assert dense.grad.flatten().tolist()[:3] == [0.0, 1.0, 0.0]


def test_global_pools_average_and_max_over_active_sites_only():
    generator = torch.Generator().manual_seed(5)
    mask = random_mask(generator, 4, 5, 6, 0.3)
    dense_input = torch.randn(4, 3, 5, 6, generator=generator)
    sparse = SparseMap.from_dense(dense_input, mask)
    counts = mask.sum(dim=(1, 2)).clamp(min=1)
    expected_mean = (dense_input * mask[:, None]).sum(dim=(2, 3)) / counts[:, None]
    expected_max = dense_input.masked_fill(~mask[:, None], float("-inf")).amax(dim=(2, 3))
    torch.testing.assert_close(global_average_pool(sparse), expected_mean)
    torch.testing.assert_close(global_max_pool(sparse), expected_max)


def test_dense_sparse_round_trip_and_coordinates():
    generator = torch.Generator().manual_seed(6)
    mask = random_mask(generator, 2, 4, 5, 0.5)
    dense_input = torch.randn(2, 3, 4, 5, generator=generator)
    sparse = SparseMap.from_dense(dense_input, mask)
    assert torch.equal(sparse.active.coords, torch.nonzero(mask))
    torch.testing.assert_close(sparse.to_dense(), dense_input * mask[:, None])
    channels_last = dense_input.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(SparseMap.from_dense(channels_last, mask).features, sparse.features)


def brute_force_smallest_set_size(values: list[float], p: float) -> int:
    """The fewest positions whose total mass reaches p of the row's mass, over all subsets."""
    total = sum(values)
    for size in range(1, len(values) + 1):
        if any(sum(subset) >= p * total for subset in itertools.combinations(values, size)):
            return size
    raise AssertionError("unreachable: the full set reaches any p <= 1")


def test_top_p_keeps_the_smallest_set_reaching_p_brute_force():
    generator = torch.Generator().manual_seed(7)
    for trial in range(60):
        length = int(torch.randint(1, 10, (1,), generator=generator))
        temperature = [0.1, 1.0, 5.0][trial % 3]
        attention = torch.softmax(torch.randn(4, length, generator=generator, dtype=torch.float64) * temperature, 1)
        for p in (0.05, 0.3, 0.5, 0.7, 0.9, 0.999):
            mask = top_p_mask(attention, p)
            assert mask.shape == attention.shape  # so that the loop below sees every row
            for row, keep in zip(attention, mask):
                kept_mass = row[keep].sum()
                assert kept_mass >= p * row.sum()
                assert int(keep.sum()) == brute_force_smallest_set_size(row.tolist(), p)
                if not keep.all():   # the kept positions are the heaviest ones
                    assert row[keep].min() >= row[~keep].max()


def test_top_p_edge_cases_and_ties():
    ties = torch.full((1, 4), 0.25)
    assert top_p_mask(ties, 0.5).tolist() == [[True, True, False, False]]        # ties: lower index first
    assert top_p_mask(ties, 0.51).tolist() == [[True, True, True, False]]
    peaked = torch.tensor([[0.1, 0.7, 0.2]])
    assert top_p_mask(peaked, 1e-6).tolist() == [[False, True, False]]           # at least one
    assert top_p_mask(peaked, 0.7).tolist() == [[False, True, False]]            # reaching p exactly
    assert top_p_mask(peaked, 1.0).all()
    unnormalised = torch.tensor([[2.0, 6.0, 2.0]])                                 # mass relative to the sum
    assert top_p_mask(unnormalised, 0.6).tolist() == [[False, True, False]]
    with pytest.raises(ValueError):
        top_p_mask(peaked, 0.0)
    with pytest.raises(ValueError):
        top_p_mask(peaked[0], 0.5)
