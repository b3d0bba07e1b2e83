"""`mer validate` on shard folders: copies of the small conversion, each damaged in several
independent ways, must be reported with exactly one finding per damage (kind, file, id), and
nothing else; plus leakage, A/V wiring and the command line (exit codes, --json, --strict)."""
from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from click.testing import CliRunner

from mer_data import schemas
from mer_data.cli import main
from mer_data.shards.tarwriter import member_info
from mer_data.validation import ValidateOptions
from mer_data.validation.shard_set import leakage_findings, measure_leakage
from mer_data.pipelines.validate import validate
from tests.conftest import convert


def audit(folder: Path, **options):
    options.setdefault("av_sync", False)
    return validate(folder, ValidateOptions(**options), in_process=True, progress=False)


def found(report) -> Counter:
    return Counter((f.kind, f.file, f.line, f.id) for f in report.findings)


# `small_shards` is leave-session-2-out of sessions 1 and 2: its valid split (session 3) is empty.
EMPTY_VALID = ("empty-split", None, None, None)


def empty_splits(card: dict) -> Counter:
    """The empty-split findings a shard folder with this card's counts gets."""
    return Counter(("empty-train-split" if split == "train" else "empty-split", None, None, None)
                   for split, count in card["counts"]["per_split"].items() if count == 0)


def copy_shards(small_shards, tmp_path: Path) -> Path:
    out, _ = small_shards
    return Path(shutil.copytree(out, tmp_path / "shards"))


