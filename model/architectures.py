"""Which networks build a model kind: the two architectures and the one place that builds a net.

"compact" (model/nets.py, the default: CPU demo, fast tests) and "dai2021" (model/dai2021.py, the published
networks that `mer train --preset dai2021` selects) both build FE2E and MESM. This module sits above both,
so neither architecture imports the other's builder; `build_model` loads the text encoder by name or path
and records a `NetConfig` that `build_model_from_config` rebuilds from.
"""
from __future__ import annotations

from dataclasses import asdict

from torch import nn

from mer_data.model.dai2021 import DAI2021_NETS, Dai2021Architecture
from mer_data.model.kinds import ARCHITECTURES
from mer_data.model.nets import COMPACT_NETS, Architecture, NetConfig, canonical_modalities
from mer_data.model.text import load_text_encoder


def model_classes(arch: str) -> dict:
    """{"fe2e": class, "mesm": class} of an architecture, and its options dataclass."""
    if arch == "compact":
        return COMPACT_NETS, Architecture
    if arch == "dai2021":
        return DAI2021_NETS, Dai2021Architecture
    raise ValueError(f"unknown architecture {arch!r}; choose one of {list(ARCHITECTURES)}")


def build_model(kind: str, label_names, modalities: str = "tav", text_encoder: str | None = None,
                top_p: float | None = 0.5, arch: str = "compact", **architecture_options) -> nn.Module:
    """FE2E or MESM with its text encoder loaded by name or local path (None: the bundled MiniLM).

    `arch`: "compact" (model/nets.py, the default) or "dai2021" (the published networks,
    model/dai2021.py). `top_p` is MESM's nucleus mass (ignored by FE2E); `architecture_options` are
    the fields of the architecture's options dataclass (Architecture, or Dai2021Architecture).
    The returned model carries `model.config` (NetConfig) for build_model_from_config.
    """
    key = str(kind).lower()
    kinds, options_class = model_classes(str(arch))
    if key not in kinds:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {sorted(kinds)}")
    modalities = canonical_modalities(modalities)
    architecture = options_class.from_options(architecture_options)
    needs_text = "t" in modalities or key == "mesm"
    encoder = load_text_encoder(text_encoder) if needs_text else None
    extra = {"top_p": top_p} if key == "mesm" else {}
    model = kinds[key](label_names, modalities, encoder, None, architecture, **extra)
    model.config = NetConfig(kind=key, label_names=list(model.label_names), modalities=modalities,
                             text_encoder=None if text_encoder is None else str(text_encoder),
                             top_p=float(top_p) if key == "mesm" else None,
                             architecture=asdict(architecture), arch=str(arch))
    return model


def build_model_from_config(config: NetConfig | dict) -> nn.Module:
    """Rebuild a model from `model.config` or its `to_dict()` (then load the checkpoint's state_dict).

    A config without "arch" (stored before there were two architectures) is the compact one."""
    data = config.to_dict() if isinstance(config, NetConfig) else dict(config)
    missing = {"kind", "label_names", "modalities"} - set(data)
    if missing:
        raise ValueError(f"model config lacks {sorted(missing)}")
    return build_model(data["kind"], data["label_names"], data["modalities"], data.get("text_encoder"),
                       data.get("top_p"), data.get("arch") or "compact", **data.get("architecture", {}))
