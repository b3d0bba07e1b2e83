"""The reading side of the shard contract (mer_data/shards/folder.py, samples.py), on a real conversion."""
from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mer_data.corpora.iemocap import SIX_CLASSES
from mer_data.records import Problem
from mer_data.shards import SPLITS, ShardFolder, ShardFolderError, shard_split, write_errors
from mer_data.shards.labels import LabelError
from mer_data.shards.samples import read_samples
from mer_data.model.data import resolve_shards


def copy_folder(source: Path, target: Path, *, side_files: bool = True) -> Path:
    target.mkdir()
    for path in source.iterdir():
        if side_files or path.suffix == ".tar":
            shutil.copyfile(path, target / path.name)
    return target


def test_the_side_files_read_as_written(small_shards):
    out, report = small_shards
    folder = ShardFolder(out)
    assert folder.card == json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert folder.card["counts"] == report.card["counts"]
    assert folder.index_rows() == pq.read_table(out / "index.parquet").to_pylist()
    assert folder.index_rows(["key", "shard"]) == [{"key": row["key"], "shard": row["shard"]}
                                                  for row in folder.index_rows()]
    assert folder.errors() == report.problems == []
    excluded = folder.excluded()
    assert excluded and all(set(record) == {"utterance", "label", "reason"} for record in excluded)
    assert len(excluded) == report.card["excluded"]["count"]


def test_shards_per_split_are_the_cards(small_shards):
    out, report = small_shards
    folder = ShardFolder(out)
    for split in SPLITS:
        listed = [shard["name"] for shard in report.card["shards"] if shard["split"] == split]
        assert folder.shard_names(split) == listed
        assert folder.shards(split) == [str(out / name) for name in listed]
    assert folder.shard_names() == sorted(shard["name"] for shard in report.card["shards"])
    keys = folder.keys_by_shard()
    assert {name: len(names) for name, names in keys.items()} == {s["name"]: s["count"] for s in report.card["shards"]}


def test_a_file_url_reads_as_its_folder(small_shards):
    out, _ = small_shards
    assert ShardFolder(out.as_uri()).card == ShardFolder(out).card
    assert ShardFolder.containing(out / "train-000000.tar").location == str(out)


@pytest.mark.parametrize("name", ["train-1.tar", "train-000000.tar.bak", "train-0000000.tar", "other-000000.tar",
                                  "train-00000a.tar", ".tmp-train-000000.tar.x1y2"])
def test_only_strictly_named_files_are_shards(small_shards, tmp_path, name):
    out, _ = small_shards
    folder_path = copy_folder(out, tmp_path / "shards")
    shutil.copyfile(out / "train-000000.tar", folder_path / name)
    folder = ShardFolder(folder_path)
    assert name not in folder.shard_names() and shard_split(name) is None
    assert str(folder_path / name) not in resolve_shards(folder_path, "train")
    assert folder.shard_names("train") == ShardFolder(out).shard_names("train")


def test_samples_come_in_shard_order_with_their_members(small_shards):
    out, _ = small_shards
    folder = ShardFolder(out)
    problems = []
    for name, keys in folder.keys_by_shard().items():
        samples = list(folder.samples(name, problems.append))
        assert [sample.key for sample in samples] == keys
        assert [sample.position for sample in samples] == list(range(len(keys)))
        assert all(sample.complete and set(sample.members) == {"json", "txt", "flac", "mp4"} for sample in samples)
        assert folder.metadata(name, set(keys)) == {s.key: json.loads(s.members["json"]) for s in samples}
    assert problems == []


def test_a_shard_cut_short_yields_what_it_holds_and_says_where_it_broke(small_shards, tmp_path):
    out, _ = small_shards
    shard = out / "train-000000.tar"
    with tarfile.open(shard) as tar:
        members = tar.getmembers()
    second_sample = next(m for m in members if m.name.partition(".")[0] != members[0].name.partition(".")[0])
    cut = tmp_path / "train-000000.tar"
    cut.write_bytes(shard.read_bytes()[:second_sample.offset_data + 100])   # inside the second sample's first member
    problems = []
    samples = list(read_samples(cut, problems.append))
    assert [sample.complete for sample in samples] == [True, False]
    assert set(samples[0].members) == {"json", "txt", "flac", "mp4"}
    assert [problem.kind for problem in problems] == ["corrupt-tar"]
    assert problems[0].id == samples[1].key and "cut short" in problems[0].message


