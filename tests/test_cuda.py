"""The published setup on a CUDA device: the preset's networks forward and backward, and training steps
through `mer train` (AMP, pinned memory, resume with the CUDA RNG state). Skipped without a GPU.

Run on a machine with one: `pytest -q tests/test_cuda.py` (docs/reproducing.md says how to install
a CUDA build of torch)."""
from __future__ import annotations

import json

import pytest
import torch

from tests.test_presets import every_class_in_train  # noqa: F401  (a fixture)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

LABELS = ("ang", "exc", "fru", "hap", "neu", "sad")


def _batch(tokenizer, frames=(3, 5), chunks=(2, 4)):
    """A Batch of the official inputs' shapes: 48 x 48 faces, 128 x 32 mel chunks."""
    from mer_data.model.data import Batch

    tokens = tokenizer(["so happy to see you", "leave me alone"], padding=True, return_tensors="pt")
    generator = torch.Generator().manual_seed(0)
    return Batch(ids=["a", "b"], frames=torch.randn(sum(frames), 3, 48, 48, generator=generator),
                 frame_counts=torch.tensor(frames), mel_chunks=torch.rand(sum(chunks), 1, 128, 32, generator=generator),
                 chunk_counts=torch.tensor(chunks), input_ids=tokens["input_ids"],
                 attention_mask=tokens["attention_mask"],
                 targets=torch.tensor([[0, 0, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0.]]),
                 label_names=LABELS).pin_memory()


@pytest.mark.parametrize("kind", ["fe2e", "mesm"])
def test_the_published_networks_run_forward_and_backward_on_cuda(kind, tiny_text_encoder):
    from mer_data.model.architectures import build_model
    from mer_data.model.text import load_tokenizer

    model = build_model(kind, LABELS, "tav", str(tiny_text_encoder), top_p=0.7, arch="dai2021").cuda()
    batch = _batch(load_tokenizer(str(tiny_text_encoder))).to("cuda", non_blocking=True)
    logits = model(batch).logits
    assert logits.shape == (2, 6) and logits.device.type == "cuda"
    pos_weight = torch.full((6,), 3.0, device="cuda")
    torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.targets, pos_weight=pos_weight).backward()
    # Every parameter outside the text encoder (whose pooler is unused) learns: MESM's attention included.
    grads = {name: p.grad for name, p in model.named_parameters() if not name.startswith("text_encoder.")}
    missing = [name for name, g in grads.items() if g is None or not bool(torch.isfinite(g).all())]
    assert not missing, missing
    assert all(g.device.type == "cuda" for g in grads.values())


@pytest.mark.parametrize("amp", [False, True])
def test_a_preset_run_trains_resumes_and_evaluates_on_cuda(amp, every_class_in_train,  # noqa: F811
                                                            tiny_text_encoder, tmp_path):
    from click.testing import CliRunner

    from mer_data.cli import main

    run = tmp_path / "run"
    args = ["train", str(every_class_in_train), "--model", "mesm", "--preset", "dai2021", "--text-encoder",
            str(tiny_text_encoder), "--device", "cuda", "--epochs", "1", "--workers", "0", "--out", str(run), "-q"]
    result = CliRunner().invoke(main, args + (["--amp"] if amp else []))
    assert result.exit_code == 0, result.output
    stored = json.loads((run / "config.json").read_text())
    assert (stored["arch"], stored["device"], stored["batch_size"], stored["amp"]) == ("dai2021", "cuda", 2, amp)
    assert (run / "eval-test" / "metrics.json").is_file()
    checkpoint = torch.load(run / "checkpoints" / "epoch-001.pt", weights_only=True)
    assert len(checkpoint["rng_cuda"]) == torch.cuda.device_count()
    resumed = CliRunner().invoke(main, ["train", "--resume", str(run), "--epochs", "2", "-q", "--evaluate-split", ""])
    assert resumed.exit_code == 0, resumed.output
    assert "CUDA generators not restored" not in resumed.output
    assert json.loads((run / "state.json").read_text())["epochs_done"] == 2
