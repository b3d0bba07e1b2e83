"""The dai2021 networks (model/dai2021.py) against the official code's layout, FLOPs and selection rule.

The official figures and rules are restated here from the authors' code (Multimodal-End2end-Sparse:
src/models/e2e.py, sparse_e2e.py, attention_block.py): the layer shapes, 0.956 / 1.674 GFLOPs per face
/ acoustic chunk, and `to_sparse_by_cdf` (`official_nucleus` below) applied per frame at each level.
"""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from mer_data.model.dai2021 import (AdditiveAttention, Dai2021FE2E, Dai2021MESM, PublishedCNN, SparsePublishedCNN)
from mer_data.model.data import Batch
from mer_data.model.architectures import build_model, build_model_from_config
from mer_data.model.kinds import ARCHITECTURES
from mer_data.model.nets import FE2E
from mer_data.model.sparse import nucleus_by_image, softmax_by_image, top_p_mask
from mer_data.model.text import load_tokenizer

LABELS = ("ang", "exc", "fru", "hap", "neu", "sad")
OFFICIAL_GFLOPS = {"v": 0.956, "a": 1.674}          # per face crop / per acoustic chunk, forward
SHAPES = {"v": (3, 48, 48), "a": (1, 128, 32)}


def official_cnn_shapes(in_channels: int, flat: int) -> list[tuple[int, ...]]:
    """Parameter shapes of the official e2e.py CNN (self.V / self.A), then v_flatten / a_flatten."""
    shapes = [(64, in_channels, 5, 5), (64,), (64,), (64,)]              # conv5x5 + BatchNorm2d
    for a, b in ((64, 64), (64, 64), (64, 128), (128, 256), (256, 512)):  # VggBasicBlock(a, b)
        shapes += [(b, a, 3, 3), (b,), (b,), (b,), (b, b, 3, 3), (b,), (b,), (b,)]
    return shapes + [(1024, flat), (1024,), (64, 1024), (64,)]


def official_nucleus(attention: torch.Tensor, cdf: float) -> torch.Tensor:
    """The official to_sparse_by_cdf on one frame's attention [L]: sort descending, keep where the
    running sum is below cdf, and the element after those (the one where it reaches cdf)."""
    ordered, indices = torch.sort(attention, descending=True)
    mask = torch.cumsum(ordered, dim=-1) < cdf
    mask[torch.sum(mask)] = True
    kept = torch.zeros_like(attention, dtype=torch.bool)
    kept[indices[mask]] = True
    return kept


def counted_flops(fn) -> tuple[int, int]:
    """(all counted FLOPs, those of convolutions) of fn()."""
    with FlopCounterMode(display=False) as counter:
        fn()
    convolutions = sum(count for op, count in counter.get_flop_counts()["Global"].items()
                       if "convolution" in str(op))
    return counter.get_total_flops(), convolutions


@pytest.fixture(scope="module")
def batch(tiny_text_encoder):
    tokenizer = load_tokenizer(tiny_text_encoder)
    generator = torch.Generator().manual_seed(0)
    frame_counts, chunk_counts = torch.tensor([2, 1]), torch.tensor([1, 2])
    tokens = tokenizer(["a short line", "another rather longer line of words"], padding=True, return_tensors="pt")
    return Batch(ids=["u0", "u1"], frames=torch.randn(3, 3, 48, 48, generator=generator), frame_counts=frame_counts,
                 mel_chunks=torch.randn(3, 1, 128, 32, generator=generator), chunk_counts=chunk_counts,
                 input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                 targets=torch.tensor([[1.0, 0, 0, 0, 0, 0], [0, 0, 1.0, 0, 0, 1.0]]), label_names=LABELS)


@pytest.mark.parametrize("modality", ["v", "a"])
def test_counted_forward_flops_per_image_match_the_official_network(modality):
    cnn = PublishedCNN(modality).eval()
    images = torch.randn(2, *SHAPES[modality])
    with torch.no_grad():
        total, convolutions = counted_flops(lambda: cnn(images))
    # The official figure is the convolutions' (0.956 / 1.674 G); the flatten-MLP adds about 1%.
    assert convolutions / 2 == pytest.approx(OFFICIAL_GFLOPS[modality] * 1e9, rel=0.001)
    assert total / 2 == pytest.approx(OFFICIAL_GFLOPS[modality] * 1e9, rel=0.03)


