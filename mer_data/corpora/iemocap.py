"""Reader for the IEMOCAP release (`IEMOCAP_full_release/`): annotations in, `Utterance` records out.

The reader only reads text files (EmoEvaluation labels and transcriptions). Media files are not
opened here, not even checked for existence: the media stage reports missing media per utterance.

Policy on damaged input, so that nothing vanishes silently:
- a malformed EmoEvaluation block head costs that utterance only (a `Problem` naming file, line,
  reason and, where it can be read off the line, the utterance id); the rest of the file is read;
- a transcript line that is damaged (undecodable bytes, malformed, duplicated) costs the utterance
  it names: the utterance is dropped and the `Problem` carries its id, for the error log;
- a labelled utterance with no transcript line (or whose dialog has no transcription file) is
  rejected with a `Problem` naming the label line: an utterance without its text is not trained on
  silently (`mer validate` calls it an error, `label-without-transcript` / `missing-file`);
- an EmoEvaluation file without a single block head (emptied, or only its `%` header) is a
  `Problem` naming the file: its dialog does not vanish without a word;
- an utterance's word timings (`sentences/ForcedAlignment/<dialog>/<id>.wdseg`, see `wdseg`) that
  are missing or malformed cost its words only (`Utterance.words` None, `word_timings` says why,
  a note names file and line), never the utterance: `mer validate` reports them as warnings.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mer_data.corpora.wdseg import WORD_TIMING_STATUSES, read_wdseg, wdseg_path
from mer_data.records import CorpusReading, Problem, Utterance

CORPUS = "iemocap"
RELEASE_DIR_NAME = "IEMOCAP_full_release"

IEMOCAP_CODES = ("neu", "hap", "sad", "ang", "exc", "fru", "sur", "fea", "dis", "oth", "xxx")
SIX_CLASSES = ("ang", "exc", "fru", "hap", "neu", "sad")

# A transcript line may disagree with its label block by rounding; beyond this it gets a note.
TIME_TOLERANCE_S = 0.01
EXAMPLES_IN_STATS = 10
# The start of the reasons below: raw validation maps them to finding kinds.
NO_LABEL_BLOCK = "no label block"
NO_TRANSCRIPT = "no transcript"

# Bytes that cp1252 leaves undefined: a line holding one (and not valid UTF-8) cannot be read.
CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")

_NUMBER = r"\d+(?:\.\d*)?|\.\d+"
_DIALOG_NAME = re.compile(r"^Ses(?P<session>\d{2})(?P<marker>[MF])_\S+$")
_TURN = re.compile(r"^(?P<gender>[MF])(?P<number>\d+)$")
# Anything that looks like an utterance id, to name the utterance a damaged line costs.
_ID_LIKE = re.compile(r"Ses\d{2}[A-Za-z]_[A-Za-z0-9_]+")
_ID_LIKE_BYTES = re.compile(rb"^\s*(Ses\d{2}[A-Za-z]_[A-Za-z0-9_]+)")

# EmoEvaluation block head: "[START - END]<ws>ID<ws>CODE<ws>[V, A, D]", read in steps so that a
# malformed head gets a precise reason.
_HEAD_TIMES = re.compile(r"^\[(?P<times>[^\]]*)\]\s*(?P<rest>.*)$")
_TIME_RANGE = re.compile(rf"^\s*(?P<start>{_NUMBER})\s*-\s*(?P<end>{_NUMBER})\s*$")
_HEAD_FIELDS = re.compile(r"^(?P<id>\S+)\s+(?P<code>\S+)\s+\[(?P<vad>[^\]]*)\]$")
_ANNOTATOR = re.compile(r"^(?P<kind>[CA])-(?P<annotator>[A-Za-z0-9]*):(?P<body>.*)$")

_TRANSCRIPT = re.compile(
    rf"^(?P<id>\S+)\s*\[\s*(?P<start>{_NUMBER})\s*-\s*(?P<end>{_NUMBER})\s*\]\s*:\s?(?P<text>.*)$"
)


@dataclass(frozen=True)
class UtteranceIdParts:
    """The pieces of an IEMOCAP utterance id such as `Ses01F_script01_1b_M012`."""

    session: int  # 1
    marker_gender: str  # "F": the actor wearing the markers, who sits on the video's left
    dialog: str  # "Ses01F_script01_1b": everything before the last "_"
    speaker_gender: str  # "M": the letter before the final number
    number: int  # 12


@dataclass
class LabelBlock:
    """One EmoEvaluation block: the head line's fields and the annotators' categorical labels.

    `annotator_categories` has one list per `C-` line, in file order (an empty list where the
    annotator gave none); it fills up as the block's annotator lines are read.
    """

    utterance: str
    start: float
    end: float
    category: str
    vad: tuple[float, float, float]
    line: int  # 1-based line of the block head
    annotator_categories: list[list[str]] = field(default_factory=list)


@dataclass(frozen=True)
class TranscriptLine:
    """One transcription line that carries an utterance id."""

    utterance: str
    start: float
    end: float
    text: str
    line: int  # 1-based
    encoding: str = "utf-8"  # "cp1252" where the line was not valid UTF-8


@dataclass
class IemocapDialog:
    """One dialog of the release and where its files are (relative to the release root, POSIX)."""

    name: str
    session: int
    video: str
    audio: str
    transcript: str
    labels: str
    session_dir: str = ""  # the Session folder as found on disk ("Session1")

    def wdseg(self, utterance: str) -> str:
        """The utterance's word segmentation file (ForcedAlignment), relative to the release root."""
        return wdseg_path(self.session_dir, self.name, utterance)


