"""Feature extractors behind one shape, and the registry `mer features` chooses them from.

An extractor turns one shard sample into the sequence of one modality (the table's column of that
name): `extract(sample, meta)` -> (values [T, D] float32, times [T] in seconds from the utterance
start, or None for untimed steps), and `spec()` says what the feature card records about it (its
extractor id, feature names, library versions and parameters).

    extractor = make_extractor("audio", "mfcc")
    values, times = extractor.extract(sample, meta)

The registry (`EXTRACTORS`: modality -> name -> factory) is the one list of what exists: the CLI's
`--audio/--visual/--text` choices, the options' check and the extraction graph all read it. To add
an extractor, write a class with the `Extractor` attributes and register its factory here.

Importing this module is cheap (no numpy, OpenCV, torch): the CLI reads the names at start-up; the
extractors import their libraries when they first run.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    import numpy as np

    from mer_data.model.features.table import ModalitySpec


class UnknownExtractor(ValueError):
    """A modality or extractor name that is not in the registry; the message lists what is."""


@dataclass(frozen=True)
class ExtractorSettings:
    """What an extractor may need beyond its name (each takes what it uses)."""

    text_encoder: str | None = None       # Hugging Face name or local path; None: the bundled all-MiniLM-L6-v2
    frame_interval_ms: int | None = None  # the shards' face-sampling interval (their dataset card), for the card


class Extractor(Protocol):
    """One modality's features of one sample."""

    modality: ClassVar[str]  # "audio", "visual" or "text": the table column it fills
    name: str                # its name in the registry and on the command line, e.g. "mfcc"
    member: ClassVar[str]    # the shard member it reads: "flac", "mp4" or "txt"

    def spec(self) -> "ModalitySpec":
        """What the card records: extractor id, feature names, versions and parameters."""

    def extract(self, sample: Any, meta: dict) -> tuple["np.ndarray", "np.ndarray | None"]:
        """(values [T, D], times [T] or None) of a shard sample (its members and parsed metadata)."""


@dataclass(frozen=True)
class AcousticExtractor:
    """eGeMAPS or MFCC + prosody of the sample's 16 kHz FLAC (model/features/acoustic.py)."""

    name: str
    modality: ClassVar[str] = "audio"
    member: ClassVar[str] = "flac"

    def spec(self) -> "ModalitySpec":
        from mer_data.model.features.acoustic import acoustic_spec

        return acoustic_spec(self.name)

    def extract(self, sample: Any, meta: dict) -> tuple["np.ndarray", "np.ndarray"]:
        from mer_data.model.audio import decode_flac
        from mer_data.model.features.acoustic import acoustic_features

        waveform = decode_flac(sample.members[self.member], sample.key)
        expected = (meta.get("audio") or {}).get("samples")
        if expected is not None and len(waveform) != expected:  # a FLAC cut at a frame boundary still decodes
            raise ValueError(f"the flac member decodes to {len(waveform)} samples, its metadata says {expected}")
        _, values, times = acoustic_features(self.name, waveform)
        return values, times


@dataclass(frozen=True)
class AppearanceExtractor:
    """HOG and region statistics of the stored face crops (model/features/visual.py)."""

    frame_interval_ms: int | None = None
    name: ClassVar[str] = "appearance"
    modality: ClassVar[str] = "visual"
    member: ClassVar[str] = "mp4"

    def spec(self) -> "ModalitySpec":
        from mer_data.model.features.visual import visual_spec

        return visual_spec(self.name, self.frame_interval_ms)

    def extract(self, sample: Any, meta: dict) -> tuple["np.ndarray", "np.ndarray"]:
        from mer_data.model.features.visual import appearance

        _, values, times = appearance(sample.members[self.member], meta)
        return values, times


@dataclass(frozen=True)
class EncoderExtractor:
    """Token embeddings of the transcript by a frozen text encoder (model/features/text.py)."""

    text_encoder: str | None = None
    name: ClassVar[str] = "encoder"
    modality: ClassVar[str] = "text"
    member: ClassVar[str] = "txt"

    def spec(self) -> "ModalitySpec":
        from mer_data.model.features.text import text_spec

        return text_spec(self.name, self.text_encoder)

    def extract(self, sample: Any, meta: dict) -> tuple["np.ndarray", None]:
        from mer_data.model.features.text import token_embeddings

        _, values, times = token_embeddings(sample.members[self.member].decode("utf-8"), self.text_encoder)
        return values, times


# modality -> extractor name -> factory. Order matters: the CLI lists the choices in this order.
EXTRACTORS: dict[str, dict[str, Callable[[ExtractorSettings], Extractor]]] = {
    "audio": {"egemaps": lambda settings: AcousticExtractor("egemaps"),
              "mfcc": lambda settings: AcousticExtractor("mfcc")},
    "visual": {"appearance": lambda settings: AppearanceExtractor(settings.frame_interval_ms)},
    "text": {"encoder": lambda settings: EncoderExtractor(settings.text_encoder)},
}
MODALITIES = tuple(EXTRACTORS)
NO_EXTRACTOR = "none"  # the choice that leaves a modality out (`--visual none`)


def extractor_names(modality: str) -> tuple[str, ...]:
    """The registered extractors of `modality`, in registry order."""
    return tuple(_factories(modality))


def extractor_choices(modality: str) -> tuple[str, ...]:
    """What `mer features --<modality>` accepts: the registered extractors, then NO_EXTRACTOR."""
    return (*extractor_names(modality), NO_EXTRACTOR)


def make_extractor(modality: str, name: str, settings: ExtractorSettings = ExtractorSettings()) -> Extractor:
    """The extractor `name` of `modality`; UnknownExtractor (listing the registered ones) otherwise."""
    factories = _factories(modality)
    if name not in factories:
        raise UnknownExtractor(f"unknown {modality} extractor {name!r}; expected one of {', '.join(factories)}")
    return factories[name](settings)


def _factories(modality: str) -> dict[str, Callable[[ExtractorSettings], Extractor]]:
    if modality not in EXTRACTORS:
        raise UnknownExtractor(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    return EXTRACTORS[modality]
