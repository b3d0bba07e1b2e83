"""FE2E and MESM on tiny batches: every modality subset, sparsity, FLOPs, config round trip."""
from __future__ import annotations

import json

import pytest
import torch

from mer_data.model.data import Batch
from mer_data.model.flops import feature_extraction_flops
from mer_data.model.architectures import build_model, build_model_from_config
from mer_data.model.nets import FE2E, MESM
from mer_data.model.text import load_text_encoder, load_tokenizer, write_tiny_text_encoder

LABELS = ("ang", "exc", "fru", "hap", "neu", "sad")
TINY = dict(visual_channels=[4, 8, 8, 8], acoustic_channels=[4, 8, 8, 8], temporal_width=8,
            temporal_layers=1, temporal_heads=2, attention_dim=8)
ALL_SUBSETS = ["t", "a", "v", "ta", "tv", "av", "tav"]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return write_tiny_text_encoder(tmp_path_factory.mktemp("tiny-text"))


@pytest.fixture(scope="module")
def batch(encoder_dir):
    return make_batch(load_tokenizer(encoder_dir), frame_counts=[2, 1, 3], chunk_counts=[1, 4, 2])


def make_batch(tokenizer, frame_counts, chunk_counts, face_size=48, seed=0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    frame_counts, chunk_counts = torch.tensor(frame_counts), torch.tensor(chunk_counts)
    size = len(frame_counts)
    tokens = tokenizer([f"utterance number {i} " * (i + 1) for i in range(size)], padding=True,
                       return_tensors="pt")
    targets = torch.zeros(size, len(LABELS))
    targets[torch.arange(size), torch.arange(size) % len(LABELS)] = 1
    return Batch(ids=[f"u{i}" for i in range(size)],
                 frames=torch.randn(int(frame_counts.sum()), 3, face_size, face_size, generator=generator),
                 frame_counts=frame_counts,
                 mel_chunks=torch.randn(int(chunk_counts.sum()), 1, 64, 32, generator=generator),
                 chunk_counts=chunk_counts, input_ids=tokens["input_ids"],
                 attention_mask=tokens["attention_mask"], targets=targets, label_names=LABELS)


def subsets_of(kind):
    return [m for m in ALL_SUBSETS if kind == "fe2e" or "t" in m]


@pytest.mark.parametrize("kind,modalities", [(k, m) for k in ("fe2e", "mesm") for m in subsets_of(k)])
def test_forward_and_backward_for_every_modality_subset(kind, modalities, encoder_dir, batch):
    torch.manual_seed(0)
    model = build_model(kind, LABELS, modalities, str(encoder_dir), 0.5, **TINY)
    output = model(batch)
    assert output.logits.shape == (len(batch), len(LABELS))
    assert sorted(output.modality_logits) == sorted(modalities)
    assert all(v.shape == (len(batch), len(LABELS)) for v in output.modality_logits.values())
    assert torch.isfinite(output.logits).all()
    torch.nn.functional.binary_cross_entropy_with_logits(output.logits, batch.targets).backward()
    assert set(model.extractors) == set(modalities) - {"t"}          # only the chosen extractors exist
    assert (model.text_encoder is not None) == ("t" in modalities)
    for name, param in model.named_parameters():
        if name.startswith(("extractors.", "heads.", "fusion_weights")):
            assert param.grad is not None, name
    if kind == "mesm":
        for name, param in model.named_parameters():
            if ".attention." in name:       # the attention is trained through the kept features
                assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_mesm_needs_the_text_modality(encoder_dir):
    with pytest.raises(ValueError, match="must include 't'"):
        build_model("mesm", LABELS, "av", str(encoder_dir), 0.5, **TINY)


@pytest.mark.parametrize("bad", ["", "x", "tt", "tavx"])
def test_bad_modalities_are_refused(bad, encoder_dir):
    with pytest.raises(ValueError, match="modalities"):
        build_model("fe2e", LABELS, bad, str(encoder_dir), **TINY)


def test_bad_options_are_refused(encoder_dir):
    with pytest.raises(ValueError, match="unknown model option"):
        build_model("fe2e", LABELS, "tav", str(encoder_dir), visual_chanels=[4, 8])
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model("cnn", LABELS, "tav", str(encoder_dir))
    with pytest.raises(ValueError, match="top_p"):
        build_model("mesm", LABELS, "tav", str(encoder_dir), 0.0, **TINY)


def test_inconsistent_counts_are_refused(encoder_dir, batch):
    model = build_model("fe2e", LABELS, "av", None, **TINY)
    broken = Batch(**{**batch.__dict__, "frame_counts": batch.frame_counts + 1})
    with pytest.raises(ValueError, match="frame_counts"):
        model(broken)


def test_mesm_at_p_one_keeps_every_position(encoder_dir, batch):
    model = build_model("mesm", LABELS, "tav", str(encoder_dir), 1.0, **TINY)
    model(batch)
    fractions = model.active_fractions()
    assert set(fractions) == {"a", "v"}
    assert all(f == 1.0 for levels in fractions.values() for f in levels)


def test_kept_share_sums_positions_over_batches_and_skips_dense_models(encoder_dir, batch):
    from mer_data.model.train import KeptShare

    mesm = build_model("mesm", LABELS, "tav", str(encoder_dir), 0.5, **TINY)
    kept = KeptShare()
    counts = []
    for top_p in (0.5, 1.0):   # two "batches" that keep different shares
        mesm.top_p = top_p
        mesm(batch)
        kept.add(mesm)
        counts.append(mesm.active_counts())
    kept.add(build_model("fe2e", LABELS, "tav", str(encoder_dir), **TINY))   # dense: adds nothing
    for modality, levels in kept.shares().items():
        for level, share in enumerate(levels):
            active = sum(c[modality][level][0] for c in counts)
            positions = sum(c[modality][level][1] for c in counts)
            assert share == pytest.approx(active / positions, abs=1e-4)
            assert counts[1][modality][level][0] == counts[1][modality][level][1]   # p=1 keeps all
    assert KeptShare().shares() is None


def test_mesm_keeps_about_p_of_the_positions_at_init(encoder_dir, batch):
    model = build_model("mesm", LABELS, "tav", str(encoder_dir), 0.5, **TINY)
    model(batch)
    fractions = model.active_fractions()
    assert set(fractions) == {"a", "v"}
    for levels in fractions.values():
        assert 0.2 < levels[0] <= 0.6           # near-uniform attention: about half the positions
        assert all(f < 0.9 for f in levels[:-1])  # and no re-densifying through the poolings


def test_mesm_counts_fewer_feature_extraction_flops_than_fe2e(encoder_dir, batch):
    torch.manual_seed(0)
    dense = build_model("fe2e", LABELS, "tav", str(encoder_dir), **TINY)
    sparse = build_model("mesm", LABELS, "tav", str(encoder_dir), 0.5, **TINY)
    dense_flops = feature_extraction_flops(dense, batch)
    sparse_flops = feature_extraction_flops(sparse, batch)
    assert set(dense_flops) == {"a", "v", "total"} and dense_flops["total"] > 0
    assert sparse_flops["total"] < 0.8 * dense_flops["total"]
    sparse.top_p = 1.0      # everything kept: the dense work plus the attention
    assert sparse_flops["total"] < feature_extraction_flops(sparse, batch)["total"]


def test_fe2e_weights_load_into_mesm_except_the_attention(encoder_dir):
    dense = build_model("fe2e", LABELS, "tav", str(encoder_dir), **TINY)
    sparse = build_model("mesm", LABELS, "tav", str(encoder_dir), 0.5, **TINY)
    missing, unexpected = sparse.load_state_dict(dense.state_dict(), strict=False)
    assert not unexpected
    assert missing and all(".attention." in key for key in missing)


@pytest.mark.parametrize("kind,modalities", [("fe2e", "av"), ("fe2e", "tav"), ("mesm", "tv")])
def test_config_round_trips_through_json(kind, modalities, encoder_dir):
    model = build_model(kind, LABELS, modalities, str(encoder_dir), 0.3, **TINY)
    stored = json.loads(json.dumps(model.config.to_dict()))
    rebuilt = build_model_from_config(stored)
    assert type(rebuilt) is type(model)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert all(rebuilt.state_dict()[k].shape == v.shape for k, v in model.state_dict().items())
    assert rebuilt.config.to_dict() == stored
    if kind == "mesm":
        assert rebuilt.top_p == 0.3


def test_text_vector_is_the_first_token_of_the_encoder(encoder_dir, batch):
    encoder = load_text_encoder(encoder_dir)
    model = FE2E(LABELS, "t", encoder, architecture=TINY).eval()
    expected = encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state[:, 0]
    torch.testing.assert_close(model.encode_text(batch), expected)
    assert isinstance(MESM(LABELS, "tav", encoder, architecture=TINY, top_p=0.4), FE2E)


def test_mesm_selects_whole_cells_holding_the_attention_nucleus():
    from mer_data.model.extractors import SparseCNNExtractor
    from mer_data.model.sparse import top_p_mask

    extractor = SparseCNNExtractor(3, (4, 8), 1, text_dim=8, top_p=0.5, selection_cell=2)
    generator = torch.Generator().manual_seed(0)
    attention = torch.softmax(torch.randn(3, 7, 6, generator=generator).flatten(1), 1).view(3, 7, 6)
    mask = extractor._select(attention)
    assert mask.shape == attention.shape
    # Summed attention of the 2x2 cells (the odd last row padded with zero mass), by hand.
    padded = torch.zeros(3, 8, 6)
    padded[:, :7] = attention
    cells = padded.view(3, 4, 2, 3, 2).sum(dim=(2, 4))
    expected_cells = top_p_mask(cells.flatten(1), 0.5).view(3, 4, 3)
    expected = expected_cells.repeat_interleave(2, 1).repeat_interleave(2, 2)[:, :7]
    assert torch.equal(mask, expected)
    single = SparseCNNExtractor(3, (4, 8), 1, text_dim=8, top_p=0.5, selection_cell=1)._select(attention)
    assert torch.equal(single, top_p_mask(attention.flatten(1), 0.5).view_as(attention))