# --------------------------------------------------------------------------------------------
# Ids and the release layout


def parse_utterance_id(utt_id: str) -> UtteranceIdParts:
    """Split an utterance id into its parts; ValueError with the reason if it is not one.

    Never by fixed positions: dialog names vary in length (`impro05a`, `script01_1b`).
    """
    dialog, sep, turn = utt_id.rpartition("_")
    if not sep or not dialog:
        raise ValueError(f"utterance id {utt_id!r} has no '_' between dialog and turn")
    dialog_match = _DIALOG_NAME.match(dialog)
    if dialog_match is None:
        raise ValueError(f"utterance id {utt_id!r}: dialog {dialog!r} is not 'SesNN' + M/F + '_' + name")
    turn_match = _TURN.match(turn)
    if turn_match is None:
        raise ValueError(f"utterance id {utt_id!r}: turn {turn!r} is not a speaker letter M/F and digits")
    return UtteranceIdParts(
        session=int(dialog_match["session"]),
        marker_gender=dialog_match["marker"],
        dialog=dialog,
        speaker_gender=turn_match["gender"],
        number=int(turn_match["number"]),
    )


def _looks_like_release(path: Path) -> bool:
    return any((session / "dialog" / "EmoEvaluation").is_dir() for session in path.glob("Session*"))


def find_iemocap_root(path: Path) -> Path:
    """The release directory: `path` itself, or the one release directory right inside it."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a directory (expected the IEMOCAP release)")
    if _looks_like_release(path):
        return path
    preferred = path / RELEASE_DIR_NAME
    if preferred.is_dir() and _looks_like_release(preferred):
        return preferred
    inside = sorted(child for child in path.iterdir() if child.is_dir() and _looks_like_release(child))
    if len(inside) == 1:
        return inside[0]
    if len(inside) > 1:
        names = ", ".join(child.name for child in inside)
        raise FileNotFoundError(f"{path} holds several IEMOCAP releases ({names}); name one of them")
    raise FileNotFoundError(
        f"{path} is not an IEMOCAP release: expected Session1..Session5/dialog/EmoEvaluation/ in it "
        f"or in {path / RELEASE_DIR_NAME}"
    )


def _is_visible_file(path: Path) -> bool:
    # "._name" files are macOS resource forks that archives of the release often carry.
    return path.is_file() and not path.name.startswith(".")


def discover_dialogs(root: Path) -> tuple[list[IemocapDialog], list[Problem]]:
    """Every dialog that has an EmoEvaluation file, sorted by path, with its files' paths."""
    dialogs: list[IemocapDialog] = []
    problems: list[Problem] = []
    for labels_path in sorted(root.glob("Session*/dialog/EmoEvaluation/*.txt")):
        if not _is_visible_file(labels_path):
            continue
        rel_labels = labels_path.relative_to(root).as_posix()
        name = labels_path.stem
        name_match = _DIALOG_NAME.match(name)
        if name_match is None:
            problems.append(Problem(rel_labels, None, f"file name {name!r} is not a dialog name (SesNN[MF]_...)"))
            continue
        # The session directory as found on disk, so that the media paths are the real ones.
        session_dir = labels_path.relative_to(root).parts[0]
        dialogs.append(
            IemocapDialog(
                name=name,
                session=int(name_match["session"]),
                video=f"{session_dir}/dialog/avi/DivX/{name}.avi",
                audio=f"{session_dir}/dialog/wav/{name}.wav",
                transcript=f"{session_dir}/dialog/transcriptions/{name}.txt",
                labels=rel_labels,
                session_dir=session_dir,
            )
        )
    return dialogs, problems


