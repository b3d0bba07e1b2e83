"""`mer validate` on raw releases: copies of the synthetic IEMOCAP corpus (and of a hand-made
MOSEI release), each damaged in several independent ways, must be reported with exactly one
finding per damage (kind, file, line, id), and nothing else."""
from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf

from mer_data import schemas
from mer_data.validation import ValidateOptions
from mer_data.media.video import frame_range
from mer_data.validation.raw_audit import reader_finding
from mer_data.records import Problem
from mer_data.pipelines.validate import NotAValidationTarget, detect_target, validate
from tests.test_convert_mosei import _make_release as make_mosei_release


def audit(root: Path, **options):
    return validate(root, ValidateOptions(**options), in_process=True, progress=False)


def found(report) -> Counter:
    """(kind, file, line, id) of every finding, with multiplicity."""
    return Counter((f.kind, f.file, f.line, f.id) for f in report.findings)


def copy_corpus(small_corpus, tmp_path: Path) -> tuple[Path, dict, dict]:
    """(release root of a private copy, truth, {dialog: its truth entry}); the fixture stays untouched."""
    root, truth = small_corpus
    copy = shutil.copytree(root.parent, tmp_path / "raw")
    return Path(copy) / root.name, truth, truth["dialogs"]


def utterances_of(truth: dict, dialog: str) -> list[dict]:
    return sorted((u for u in truth["utterances"] if u["dialog"] == dialog), key=lambda u: u["start"])


def baseline(truth: dict) -> Counter:
    """The clean corpus's findings: the release's known cp1252 bytes, one warning per line, and
    its utterances without a word segmentation file (the noise-only ones), one warning each."""
    lines = {u["id"]: u["transcript_line"] for u in truth["utterances"]}
    found = Counter(("non-utf8-text", facts["files"]["transcript"], lines[utt], utt)
                    for facts in truth["dialogs"].values() for utt in facts["non_utf8_ids"])
    found.update(("missing-word-timings", f"{facts['files']['alignment']}/{u['id']}.wdseg", None, u["id"])
                 for u in truth["utterances"] if u["wdseg"] is None
                 for facts in [truth["dialogs"][u["dialog"]]])
    return found


def drop_word_timing_findings(expected: Counter, ids: set[str]) -> None:
    for key in [key for key in expected if key[0] == "missing-word-timings" and key[3] in ids]:
        del expected[key]


# --------------------------------------------------------------------------------------------
# Editing annotation files byte-exactly (they mix CRLF and LF, cp1252 and ASCII)


def edit_line(path: Path, number: int, change) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[number - 1] = change(lines[number - 1])
    path.write_bytes(b"\n".join(lines))


def append_lines(path: Path, new: list[bytes]) -> int:
    """Append lines with the file's own line end; return the 1-based number of the first."""
    data = path.read_bytes()
    end = b"\r\n" if b"\r\n" in data else b"\n"
    existing = data.count(b"\n")
    path.write_bytes(data + b"".join(line + end for line in new))
    return existing + 1


def set_head_times(line: bytes, start: float, end: float) -> bytes:
    return re.sub(rb"^\[[^\]]*\]", f"[{start:.4f} - {end:.4f}]".encode(), line)


def set_transcript_times(line: bytes, start: float, end: float) -> bytes:
    return re.sub(rb"\[[^\]]*\]", f"[{start:08.4f}-{end:08.4f}]".encode(), line, count=1)


def retime(root: Path, files: dict, utterance: dict, start: float, end: float) -> None:
    """Move an utterance in both its label and transcript line (so that the two still agree)."""
    edit_line(root / files["labels"], utterance["labels_line"], lambda line: set_head_times(line, start, end))
    edit_line(root / files["transcript"], utterance["transcript_line"], lambda line: set_transcript_times(line, start, end))


# --------------------------------------------------------------------------------------------