def read_members(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def write_members(path: Path, members: list[tuple[str, bytes | None]]) -> None:
    """A tar of (name, bytes) regular members; bytes None makes a directory member."""
    path.unlink()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            if data is None:
                info = tarfile.TarInfo(name)
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                tar.addfile(member_info(name, len(data)), fileobj=io.BytesIO(data))


def keys_of(members: list[tuple[str, bytes]]) -> list[str]:
    return list(dict.fromkeys(name.split(".", 1)[0] for name, _ in members))


def edit_json(members: list[tuple[str, bytes]], key: str, change) -> list[tuple[str, bytes]]:
    edited = []
    for name, data in members:
        if name == f"{key}.json":
            meta = json.loads(data)
            change(meta)
            data = json.dumps(meta).encode()
        edited.append((name, data))
    return edited


def replace_member(members, name: str, data: bytes | None):
    """`data` None drops the member."""
    return [(n, data if n == name else d) for n, d in members if not (n == name and data is None)]


# --------------------------------------------------------------------------------------------


def test_clean_shards_give_no_finding_and_full_stats(small_shards):
    out, conversion = small_shards
    report = audit(out, av_sync=True)
    assert found(report) == Counter({EMPTY_VALID: 1}) and report.ok
    assert "session 3" in report.findings[0].message  # the conversion's own warning, with what to do
    data = report.to_dict()
    assert schemas.errors("validation-report", data) == []
    card = conversion.card
    stats = data["stats"]
    assert stats["items"] == {"shards": len(card["shards"]), "samples": card["counts"]["total"], "recordings": 2}
    assert stats["labels_per_split"] == card["counts"]["per_split_label"]
    assert all(len(stats["durations"][name]) == card["counts"]["total"] for name in ("interval", "audio", "video"))
    assert stats["face_detection_rate"]["mean"] == pytest.approx(1.0)
    assert stats["leakage"] == {name: {"count": 0, "examples": []} for name in ("dialogs", "speakers", "videos")}
    assert stats["error_log"] == {"count": 0, "by_stage": {}, "by_kind": {}}
    # A/V sync is wired: one estimate per recording, none beyond the threshold (the synthetic corpus is in sync).
    av_sync = stats["av_sync"]
    assert av_sync["threshold_s"] == 0.1 and av_sync["unit"] == "recording"
    assert {entry["recording"] for entry in av_sync["offsets"]} == {"Ses01F_impro01", "Ses02F_impro05a"}
    assert not any(entry["flagged"] for entry in av_sync["offsets"])
    assert 0 < av_sync["samples_used"] <= card["counts"]["total"]


def test_damaged_tars_and_samples_are_each_named_once(small_shards, tmp_path):
    folder = copy_shards(small_shards, tmp_path)
    expected = Counter()

    train0 = read_members(folder / "train-000000.tar")
    s0, s1, s2, s3 = keys_of(train0)
    train0 = replace_member(train0, f"{s0}.mp4", None)
    position = [n for n, _ in train0].index(f"{s1}.mp4") + 1
    train0.insert(position, (f"{s1}.jpg", b"\xff\xd8 a stray frame"))
    train0 = edit_json(train0, s2, lambda meta: meta.pop("faces"))
    train0 = replace_member(train0, f"{s3}.flac", b"fLaC but nothing after it")
    train0 += [("bad name.json", b"{}"), ("README", b"what is in here"), ("somedir", None)]
    write_members(folder / "train-000000.tar", train0)
    expected.update({("member-set", "train-000000.tar", None, s0): 1, ("member-set", "train-000000.tar", None, s1): 1,
                     ("metadata-invalid", "train-000000.tar", None, s2): 1,
                     ("undecodable-audio", "train-000000.tar", None, s3): 1,
                     ("bad-member-name", "train-000000.tar", None, "bad name.json"): 1,
                     ("bad-member-name", "train-000000.tar", None, "README"): 1,
                     ("bad-member-name", "train-000000.tar", None, "somedir"): 1,
                     ("checksum-mismatch", "train-000000.tar", None, None): 1, EMPTY_VALID: 1})

    test0 = original_test0 = read_members(folder / "test-000000.tar")
    t0, t1, t2, t3 = keys_of(test0)
    test0 = replace_member(test0, f"{t0}.mp4", b"\x00\x00\x00\x18ftypisom, then nothing")
    test0 = edit_json(test0, t1, lambda meta: meta.update(end=meta["end"] + 1.0))
    test0 = edit_json(test0, t2, lambda meta: (meta["faces"].update(
        detection_rate=0.0, frames=[dict(frame, box=None) for frame in meta["faces"]["frames"]]),
        meta["video"].update(is_black=True, black_fraction=1.0)))
    test0 = replace_member(test0, f"{t3}.txt", b"words nobody said")
    write_members(folder / "test-000000.tar", test0)
    expected.update({("undecodable-video", "test-000000.tar", None, t0): 1,
                     ("duration-mismatch", "test-000000.tar", None, t1): 1,
                     ("low-face-detection-rate", "test-000000.tar", None, t2): 1,
                     ("black-video", "test-000000.tar", None, t2): 1,
                     ("text-mismatch", "test-000000.tar", None, t3): 1,
                     ("checksum-mismatch", "test-000000.tar", None, None): 1})

    # Truncated in the middle of the last sample's video.
    test1 = folder / "test-000001.tar"
    with tarfile.open(test1) as tar:
        last = tar.getmembers()[-1]
    with open(test1, "r+b") as handle:
        handle.truncate(last.offset_data + last.size // 2)
    expected.update({("corrupt-tar", "test-000001.tar", None, last.name.split(".")[0]): 1,
                     ("checksum-mismatch", "test-000001.tar", None, None): 1})

    # A test sample also packed into a train shard.
    train1 = read_members(folder / "train-000001.tar")
    write_members(folder / "train-000001.tar", train1 + [(n, d) for n, d in original_test0 if n.startswith(t0 + ".")])
    expected.update({("duplicate-key", "train-000001.tar", None, t0): 1,
                     ("split-impure-shard", "train-000001.tar", None, t0): 1,
                     ("card-mismatch", "train-000001.tar", None, None): 1,
                     ("checksum-mismatch", "train-000001.tar", None, None): 1,
                     ("card-mismatch", "dataset.json", None, None): 1})

    report = audit(folder)
    assert found(report) == expected
    card_counts = next(f for f in report.findings if f.kind == "card-mismatch" and f.file == "dataset.json")
    assert card_counts.details["differences"]["counts.total"] == {"card": 11, "found": 12}
    duration = next(f for f in report.findings if f.kind == "duration-mismatch")
    assert "interval and audio differ by 1.000 s" in duration.message
    assert all(f.severity == "error" for f in report.findings
               if f.kind not in ("low-face-detection-rate", "black-video", "empty-split"))


def test_side_files_that_disagree_are_each_named(small_shards, tmp_path):
    folder = copy_shards(small_shards, tmp_path)
    (gone,) = keys_of(read_members(folder / "train-000001.tar"))
    (folder / "train-000001.tar").unlink()
    moved, dropped = keys_of(read_members(folder / "test-000001.tar"))
    rows = [row for row in pq.read_table(folder / "index.parquet").to_pylist() if row["key"] != dropped]
    next(row for row in rows if row["key"] == moved)["split"] = "valid"
    pq.write_table(pa.Table.from_pylist(rows), folder / "index.parquet")
    records = [{"utterance": "Ses01F_impro01_F003", "file": "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt",
                "line": 33, "reason": "interval ends past the video end", "stage": "media"},
               {"utterance": None, "file": "Session9/dialog/EmoEvaluation/x.txt", "line": None,
                "reason": "file name 'x' is not a dialog name", "stage": "read"}]
    (folder / "errors.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "{not json\n")
    card = json.loads((folder / "dataset.json").read_text())
    next(shard for shard in card["shards"] if shard["name"] == "train-000000.tar")["sha256"] = "0" * 64
    (folder / "dataset.json").write_text(json.dumps(card))
    (folder / "extra.tar").write_bytes(b"not a shard")

    report = audit(folder)
    assert found(report) == Counter({
        ("missing-file", "train-000001.tar", None, None): 1,
        ("index-mismatch", "index.parquet", None, gone): 1,
        ("index-mismatch", "index.parquet", None, moved): 1,
        ("index-mismatch", "index.parquet", None, dropped): 1,
        ("checksum-mismatch", "index.parquet", None, None): 1,
        ("checksum-mismatch", "errors.jsonl", None, None): 1,
        ("checksum-mismatch", "train-000000.tar", None, None): 1,
        ("rejected-utterance", records[0]["file"], 33, "Ses01F_impro01_F003"): 1,
        ("rejected-utterance", records[1]["file"], None, None): 1,
        ("error-log-invalid", "errors.jsonl", 3, None): 1,
        ("card-mismatch", "dataset.json", None, None): 1,
        ("unexpected-file", "extra.tar", None, None): 1,
        EMPTY_VALID: 1,
    })
    stats = report.to_dict()["stats"]
    assert stats["error_log"]["count"] == 2 and stats["error_log"]["by_stage"] == {"media": 1, "read": 1}
    differences = next(f for f in report.findings if f.kind == "card-mismatch").details["differences"]
    assert differences["errors.count"] == {"card": 0, "found": 2}
    assert differences["counts.per_split.train"]["found"] == differences["counts.per_split.train"]["card"] - 1


def test_an_invalid_card_is_named_and_nothing_is_compared_with_it(small_shards, tmp_path):
    folder = copy_shards(small_shards, tmp_path)
    card = json.loads((folder / "dataset.json").read_text())
    card["counts"]["total"] += 1
    (folder / "dataset.json").write_text(json.dumps(card))
    (folder / "errors.jsonl").unlink()
    (folder / "valid-000000.tar").write_bytes(b"\x01" * 3000)
    report = audit(folder)
    assert found(report) == Counter({("card-invalid", "dataset.json", None, None): 1,
                                     ("missing-file", "errors.jsonl", None, None): 1,
                                     ("corrupt-tar", "valid-000000.tar", None, None): 1, EMPTY_VALID: 1})
    assert report.to_dict()["stats"]["error_log"] is None


def delay_audio(flac: bytes, seconds: float) -> bytes:
    """The FLAC with its sound `seconds` later (silence in front, the end trimmed), same length."""
    pcm, rate = sf.read(io.BytesIO(flac), dtype="int16")
    count = round(seconds * rate)
    delayed = np.zeros_like(pcm)
    delayed[count:] = pcm[: len(pcm) - count]
    out = io.BytesIO()
    sf.write(out, delayed, rate, format="FLAC", subtype="PCM_16")
    return out.getvalue()


def test_a_recording_whose_audio_is_late_is_flagged_with_its_offset(small_shards, tmp_path):
    folder = copy_shards(small_shards, tmp_path)
    late = 0.3
    for tar in sorted(folder.glob("test-*.tar")):  # every sample of the test recording
        write_members(tar, [(name, delay_audio(data, late) if name.endswith(".flac") else data)
                            for name, data in read_members(tar)])
    report = audit(folder, av_sync=True)
    assert found(report) == Counter({("av-offset", None, None, "Ses02F_impro05a"): 1,
                                     ("checksum-mismatch", "test-000000.tar", None, None): 1,
                                     ("checksum-mismatch", "test-000001.tar", None, None): 1, EMPTY_VALID: 1})
    offsets = {entry["recording"]: entry for entry in report.to_dict()["stats"]["av_sync"]["offsets"]}
    fps = 30000 / 1001
    shifted = offsets["Ses02F_impro05a"]
    assert shifted["flagged"] and shifted["offset_s"] == pytest.approx(late, abs=2 / fps)
    assert not offsets["Ses01F_impro01"]["flagged"]
    assert "audio late by 300 ms" in next(f for f in report.findings if f.kind == "av-offset").message


def test_mosei_shards_count_labels_like_the_card_and_warn_of_faceless_samples(tmp_path):
    from mer_data.pipelines.convert import plan_mosei, run_conversion
    from mer_data.pipelines.options import ConvertOptions
    from tests.test_convert_mosei import _make_release

    raw = _make_release(tmp_path)
    options = ConvertOptions(corpus="mosei", split="random:1", classes=("all",), max_height=360,
                             extra={"labels": "csd"})
    conversion = run_conversion(plan_mosei(raw, options), tmp_path / "shards", options, workers=1, progress=False)
    report = audit(tmp_path / "shards", av_sync=True)
    # The test pattern has no face: every sample is warned of, and no offset can be measured.
    assert found(report) == Counter({("low-face-detection-rate", tar.name, None, key): 1
                                     for tar in sorted((tmp_path / "shards").glob("*.tar"))
                                     for key in keys_of(read_members(tar))}) + empty_splits(conversion.card)
    assert conversion.card["counts"]["total"] == 4
    stats = report.to_dict()["stats"]
    assert stats["labels_per_split"] == conversion.card["counts"]["per_split_label"]
    assert stats["leakage"]["videos"]["count"] == 0
    assert stats["av_sync"]["offsets"] == [] and stats["av_sync"]["recordings_without_estimate"] == ["-vidA", "_vidB"]


# --------------------------------------------------------------------------------------------
# Leakage


@pytest.fixture(scope="module")
def random_split_shards(small_corpus, tmp_path_factory):
    root, _ = small_corpus
    return convert(root, tmp_path_factory.mktemp("random-split"), split="random:1")


def test_a_random_utterance_split_reports_its_leakage(random_split_shards):
    report = audit(random_split_shards.out)
    assert found(report) == Counter({("split-leakage", None, None, None): 1}) + empty_splits(random_split_shards.card)
    leakage = report.to_dict()["stats"]["leakage"]
    card_leakage = random_split_shards.card["split_report"]["leakage"]
    assert (leakage["dialogs"]["count"], leakage["speakers"]["count"]) == (card_leakage["dialogs"], card_leakage["speakers"])
    assert leakage["dialogs"]["count"] > 0
    message = next(f for f in report.findings if f.kind == "split-leakage").message
    assert "random:1" in message and f"dialogs {card_leakage['dialogs']}" in message


def test_the_published_dai2021_split_leaks_every_dialog_and_says_it_is_by_design():
    from mer_data.corpora.iemocap import parse_utterance_id
    from mer_data.corpora.splits import load_dai2021_lists
    from mer_data.validation.shard_audit import SampleFacts

    samples = []
    for key, split in load_dai2021_lists("iemocap").items():
        parts = parse_utterance_id(key)
        samples.append(SampleFacts(key, f"{split}-000000.tar", 0, split=split, recording=parts.dialog,
                                   speaker=f"Ses{parts.session:02d}_{parts.speaker_gender}", video_source=parts.dialog))
    leakage = measure_leakage(samples)
    assert {name: facts["count"] for name, facts in leakage.items()} == {"dialogs": 151, "speakers": 10, "videos": 151}
    assert leakage["dialogs"]["examples"][0] == "Ses01F_impro01 (train 22, valid 3, test 1)"
    card = {"options": {"split": "dai2021"},
            "split_report": {"note": "utterance-level random split: dialogs and speakers leak across splits"}}
    (made,) = leakage_findings(leakage, card)
    assert made.kind == "split-leakage" and made.severity == "warning"
    assert made.message == ("in more than one split: dialogs 151, speakers 10, videos 151 (split dai2021: "
                            "utterance-level random split: dialogs and speakers leak across splits)")
    assert leakage_findings({name: {"count": 0, "examples": []} for name in leakage}, card) == []


# --------------------------------------------------------------------------------------------
# The command line


@pytest.fixture(scope="module")
def scheduler():
    """One Dask cluster for all command-line runs (and --scheduler tested with it). A plain-TCP
    loopback cluster: the one dask_client starts takes TLS connections from its own process only."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster:
        yield cluster.scheduler_address


def test_cli_exit_status_json_and_strict(small_corpus, small_shards, scheduler, tmp_path):
    runner = CliRunner()
    out, _ = small_shards
    report_path, html_path = tmp_path / "report.json", tmp_path / "report.html"
    clean = runner.invoke(main, ["validate", str(out), "--json", str(report_path), "--html", str(html_path),
                                 "--scheduler", scheduler, "--quiet"])
    assert clean.exit_code == 0, clean.output
    assert "OK: 0 errors, 1 warning" in clean.output and "empty-split" in clean.output and "A/V offsets" in clean.output
    written = json.loads(report_path.read_text())
    assert schemas.errors("validation-report", written) == [] and written["ok"] is True
    assert written["stats"]["av_sync"] is not None
    assert html_path.read_text().lstrip().lower().startswith("<!doctype html")

    root, _ = small_corpus  # its cp1252 lines are warnings: fatal only with --strict
    relaxed = runner.invoke(main, ["validate", str(root), "--scheduler", scheduler, "--quiet", "--json", str(report_path)])
    assert relaxed.exit_code == 0 and "non-utf8-text" in relaxed.output
    strict = runner.invoke(main, ["validate", str(root), "--scheduler", scheduler, "--quiet", "--strict",
                                  "--json", str(report_path)])
    assert strict.exit_code == 1 and "FAILED" in strict.output
    assert json.loads(report_path.read_text())["ok"] is False

    broken = copy_shards(small_shards, tmp_path)
    (broken / "index.parquet").write_bytes(b"PAR1 truncated")
    failed = runner.invoke(main, ["validate", str(broken), "--scheduler", scheduler, "--quiet", "--no-av-sync"])
    assert failed.exit_code == 1 and "unreadable-file" in failed.output and "index.parquet" in failed.output


def test_cli_usage_errors_exit_2(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["validate", str(tmp_path / "absent")]).exit_code == 2
    neither = runner.invoke(main, ["validate", str(tmp_path)])
    assert neither.exit_code == 2 and "not a shard folder" in neither.output
    both = runner.invoke(main, ["validate", str(tmp_path), "--workers", "2", "--scheduler", "tcp://x:1"])
    assert both.exit_code == 2 and "not both" in both.output


def test_a_crashed_shard_task_is_named_and_its_shard_not_otherwise_reported(small_shards, monkeypatch):
    from mer_data.validation import shard_audit

    real = shard_audit.audit_shard

    def crash_on_one(path, options):
        if Path(path).name == "test-000001.tar":
            raise MemoryError("worker ran out of memory")
        return real(path, options)

    monkeypatch.setattr(shard_audit, "audit_shard", crash_on_one)
    out, _ = small_shards
    report = audit(out)
    assert found(report) == Counter({("task-failed", "test-000001.tar", None, None): 1})
    assert "MemoryError: worker ran out of memory" in report.findings[0].message and not report.ok


def test_non_finite_and_mistyped_metadata_are_findings_and_the_reports_are_written(small_shards, scheduler, tmp_path):
    folder = copy_shards(small_shards, tmp_path)
    members = read_members(folder / "test-000000.tar")
    nan_start, inf_rate, text_end, _ = keys_of(members)
    members = edit_json(members, nan_start, lambda meta: meta.update(start=float("nan")))
    members = edit_json(members, inf_rate, lambda meta: meta["faces"].update(detection_rate=float("inf")))
    members = edit_json(members, text_end, lambda meta: meta.update(end="12.5"))
    write_members(folder / "test-000000.tar", members)
    report_path, html_path = tmp_path / "report.json", tmp_path / "report.html"
    result = CliRunner().invoke(main, ["validate", str(folder), "--scheduler", scheduler, "--quiet", "--no-av-sync",
                                       "--json", str(report_path), "--html", str(html_path)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    written = json.loads(report_path.read_text())
    assert schemas.errors("validation-report", written) == [] and written["ok"] is False
    assert html_path.read_text().lstrip().lower().startswith("<!doctype html")
    invalid = {f["id"]: f for f in written["findings"] if f["kind"] == "metadata-invalid"}
    assert set(invalid) == {nan_start, inf_rate, text_end}
    assert all(f["file"] == "test-000000.tar" for f in invalid.values())
    assert "start is NaN" in invalid[nan_start]["message"] and invalid[nan_start]["details"]["fields"] == ["start"]
    assert "faces.detection_rate is inf" in invalid[inf_rate]["message"]
    assert "end" in invalid[text_end]["message"]


def test_empty_splits_are_findings_an_empty_train_split_an_error():
    from mer_data.validation.shard_audit import SampleFacts
    from mer_data.validation.shard_set import empty_split_findings

    tests_only = [SampleFacts(f"Ses02F_impro01_F00{n}", "test-000000.tar", n, split="test") for n in range(3)]
    card = {"warnings": ["the valid split is empty: split session:1 puts session 2 in valid (...)"]}
    findings = {f.details["split"]: f for f in empty_split_findings(tests_only, card)}
    assert set(findings) == {"train", "valid"}
    assert (findings["train"].kind, findings["train"].severity) == ("empty-train-split", "error")
    assert (findings["valid"].kind, findings["valid"].severity) == ("empty-split", "warning")
    assert findings["valid"].message == card["warnings"][0]  # the conversion's reason, quoted
    assert findings["train"].message.startswith("the train split is empty: no train-*.tar sample")


def test_convert_prints_the_empty_split_warning_and_records_it_in_the_card(small_corpus, small_shards):
    root, _ = small_corpus
    out, conversion = small_shards
    (warning,) = conversion.card["warnings"]
    assert warning.startswith("the valid split is empty: split session:2 puts session 3 in valid")
    assert schemas.errors("dataset", conversion.card) == []
    again = CliRunner().invoke(main, ["convert", "iemocap", str(root), str(out), "--split", "session:2",
                                      "--shard-max-count", "4", "--quiet"])
    assert again.exit_code == 0 and "already complete" in again.output, again.output
    assert f"warning: {warning}" in again.output


def test_error_log_records_of_the_wrong_types_are_findings_not_a_crash(small_shards, tmp_path):
    folder = copy_shards(small_shards, tmp_path)
    good = {"utterance": "Ses01F_impro01_F003", "file": "Session1/x.txt", "line": 33, "reason": "r", "stage": "media"}
    wrong = [dict(good, line="7"), dict(good, line=float("nan")), dict(good, file=5), dict(good, reason=None),
             dict(good, line=True), dict(good, utterance=["a"]), ["not", "an", "object"]]
    (folder / "errors.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [good, *wrong]))
    report = audit(folder)
    invalid = sorted(f.line for f in report.findings if f.kind == "error-log-invalid")
    assert invalid == list(range(2, 2 + len(wrong)))
    assert all(f.file == "errors.jsonl" for f in report.findings if f.kind == "error-log-invalid")
    data = report.to_dict()
    json.dumps(data, allow_nan=False)  # what --json writes
    assert schemas.errors("validation-report", data) == [] and data["stats"]["error_log"]["count"] == 1