@pytest.mark.parametrize("modality,flat", [("v", 512 * 3 * 3), ("a", 512 * 8 * 2)])
def test_parameter_shapes_follow_the_official_layout(modality, flat):
    cnn = PublishedCNN(modality)
    assert [tuple(p.shape) for p in cnn.parameters()] == official_cnn_shapes(SHAPES[modality][0], flat)
    convolutional = sum(p.numel() for name, p in cnn.named_parameters() if not name.startswith("flatten"))
    assert convolutional == pytest.approx(4.8e6, rel=0.01)

    sparse = SparsePublishedCNN(modality, text_dim=768)
    dense_shapes = official_cnn_shapes(SHAPES[modality][0], flat)
    # The sparse levels' submanifold convolutions have no bias (SparseConvNet's SparseVggNet): drop
    # the biases of the convolutions of VGG blocks 2-4 (0-based; each block: conv w, b, BN w, b, x2).
    level_biases = {4 + 8 * block + offset for block in (2, 3, 4) for offset in (1, 5)}
    expected = [s for i, s in enumerate(dense_shapes) if i not in level_biases]
    for k, channels in zip((64, 128, 256), (64, 128, 256)):   # official CrossModalAttentionLayer(k, C, 768)
        expected += [(k, channels), (k,), (k, 768), (1, k), (1,)]
    shapes = ([tuple(p.shape) for name, p in sparse.named_parameters() if not name.startswith("attention")]
              + [tuple(p.shape) for p in sparse.attention.parameters()])
    assert sorted(shapes) == sorted(expected)


def test_top_p_gives_the_official_masks_on_fixed_attention_maps():
    generator = torch.Generator().manual_seed(1)
    for sharpness in (0.3, 1.0, 4.0):                 # flat (untrained) to peaked (trained) maps
        attention = torch.softmax(sharpness * torch.randn(6, 24 * 24, generator=generator), dim=1)
        for p in (0.1, 0.3, 0.5, 0.7, 0.9):
            expected = torch.stack([official_nucleus(row, p) for row in attention])
            assert torch.equal(top_p_mask(attention, p), expected), (sharpness, p)
            # The same rule over sparse sites grouped by image.
            image = torch.arange(6).repeat_interleave(24 * 24)
            assert torch.equal(nucleus_by_image(attention.reshape(-1), image, 6, p), expected.reshape(-1))


def test_softmax_and_nucleus_by_image_work_per_image():
    generator = torch.Generator().manual_seed(2)
    sizes = [5, 1, 9]
    scores = torch.randn(sum(sizes), generator=generator) * 3
    image = torch.arange(3).repeat_interleave(torch.tensor(sizes))
    attention = softmax_by_image(scores, image, 3)
    expected = torch.cat([torch.softmax(part, 0) for part in scores.split(sizes)])
    torch.testing.assert_close(attention, expected)
    for p in (0.2, 0.6, 0.95):
        kept = nucleus_by_image(attention, image, 3, p)
        assert torch.equal(kept, torch.cat([official_nucleus(part, p) for part in attention.split(sizes)]))
    assert nucleus_by_image(attention, image, 3, 1.0).all()


class Recorder:
    """Forward hooks on a SparsePublishedCNN: each attention's scores, each level's input and output."""

    def __init__(self, cnn: SparsePublishedCNN):
        self.scores, self.level_inputs, self.level_outputs = [], [], []
        for attention in cnn.attention:
            attention.register_forward_hook(lambda module, args, out: self.scores.append(out.detach()))
        for level in cnn.levels:
            level.register_forward_hook(self.record_level)

    def record_level(self, module, args, out) -> None:      # returns None: the output stays as it is
        self.level_inputs.append(args[0])
        self.level_outputs.append(out)


def site_mask(sparse) -> torch.Tensor:
    mask = torch.zeros(sparse.active.n_images, *sparse.active.spatial_size, dtype=torch.bool)
    image, y, x = sparse.active.coords.unbind(1)
    mask[image, y, x] = True
    return mask


