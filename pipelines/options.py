"""The options of a conversion, and the fingerprint that says whether two runs produce the same output."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import mer_data
from mer_data.media.encoding import VideoEncoding
from mer_data.model.features.registry import MODALITIES, NO_EXTRACTOR, extractor_choices

DEFAULT_SHARD_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_SHARD_MAX_COUNT = 1000


@dataclass(frozen=True)
class ConvertOptions:
    """Everything that changes the bytes a conversion writes (and nothing that does not:
    the worker count and the scheduler are deliberately not here)."""

    corpus: str
    split: str = "dai2021"
    classes: tuple[str, ...] = ("ang", "exc", "fru", "hap", "neu", "sad")
    frame_interval_ms: int = 500
    shard_max_bytes: int = DEFAULT_SHARD_MAX_BYTES
    shard_max_count: int = DEFAULT_SHARD_MAX_COUNT
    shuffle_seed: int = 0
    max_height: int | None = None
    encoding: VideoEncoding = field(default_factory=VideoEncoding)  # the clips' libx264 settings
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        data = asdict(self)
        data["classes"] = list(self.classes)
        return data

    def fingerprint(self) -> str:
        """A digest of the options and the tool version: staged work is reused only under the same one."""
        payload = json.dumps({"options": self.to_json(), "tool": mer_data.__version__}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FeatureOptions:
    """Everything that changes the feature values (not the worker count or the scheduler)."""

    audio: str = "egemaps"
    visual: str = "appearance"
    text: str = "encoder"
    text_encoder: str | None = None  # Hugging Face name or local path; None: the bundled all-MiniLM-L6-v2

    def __post_init__(self):
        for modality in MODALITIES:   # the registry's choices (model/features/registry.py), as the CLI's
            choices = extractor_choices(modality)
            if getattr(self, modality) not in choices:
                raise ValueError(f"--{modality} must be one of {', '.join(choices)}, not {getattr(self, modality)!r}")
        if not self.modalities():
            raise ValueError("every modality is 'none': choose at least one of --audio, --visual, --text")
        if self.text_encoder is not None and self.text == NO_EXTRACTOR:
            raise ValueError("--text-encoder names the encoder of --text encoder, but --text is 'none'")

    def modalities(self) -> dict[str, str]:
        """modality -> extractor kind, for the modalities that are extracted."""
        return {name: getattr(self, name) for name in MODALITIES if getattr(self, name) != NO_EXTRACTOR}

    def to_json(self) -> dict:
        return asdict(self)