def test_a_clean_corpus_has_no_errors_only_its_known_cp1252_lines(small_corpus):
    root, truth = small_corpus
    report = audit(root)
    assert found(report) == baseline(truth) and baseline(truth)
    assert report.errors == 0 and report.ok
    assert not audit(root, strict=True).ok
    data = report.to_dict()
    assert schemas.errors("validation-report", data) == []
    assert data["target"] == {"kind": "raw-iemocap", "path": str(root.resolve())}
    stats = data["stats"]
    assert stats["items"] == {"recordings": len(truth["dialogs"]), "utterances": len(truth["utterances"])}
    assert stats["labels_per_split"] == {"all": dict(sorted(Counter(u["category"] for u in truth["utterances"]).items()))}
    assert sorted(stats["durations"]["interval"]) == pytest.approx(
        sorted(u["end"] - u["start"] for u in truth["utterances"]), abs=1e-3)
    assert sorted(stats["durations"]["audio"]) == pytest.approx(sorted(d["duration"] for d in truth["dialogs"].values()),
                                                                abs=0.01)
    assert stats["face_detection_rate"] is None and stats["leakage"] is None and stats["av_sync"] is None


def test_damaged_annotations_and_media_are_each_named_once(small_corpus, tmp_path):
    root, truth, dialogs = copy_corpus(small_corpus, tmp_path)
    first, second = sorted(dialogs)
    a, b = dialogs[first]["files"], dialogs[second]["files"]
    expected = baseline(truth)

    # Dialog A: the label file.
    utts = utterances_of(truth, first)
    last = utts[-1]
    retime(root, a, last, last["start"], dialogs[first]["duration"] + 2.0)
    expected[("interval-past-media-end", a["labels"], last["labels_line"], last["id"])] += 1
    speaker_turns = [u for u in utts if u["speaker"] == utts[0]["speaker"]]
    previous, moved = speaker_turns[0], speaker_turns[1]
    assert moved is not last
    retime(root, a, moved, previous["end"] - 0.2, moved["end"])
    expected[("overlapping-intervals", a["labels"], moved["labels_line"], moved["id"])] += 1
    unknown, duplicated = [u for u in utts if u not in (previous, moved, last)][:2]
    edit_line(root / a["labels"], unknown["labels_line"],
              lambda line: line.replace(f"\t{unknown['category']}\t".encode(), b"\tzzz\t"))
    expected[("unknown-code", a["labels"], unknown["labels_line"], unknown["id"])] += 1
    head = (root / a["labels"]).read_bytes().split(b"\n")[duplicated["labels_line"] - 1].rstrip(b"\r")
    line = append_lines(root / a["labels"], [b"", head, b"", b"[oops]\tnot a block head", b""])
    expected[("duplicate-id", a["labels"], line + 1, duplicated["id"])] += 1
    expected[("malformed-line", a["labels"], line + 3, None)] += 1

    # Dialog B: the transcript, and the audio one second longer than the video.
    without_line, shifted, undecodable = [u for u in utterances_of(truth, second)
                                          if u["id"] not in dialogs[second]["non_utf8_ids"]][:3]
    edit_line(root / b["transcript"], without_line["transcript_line"], lambda line: b"\r" if line.endswith(b"\r") else b"")
    expected[("label-without-transcript", b["labels"], without_line["labels_line"], without_line["id"])] += 1
    edit_line(root / b["transcript"], shifted["transcript_line"],
              lambda line: set_transcript_times(line, shifted["start"] + 0.5, shifted["end"]))
    expected[("transcript-time-mismatch", b["transcript"], shifted["transcript_line"], shifted["id"])] += 1
    edit_line(root / b["transcript"], undecodable["transcript_line"], lambda line: line.replace(b": ", b": \x81", 1))
    expected[("undecodable-line", b["transcript"], undecodable["transcript_line"], undecodable["id"])] += 1
    unlabelled = f"{second}_F099"
    line = append_lines(root / b["transcript"], [f"{unlabelled} [001.0000-002.0000]: Nobody labelled me.".encode()])
    expected[("transcript-without-label", b["transcript"], line, unlabelled)] += 1
    audio, rate = sf.read(root / b["audio"], dtype="int16")
    sf.write(root / b["audio"], np.concatenate([audio, np.zeros((rate, audio.shape[1]), np.int16)]), rate,
             subtype="PCM_16")
    expected[("media-duration-mismatch", b["video"], None, second)] += 1

    report = audit(root)
    assert found(report) == expected
    by_kind = {f.kind: f for f in report.findings}
    assert by_kind["unknown-code"].severity == "error" and "zzz" in by_kind["unknown-code"].message
    assert by_kind["overlapping-intervals"].details["other"] == previous["id"]
    assert by_kind["media-duration-mismatch"].details["audio_duration_s"] == pytest.approx(
        dialogs[second]["duration"] + 1.0, abs=0.01)
    assert not report.ok


