"""IEMOCAP word timings: the .wdseg parser, the reader, the synthetic release, validate and the shards."""
from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from mer_data import schemas
from mer_data.corpora.iemocap import SIX_CLASSES, read_iemocap
from mer_data.corpora.wdseg import check_words, mismatch_rate, parse_wdseg, read_wdseg
from mer_data.validation import ValidateOptions
from mer_data.validation.shard_audit import _check_words
from mer_data.pipelines.validate import validate
from tests.conftest import convert

# As Sphinx-3 writes it (tab, right-aligned columns), with CRLF line ends, a variant, a filler and
# the three control tokens.
REAL_FORMAT = (
    "\t SFrm  EFrm    SegAScr Word\r\n"
    "\t    0    32    -409713 <s>\r\n"
    "\t   33    51    -196045 WHAT(2)\r\n"
    "\t   52    57     -70012 <sil>\r\n"
    "\t   58    99    -410871 ++BREATH++\r\n"
    "\t  100   131    -318112 HAPPENED\r\n"
    "\t  132   149    -151005 TO(3)\r\n"
    "\t  150   181    -283900 YOU\r\n"
    "\t  182   240    -512133 </s>\r\n"
    " Total score:    -2351791\r\n"
)


def test_real_format_gives_the_words_and_times_exactly():
    words, problem = parse_wdseg(REAL_FORMAT, "Session1/sentences/ForcedAlignment/d/u.wdseg")
    assert problem is None
    assert [w.to_json() for w in words] == [
        {"word": "WHAT", "start": 0.33, "end": 0.52, "token": "WHAT(2)", "filler": False},
        {"word": "++BREATH++", "start": 0.58, "end": 1.0, "token": "++BREATH++", "filler": True},
        {"word": "HAPPENED", "start": 1.0, "end": 1.32, "token": "HAPPENED", "filler": False},
        {"word": "TO", "start": 1.32, "end": 1.5, "token": "TO(3)", "filler": False},
        {"word": "YOU", "start": 1.5, "end": 1.82, "token": "YOU", "filler": False},
    ]
    # The filler is not a transcript word: the text agrees exactly.
    assert mismatch_rate([w.to_json() for w in words], "What happened to you?") == 0.0


@pytest.mark.parametrize("damage, line", [
    (lambda t: t.replace("  100   131    -318112 HAPPENED", "  100   131    HAPPENED"), 6),
    (lambda t: t.replace("  132   149", "  149   132"), 7),
    (lambda t: t.replace(" SFrm  EFrm", " Frm  EFrm"), 1),
    (lambda t: t + "\t  241   250      -1 LATE\r\n", 11),
])
def test_a_malformed_line_is_named_by_file_and_line(damage, line):
    words, problem = parse_wdseg(damage(REAL_FORMAT), "a/u.wdseg")
    assert words is None
    assert (problem.file, problem.line) == ("a/u.wdseg", line) and "malformed word segmentation" in problem.reason


def test_a_file_cut_short_has_no_total_score_line():
    words, problem = parse_wdseg(REAL_FORMAT.rsplit(" Total", 1)[0], "a/u.wdseg")
    assert words is None and problem.line is None and "Total score" in problem.reason


def test_check_words_finds_late_unordered_and_mismatched_words():
    words = [{"word": "HELLO", "start": 0.1, "end": 0.5, "token": "HELLO", "filler": False},
             {"word": "THERE", "start": 0.4, "end": 1.3, "token": "THERE", "filler": False}]
    kinds = [kind for kind, _ in check_words(words, 1.0, "Goodbye there.")]
    assert kinds == ["word-past-utterance-end", "word-timings-unordered", "word-transcript-mismatch"]
    assert check_words(words[:1], 1.0, "hello!") == []
    hyphenated = [{"word": "MM-HMM", "start": 0.1, "end": 0.5, "token": "MM-HMM", "filler": False}]
    assert mismatch_rate(hyphenated, "Mm-hmm. [LAUGHTER]") == 0.0


def test_synthetic_wdseg_files_parse_and_lie_inside_their_utterances(small_corpus):
    root, truth = small_corpus
    aligned = [u for u in truth["utterances"] if u["wdseg"]]
    assert aligned and len(aligned) < len(truth["utterances"])  # a few have none, as in the real release
    for utterance in aligned:
        words, problem = read_wdseg(root / utterance["wdseg"], utterance["wdseg"])
        assert problem is None and words
        as_json = [w.to_json() for w in words]
        assert check_words(as_json, utterance["end"] - utterance["start"], utterance["text"]) == []
        assert mismatch_rate(as_json, utterance["text"]) == 0.0
    text = (root / aligned[0]["wdseg"]).read_text(encoding="utf-8")
    assert text.startswith("\t SFrm  EFrm    SegAScr Word\n") and "<s>" in text and " Total score: " in text
    for utterance in truth["utterances"]:
        if utterance["wdseg"] is None:
            assert utterance["noise_only"]


