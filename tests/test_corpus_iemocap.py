"""The IEMOCAP reader on small hand-written release trees that hold every quirk of the real one."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from mer_data.corpora.iemocap import (
    IEMOCAP_CODES,
    find_iemocap_root,
    parse_emo_evaluation,
    parse_transcription,
    parse_utterance_id,
    read_iemocap,
)

HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n"


def block(utt_id: str, start: str, end: str, code: str, vad: str = "[2.5000, 2.5000, 2.5000]", annotators: tuple[str, ...] = ("C-E2:\tNeutral;\t()",)) -> str:
    """One EmoEvaluation block as the release writes it (tab separated head, annotator lines)."""
    return "\n".join([f"[{start} - {end}]\t{utt_id}\t{code}\t{vad}", *annotators]) + "\n\n"


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def labels_path(release: Path, session: int, dialog: str) -> Path:
    return release / f"Session{session}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt"


def transcript_path(release: Path, session: int, dialog: str) -> Path:
    return release / f"Session{session}" / "dialog" / "transcriptions" / f"{dialog}.txt"


# --------------------------------------------------------------------------------------------
# A release with two dialogs of opposite marker letters, quirks in both files.

IMPRO01_LABELS = HEADER + "\n" + (
    block("Ses01F_impro01_F000", "6.2901", "8.2357", "neu", annotators=(
        "C-E2:\tNeutral;\t()",
        "C-E3:\tNeutral; Frustration;\t(curious, a bit tense)",
        "C-E4:\t;\t()",
        "C-F1:\tOther:mild; Neutral;\t()",
        "A-E3:\tval 3; act 2; dom  2;\t()",
        "A-F1:\tval 2; act 1; dom  1;\t(mildly aggravated)",
    ))
    + block("Ses01F_impro01_M000", "10.0100", "11.3925", "fru", "[1.5000, 3.5000, 3.0000]")
    + block("Ses01F_impro01_F001", "14.8872", "18.0175", "exc")  # transcript line is cp1252
    + block("Ses01F_impro01_M001", "20.0000", "21.5000", "ang")  # transcript line is undecodable
    + block("Ses01F_impro01_F002", "23.0000", "24.0000", "xxx")  # no transcript line at all
    + block("Ses01F_impro01_M002", "25.0000", "26.5000", "sad")  # transcript times are off
)

IMPRO01_TRANSCRIPT = (
    b"Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\n"          # 1
    b"Ses01F_impro01_MXX0 [008.3000-009.0000]: Uh huh.\n"             # 2  XX id: skipped
    b"M: Yeah.\n"                                                     # 3  no id: skipped
    b"\n"                                                             # 4  blank: skipped
    b"Ses01F_impro01_M000 [10.0100-11.3925]: [LAUGHTER]   \n"         # 5  noise tag, trailing spaces
    b"Ses01F_impro01_F001 [014.8872-018.0175]: Un caf\xe9, please.\n"  # 6  cp1252
    b"Ses01F_impro01_M001 [020.0000-021.5000]: bad \x81 byte\n"        # 7  undecodable
    b"Ses01F_impro01_M002 [025.5000-026.5000]: Later.\n"              # 8  times off by 0.5 s
    b"Ses01F_impro01_F099 [030.0000-031.0000]: Nobody labelled me.\n"  # 9  no label block
)

# Marker actor is M here; a CRLF file; dialog names with a letter suffix and a take suffix.
IMPRO05A_LABELS = HEADER + "\n" + block("Ses02M_impro05a_M003", "1.0000", "2.0000", "hap") + block(
    "Ses02M_impro05a_F004", "2.5000", "4.0000", "sur", "[3.0000, 4.0000, 2.5000]"
)
IMPRO05A_TRANSCRIPT = (
    "Ses02M_impro05a_M003 [001.0000-002.0000]: Great news!\n"
    "Ses02M_impro05a_F004 [2.5-4.0]: Really?\n"
)
SCRIPT_LABELS = HEADER + "\n" + block("Ses01F_script01_1b_M012", "3.0000", "5.0000", "neu")
SCRIPT_TRANSCRIPT = "Ses01F_script01_1b_M012 [003.0000-005.0000]: What is it?\n"


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


@pytest.fixture()
def release(tmp_path: Path) -> Path:
    root = tmp_path / "IEMOCAP_full_release"
    write(labels_path(root, 1, "Ses01F_impro01"), IMPRO01_LABELS)
    write(transcript_path(root, 1, "Ses01F_impro01"), IMPRO01_TRANSCRIPT)
    write(labels_path(root, 1, "Ses01F_script01_1b"), SCRIPT_LABELS)
    write(transcript_path(root, 1, "Ses01F_script01_1b"), SCRIPT_TRANSCRIPT)
    write(labels_path(root, 2, "Ses02M_impro05a"), crlf(IMPRO05A_LABELS))
    write(transcript_path(root, 2, "Ses02M_impro05a"), crlf(IMPRO05A_TRANSCRIPT))
    # A macOS resource fork beside a real file must not be read as a dialog.
    write(labels_path(root, 1, "._Ses01F_impro01"), b"\x00\x05\x16\x07binary")
    return root


def by_id(reading) -> dict:
    return {utterance.id: utterance for utterance in reading.utterances}


# --------------------------------------------------------------------------------------------
# Ids


@pytest.mark.parametrize(
    "utt_id, session, marker, dialog, speaker, number",
    [
        ("Ses01F_impro01_F000", 1, "F", "Ses01F_impro01", "F", 0),
        ("Ses01F_impro05a_F000", 1, "F", "Ses01F_impro05a", "F", 0),
        ("Ses01F_script01_1b_M012", 1, "F", "Ses01F_script01_1b", "M", 12),
        ("Ses05M_script02_2_F014", 5, "M", "Ses05M_script02_2", "F", 14),
    ],
)
def test_parse_utterance_id_never_uses_fixed_positions(utt_id, session, marker, dialog, speaker, number):
    parts = parse_utterance_id(utt_id)
    assert (parts.session, parts.marker_gender, parts.dialog, parts.speaker_gender, parts.number) == (
        session, marker, dialog, speaker, number
    )


@pytest.mark.parametrize(
    "utt_id, reason",
    [
        ("Ses01Fimpro01F000", "no '_'"),
        ("Session1_impro01_F000", "is not 'SesNN'"),
        ("Ses01X_impro01_F000", "is not 'SesNN'"),
        ("Ses01F_impro01_MXX0", "is not a speaker letter"),
        ("Ses01F_impro01_F", "is not a speaker letter"),
    ],
)
def test_parse_utterance_id_rejects_with_a_reason(utt_id, reason):
    with pytest.raises(ValueError, match=reason):
        parse_utterance_id(utt_id)


# --------------------------------------------------------------------------------------------
# EmoEvaluation


def test_emo_evaluation_blocks_and_annotator_lines(tmp_path):
    path = write(tmp_path / "Ses01F_impro01.txt", IMPRO01_LABELS)
    blocks, problems = parse_emo_evaluation(path, "labels.txt")
    assert problems == []
    assert [b.utterance for b in blocks] == [
        "Ses01F_impro01_F000", "Ses01F_impro01_M000", "Ses01F_impro01_F001",
        "Ses01F_impro01_M001", "Ses01F_impro01_F002", "Ses01F_impro01_M002",
    ]
    first = blocks[0]
    assert (first.start, first.end, first.category, first.vad, first.line) == (6.2901, 8.2357, "neu", (2.5, 2.5, 2.5), 3)
    # Only C- lines, in file order; an annotator with only ";" gives an empty list; comments dropped.
    assert first.annotator_categories == [["Neutral"], ["Neutral", "Frustration"], [], ["Other:mild", "Neutral"]]
    assert blocks[1].vad == (1.5, 3.5, 3.0)
    assert blocks[1].line == 3 + 8  # head, 6 annotator lines, blank line


def test_emo_evaluation_reads_every_code(tmp_path):
    text = HEADER + "\n" + "".join(
        block(f"Ses03M_impro02_F{i:03d}", f"{i}.0", f"{i}.5", code) for i, code in enumerate(IEMOCAP_CODES)
    )
    blocks, problems = parse_emo_evaluation(write(tmp_path / "Ses03M_impro02.txt", text), "x")
    assert problems == []
    assert [b.category for b in blocks] == list(IEMOCAP_CODES)


def test_emo_evaluation_crlf_reads_like_lf(tmp_path):
    lf = parse_emo_evaluation(write(tmp_path / "lf" / "Ses01F_impro01.txt", IMPRO01_LABELS), "x")
    with_crlf = parse_emo_evaluation(write(tmp_path / "crlf" / "Ses01F_impro01.txt", crlf(IMPRO01_LABELS)), "x")
    assert with_crlf == lf
    assert with_crlf[0][0].annotator_categories[1] == ["Neutral", "Frustration"]


def test_emo_evaluation_tolerates_spaces_instead_of_tabs(tmp_path):
    text = HEADER + "\n[6.2901-8.2357]   Ses01F_impro01_F000  neu   [2.5,2.5,  2.5]\nC-E2:  Sadness;  ()\n"
    blocks, problems = parse_emo_evaluation(write(tmp_path / "Ses01F_impro01.txt", text), "x")
    assert problems == []
    assert (blocks[0].start, blocks[0].end, blocks[0].vad) == (6.2901, 8.2357, (2.5, 2.5, 2.5))
    assert blocks[0].annotator_categories == [["Sadness"]]


MALFORMED_HEADS = [
    # (head line, reason fragment, recovered id)
    ("[6.2901 - abc]\tSes01F_impro01_F001\tneu\t[2.5, 2.5, 2.5]", "bad times", "Ses01F_impro01_F001"),
    ("6.2901 - 8.0\tSes01F_impro01_F002\tneu\t[2.5, 2.5, 2.5]", "does not start with [START - END]", "Ses01F_impro01_F002"),
    ("[9.0 - 8.0]\tSes01F_impro01_F003\tneu\t[2.5, 2.5, 2.5]", "end 8.0 <= start 9.0", "Ses01F_impro01_F003"),
    ("[1.0 - 2.0]\tSes01F_impro01_F004\tneu", "missing fields", "Ses01F_impro01_F004"),
    ("[1.0 - 2.0]\tSes01F_impro01_F005\tjoy\t[2.5, 2.5, 2.5]", "unknown category code 'joy'", "Ses01F_impro01_F005"),
    ("[1.0 - 2.0]\tSes01F_impro01_F006\tneu\t[2.5, 2.5]", "is not 3 numbers", "Ses01F_impro01_F006"),
    ("[1.0 - 2.0]\tSes01F_impro01_F007\tneu\t[2.5, high, 2.5]", "is not 3 numbers", "Ses01F_impro01_F007"),
    ("[1.0 - 2.0]\tSes01F_impro01_MXX8\tneu\t[2.5, 2.5, 2.5]", "is not a speaker letter", "Ses01F_impro01_MXX8"),
    ("[1.0 - 2.0]\tSes02F_impro01_F009\tneu\t[2.5, 2.5, 2.5]", "does not belong to dialog", "Ses02F_impro01_F009"),
    ("[1.0 - 2.0]\t\tneu\t[2.5, 2.5, 2.5]", "missing fields", None),
]


def test_each_malformed_head_is_a_problem_at_its_line_and_nothing_else_is_lost(tmp_path):
    # Good and bad blocks alternate: every good block must survive, with its annotators.
    text, bad_lines, line = HEADER + "\n", [], 3
    for i, (head, _, _) in enumerate(MALFORMED_HEADS):
        good = block(f"Ses01F_impro01_M{i:03d}", f"{100 + i}.0", f"{100 + i}.5", "ang", annotators=("C-E2:\tAnger;\t()", "A-E2:\tval 1; act 4; dom 4;\t()"))
        text += good
        line += 4
        text += head + "\nC-E3:\tNeutral;\t()\nA-E3:\tval 3;\t()\n\n"
        bad_lines.append(line)
        line += 4
    blocks, problems = parse_emo_evaluation(write(tmp_path / "Ses01F_impro01.txt", text), "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt")

    assert [b.utterance for b in blocks] == [f"Ses01F_impro01_M{i:03d}" for i in range(len(MALFORMED_HEADS))]
    assert all(b.annotator_categories == [["Anger"]] for b in blocks)
    assert [p.line for p in problems] == bad_lines
    for problem, (_, reason, utt_id) in zip(problems, MALFORMED_HEADS):
        assert problem.file == "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
        assert reason in problem.reason
        assert problem.utterance == utt_id


def test_duplicate_label_id_is_a_problem_and_the_first_block_wins(tmp_path):
    text = HEADER + "\n" + block("Ses01F_impro01_F000", "1.0", "2.0", "neu") + block("Ses01F_impro01_F000", "3.0", "4.0", "sad")
    blocks, problems = parse_emo_evaluation(write(tmp_path / "Ses01F_impro01.txt", text), "x")
    assert [(b.utterance, b.category) for b in blocks] == [("Ses01F_impro01_F000", "neu")]
    assert [(p.line, p.utterance) for p in problems] == [(6, "Ses01F_impro01_F000")]
    assert "duplicate utterance id (first at line 3)" in problems[0].reason


# --------------------------------------------------------------------------------------------
# Transcriptions


def test_transcription_skips_lines_without_an_utterance_and_keeps_noise_tags(tmp_path):
    skipped = Counter()
    lines, problems = parse_transcription(write(tmp_path / "t.txt", IMPRO01_TRANSCRIPT), "t.txt", skipped)
    assert skipped == Counter({"blank": 1, "no_id": 1, "xx_id": 1})
    texts = {line.utterance: line.text for line in lines}
    assert texts["Ses01F_impro01_F000"] == "Excuse me."
    assert texts["Ses01F_impro01_M000"] == "[LAUGHTER]"
    assert texts["Ses01F_impro01_F001"] == "Un café, please."
    assert [line.line for line in lines] == [1, 5, 6, 8, 9]
    assert (lines[0].start, lines[0].end) == (6.2901, 8.2357)
    assert [line.encoding for line in lines] == ["utf-8", "utf-8", "cp1252", "utf-8", "utf-8"]
    assert len(problems) == 1


def test_transcription_undecodable_line_is_a_problem_with_file_line_and_id(tmp_path):
    _, problems = parse_transcription(write(tmp_path / "t.txt", IMPRO01_TRANSCRIPT), "Session1/dialog/transcriptions/t.txt")
    [problem] = problems
    assert problem.format().startswith("Session1/dialog/transcriptions/t.txt:7: [Ses01F_impro01_M001] undecodable bytes")
    assert "0x81" in problem.reason


def test_transcription_control_bytes_are_undecodable(tmp_path):
    content = (
        b"Ses01F_impro01_F000 [1.0-2.0]: nul\x00here\r\n"
        b"Ses01F_impro01_F001 [3.0-4.0]: fine\r\n"
        b"Ses01F_impro01_MXX2 [5.0-6.0]: \x90\r\n"  # damaged, but an XX turn costs no utterance
    )
    lines, problems = parse_transcription(write(tmp_path / "t.txt", content), "t.txt")
    assert [line.text for line in lines] == ["fine"]
    assert [(p.line, p.utterance) for p in problems] == [(1, "Ses01F_impro01_F000"), (3, None)]
    assert "U+0000" in problems[0].reason


def test_transcription_malformed_and_duplicate_lines_name_their_utterance(tmp_path):
    content = (
        "Ses01F_impro01_F000 [1.0-2.0]: one\n"
        "Ses01F_impro01_F001: no times\n"
        "Ses01F_impro01_F000 [1.0-2.0]: again\n"
    )
    lines, problems = parse_transcription(write(tmp_path / "t.txt", content), "t.txt")
    assert [line.text for line in lines] == ["one"]
    assert [(p.line, p.utterance) for p in problems] == [(2, "Ses01F_impro01_F001"), (3, "Ses01F_impro01_F000")]
    assert "malformed" in problems[0].reason and "duplicate transcript line (first at line 1)" in problems[1].reason


# --------------------------------------------------------------------------------------------
# The whole release


def test_find_iemocap_root_accepts_the_release_or_its_parent(release):
    assert find_iemocap_root(release) == release
    assert find_iemocap_root(release.parent) == release


def test_find_iemocap_root_explains_a_wrong_directory(tmp_path):
    (tmp_path / "something").mkdir()
    with pytest.raises(FileNotFoundError, match="is not an IEMOCAP release"):
        find_iemocap_root(tmp_path)


def test_read_iemocap_dialogs_sorted_and_hidden_files_skipped(release):
    reading = read_iemocap(release.parent)
    assert reading.root == release
    assert [d.name for d in reading.recordings] == ["Ses01F_impro01", "Ses01F_script01_1b", "Ses02M_impro05a"]
    dialog = reading.recordings[2]
    assert (dialog.session, dialog.video, dialog.audio, dialog.transcript, dialog.labels) == (
        2,
        "Session2/dialog/avi/DivX/Ses02M_impro05a.avi",
        "Session2/dialog/wav/Ses02M_impro05a.wav",
        "Session2/dialog/transcriptions/Ses02M_impro05a.txt",
        "Session2/dialog/EmoEvaluation/Ses02M_impro05a.txt",
    )


def test_read_iemocap_utterance_fields(release):
    utterance = by_id(read_iemocap(release))["Ses01F_impro01_F000"]
    assert (utterance.corpus, utterance.recording, utterance.session) == ("iemocap", "Ses01F_impro01", 1)
    assert (utterance.speaker, utterance.gender, utterance.start, utterance.end) == ("Ses01_F", "F", 6.2901, 8.2357)
    assert utterance.text == "Excuse me."
    assert utterance.label == {
        "category": "neu",
        "vad": [2.5, 2.5, 2.5],
        "annotator_categories": [["Neutral"], ["Neutral", "Frustration"], [], ["Other:mild", "Neutral"]],
    }
    assert utterance.sources == {
        "video": "Session1/dialog/avi/DivX/Ses01F_impro01.avi",
        "audio": "Session1/dialog/wav/Ses01F_impro01.wav",
        "transcript": "Session1/dialog/transcriptions/Ses01F_impro01.txt",
        "labels": "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt",
    }
    assert utterance.lines == {"labels": 3, "transcript": 1}
    assert utterance.notes == ()


@pytest.mark.parametrize(
    "utt_id, speaker, region, channel",
    [
        ("Ses01F_impro01_F000", "Ses01_F", "left", 0),   # marker F, speaker F
        ("Ses01F_impro01_M000", "Ses01_M", "right", 1),  # marker F, speaker M
        ("Ses02M_impro05a_M003", "Ses02_M", "left", 0),  # marker M, speaker M
        ("Ses02M_impro05a_F004", "Ses02_F", "right", 1),  # marker M, speaker F
        ("Ses01F_script01_1b_M012", "Ses01_M", "right", 1),
    ],
)
def test_read_iemocap_side_and_channel_follow_the_marker_letter(release, utt_id, speaker, region, channel):
    utterance = by_id(read_iemocap(release))[utt_id]
    assert (utterance.speaker, utterance.gender, utterance.video_region, utterance.audio_channel) == (speaker, speaker[-1], region, channel)


def test_read_iemocap_crlf_dialog(release):
    utterances = by_id(read_iemocap(release))
    assert utterances["Ses02M_impro05a_M003"].text == "Great news!"
    assert utterances["Ses02M_impro05a_F004"].label["vad"] == [3.0, 4.0, 2.5]
    assert utterances["Ses02M_impro05a_F004"].lines == {"labels": 6, "transcript": 2}


def test_read_iemocap_notes(release):
    utterances = by_id(read_iemocap(release))
    assert utterances["Ses01F_impro01_F001"].text == "Un café, please."
    assert utterances["Ses01F_impro01_F001"].notes == ("text_encoding=cp1252",)
    assert "Ses01F_impro01_F002" not in utterances  # no transcript line: rejected, see below
    shifted = utterances["Ses01F_impro01_M002"]
    assert (shifted.start, shifted.end) == (25.0, 26.5)  # label times win
    assert len(shifted.notes) == 1 and "differ from label times" in shifted.notes[0]


def test_read_iemocap_drops_an_utterance_whose_transcript_line_is_undecodable(release):
    reading = read_iemocap(release)
    assert "Ses01F_impro01_M001" not in by_id(reading)
    [problem] = [p for p in reading.problems if p.utterance == "Ses01F_impro01_M001"]
    assert (problem.file, problem.line, problem.utterance) == (
        "Session1/dialog/transcriptions/Ses01F_impro01.txt", 7, "Ses01F_impro01_M001"
    )


def test_read_iemocap_rejects_a_labelled_utterance_without_a_transcript_line(release):
    reading = read_iemocap(release)
    assert "Ses01F_impro01_F002" not in by_id(reading)
    [problem] = [p for p in reading.problems if p.utterance == "Ses01F_impro01_F002"]
    assert (problem.file, problem.line) == ("Session1/dialog/EmoEvaluation/Ses01F_impro01.txt", 20)  # its block head
    assert problem.reason == ("no transcript line in Session1/dialog/transcriptions/Ses01F_impro01.txt: "
                              "the utterance has no text")


@pytest.mark.parametrize("content", [b"", b"% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\r\n\r\n"])
def test_read_iemocap_an_emptied_label_file_is_a_problem_not_a_vanished_dialog(release, content):
    labels = "Session2/dialog/EmoEvaluation/Ses02M_impro05a.txt"
    (release / labels).write_bytes(content)
    reading = read_iemocap(release)
    assert not [u for u in reading.utterances if u.recording == "Ses02M_impro05a"]
    [problem] = [p for p in reading.problems if p.file == labels]
    assert (problem.line, problem.utterance) == (None, None)
    assert problem.reason.startswith("no label block: the file is empty or holds only its header")


def test_read_iemocap_stats(release):
    stats = read_iemocap(release).stats
    assert stats["dialogs"] == 3
    assert stats["utterances"] == 7  # the undecodable line's and the one without a transcript line are rejected
    assert stats["categories"] == {
        "neu": 2, "hap": 1, "sad": 1, "ang": 0, "exc": 1, "fru": 1, "sur": 1, "fea": 0, "dis": 0, "oth": 0, "xxx": 0
    }
    assert stats["six_class_utterances"] == 6
    assert stats["transcript_lines_skipped"] == {"blank": 1, "no_id": 1, "xx_id": 1}
    assert stats["transcript_ids_without_labels"] == 1
    assert stats["transcript_ids_without_labels_examples"] == ["Ses01F_impro01_F099"]
    assert stats["labelled_without_transcript_line"] == 1
    assert stats["transcript_time_mismatches"] == 1
    assert stats["text_encoding_cp1252"] == 1
    assert stats["dropped_for_transcript_problems"] == 1
    assert stats["problems"] == 2


def test_read_iemocap_missing_transcript_file_rejects_each_of_its_utterances(release):
    transcript_path(release, 2, "Ses02M_impro05a").unlink()
    reading = read_iemocap(release)
    assert not [u for u in reading.utterances if u.recording == "Ses02M_impro05a"]
    assert reading.stats["transcript_files_missing"] == 1
    rejected = [p for p in reading.problems if p.file == "Session2/dialog/EmoEvaluation/Ses02M_impro05a.txt"]
    assert {p.utterance for p in rejected} >= {"Ses02M_impro05a_M003", "Ses02M_impro05a_F004"}
    assert all(p.reason == "no transcript file Session2/dialog/transcriptions/Ses02M_impro05a.txt: the utterance "
               "has no text" and p.line is not None for p in rejected)