# --------------------------------------------------------------------------------------------
# Text decoding


def _read_raw_lines(path: Path) -> list[bytes]:
    """The file's lines as bytes, without line ends (LF or CRLF) and trailing whitespace."""
    raws = path.read_bytes().split(b"\n")
    if raws[-1] == b"":
        raws.pop()  # what follows the final line end is not a line
    return [raw.rstrip() for raw in raws]


def _control_chars(text: str) -> list[str]:
    return [ch for ch in text if unicodedata.category(ch) == "Cc" and ch != "\t"]


class UndecodableLine(ValueError):
    """A line that is not text in UTF-8 or cp1252; the message says which bytes."""


def _decode_line(raw: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8, else cp1252; UndecodableLine where neither gives clean text.

    cp1252 leaves 0x81 0x8D 0x8F 0x90 0x9D undefined; control characters (NUL, ...) are never text.
    """
    for encoding in ("utf-8", "cp1252"):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        controls = _control_chars(text)
        if controls:
            shown = " ".join(sorted({f"U+{ord(ch):04X}" for ch in controls}))
            raise UndecodableLine(f"undecodable bytes: control characters ({shown}) in the line")
        return text, encoding
    undefined = sorted({f"0x{b:02X}" for b in raw if b in CP1252_UNDEFINED})
    raise UndecodableLine(f"undecodable bytes ({' '.join(undefined)}): neither UTF-8 nor cp1252 text")


def _lenient_text(raw: bytes) -> str:
    """Text of a label-file line; labels are ASCII in the release, so damage shows up as parse errors."""
    try:
        return _decode_line(raw)[0]
    except UndecodableLine:
        return raw.decode("cp1252", errors="replace")


# --------------------------------------------------------------------------------------------
# EmoEvaluation


def _parse_categories(body: str) -> list[str]:
    """`\\tNeutral; Frustration;\\t(comment)` -> ["Neutral", "Frustration"]; empty labels dropped."""
    labels_part = body.split("(", 1)[0]  # the comment, in parentheses, follows the labels
    return [label.strip() for label in labels_part.split(";") if label.strip()]


def _parse_head(text: str, dialog: str, number: int) -> LabelBlock | str:
    """The block head on line `number` as a LabelBlock, or the reason it is malformed."""
    times_match = _HEAD_TIMES.match(text)
    if times_match is None:
        return "block head does not start with [START - END]"
    range_match = _TIME_RANGE.match(times_match["times"])
    if range_match is None:
        return f"bad times [{times_match['times']}]: expected [START - END] in seconds"
    start, end = float(range_match["start"]), float(range_match["end"])
    if end <= start:
        return f"end {end} <= start {start}"
    fields_match = _HEAD_FIELDS.match(times_match["rest"])
    if fields_match is None:
        return "missing fields: expected utterance id, category code and [V, A, D] after the times"
    utt_id, code = fields_match["id"], fields_match["code"]
    try:
        parts = parse_utterance_id(utt_id)
    except ValueError as error:
        return str(error)
    if parts.dialog != dialog:
        return f"utterance {utt_id} does not belong to dialog {dialog}"
    if code not in IEMOCAP_CODES:
        return f"unknown category code {code!r} (expected one of {', '.join(IEMOCAP_CODES)})"
    vad = _parse_vad(fields_match["vad"])
    if vad is None:
        return f"V/A/D [{fields_match['vad']}] is not 3 numbers"
    return LabelBlock(utterance=utt_id, start=start, end=end, category=code, vad=vad, line=number)


def _parse_vad(text: str) -> tuple[float, float, float] | None:
    values = [value.strip() for value in text.split(",")]
    if len(values) != 3 or not all(re.fullmatch(_NUMBER, value) for value in values):
        return None
    v, a, d = (float(value) for value in values)
    return v, a, d


def parse_emo_evaluation(path: Path, rel: str) -> tuple[list[LabelBlock], list[Problem]]:
    """Read one EmoEvaluation file; `rel` is its path as named in problems.

    Any non-blank line that is neither the `%` header nor an annotator line (`C-..:`, `A-..:`) is
    taken as a block head, so that a damaged head is reported rather than silently skipped.
    """
    dialog = Path(path).stem
    blocks: list[LabelBlock] = []
    problems: list[Problem] = []
    first_line_of: dict[str, int] = {}
    current: LabelBlock | None = None
    in_rejected_block = False
    heads = 0  # block heads seen, well-formed or not

    for number, raw in enumerate(_read_raw_lines(Path(path)), start=1):
        text = _lenient_text(raw).strip()
        if not text:
            current, in_rejected_block = None, False
            continue
        if text.startswith("%"):
            continue
        annotator = _ANNOTATOR.match(text)
        if annotator is not None:
            if current is not None:
                if annotator["kind"] == "C":
                    current.annotator_categories.append(_parse_categories(annotator["body"]))
            elif not in_rejected_block:
                problems.append(Problem(rel, number, "annotator line outside a block (ignored)"))
            continue

        heads += 1
        head = _parse_head(text, dialog, number)
        if isinstance(head, str):
            recovered = _ID_LIKE.search(text)
            problems.append(Problem(rel, number, head, recovered.group(0) if recovered else None))
            current, in_rejected_block = None, True
            continue
        if head.utterance in first_line_of:
            reason = f"duplicate utterance id (first at line {first_line_of[head.utterance]}); ignored"
            problems.append(Problem(rel, number, reason, head.utterance))
            current, in_rejected_block = None, True
            continue
        first_line_of[head.utterance] = number
        current, in_rejected_block = head, False
        blocks.append(current)
    if not heads:
        problems.append(Problem(rel, None, f"{NO_LABEL_BLOCK}: the file is empty or holds only its header; no "
                                f"utterance of dialog {dialog} is converted"))
    return blocks, problems


# --------------------------------------------------------------------------------------------
# Transcriptions


def _classify_transcript_text(text: str) -> str:
    """Why a decoded line without the `<id> [S-E]:` form is skipped, or "malformed"."""
    if not text:
        return "blank"
    if _ID_LIKE.match(text) is None:
        return "no_id"  # e.g. "M: Yeah.": speech outside any labelled turn
    return "xx_id" if _is_xx_id(text.split()[0]) else "malformed"


def _is_xx_id(utt_id: str) -> bool:
    # "XX" turns (e.g. Ses01F_impro01_MXX0) have neither label nor audio: never an utterance.
    return "XX" in utt_id


def parse_transcription(
    path: Path, rel: str, skipped: Counter | None = None
) -> tuple[list[TranscriptLine], list[Problem]]:
    """Read one transcription file; `rel` is its path as named in problems.

    Blank lines, lines without an id (`M: Yeah.`) and `XX` ids are skipped without a Problem;
    pass a Counter as `skipped` to have them counted by kind ("blank", "no_id", "xx_id").
    Each line is decoded on its own: UTF-8, else cp1252 (recorded in `encoding`).
    """
    skipped = Counter() if skipped is None else skipped
    lines: list[TranscriptLine] = []
    problems: list[Problem] = []
    first_line_of: dict[str, int] = {}

    for number, raw in enumerate(_read_raw_lines(Path(path)), start=1):
        try:
            text, encoding = _decode_line(raw)
        except UndecodableLine as error:
            problems.append(_undecodable_line_problem(raw, rel, number, reason=str(error)))
            continue
        match = _TRANSCRIPT.match(text)
        if match is None or _is_xx_id(match["id"]):
            kind = _classify_transcript_text(text.strip())
            if kind == "malformed":
                reason = "malformed transcript line: expected '<id> [START-END]: text'"
                problems.append(Problem(rel, number, reason, _ID_LIKE.match(text.strip()).group(0)))
            else:
                skipped[kind] += 1
            continue
        utt_id = match["id"]
        if utt_id in first_line_of:
            reason = f"duplicate transcript line (first at line {first_line_of[utt_id]})"
            problems.append(Problem(rel, number, reason, utt_id))
            continue
        first_line_of[utt_id] = number
        start, end = float(match["start"]), float(match["end"])
        lines.append(TranscriptLine(utt_id, start, end, match["text"].strip(), number, encoding))
    return lines, problems


def _undecodable_line_problem(raw: bytes, rel: str, number: int, reason: str) -> Problem:
    """The Problem for a line that is not text; it names the utterance its ASCII prefix names."""
    id_match = _ID_LIKE_BYTES.match(raw)
    utt_id = id_match.group(1).decode("ascii") if id_match else None
    return Problem(rel, number, reason, None if utt_id is None or _is_xx_id(utt_id) else utt_id)


# --------------------------------------------------------------------------------------------
# Joining labels and transcripts into utterances


def _utterance_from(block: LabelBlock, line: TranscriptLine, dialog: IemocapDialog, notes: list[str]) -> Utterance:
    parts = parse_utterance_id(block.utterance)
    # The marker-wearing actor (the letter after SesNN) sits on the left half of the video and is
    # the first channel of the dialog's stereo audio.
    is_left = parts.speaker_gender == parts.marker_gender
    return Utterance(
        id=block.utterance,
        corpus=CORPUS,
        recording=dialog.name,
        speaker=f"Ses{parts.session:02d}_{parts.speaker_gender}",
        gender=parts.speaker_gender,
        start=block.start,
        end=block.end,
        label={
            "category": block.category,
            "vad": [float(value) for value in block.vad],
            "annotator_categories": [list(labels) for labels in block.annotator_categories],
        },
        text=line.text,
        video_region="left" if is_left else "right",
        audio_channel=0 if is_left else 1,
        sources={"video": dialog.video, "audio": dialog.audio, "transcript": dialog.transcript, "labels": dialog.labels},
        lines={"labels": block.line, "transcript": line.line},
        session=parts.session,
        notes=tuple(notes),
    )


def _time_note(block: LabelBlock, line: TranscriptLine) -> str | None:
    difference = max(abs(block.start - line.start), abs(block.end - line.end))
    if difference <= TIME_TOLERANCE_S:
        return None
    return (
        f"transcript times [{line.start:.4f}-{line.end:.4f}] differ from label times "
        f"[{block.start:.4f}-{block.end:.4f}] by {difference:.4f} s; label times used"
    )


class _Tally:
    """The counters behind `CorpusReading.stats`."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.skipped_lines: Counter = Counter()
        self.unlabelled_examples: list[str] = []

    def unlabelled(self, utt_ids: list[str]) -> None:
        self.counts["transcript_ids_without_labels"] += len(utt_ids)
        room = max(0, EXAMPLES_IN_STATS - len(self.unlabelled_examples))
        self.unlabelled_examples.extend(utt_ids[:room])


def _notes(block: LabelBlock, line: TranscriptLine, tally: _Tally) -> list[str]:
    """What a user of the utterance should know about how its text was found."""
    notes = []
    if line.encoding != "utf-8":
        notes.append(f"text_encoding={line.encoding}")
        tally.counts["text_encoding_cp1252"] += 1
    time_note = _time_note(block, line)
    if time_note is not None:
        notes.append(time_note)
        tally.counts["transcript_time_mismatches"] += 1
    return notes


def _read_dialog(root: Path, dialog: IemocapDialog, tally: _Tally) -> tuple[list[Utterance], list[Problem]]:
    blocks, problems = parse_emo_evaluation(root / dialog.labels, dialog.labels)
    transcript_path = root / dialog.transcript
    if transcript_path.is_file():
        lines, transcript_problems = parse_transcription(transcript_path, dialog.transcript, tally.skipped_lines)
        missing = f"{NO_TRANSCRIPT} line in {dialog.transcript}"
    else:
        lines, transcript_problems = [], []
        missing = f"{NO_TRANSCRIPT} file {dialog.transcript}"
        tally.counts["transcript_files_missing"] += 1
    problems += transcript_problems
    line_of = {line.utterance: line for line in lines}
    damaged = {problem.utterance for problem in transcript_problems if problem.utterance}

    utterances = []
    for block in blocks:
        if block.utterance in damaged:
            tally.counts["dropped_for_transcript_problems"] += 1
            continue
        line = line_of.get(block.utterance)
        if line is None:  # no text: rejected, not converted with an empty one
            tally.counts["labelled_without_transcript_line"] += 1
            problems.append(Problem(dialog.labels, block.line, f"{missing}: the utterance has no text",
                                    block.utterance))
            continue
        utterance = _utterance_from(block, line, dialog, _notes(block, line, tally))
        utterances.append(_with_words(utterance, root, dialog, tally))

    labelled = {block.utterance for block in blocks}
    tally.unlabelled([line.utterance for line in lines if line.utterance not in labelled])
    return utterances, problems


def _with_words(utterance: Utterance, root: Path, dialog: IemocapDialog, tally: _Tally) -> Utterance:
    """The utterance with its word timings; a missing or malformed .wdseg leaves them None and a note
    (validate reports it): an utterance is never lost for its alignment."""
    rel = dialog.wdseg(utterance.id)
    words, problem, status = read_word_timings(root, rel)
    tally.counts[f"word_timings_{status}"] += 1
    notes = utterance.notes + ((f"word_timings: {problem.format()}",) if problem else ())
    return replace(utterance, words=None if words is None else tuple(words), word_timings=status, notes=notes)


def read_word_timings(root: Path, rel: str) -> tuple[list | None, Problem | None, str]:
    """(words, problem, status) of one .wdseg file; status "present", "missing" or "malformed"."""
    path = root / rel
    if not path.is_file():
        return None, None, "missing"
    try:
        words, problem = read_wdseg(path, rel)
    except OSError as error:
        return None, Problem(rel, None, f"cannot read: {error.strerror or error}"), "malformed"
    return words, problem, "malformed" if problem else "present"


def _drop_cross_file_duplicates(utterances: list[Utterance]) -> tuple[list[Utterance], list[Problem]]:
    """Ids must be unique (they become shard keys); the first in path order is kept.

    Heads are checked against their file's dialog, so this only fires when one dialog's file sits
    under two session directories (a copied Session folder, say).
    """
    kept: dict[str, Utterance] = {}
    problems = []
    for utterance in utterances:
        first = kept.get(utterance.id)
        if first is None:
            kept[utterance.id] = utterance
            continue
        reason = f"duplicate utterance id (first in {first.sources['labels']}:{first.lines['labels']}); ignored"
        problems.append(Problem(utterance.sources["labels"], utterance.lines["labels"], reason, utterance.id))
    return list(kept.values()), problems


def _stats(dialogs: list[IemocapDialog], utterances: list[Utterance], problems: list[Problem], tally: _Tally) -> dict[str, Any]:
    categories = Counter(utterance.label["category"] for utterance in utterances)
    return {
        "dialogs": len(dialogs),
        "utterances": len(utterances),
        "categories": {code: categories[code] for code in IEMOCAP_CODES},
        "six_class_utterances": sum(categories[code] for code in SIX_CLASSES),
        "sessions": dict(sorted(Counter(utterance.session for utterance in utterances).items())),
        "transcript_lines_skipped": {kind: tally.skipped_lines[kind] for kind in ("blank", "no_id", "xx_id")},
        "transcript_ids_without_labels": tally.counts["transcript_ids_without_labels"],
        "transcript_ids_without_labels_examples": list(tally.unlabelled_examples),
        "labelled_without_transcript_line": tally.counts["labelled_without_transcript_line"],
        "transcript_files_missing": tally.counts["transcript_files_missing"],
        "transcript_time_mismatches": tally.counts["transcript_time_mismatches"],
        "text_encoding_cp1252": tally.counts["text_encoding_cp1252"],
        "dropped_for_transcript_problems": tally.counts["dropped_for_transcript_problems"],
        "word_timings": {status: tally.counts[f"word_timings_{status}"] for status in WORD_TIMING_STATUSES},
        "problems": len(problems),
    }


def read_iemocap(root: Path) -> CorpusReading:
    """Read the whole release (or a directory holding it) into utterances, problems and stats."""
    root = find_iemocap_root(Path(root))
    dialogs, problems = discover_dialogs(root)
    tally = _Tally()
    utterances: list[Utterance] = []
    for dialog in dialogs:
        dialog_utterances, dialog_problems = _read_dialog(root, dialog, tally)
        utterances += dialog_utterances
        problems += dialog_problems
    utterances, duplicate_problems = _drop_cross_file_duplicates(utterances)
    problems += duplicate_problems
    return CorpusReading(utterances, problems, dialogs, _stats(dialogs, utterances, problems, tally), root)