def test_missing_unreadable_and_duplicated_files_are_each_named(small_corpus, tmp_path):
    root, truth, dialogs = copy_corpus(small_corpus, tmp_path)
    first, second = sorted(dialogs)
    a, b = dialogs[first]["files"], dialogs[second]["files"]
    expected = baseline(truth)

    (root / a["video"]).unlink()
    expected[("missing-media", a["video"], None, first)] += 1
    stereo, rate = sf.read(root / a["audio"], dtype="int16")
    sf.write(root / a["audio"], stereo[:, 0], rate, subtype="PCM_16")
    expected[("missing-audio-channel", a["audio"], None, first)] += 1
    (root / b["audio"]).write_bytes(b"RIFF, but not really a WAV file")
    expected[("unreadable-media", b["audio"], None, second)] += 1
    (root / b["transcript"]).unlink()
    (root / b["transcript"]).mkdir()
    expected[("unreadable-file", b["transcript"], None, second)] += 1
    # Without its transcript no utterance of B is converted: its word timings are not looked at.
    drop_word_timing_findings(expected, {u["id"] for u in utterances_of(truth, second)})

    stray = "Session1/dialog/EmoEvaluation/notes.txt"
    (root / stray).write_text("to do: ask about Ses01\n")
    expected[("unexpected-file", stray, None, None)] += 1
    orphan = "Session2/dialog/transcriptions/Ses02M_impro09.txt"
    (root / orphan).write_text("Ses02M_impro09_F000 [001.0000-002.0000]: Hello.\n")
    expected[("missing-file", "Session2/dialog/EmoEvaluation/Ses02M_impro09.txt", None, "Ses02M_impro09")] += 1

    # A's label file copied into another session: every id there is a duplicate, and the copy's
    # dialog has no media and no transcript in that session.
    copied = a["labels"].replace("Session1/", "Session2/")
    shutil.copy(root / a["labels"], root / copied)
    for utterance in utterances_of(truth, first):
        expected[("duplicate-id", copied, utterance["labels_line"], utterance["id"])] += 1
    for rel in (a["video"], a["audio"]):
        expected[("missing-media", rel.replace("Session1/", "Session2/"), None, first)] += 1
    expected[("missing-file", a["transcript"].replace("Session1/", "Session2/"), None, first)] += 1

    report = audit(root)
    assert found(report) == expected
    channel = next(f for f in report.findings if f.kind == "missing-audio-channel")
    assert channel.details["needed"] == [1] and channel.details["channels"] == 1


def decoded_frames(video: Path) -> int:
    """Frames ffmpeg decodes from a video, counted by ffprobe (not the count its header states)."""
    command = ["ffprobe", "-v", "quiet", "-count_frames", "-select_streams", "v:0", "-show_entries",
               "stream=nb_read_frames", "-of", "csv=p=0", str(video)]
    return int(subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip())


