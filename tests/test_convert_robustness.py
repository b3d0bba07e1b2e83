"""Conversion under interruption and bad input, through the `mer` command as a user runs it."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.test_convert_iemocap import chosen_truth, read_errors, read_samples, sha256_of_outputs

MER = [sys.executable, "-m", "mer_data.cli"]


def mer(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*MER, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def test_killed_run_resumes_to_the_same_bytes(small_corpus, small_shards, tmp_path):
    root, _ = small_corpus
    reference, _ = small_shards
    out = tmp_path / "killed"
    args = ["convert", "iemocap", root, out, "--split", "session:2", "--shard-max-count", "4",
            "--workers", "1", "--quiet"]
    process = subprocess.Popen([*MER, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    staged = out / ".staging"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if any(staged.glob("*/_outcome.json")):
            break
        time.sleep(0.05)
    assert process.poll() is None, "the conversion finished before it could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "dataset.json").exists()
    assert len(list(staged.glob("*/_outcome.json"))) == 1

    resumed = mer(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed: 1 recordings reused" in resumed.stdout
    assert sha256_of_outputs(out) == sha256_of_outputs(reference)
    assert not staged.exists()


@pytest.fixture(scope="module")
def broken_corpus(tmp_path_factory):
    """A 4-dialog synthetic release with one kind of damage in each dialog (and one extra):
    truncated AVI, missing WAV, malformed EmoEvaluation head line, an interval past the media
    end, and undecodable transcript bytes. Returns (root, truth, damage) where damage says
    which utterances each kind should cost."""
    from mer_data.synth.iemocap import synth_iemocap

    out = tmp_path_factory.mktemp("synth-broken")
    root = synth_iemocap(out, sessions=(1, 2), dialogs_per_session=2, utterances_per_dialog=6, seed=11)
    truth = json.loads((out / "synth_truth.json").read_text(encoding="utf-8"))
    chosen = chosen_truth(truth)
    dialogs = sorted({u["dialog"] for u in chosen.values()})
    assert len(dialogs) == 4
    by_dialog = {d: sorted((u for u in chosen.values() if u["dialog"] == d), key=lambda u: u["start"]) for d in dialogs}
    files = {d: _dialog_files(root, d) for d in dialogs}
    damage = {}

    # 1. Truncated AVI: keep the first 40% of the bytes.
    avi = files[dialogs[0]]["avi"]
    data = avi.read_bytes()
    avi.write_bytes(data[: int(len(data) * 0.4)])
    damage["truncated"] = (dialogs[0], None)

    # 2. Missing WAV.
    files[dialogs[1]]["wav"].unlink()
    damage["missing_wav"] = (dialogs[1], {u["id"] for u in by_dialog[dialogs[1]]})

    # 3. Malformed EmoEvaluation head line (V/A/D not three numbers).
    victim = by_dialog[dialogs[2]][0]["id"]
    emo = files[dialogs[2]]["emo"]
    line_no = _rewrite_line(emo, victim, lambda l: re.sub(rb"\[[0-9., ]+\]\s*$", b"[2.5000, oops]", l))
    damage["malformed"] = (victim, line_no)

    # 4. Interval past the media end: the last utterance of dialog 3 ends 30 s after the recording.
    late = by_dialog[dialogs[2]][-1]
    duration = truth["dialogs"][dialogs[2]]["duration"]
    _rewrite_line(emo, late["id"], lambda l: re.sub(rb"- [0-9.]+\]", f"- {duration + 30:.4f}]".encode(), l, count=1))
    damage["past_end"] = (late["id"], None)

    # 5. Undecodable transcript bytes (not UTF-8, not cp1252, with a NUL).
    bad_text = by_dialog[dialogs[3]][1]["id"]
    transcript = files[dialogs[3]]["txt"]
    t_line = _rewrite_line(transcript, bad_text, lambda l: l.split(b":")[0] + b": \x81\x8d\x00 garbled")
    damage["undecodable"] = (bad_text, t_line)
    return root, truth, damage, files


def _dialog_files(root: Path, dialog: str) -> dict[str, Path]:
    session = root / f"Session{int(dialog[3:5])}"
    return {"avi": session / "dialog/avi/DivX" / f"{dialog}.avi", "wav": session / "dialog/wav" / f"{dialog}.wav",
            "emo": session / "dialog/EmoEvaluation" / f"{dialog}.txt",
            "txt": session / "dialog/transcriptions" / f"{dialog}.txt"}


def _rewrite_line(path: Path, utterance: str, change) -> int:
    """Apply `change` to the line of `path` that starts an entry for `utterance`; its 1-based number."""
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines, start=1):
        head = line.startswith(b"[") and re.search(rb"\s" + re.escape(utterance.encode()) + rb"\s", line)
        if head or line.startswith(utterance.encode() + b" "):
            eol = b"\r" if line.endswith(b"\r") else b""
            lines[number - 1] = change(line.rstrip(b"\r")) + eol
            path.write_bytes(b"\n".join(lines))
            return number
    raise AssertionError(f"{utterance} not found in {path}")


def test_bad_input_is_reported_with_file_line_and_reason(broken_corpus, tmp_path):
    root, truth, damage, files = broken_corpus
    out = tmp_path / "shards"
    run = mer("convert", "iemocap", root, out, "--split", "random:0", "--workers", "2", "--quiet")
    assert run.returncode == 3, run.stderr
    errors = read_errors(out)
    by_utt = {}
    for e in errors:
        by_utt.setdefault(e["utterance"], []).append(e)
    rel = lambda p: p.relative_to(root).as_posix()

    dialog, _ = damage["truncated"]
    cut = [e for e in errors if e["file"] == rel(files[dialog]["avi"])]
    assert cut, "no utterance of the truncated AVI was rejected"
    assert all(e["stage"] == "media" and "video ends" in e["reason"] for e in cut)
    dialog_utts = {u["id"] for u in chosen_truth(truth).values() if u["dialog"] == dialog}
    assert {e["utterance"] for e in cut} < dialog_utts, "utterances before the cut must still convert"

    _, lost = damage["missing_wav"]
    wav_errors = [e for e in errors if e["file"] == rel(files[damage["missing_wav"][0]]["wav"])]
    assert {e["utterance"] for e in wav_errors} == lost
    assert all("missing" in e["reason"] or "not found" in e["reason"] for e in wav_errors)

    victim, line = damage["malformed"]
    [entry] = by_utt[victim]
    assert (entry["file"], entry["line"], entry["stage"]) == (rel(files[victim.rsplit("_", 1)[0]]["emo"]), line, "read")

    late, _ = damage["past_end"]
    [entry] = by_utt[late]
    assert "past" in entry["reason"] and entry["stage"] == "media"

    bad, t_line = damage["undecodable"]
    [entry] = by_utt[bad]
    assert (entry["file"], entry["line"]) == (rel(files[bad.rsplit("_", 1)[0]]["txt"]), t_line)
    assert "undecodable" in entry["reason"]

    # Nothing else is lost: every other chosen utterance is in a shard.
    rejected = set(by_utt)
    assert rejected == {e["utterance"] for e in cut} | lost | {victim, late, bad}
    assert set(read_samples(out)) == set(chosen_truth(truth)) - rejected
    # ... and the terminal names the problems too.
    assert f"{rel(files[victim.rsplit('_', 1)[0]]['emo'])}:{line}" in run.stderr
    assert "errors.jsonl" in run.stderr


def test_dai2021_split_gives_the_published_counts(tmp_path):
    """All 7,380 published utterances, synthesized with tiny media and converted (~1.5 min)."""
    raw = tmp_path / "raw"
    made = mer("synth", "iemocap", raw, "--ids-from", "dai2021", "--frame-size", "64x48", "--voice", "synth",
               timeout=900)
    assert made.returncode == 0, made.stderr
    out = tmp_path / "shards"
    run = mer("convert", "iemocap", raw, out, "--split", "dai2021", "--workers", "2", "--quiet",
              "--shard-max-count", "2000", timeout=1800)
    assert run.returncode == 0, run.stderr[-2000:]
    card = json.loads((out / "dataset.json").read_text())
    assert card["counts"]["per_split"] == {"train": 5162, "valid": 737, "test": 1481}
    assert card["split_report"]["leakage"]["dialogs"] > 0, "the published random split leaks dialogs: report it"
    index = pd.read_parquet(out / "index.parquet")
    for split in ("train", "valid", "test"):
        published = set((Path(__file__).parents[1] / "mer_data/data/splits/dai2021/iemocap" / f"{split}.txt")
                        .read_text().split())
        assert set(index.loc[index["split"] == split, "key"]) == published
