"""The feature-extractor registry (model/features/registry.py) and the one task runner of the graphs
(pipelines/runner.py)."""
from __future__ import annotations

import contextlib
import tarfile
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from mer_data.model.features.registry import (EXTRACTORS, MODALITIES, UnknownExtractor, extractor_choices, make_extractor)
from mer_data.model.features.table import ModalitySpec
from tests.conftest import convert


@dataclass(frozen=True)
class CodePoints:
    """A text extractor registered by the tests: one step per transcript character, its code point."""

    name: ClassVar[str] = "code-points"
    modality: ClassVar[str] = "text"
    member: ClassVar[str] = "txt"

    def spec(self) -> ModalitySpec:
        return ModalitySpec(role="t", extractor="test-code-points", names=["code_point"], timed=False)

    def extract(self, sample, meta: dict) -> tuple[np.ndarray, None]:
        text = sample.members[self.member].decode("utf-8")
        return np.asarray([[float(ord(character))] for character in text], dtype=np.float32).reshape(-1, 1), None


def test_an_unknown_extractor_is_refused_with_the_registered_names():
    with pytest.raises(UnknownExtractor, match=r"^unknown audio extractor 'opensmile'; expected one of egemaps, mfcc$"):
        make_extractor("audio", "opensmile")
    with pytest.raises(UnknownExtractor, match=r"^unknown modality 'smell'; expected one of audio, visual, text$"):
        make_extractor("smell", "nose")


def test_the_cli_and_the_options_offer_the_registry_s_extractors(monkeypatch):
    from mer_data.cli import features_extract_command
    from mer_data.pipelines.options import FeatureOptions

    offered = {param.name: tuple(param.type.choices) for param in features_extract_command.params
               if param.name in MODALITIES}
    assert offered == {modality: (*EXTRACTORS[modality], "none") for modality in MODALITIES}
    assert offered["audio"] == extractor_choices("audio") == ("egemaps", "mfcc", "none")

    with pytest.raises(ValueError, match=r"--text must be one of encoder, none, not 'code-points'"):
        FeatureOptions(text="code-points")
    monkeypatch.setitem(EXTRACTORS["text"], "code-points", lambda settings: CodePoints())
    assert FeatureOptions(text="code-points").modalities()["text"] == "code-points"


def transcripts(shards) -> dict[str, str]:
    """key -> the txt member of every sample of the shard folder."""
    found = {}
    for path in sorted(shards.glob("*.tar")):
        with tarfile.open(path) as tar:
            for member in tar:
                key, _, extension = member.name.partition(".")
                if extension == "txt":
                    found[key] = tar.extractfile(member).read().decode("utf-8")
    return found


def test_the_three_graphs_run_their_tasks_through_the_one_runner(small_corpus, tmp_path, monkeypatch):
    """Convert, validate and features each map their tasks with mer_data.pipelines.runner.run_tasks: with the
    runner's cluster replaced by calls in this process, every graph's tasks run here (a graph with a
    runner of its own would start a cluster and not be seen); the features graph runs a registered
    extractor, whose values and spec land in the tables and the card."""
    import mer_data.pipelines.runner as runner
    from mer_data.model.features.table import read_card, read_split
    from mer_data.pipelines.features import extract_features
    from mer_data.pipelines.options import FeatureOptions
    from mer_data.pipelines.validate import validate

    mapped = []

    def map_in_this_process(client, fn, items, *, names, progress, desc):
        mapped.append((desc, len(items)))
        return [fn(item) for item in items]

    monkeypatch.setattr(runner, "dask_client", lambda *args: contextlib.nullcontext())
    monkeypatch.setattr(runner, "map_tasks", map_in_this_process)
    monkeypatch.setitem(EXTRACTORS["text"], "code-points", lambda settings: CodePoints())
    root, _ = small_corpus
    shards, feats = tmp_path / "shards", tmp_path / "feats"

    converted = convert(root, shards, shard_max_count=4)
    assert validate(shards, progress=False).ok
    report = extract_features(shards, feats, FeatureOptions(audio="none", visual="none", text="code-points"),
                              progress=False)

    tars = len(list(shards.glob("*.tar")))
    assert mapped == [("recordings", 2), ("shards", tars), ("shards", tars)]
    card = read_card(feats)
    assert card["modalities"]["text"]["extractor"] == "test-code-points" and not report.errors
    rows = [row for split in ("train", "valid", "test") for row in read_split(feats, split).to_pylist()]
    assert len(rows) == converted.card["counts"]["total"]
    texts = transcripts(shards)
    for row in rows:
        assert [step[0] for step in row["text"]] == [float(ord(c)) for c in texts[row["key"]]], row["key"]
