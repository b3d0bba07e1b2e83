"""Versioned JSON Schemas of the shard contract, shipped in the wheel.

`sample.schema.json` describes the `json` member of every sample; `dataset.schema.json` the
dataset card (`dataset.json`). Bump SAMPLE_SCHEMA_VERSION on any change a reader would notice.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

SAMPLE_SCHEMA_VERSION = "1.1"
DATASET_SCHEMA_VERSION = "1.0"
FEATURES_SCHEMA_VERSION = "1.0"


@lru_cache(maxsize=None)
def load(name: str) -> dict[str, Any]:
    """The schema `name` ("sample", "dataset", ...) as a dict."""
    text = resources.files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=None)
def validator(name: str):
    """A compiled jsonschema validator for schema `name`."""
    import jsonschema

    schema = load(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def errors(name: str, instance: Any) -> list[str]:
    """Every way `instance` breaks schema `name`, as readable strings (empty: valid)."""
    found = sorted(validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]