def copy_release(small_corpus, tmp_path: Path) -> tuple[Path, dict]:
    root, truth = small_corpus
    return Path(shutil.copytree(root.parent, tmp_path / "raw")) / root.name, truth


def test_missing_and_malformed_files_cost_the_words_not_the_utterance(small_corpus, tmp_path):
    root, truth = copy_release(small_corpus, tmp_path)
    missing, malformed = [u for u in truth["utterances"] if u["wdseg"] and u["category"] in SIX_CLASSES][:2]
    (root / missing["wdseg"]).unlink()
    path = root / malformed["wdseg"]
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[2] = "\t   oops"
    path.write_text("\n".join(lines), encoding="utf-8")

    reading = read_iemocap(root)
    by_id = {u.id: u for u in reading.utterances}
    assert len(by_id) == len(truth["utterances"])
    assert by_id[missing["id"]].words is None and by_id[missing["id"]].word_timings == "missing"
    assert by_id[malformed["id"]].words is None and by_id[malformed["id"]].word_timings == "malformed"
    noise_only = sum(u["wdseg"] is None for u in truth["utterances"])
    assert reading.stats["word_timings"] == {"present": len(truth["utterances"]) - noise_only - 2,
                                             "missing": noise_only + 1, "malformed": 1}

    report = validate(root, ValidateOptions(), in_process=True, progress=False)
    found = {(f.kind, f.id): f for f in report.findings}
    assert found[("missing-word-timings", missing["id"])].file == missing["wdseg"]
    bad = found[("malformed-word-timings", malformed["id"])]
    assert (bad.file, bad.line, bad.severity) == (malformed["wdseg"], 3, "warning")

    # Converted all the same, with null words, and counted in the card.
    conversion = convert(root, tmp_path / "shards", split="random:1")
    assert conversion.rejected == 0
    words = {}
    for shard in sorted((tmp_path / "shards").glob("**/*.tar")):
        with tarfile.open(shard) as tar:
            words.update((meta["id"], meta["words"]) for meta in
                         (json.load(tar.extractfile(m)) for m in tar.getmembers() if m.name.endswith(".json")))
    assert len(words) == conversion.card["counts"]["total"] and missing["id"] in words and malformed["id"] in words
    assert words[missing["id"]] is None and words[malformed["id"]] is None
    present = sum(value is not None for value in words.values())
    assert conversion.card["counts"]["word_timings"] == {"present": present, "missing": len(words) - present - 1,
                                                         "malformed": 1}


def test_validate_finds_a_word_past_the_utterance_end(small_corpus, tmp_path):
    root, truth = copy_release(small_corpus, tmp_path)
    utterance = next(u for u in truth["utterances"] if u["wdseg"])
    path = root / utterance["wdseg"]
    frames = int((utterance["end"] - utterance["start"]) * 100)
    lines = path.read_text(encoding="utf-8").split("\n")
    total = lines.index(next(line for line in lines if line.startswith(" Total score")))
    lines.insert(total, f"\t{frames + 5:5d} {frames + 30:5d} {-1000:10d} LATE")
    path.write_text("\n".join(lines), encoding="utf-8")
    report = validate(root, ValidateOptions(), in_process=True, progress=False)
    kinds = {(f.kind, f.id) for f in report.findings}
    assert ("word-past-utterance-end", utterance["id"]) in kinds
    assert ("word-transcript-mismatch", utterance["id"]) not in kinds  # one extra word in many is below it


def test_samples_carry_the_words_and_the_card_counts_them(small_corpus, small_shards):
    _, truth = small_corpus
    out, report = small_shards
    by_id = {u["id"]: u for u in truth["utterances"]}
    metas = []
    for shard in sorted(out.glob("**/*.tar")):
        with tarfile.open(shard) as tar:
            metas += [json.load(tar.extractfile(m)) for m in tar.getmembers() if m.name.endswith(".json")]
    assert metas
    for meta in metas:
        assert schemas.errors("sample", meta) == []
        if by_id[meta["id"]]["wdseg"] is None:
            assert meta["words"] is None
        else:
            assert meta["words"] and meta["words"][-1]["end"] <= meta["duration"] + 0.02
    present = sum(meta["words"] is not None for meta in metas)
    assert report.card["counts"]["word_timings"] == {"present": present, "missing": len(metas) - present,
                                                     "malformed": 0}
    assert schemas.errors("dataset", report.card) == []
    # words is required from schema 1.1 on
    broken = dict(metas[0])
    del broken["words"]
    assert any("words" in error for error in schemas.errors("sample", broken))


def test_shard_audit_finds_a_word_past_the_sample_end():
    meta = {"duration": 1.0, "text": "hello",
            "words": [{"word": "HELLO", "start": 0.2, "end": 1.5, "token": "HELLO", "filler": False}]}
    findings = []
    _check_words(meta, "k", "train/shard-000000.tar", findings)
    assert [(f.kind, f.id, f.file) for f in findings] == [("word-past-utterance-end", "k", "train/shard-000000.tar")]