def damage_frames(avi: Path, count: int) -> None:
    """Flip bytes inside the data of `count` frames from the first third of an AVI on, leaving
    its chunk headers (and so every frame's place and time) intact."""
    data = bytearray(avi.read_bytes())
    movi_end = data.rfind(b"idx1")  # the index after the frames names every chunk again
    chunks = [match.start() for match in re.finditer(rb"00dc", data[:movi_end])]
    damaged = chunks[len(chunks) // 3:][:count]
    assert len(damaged) == count
    for at in damaged:
        size = int.from_bytes(data[at + 4:at + 8], "little")
        for offset in range(at + 8 + 16, at + 8 + size, 50):  # past the frame's start code
            data[offset] ^= 0x55
    avi.write_bytes(bytes(data))


def test_a_truncated_and_a_damaged_video_are_measured_by_decoding(small_corpus, tmp_path):
    root, truth, dialogs = copy_corpus(small_corpus, tmp_path)
    first, second = sorted(dialogs)
    a, b = dialogs[first]["files"], dialogs[second]["files"]
    expected = baseline(truth)

    # Dialog A's AVI cut to 60% of its bytes: the header still states every frame.
    data = (root / a["video"]).read_bytes()
    (root / a["video"]).write_bytes(data[: int(len(data) * 0.6)])
    fps, frames = Fraction(dialogs[first]["fps_fraction"]), decoded_frames(root / a["video"])
    assert 0 < frames < dialogs[first]["frames"]
    past = [u for u in utterances_of(truth, first)
            if frame_range(u["start"], u["end"], fps)[0] >= frames or frame_range(u["start"], u["end"], fps)[1] > frames + 1]
    assert 0 < len(past) < len(utterances_of(truth, first))
    for utterance in past:
        expected[("interval-past-media-end", a["labels"], utterance["labels_line"], utterance["id"])] += 1
    expected[("truncated-media", a["video"], None, first)] += 1
    expected[("media-duration-mismatch", a["video"], None, first)] += 1

    # Dialog B's AVI with bytes flipped inside 40 of its frames: it decodes to its end, concealing the damage.
    damage_frames(root / b["video"], 40)
    assert decoded_frames(root / b["video"]) == dialogs[second]["frames"]
    expected[("video-decode-errors", b["video"], None, second)] += 1

    report = audit(root)
    findings = found(report)
    # Cutting A inside a frame may leave that frame damaged too: a count for A is right, not required.
    findings.pop(("video-decode-errors", a["video"], None, first), None)
    assert findings == expected
    by_kind = {(f.kind, f.id): f for f in report.findings}
    assert by_kind[("truncated-media", first)].details["frames"] == frames
    assert by_kind[("truncated-media", first)].details["claimed_frames"] == dialogs[first]["frames"]
    assert by_kind[("video-decode-errors", second)].details["errors"] > 10
    assert by_kind[("video-decode-errors", second)].severity == "warning"


def test_an_emptied_label_file_and_a_missing_transcript_line_are_errors_in_validate_and_convert(small_corpus,
                                                                                               tmp_path):
    from mer_data.pipelines.convert import plan_iemocap
    from mer_data.pipelines.options import ConvertOptions

    root, truth, dialogs = copy_corpus(small_corpus, tmp_path)
    emptied, other = sorted(dialogs)
    a, b = dialogs[emptied]["files"], dialogs[other]["files"]
    expected = baseline(truth)
    header = (root / a["labels"]).read_bytes().splitlines(keepends=True)[0]
    (root / a["labels"]).write_bytes(header)  # only the "% [START_TIME - END_TIME] ..." header is left
    expected[("empty-annotation-file", a["labels"], None, None)] += 1
    for utterance in utterances_of(truth, emptied):  # their transcript lines now name no label
        expected[("transcript-without-label", a["transcript"], utterance["transcript_line"], utterance["id"])] += 1
    untold = next(u for u in utterances_of(truth, other) if u["id"] not in dialogs[other]["non_utf8_ids"])
    edit_line(root / b["transcript"], untold["transcript_line"], lambda line: b"")  # a blank line now
    expected[("label-without-transcript", b["labels"], untold["labels_line"], untold["id"])] += 1
    # Utterances that are not converted: their word timings are not looked at.
    drop_word_timing_findings(expected, {untold["id"]} | {u["id"] for u in utterances_of(truth, emptied)})

    report = audit(root)
    assert found(report) == expected and not report.ok
    # The conversion rejects the same: the dialog and the utterance are in errors.jsonl, not gone.
    plan = plan_iemocap(root, ConvertOptions(corpus="iemocap", split="random:1"))
    rejected = {(p.file, p.line, p.utterance): p.reason for p in plan.problems}
    assert set(rejected) == {(a["labels"], None, None), (b["labels"], untold["labels_line"], untold["id"])}
    assert rejected[(a["labels"], None, None)].startswith("no label block: the file is empty or holds only its header")
    assert rejected[(b["labels"], untold["labels_line"], untold["id"])] == (
        f"no transcript line in {b['transcript']}: the utterance has no text")
    errors = {(f.file, f.line, f.id) for f in report.findings if f.severity == "error"}
    assert set(rejected) == errors  # what validate calls an error is exactly what convert rejects
    converted = {utterance.id for job in plan.jobs for utterance in job.utterances}
    assert untold["id"] not in converted and not converted & {u["id"] for u in utterances_of(truth, emptied)}


# --------------------------------------------------------------------------------------------
# CMU-MOSEI


TRANSCRIPTS = "Transcript/Segmented/Combined"


def replace_csd_rows(csd: Path, video: str, intervals: list[tuple[float, float]], features: list[tuple]) -> None:
    with h5py.File(csd, "r+") as handle:
        group = handle["All Labels"]["data"][video]
        del group["features"], group["intervals"]
        group["features"] = np.array(features, dtype=np.float32)
        group["intervals"] = np.array(intervals, dtype=np.float64)


def test_mosei_release_clean_and_damaged(tmp_path):
    from tests.test_convert_mosei import SEGMENTS

    raw = make_mosei_release(tmp_path)
    assert detect_target(raw.parent.parent) == "raw-mosei"
    clean = audit(raw)
    # _vidB ships without a 16 kHz WAV: the converter takes the video's audio, and says so.
    assert found(clean) == Counter({("audio-from-video", "Audio/Full/WAV_16000/_vidB.wav", None, "_vidB"): 1})
    assert clean.ok and clean.to_dict()["target"]["kind"] == "raw-mosei"
    assert clean.to_dict()["stats"]["items"] == {"recordings": 2, "utterances": 4}

    vid_a = raw / TRANSCRIPTS / "-vidA.txt"
    line = append_lines(vid_a, [b"-vidA___2___5.6___5.9___nobody labelled this clip"])
    edit_line(vid_a, 2, lambda _: b"-vidA___1___2.0___9.0___words of clip 1")  # overlaps clip 0, ends past the video
    (_, a0_start, a0_end, a0_labels), (_, _, _, a1_labels) = SEGMENTS["-vidA"]
    out_of_range = (5.0, 0, 0, 0, 0, 0, 0)
    replace_csd_rows(raw / "Labels" / "CMU_MOSEI_Labels.csd", "-vidA",
                     [(a0_start, a0_end), (2.0, 9.0), (5.6, 5.9)], [a0_labels, a1_labels, out_of_range])
    vid_b_line = append_lines(raw / TRANSCRIPTS / "_vidB.txt", [b"_vidB___2___4.0___4.5___caf\xe9 \xff"])
    (raw / "Videos/Full/Combined/_vidB.mp4").unlink()

    transcript_a, transcript_b = f"{TRANSCRIPTS}/-vidA.txt", f"{TRANSCRIPTS}/_vidB.txt"
    assert found(audit(raw)) == Counter({
        ("transcript-without-label", transcript_a, line, "-vidA_2"): 1,
        ("overlapping-intervals", transcript_a, 2, "-vidA_1"): 1,
        ("interval-past-media-end", transcript_a, 2, "-vidA_1"): 1,
        ("label-out-of-range", "Labels/CMU_MOSEI_Labels.csd", None, None): 1,
        ("undecodable-line", transcript_b, vid_b_line, None): 1,
        ("missing-media", "Videos/Full/Combined/_vidB.mp4", None, "_vidB"): 1,
        ("missing-media", "Audio/Full/WAV_16000/_vidB.wav", None, "_vidB"): 1,
    })


# --------------------------------------------------------------------------------------------
# Small parts


@pytest.mark.parametrize("reason, kind", [
    ("undecodable bytes (0x81): neither UTF-8 nor cp1252 text", "undecodable-line"),
    ("not UTF-8 text", "undecodable-line"),
    ("unknown category code 'zzz' (expected one of neu, ...)", "unknown-code"),
    ("duplicate utterance id (first at line 3); ignored", "duplicate-id"),
    ("duplicate transcript line (first at line 2)", "duplicate-id"),
    ("duplicate clip 1 (first at line 1); ignored", "duplicate-id"),
    ("utterance id contains '.': tar readers take what follows", "invalid-id"),
    ("file name 'x' is not a dialog name (SesNN[MF]_...)", "unexpected-file"),
    ("label interval [1.0, 2.0] of v (row 0): sentiment 5.0 is outside [-3, 3]", "label-out-of-range"),
    ("label interval [1.0, 2.0] of v matches no transcript segment", "label-without-transcript"),
    ("no transcript line in S/t.txt: the utterance has no text", "label-without-transcript"),
    ("no transcript file S/t.txt: the utterance has no text", "label-without-transcript"),
    ("no label block: the file is empty or holds only its header; no utterance of dialog d is converted",
     "empty-annotation-file"),
    ("video v has 2 labelled segment(s) but no transcript file Transcript/Segmented/Combined/v.txt",
     "label-without-transcript"),
    ("missing columns: Input.CLIP", "malformed-labels"),
    ("video v: expected 'features' and 'intervals' datasets", "malformed-labels"),
    ("video v: /All Labels/data/v/features declares shape (50000000000, 7) of float64 (2.5 TiB), over the 64.0 MiB "
     "it may hold: not read", "malformed-labels"),
    ("bad times [1.0 -]: expected [START - END] in seconds", "malformed-line"),
    ("V/A/D [1, 2] is not 3 numbers", "malformed-line"),
    ("utterance id 'Ses01' has no '_' between dialog and turn", "malformed-line"),
    ("malformed transcript line: expected '<id> [START-END]: text'", "malformed-line"),
    ("clip 'x' is not a whole number", "malformed-line"),
    ("Input.VIDEO_ID is empty", "malformed-line"),
    ("something no reader says yet", "annotation-problem"),
])
def test_reader_problems_get_their_kind(reason, kind):
    made = reader_finding(Problem("f.txt", 3, reason, "u1"))
    assert (made.kind, made.file, made.line, made.id, made.message) == (kind, "f.txt", 3, "u1", reason)


def test_a_folder_that_is_neither_is_refused_with_what_was_expected(tmp_path):
    with pytest.raises(NotAValidationTarget, match="IEMOCAP.*CMU-MOSEI|shard folder"):
        detect_target(tmp_path)


def test_docs_list_every_finding_kind_with_its_severity():
    from mer_data.validation import KINDS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "validation.md").read_text(encoding="utf-8")
    assert KINDS
    for kind, facts in KINDS.items():
        assert f"| `{kind}` | {facts.severity} |" in doc, kind


def test_a_crashed_recording_task_is_named(small_corpus, monkeypatch):
    from mer_data.validation import raw_audit

    root, truth = small_corpus
    crashed = sorted(truth["dialogs"])[0]
    real = raw_audit.audit_recording

    def crash_on_one(job, options):
        if job.recording == crashed:
            raise RuntimeError("ffprobe vanished")
        return real(job, options)

    monkeypatch.setattr(raw_audit, "audit_recording", crash_on_one)
    expected = Counter({key: n for key, n in baseline(truth).items() if not key[3].startswith(crashed)})
    expected[("task-failed", truth["dialogs"][crashed]["files"]["labels"], None, crashed)] += 1
    assert found(audit(root)) == expected
