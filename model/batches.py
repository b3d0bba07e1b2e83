"""What the loaders' batch dataclasses share: moving every tensor field to a device or pinned memory.

`mer_data.model.data.Batch` (end to end) and `mer_data.model.features.loader.FeatureBatch` (baselines) inherit it; the
training loop only needs `to`, `len`, `ids` and `targets` of either.
"""
from __future__ import annotations

from dataclasses import fields, replace
from typing import Callable

import torch


class TensorFields:
    """Mixin for a dataclass whose fields are tensors, dicts of tensors, or other values (kept as they are)."""

    def to(self, device, non_blocking: bool = False):
        return self._map_tensors(lambda tensor: tensor.to(device, non_blocking=non_blocking))

    def pin_memory(self):
        """Called by DataLoader(pin_memory=True) for faster host-to-GPU copies."""
        return self._map_tensors(torch.Tensor.pin_memory)

    def _map_tensors(self, function: Callable[[torch.Tensor], torch.Tensor]):
        changed = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, torch.Tensor):
                changed[item.name] = function(value)
            elif isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
                changed[item.name] = {key: function(v) for key, v in value.items()}
        return replace(self, **changed)

    def __len__(self) -> int:
        return len(self.ids)
