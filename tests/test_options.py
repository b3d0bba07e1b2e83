"""Each option default and each model kind is declared once: the CLI reads the option dataclasses
(default_of) and the kind registry (model/kinds.py), and so do the network class maps."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mer_data.cli import default_of, main, size_text
from mer_data.validation.options import ValidateOptions
from mer_data.model.config import TrainConfig
from mer_data.model.kinds import BASELINE_KINDS, END_TO_END_KINDS, KIND_NAMES, display_name
from mer_data.pipelines.options import ConvertOptions


@dataclass
class _Options:
    plain: int = 3
    listed: list = field(default_factory=lambda: [1, 2])


def test_default_of_reads_plain_defaults_and_factories():
    assert default_of(_Options, "plain") == 3
    assert default_of(_Options, "listed") == [1, 2]


def test_default_of_refuses_an_unknown_field_or_one_without_default():
    with pytest.raises(ValueError, match="no field 'nope'"):
        default_of(_Options, "nope")
    with pytest.raises(ValueError, match="TrainConfig.shards has no default"):
        default_of(TrainConfig, "shards")


def test_size_text_reads_back_as_the_same_size():
    assert size_text(256 * 1024**2) == "256MiB"
    assert size_text(2 * 1024**3) == "2GiB"
    assert size_text(1000) == "1000"


def _command(*names):
    command = main
    for name in names:
        command = command.commands[name]
    return command


def _defaults(command) -> dict:
    return {param.name: param.default for param in command.params}


# The CLI parameter of a dataclass field, where the names differ.
_TRAIN_PARAMS = {"model": "model_kind"}


def test_train_options_default_to_train_config():
    defaults = _defaults(_command("train"))
    compared = 0
    for name in ("model", "modalities", "task", "sentiment_loss", "top_p", "top_p_warmup", "batch_size", "lr",
                 "text_lr_factor", "patience", "crop_size", "device", "workers", "seed", "keep_checkpoints", "arch",
                 "pos_weight", "optimizer", "weight_decay", "audio_frontend", "face_normalisation"):
        assert defaults[_TRAIN_PARAMS.get(name, name)] == getattr(TrainConfig, name), name
        compared += 1
    assert compared == 21
    epochs_help = next(p.help for p in _command("train").params if p.name == "epochs")
    assert f"[default: {TrainConfig.epochs};" in epochs_help


def test_convert_and_validate_options_default_to_their_dataclasses():
    for corpus in ("iemocap", "mosei"):
        defaults = _defaults(_command("convert", corpus))
        for name in ("split", "frame_interval_ms", "shard_max_count", "shuffle_seed"):
            assert defaults[name] == getattr(ConvertOptions, name), (corpus, name)
        assert defaults["shard_max_bytes"] == size_text(ConvertOptions.shard_max_bytes)
    assert _defaults(_command("convert", "iemocap"))["classes"] == ",".join(ConvertOptions.classes)
    assert _defaults(_command("validate"))["av_threshold_ms"] == ValidateOptions.av_threshold_s * 1000


def test_model_kinds_are_one_registry():
    model_choices = next(p.type.choices for p in _command("train").params if p.name == "model_kind")
    assert tuple(model_choices) == KIND_NAMES
    assert set(END_TO_END_KINDS) | set(BASELINE_KINDS) == set(KIND_NAMES)
    from mer_data.model.baselines import BODIES
    from mer_data.model.architectures import model_classes
    from mer_data.model.kinds import is_feature_model

    assert set(BODIES) == set(BASELINE_KINDS)
    for arch in ("compact", "dai2021"):
        assert set(model_classes(arch)[0]) == set(END_TO_END_KINDS), arch
    assert [is_feature_model(kind) for kind in KIND_NAMES] == [kind in BASELINE_KINDS for kind in KIND_NAMES]


def test_the_comparison_names_runs_by_the_registry():
    from mer_data.model.compare import run_label

    assert run_label("lf-transformer", "ta", None) == f"{display_name('lf-transformer')} (ta)" == "LF-Transformer (ta)"
    assert run_label("mesm", "tav", 0.5) == "MESM p=0.5 (tav)"
    assert display_name("from-a-later-version") == "FROM-A-LATER-VERSION"
