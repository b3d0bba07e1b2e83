"""Counted FLOPs of feature extraction (the part the paper's GFLOPs measure).

`torch.utils.flop_counter.FlopCounterMode` intercepts the aten ops actually executed and counts
the matrix products and convolutions among them (2 FLOPs per multiply-add). So MESM's sparse layers
are counted as run: one matrix product [N_active, k*k*Cin] x [k*k*Cin, Cout] per submanifold
convolution, where N_active is what top-p kept on this batch, plus its cross-modal attention (the
query projection, its product with the key weight, and one dot product per position).

Counted (`feature_extraction_flops`): the visual and acoustic CNN extractors of one forward pass,
i.e. frames/chunks -> one vector per frame/chunk, for the batch given.
Not counted there: the text encoder (the same in FE2E and MESM; `text_encoder_flops` counts it on
its own), the temporal transformers, heads and fusion after feature extraction (the same in both
models), backward passes, and the ops FlopCounterMode does not count: element-wise work (batch
norm, ReLU, softmax), pooling, the gathers of im2col and the index building of the sparse maps.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def _counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


class _EvalMode:
    """Run in eval mode (no BN statistic updates, no dropout) and restore the previous mode."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


@torch.no_grad()
def feature_extraction_flops(model, batch, *, batch_statistics: bool = False) -> dict[str, int]:
    """{'v': .., 'a': .., 'total': ..}: counted FLOPs of each CNN extractor (FE2E or MESM) on `batch`.

    In eval mode by default. batch_statistics=True counts in train mode instead (batch norm with the
    batch's statistics, as in a training step; the running statistics get updated): what an untrained
    MESM keeps depends on it, since fresh running statistics leave the features un-normalised."""
    if batch_statistics:
        was_training = model.training
        model.train()
        if model.text_encoder is not None:
            model.text_encoder.eval()       # the text vector without dropout, as the extraction's input
        try:
            return _extraction_counts(model, batch)
        finally:
            model.train(was_training)
    with _EvalMode(model):
        return _extraction_counts(model, batch)


def _extraction_counts(model, batch) -> dict[str, int]:
    text_vector = model.encode_text(batch)
    counts = {m: _counted(lambda m=m: model.extract(batch, m, text_vector)) for m in model.extractors}
    counts["total"] = sum(counts.values())
    return counts


@torch.no_grad()
def text_encoder_flops(model, batch) -> int:
    """Counted FLOPs of the text encoder's forward pass on `batch` (0 without one)."""
    if model.text_encoder is None:
        return 0
    with _EvalMode(model):
        return _counted(lambda: model.encode_text(batch))
