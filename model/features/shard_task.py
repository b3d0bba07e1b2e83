"""The work of one `mer features` task: every sample of one shard -> one Parquet part (table.py layout).

    outcome = extract_shard(job, feats="FEATS", extractors={"audio": make_extractor("audio", "mfcc")},
                            specs={"audio": spec}, label_names=("angry", "happy", "neutral", "sad"))

The task reads the shard's samples in order (mer_data/shards/samples.py, the tolerant reader: a damaged tar
is reported, not raised), runs the chosen extractors (registry.py) on every sample and writes the part
`FEATS/<split>/part-NNNNNN.parquet` numbered like its shard. A sample that cannot give a row (its
media does not decode, its metadata is unreadable, its label is outside the label space, the tar is
cut inside it) becomes a Problem instead; the shard's outcome (rows, empty sequences, problems)
travels in the part's Parquet metadata (OUTCOME_KEY), so a rerun can keep a finished part without
redoing it. Planning, scheduling and resume are the graph's (pipelines/features.py).
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field

from mer_data.records import Problem
from mer_data.model.features.registry import Extractor
from mer_data.model.features.table import ModalitySpec, arrow_schema, part_path, rows_to_table, sequence_problem, write_part

OUTCOME_KEY = b"mer_features.outcome"  # the part's Parquet metadata: its shard's outcome (JSON)
STAGE = "features"


@dataclass(frozen=True)
class ShardJob:
    """One task: a shard and the part it becomes."""

    path: str  # absolute
    name: str  # train-000003.tar
    split: str
    number: int
    expected_keys: tuple[str, ...] | None = None  # the shard's keys in index.parquet, where there is one

    @property
    def part(self) -> str:
        return f"part-{self.number:06d}.parquet"


@dataclass
class ShardOutcome:
    """What one shard gave: a part (None where its task failed) with `rows` rows, and the rejected samples."""

    shard: str
    split: str
    part: str | None
    rows: int = 0
    empty_sequences: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # extractor time per modality (this run only)
    resumed: bool = False

    def to_json(self) -> dict:
        return {"shard": self.shard, "split": self.split, "part": self.part, "rows": self.rows,
                "empty_sequences": self.empty_sequences, "problems": [p.to_json() for p in self.problems]}

    @classmethod
    def from_json(cls, data: dict, resumed: bool = True) -> "ShardOutcome":
        return cls(data["shard"], data["split"], data["part"], data["rows"], dict(data["empty_sequences"]),
                   [Problem(**p) for p in data["problems"]], resumed=resumed)


# --------------------------------------------------------------------------------------------
# One shard


def failed_shard(job: ShardJob, reason: str) -> ShardOutcome:
    """Every sample of the shard rejected with `reason`; no part (a rerun tries again)."""
    from mer_data.shards.samples import sample_keys

    keys = job.expected_keys if job.expected_keys is not None else sample_keys(job.path)
    problems = [Problem(file=job.name, line=None, reason=reason, utterance=key, stage=STAGE) for key in keys]
    if not problems:
        problems = [Problem(file=job.name, line=None, reason=reason, utterance=None, stage=STAGE)]
    return ShardOutcome(job.name, job.split, None, problems=problems)


def extract_shard(job: ShardJob, *, feats: str, extractors: dict[str, Extractor], specs: dict[str, ModalitySpec],
                  label_names: tuple[str, ...]) -> ShardOutcome:
    """The task body: every sample of one shard -> one part; the outcome travels in the part's metadata.

    `extractors` and `specs`: per modality, in name order (the table's column order), the extractor
    and what the card records of it (made once by the caller: a spec may load an encoder's config)."""
    from mer_data.shards.samples import read_samples

    _one_thread_per_worker()
    findings: list = []
    rows, problems, seen = [], [], set()
    seconds: Counter = Counter()
    for sample in read_samples(job.path, findings.append):
        seen.add(sample.key)
        row, problem = sample_row(sample, job, extractors, specs, label_names, seconds)
        if problem is not None:
            problems.append(problem)
        else:
            rows.append(row)
    problems += _tar_problems(job, findings, seen)
    empty = {name: sum(len(row[name]) == 0 for row in rows) for name in specs}
    outcome = ShardOutcome(job.name, job.split, job.part, len(rows), empty, problems, dict(seconds), resumed=False)
    table = rows_to_table(rows, arrow_schema(specs, len(label_names)))
    metadata = dict(table.schema.metadata or {})
    metadata[OUTCOME_KEY] = json.dumps(outcome.to_json(), sort_keys=True).encode()
    write_part(part_path(feats, job.split, job.number), table.replace_schema_metadata(metadata))
    return outcome


def _one_thread_per_worker() -> None:
    """Inside a Dask worker, one thread for torch and OpenCV: parallelism is the worker processes."""
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return  # not in a worker: leave the caller's settings alone
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def _tar_problems(job: ShardJob, findings: list, seen: set[str]) -> list[Problem]:
    """Tar damage (the reader's findings), and the index's keys of this shard that it never reached."""
    problems = [Problem(file=job.name, line=None, reason=f"damaged shard: {finding.message}", utterance=finding.id,
                        stage=STAGE) for finding in findings if finding.id not in seen]
    lost = [key for key in (job.expected_keys or ()) if key not in seen]
    reason = "listed in index.parquet for this shard, but not in it (the tar is damaged or cut short before it)"
    return problems + [Problem(file=job.name, line=None, reason=reason, utterance=key, stage=STAGE) for key in lost]


# --------------------------------------------------------------------------------------------
# One sample


def sample_row(sample, job: ShardJob, extractors: dict[str, Extractor], specs: dict[str, ModalitySpec],
               label_names: tuple[str, ...], seconds: Counter) -> tuple[dict | None, Problem | None]:
    """The table row of one sample (mer_data.shards.samples.read_samples), or the problem
    that stops it."""
    from mer_data.shards.labels import LabelError, targets

    def rejected(reason: str) -> tuple[None, Problem]:
        return None, Problem(file=job.name, line=None, reason=reason, utterance=sample.key, stage=STAGE)

    if not sample.complete:
        return rejected("the shard is cut short inside this sample")
    wanted = ["json", *(extractors[name].member for name in specs)]
    missing = [member for member in wanted if member not in sample.members]
    if missing:
        return rejected(f"the sample has no {', '.join(missing)} member")
    try:
        meta = json.loads(sample.members["json"])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return rejected(f"unreadable metadata (json member): {error}")
    if not isinstance(meta, dict) or not isinstance(meta.get("id"), str) or "split" not in meta:
        return rejected("the metadata (json member) has no id or split")
    if meta["split"] != job.split:
        return rejected(f"its metadata says split {meta['split']!r}, but it is in a {job.split} shard")
    try:
        target = targets(meta, label_names)
    except LabelError as error:
        return rejected(_without_id(str(error), sample.key))
    row = {"id": meta["id"], "key": sample.key, "split": job.split, "source": f"{job.name}#{sample.position}",
           "recording": meta.get("recording"), "speaker": meta.get("speaker"), "start": meta.get("start"),
           "end": meta.get("end"), "target": target}
    for name, spec in specs.items():
        began = time.perf_counter()
        try:
            values, times = extractors[name].extract(sample, meta)
        except Exception as error:  # one sample's bad media must not cost the shard; the reason is kept
            return rejected(f"{name}: {_without_id(str(error), sample.key) or type(error).__name__}")
        seconds[name] += time.perf_counter() - began
        problem = sequence_problem(values, times, spec.dim, times_required=spec.timed)
        if problem:
            return rejected(f"{name}: {problem}")
        row[name], row[f"{name}_times"] = values, times
    return row, None


def _without_id(message: str, key: str) -> str:
    """Error messages of the decoders start with the sample id; the error record names it already."""
    prefix = f"{key}: "
    return message[len(prefix):] if message.startswith(prefix) else message