@pytest.mark.parametrize("modality", ["v", "a"])
@pytest.mark.parametrize("p", [0.3, 0.7])
def test_the_compounding_nucleus_keeps_what_the_official_rule_keeps_level_by_level(modality, p):
    torch.manual_seed(3)
    cnn = SparsePublishedCNN(modality, text_dim=16, top_p=p).eval()
    with torch.no_grad():
        for attention in cnn.attention:                # peaked maps, as a trained attention's
            attention.attn_weight_affine.weight.mul_(30)
    record = Recorder(cnn)
    images = torch.randn(3, *SHAPES[modality])
    with torch.no_grad():
        cnn(images, torch.randn(3, 16))
    n, (height, width) = 3, record.level_inputs[0].active.spatial_size
    # Level 1: the official rule on each frame's softmax over every position of the dense map.
    attention = torch.softmax(record.scores[0].reshape(n, -1), dim=1)
    expected = torch.stack([official_nucleus(row, p) for row in attention]).view(n, height, width)
    assert torch.equal(site_mask(record.level_inputs[0]), expected)
    candidates = expected
    for level in (1, 2):
        # SparseConvNet's MaxPooling(2, 2): every cell holding a kept site is active.
        candidates = F.max_pool2d(candidates[:, None].float(), 2)[:, 0].bool()
        assert torch.equal(site_mask(record.level_outputs[level - 1]), candidates)
        # The official rule on each frame's softmax renormalised over its surviving sites (row-major).
        per_frame = candidates.flatten(1).sum(1).tolist()
        scores = record.scores[level].split(per_frame)
        kept = torch.cat([official_nucleus(torch.softmax(s, 0), p) for s in scores])
        expected = torch.zeros_like(candidates)
        expected[candidates] = kept
        assert torch.equal(site_mask(record.level_inputs[level]), expected)
        candidates = expected
    counts = cnn.last_active_counts
    assert [c[0] for c in counts] == [int(site_mask(x).sum()) for x in record.level_inputs]


def test_mesm_at_p_one_keeps_every_site_and_computes_the_dense_network():
    torch.manual_seed(4)
    dense = PublishedCNN("v").eval()
    sparse = SparsePublishedCNN("v", text_dim=16, top_p=1.0).eval()
    with torch.no_grad():
        # The levels' conv biases (FE2E has them, SparseConvNet's convs not; redundant before BN) set to
        # zero, and one BN eps (SparseConvNet's 1e-4, torch's 1e-5): then both compute the same function.
        for name, param in dense.named_parameters():
            if name.startswith("levels.") and name.endswith("bias") and ".conv" in name:
                param.zero_()
        for module in sparse.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.eps = 1e-5
    missing, unexpected = sparse.load_state_dict(dense.state_dict(), strict=False)
    assert all(key.startswith("attention.") for key in missing)
    assert sorted(unexpected) == sorted(f"levels.{i}.conv{j}.bias" for i in range(3) for j in (1, 2))
    images = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        # Every weight a * S is 1 when the attention is flat: make it so, and compare with FE2E.
        for attention in sparse.attention:
            attention.attn_weight_affine.weight.zero_()
        out = sparse(images, torch.randn(2, 16))
    assert [kept for kept, _ in sparse.last_active_counts] == [2 * 24 * 24, 2 * 12 * 12, 2 * 6 * 6]
    torch.testing.assert_close(out, dense(images), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["fe2e", "mesm"])
def test_a_tiny_forward_and_backward_with_every_part_trained(kind, tiny_text_encoder, batch):
    torch.manual_seed(5)
    model = build_model(kind, LABELS, "tav", str(tiny_text_encoder), 0.5, arch="dai2021")
    assert isinstance(model, Dai2021MESM if kind == "mesm" else Dai2021FE2E)
    output = model(batch)
    assert output.logits.shape == (2, len(LABELS))
    assert sorted(output.modality_logits) == ["a", "t", "v"]
    F.binary_cross_entropy_with_logits(output.logits, batch.targets).backward()
    for name, param in model.named_parameters():
        if not name.startswith("text_encoder."):
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    if kind == "mesm":
        attention = [name for name, _ in model.named_parameters()
                     if name.startswith("extractors.") and ".attention." in name]
        assert len(attention) == 2 * 3 * 5          # both modalities, 3 levels, W_x, b_x, W_y, w, b
        fractions = model.active_fractions()
        assert set(fractions) == {"a", "v"} and all(len(levels) == 3 for levels in fractions.values())
        assert all(0 < f < 1 for levels in fractions.values() for f in levels)
        model.top_p = 1.0
        model(batch)
        assert all(f == 1.0 for levels in model.active_fractions().values() for f in levels)