def test_garbage_after_the_last_member_and_a_non_tar_are_problems_not_exceptions(small_shards, tmp_path):
    out, _ = small_shards
    shard = tmp_path / "train-000000.tar"
    shard.write_bytes((out / "train-000000.tar").read_bytes() + b"garbage")
    problems = []
    assert len(list(read_samples(shard, problems.append))) == len(ShardFolder(out).keys_by_shard()["train-000000.tar"])
    assert [(p.kind, "offset" in p.details) for p in problems] == [("corrupt-tar", True)]
    shard.write_bytes(b"not a tar at all" * 100)
    problems.clear()
    assert list(read_samples(shard, problems.append)) == []
    assert [p.kind for p in problems] == ["corrupt-tar"] and "not a readable tar" in problems[0].message


def test_the_error_log_reads_back_as_the_problems_written(tmp_path):
    problems = [Problem("b.txt", 3, "unreadable line", "Ses01F_impro01_F000", "read"),
                Problem("a.avi", None, "no video stream", None, "media")]
    write_errors(problems, tmp_path)
    assert ShardFolder(tmp_path).errors() == sorted(problems, key=Problem.sort_key)


def test_a_damaged_side_file_is_named_with_its_line(small_shards, tmp_path):
    out, _ = small_shards
    folder_path = copy_folder(out, tmp_path / "shards")
    (folder_path / "errors.jsonl").write_text('{"file": "a", "line": 1, "reason": "r"}\nnot json\n', encoding="utf-8")
    with pytest.raises(ShardFolderError, match=r"errors\.jsonl:2: not a JSON object"):
        ShardFolder(folder_path).errors()
    (folder_path / "dataset.json").write_text("{", encoding="utf-8")
    with pytest.raises(ShardFolderError, match=r"dataset\.json: unreadable dataset card"):
        ShardFolder(folder_path).card
    (folder_path / "index.parquet").write_bytes(b"PAR1 broken")
    with pytest.raises(ShardFolderError, match=r"index\.parquet: unreadable index"):
        ShardFolder(folder_path).index_rows()
    assert ShardFolder(folder_path).keys_by_shard() is None   # the cross-checking readers go on without


def test_the_label_space_comes_from_the_card_or_the_first_sample(small_shards, tmp_path):
    out, _ = small_shards
    assert ShardFolder(out).label_space() == ("iemocap", tuple(SIX_CLASSES))
    loose = ShardFolder(copy_folder(out, tmp_path / "loose", side_files=False))
    assert loose.card is None and loose.index_rows() is None and loose.errors() == []
    assert loose.label_space() == ("iemocap", tuple(SIX_CLASSES)) and loose.label_task() == "one-vs-rest"
    with pytest.raises(LabelError, match="no shard in"):
        ShardFolder(tmp_path / "empty").label_space()


def test_a_folder_in_object_storage_reads_as_the_local_one(small_shards):
    import fsspec

    out, _ = small_shards
    fs = fsspec.filesystem("memory")
    fs.pipe({f"/reader/shards/{path.name}": path.read_bytes() for path in out.iterdir()})
    try:
        local, remote = ShardFolder(out), ShardFolder("memory://reader/shards/")
        assert remote.card == local.card and remote.errors() == local.errors()
        assert remote.index_rows() == local.index_rows() and remote.excluded() == local.excluded()
        assert remote.shards("train") == [f"memory://reader/shards/{name}" for name in local.shard_names("train")]
        assert remote.label_space() == local.label_space()
        name = local.shard_names()[0]
        problems = []
        remote_samples = [(s.key, s.members) for s in remote.samples(name, problems.append)]
        assert remote_samples == [(s.key, s.members) for s in local.samples(name, problems.append)]
        assert problems == []
        assert ShardFolder.containing(f"memory://reader/shards/{name}").location == "memory://reader/shards"
    finally:
        fs.rm("/reader", recursive=True)


def imported_modules(paths) -> list[tuple[str, str]]:
    """(file name, module) of every import in the files, those inside functions included."""
    import ast

    found = []
    for path in sorted(paths):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [(path.name, name) for name in names]
    return found


MER_DATA = Path(__file__).resolve().parents[1] / "mer_data"


def test_the_corpus_readers_import_nothing_of_the_shard_contract():
    """The card builder and labels (mer_data/shards/) use the corpora; an import back is a circle."""
    files = [*MER_DATA.joinpath("corpora").glob("*.py"), MER_DATA / "records.py"]
    assert [(name, module) for name, module in imported_modules(files) if module.startswith("mer_data.shards")] == []
