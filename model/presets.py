"""`mer train --preset dai2021`: the published setup of Dai et al. (2021) in one option.

A preset fills every TrainConfig field it names, except those the user gave explicitly
(`TrainConfig.preset_overrides`, the field names; the CLI collects them with click's parameter
sources, and the run records those among the preset's fields). It is resolved when a new run opens
(mer_data.model.train.open_run_config), in two steps: the values that depend on nothing (`resolve_preset`),
then, once the shards' corpus and label task are known, those that depend on them
(`resolve_preset_for_data`). The run's config.json then holds the
preset's name, the overridden field names and every resolved value, so evaluate and --resume
rebuild the same run without resolving anything again.

What dai2021 sets, read from the official code (wenliangdai/Multimodal-End2end-Sparse, main.py,
src/cli.py, src/datasets.py, src/models/e2e.py, README's commands) — docs/reproducing.md lists
what still differs:
- the published networks (`arch` dai2021, model/dai2021.py) on the official inputs: the 128-band
  power mel front end and the official face normalisation (model/audio.py, model/frames.py), a face
  every 500 ms (`--img-interval 500`: every 15th frame at 30 fps), 48 x 48 crops;
- ALBERT-base-v2 as the text encoder (a Hugging Face name; a local copy's path overrides it);
- BCE with pos_weight = negatives / positives per class of the training split (main.py, getPosWeight);
- Adam, weight decay 0, lr 5e-5; the text encoder AND its head (T and t_out in main.py) at lr / 10;
- batch 8 for FE2E and 2 for MESM, at most 40 epochs, early stopping after 6 without a better
  validation mean F1;
- MESM's nucleus mass: p = 0.7 on IEMOCAP and 0.5 on CMU-MOSEI (the paper's; the official README's
  command uses -st 0.8).
"""
from __future__ import annotations

from dataclasses import fields

from mer_data.model.kinds import ARCHITECTURES

PRESETS = ("dai2021",)
DAI2021_TEXT_ENCODER = "albert-base-v2"

# TrainConfig field -> value, for FE2E and MESM alike
DAI2021 = {
    "arch": "dai2021",
    "text_encoder": DAI2021_TEXT_ENCODER,
    "pos_weight": "auto",
    "optimizer": "adam",
    "weight_decay": 0.0,
    "lr": 5e-5,
    "text_lr_factor": 0.1,
    "slow_text_head": True,
    "epochs": 40,
    "patience": 6,
    "audio_frontend": "dai2021",
    "face_normalisation": "dai2021",
    "frame_interval_ms": 500,
    "crop_size": 48,
    "amp": False,            # the official code trains in fp32
    "top_p_warmup": 0,       # the official MESM selects with its nucleus from the first step
}
DAI2021_BATCH_SIZE = {"fe2e": 8, "mesm": 2}
DAI2021_TOP_P = {"iemocap": 0.7, "mosei": 0.5}
PRESET_FIELDS = frozenset(DAI2021) | {"batch_size", "top_p", "pos_weight"}   # every field the preset may set


def preset_values(preset: str, model: str) -> dict:
    """The fields `preset` sets for `model` before the data is known."""
    check_preset(preset, model)
    return {**DAI2021, "batch_size": DAI2021_BATCH_SIZE[model]}


def check_preset(preset: str, model: str) -> None:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if model not in DAI2021_BATCH_SIZE:
        raise ValueError(f"--preset {preset} is the published FE2E/MESM setup; {model} is a two-phase baseline"
                         f" (train it with its own options)")


def resolve_preset(config):
    """Set the preset's data-independent fields of `config` (a TrainConfig) that the user did not give."""
    if not config.preset:
        return config
    given = set(config.preset_overrides or ())
    unknown = sorted(given - {f.name for f in fields(config)})
    if unknown:
        raise ValueError(f"preset_overrides names no TrainConfig field: {', '.join(unknown)}")
    for name, value in preset_values(config.preset, config.model).items():
        if name not in given:
            setattr(config, name, value)
    config.preset_overrides = sorted(given & PRESET_FIELDS)   # recorded: the preset's values the user replaced
    return config


def resolve_preset_for_data(config):
    """Set the preset's fields that depend on the shards (corpus, label task), once those are resolved:
    MESM's top_p by corpus; pos_weight auto only for one-vs-rest tasks (a softmax over single labels,
    or the sentiment regression, has no positives to weigh)."""
    from mer_data.model.metrics import SINGLE_LABEL

    if not config.preset:
        return config
    given = set(config.preset_overrides or ())
    if config.model == "mesm" and "top_p" not in given and config.corpus in DAI2021_TOP_P:
        config.top_p = DAI2021_TOP_P[config.corpus]
    if "pos_weight" not in given and (config.task != "emotion" or config.label_task == SINGLE_LABEL):
        config.pos_weight = "none"
    return config


def check_inputs_fit_architecture(config) -> None:
    """Refuse, before anything is read, an architecture fed inputs it cannot take: the published networks'
    flatten-MLPs are sized for 128 x 32 mel chunks and 48 x 48 faces (512 x 8 x 2 and 512 x 3 x 3 maps)."""
    from mer_data.model.audio import AUDIO_FRONTENDS
    from mer_data.model.frames import FACE_NORMALISATIONS

    if config.arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {config.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if config.audio_frontend not in AUDIO_FRONTENDS:
        raise ValueError(f"unknown audio front end {config.audio_frontend!r};"
                         f" choose one of {', '.join(AUDIO_FRONTENDS)}")
    if config.face_normalisation not in FACE_NORMALISATIONS:
        raise ValueError(f"unknown face normalisation {config.face_normalisation!r};"
                         f" choose one of {', '.join(FACE_NORMALISATIONS)}")
    if config.arch != "dai2021":
        return
    if "a" in config.modalities and config.audio_frontend != "dai2021":
        raise ValueError(f"--arch dai2021 takes the official 128-band mel chunks (--audio-frontend dai2021), not"
                         f" {config.audio_frontend}: its acoustic MLP is sized for 128 x 32 chunks")
    if "v" in config.modalities and config.crop_size != 48:
        raise ValueError(f"--arch dai2021 takes 48 x 48 faces, not --crop-size {config.crop_size}: its visual MLP"
                         f" is sized for them")


def describe(config) -> str:
    """One line on what the preset resolved to, for the training log."""
    if not config.preset:
        return ""
    overridden = ", ".join(config.preset_overrides or ()) or "nothing"
    weights = (" [" + " ".join(f"{w:.2f}" for w in config.pos_weight_values) + "]"
               if config.pos_weight_values else "")
    top_p = f", top-p {config.top_p:g}" if config.model == "mesm" else ""
    return (f"preset {config.preset}: arch {config.arch}, text encoder {config.text_encoder},"
            f" {config.optimizer} lr {config.lr:g} (text x{config.text_lr_factor:g})"
            f" weight decay {config.weight_decay:g}, batch {config.batch_size}, epochs {config.epochs},"
            f" patience {config.patience}, audio {config.audio_frontend},"
            f" faces {config.face_normalisation} every {config.frame_interval_ms} ms,"
            f" pos_weight {config.pos_weight}{weights}{top_p}; given explicitly: {overridden}")