def test_the_published_heads_fusion_and_temporal_encoder(tiny_text_encoder, batch):
    model = build_model("fe2e", LABELS, "tav", str(tiny_text_encoder), arch="dai2021").eval()
    assert isinstance(model.heads["t"], torch.nn.Linear)                 # no dropout before it
    assert model.fusion.weight.shape == (1, 3) and model.fusion.bias is None
    layer = model.temporal["v"].encoder.layers[0]
    assert (layer.linear1.out_features, layer.self_attn.num_heads, layer.norm_first) == (2048, 4, False)
    assert len(model.temporal["v"].encoder.layers) == 4
    with torch.no_grad():
        output = model(batch)
        stacked = torch.stack([output.modality_logits[m] for m in "tav"], dim=-1)
        torch.testing.assert_close(output.logits, stacked @ model.fusion.weight[0])
        # No positional encoding: the order of a sample's frames does not matter; padding is masked.
        vectors = torch.randn(5, 64)
        encoder = model.temporal["v"]
        together = encoder(vectors, torch.tensor([3, 2]))
        torch.testing.assert_close(together[0], encoder(vectors[[2, 0, 1]], torch.tensor([3]))[0])
        torch.testing.assert_close(together[1], encoder(vectors[3:], torch.tensor([2]))[0])
    single = build_model("fe2e", LABELS, "a", None, arch="dai2021").eval()
    assert single.fusion is None                     # one modality: its logits are the output
    with torch.no_grad():
        output = single(batch)
    torch.testing.assert_close(output.logits, output.modality_logits["a"])


@pytest.mark.parametrize("modality,shape,needs", [("v", (2, 3, 64, 64), "48x48"), ("a", (2, 1, 64, 32), "128-band")])
def test_inputs_of_another_front_end_are_refused(modality, shape, needs):
    with pytest.raises(ValueError, match=needs):
        PublishedCNN(modality)(torch.randn(*shape))


def test_config_round_trips_with_the_architecture(tiny_text_encoder):
    assert ARCHITECTURES == ("compact", "dai2021")
    model = build_model("mesm", LABELS, "tv", str(tiny_text_encoder), 0.7, arch="dai2021", temporal_layers=2)
    stored = json.loads(json.dumps(model.config.to_dict()))
    assert stored["arch"] == "dai2021" and stored["architecture"]["temporal_layers"] == 2
    rebuilt = build_model_from_config(stored)
    assert type(rebuilt) is Dai2021MESM and rebuilt.top_p == 0.7
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    # A config stored before the architectures existed (no "arch") is the compact one.
    compact = build_model("fe2e", LABELS, "av", None, temporal_width=8, temporal_heads=2)
    old = {k: v for k, v in compact.config.to_dict().items() if k != "arch"}
    assert type(build_model_from_config(old)) is FE2E
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("fe2e", LABELS, "av", None, arch="vgg")
    with pytest.raises(ValueError, match="unknown dai2021 model option"):
        build_model("fe2e", LABELS, "av", None, arch="dai2021", visual_channels=[4, 8])


def test_attention_scores_are_the_additive_form():
    torch.manual_seed(6)
    attention = AdditiveAttention(4, 3, 5)
    sites, text = torch.randn(2, 7, 4), torch.randn(2, 3)
    expected = (torch.tanh(sites @ attention.channel_affine.weight.T + attention.channel_affine.bias
                           + (text @ attention.y_affine.weight.T)[:, None])
                @ attention.attn_weight_affine.weight[0] + attention.attn_weight_affine.bias)
    torch.testing.assert_close(attention(sites, text), expected)
    image = torch.tensor([0] * 7 + [1] * 7)
    torch.testing.assert_close(attention(sites.reshape(14, 4), text, image), expected.reshape(14))


def test_flops_can_be_counted_with_the_batch_statistics(tiny_text_encoder, batch):
    from mer_data.model.flops import feature_extraction_flops

    torch.manual_seed(7)
    model = build_model("mesm", LABELS, "tav", str(tiny_text_encoder), 0.5, arch="dai2021").eval()
    norm = model.extractors["v"].levels[0].bn1
    before = norm.running_mean.clone()
    in_eval = feature_extraction_flops(model, batch)
    assert torch.equal(norm.running_mean, before)                  # eval mode: statistics untouched
    counted = feature_extraction_flops(model, batch, batch_statistics=True)
    assert not torch.equal(norm.running_mean, before)              # train mode: the batch's statistics
    assert not model.training                                      # and the mode is restored
    assert counted["total"] == counted["v"] + counted["a"] > 0
    assert set(counted) == set(in_eval)
