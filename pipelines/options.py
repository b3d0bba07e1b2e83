"""The options of a conversion, and the fingerprint that says whether two runs produce the same output."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import mer_data

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
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        data = asdict(self)
        data["classes"] = list(self.classes)
        return data

    def fingerprint(self) -> str:
        """A digest of the options and the tool version: staged work is reused only under the same one."""
        payload = json.dumps({"options": self.to_json(), "tool": mer_data.__version__}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
