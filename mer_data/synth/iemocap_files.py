"""The annotation files of a synthetic IEMOCAP dialog, with the quirks of the real release.

EmoEvaluation: a `%` header, then blank-line separated blocks whose head is tab separated
(`[START - END]`, id, code, `[V, A, D]`), followed by annotator lines: categorical (`C-E2:`) with
one or several labels, empty ones (`C-F1:\t;\t()`), comments, and attribute lines (`A-E3:`).
Transcriptions: `<id> [SSS.SSSS-EEE.EEEE]: text`, plus id-less backchannels and `XX` ids; the
lines of overlapping turns are written out of time order; cp1252 bytes appear where the text has
accented letters (the whole file is cp1252, which is plain ASCII elsewhere).
Word segmentations (`sentences/ForcedAlignment/<dialog>/<id>.wdseg`): Sphinx's format (see
`corpora.wdseg`), `<s>` over the lead-in silence, the words, `</s>` over the rest; a few common
words with a pronunciation variant marker (`THE(2)`).
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from mer_data.corpora.iemocap import SIX_CLASSES
from mer_data.corpora.wdseg import transcript_words
from mer_data.synth.emotions import PROFILES
from mer_data.synth.script import DialogScript, Turn

LABELS_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"
TRANSCRIPT_ENCODING = "cp1252"
EVALUATORS = ("E1", "E2", "E3", "E4", "E5", "E6")
EVALUATORS_PER_DIALOG = 3
COMMENTS = ("slightly annoyed", "curious", "mildly aggravated but staying polite, attitude", "tired", "sarcastic")
SIX_CLASS_NAMES = tuple(PROFILES[code].evaluator_name for code in SIX_CLASSES)


def transcript_line(turn: Turn) -> str:
    return f"{turn.id} [{turn.start:08.4f}-{turn.end:08.4f}]: {turn.text}"


def write_transcript(script: DialogScript, path: Path) -> dict[str, int]:
    """Write the transcription file; return each turn's 1-based line number."""
    asides_after: dict[int, list[str]] = {}
    for aside in script.asides:
        asides_after.setdefault(aside.after, []).append(aside.line)
    lines: list[str] = []
    line_of: dict[str, int] = {}
    for index in _transcript_order(script.turns):
        turn = script.turns[index]
        lines.append(transcript_line(turn))
        line_of[turn.id] = len(lines)
        lines.extend(asides_after.get(index, []))
    _write_lines(path, lines, script.transcript_crlf, TRANSCRIPT_ENCODING)
    return line_of


def _transcript_order(turns: tuple[Turn, ...]) -> list[int]:
    """Time order, except that of two overlapping turns the later-starting one comes first."""
    order = list(range(len(turns)))
    i = 0
    while i + 1 < len(order):
        if turns[i + 1].start < turns[i].end:
            order[i], order[i + 1] = order[i + 1], order[i]
            i += 2  # a turn moves at most one place
        else:
            i += 1
    return order


def write_labels(script: DialogScript, path: Path, rng: np.random.Generator) -> dict[str, int]:
    """Write the EmoEvaluation file; return the 1-based line of each turn's block head.

    The first block always holds a multi-label and an empty annotator line, so that every file
    exercises both.
    """
    evaluators = sorted(rng.choice(EVALUATORS, size=EVALUATORS_PER_DIALOG, replace=False).tolist())
    lines = [LABELS_HEADER, ""]
    line_of: dict[str, int] = {}
    for index, turn in enumerate(script.turns):
        line_of[turn.id] = len(lines) + 1
        lines.append(_block_head(turn))
        lines.extend(_annotator_lines(turn, evaluators, rng, show_quirks=index == 0))
        lines.append("")
    _write_lines(path, lines, script.labels_crlf, "ascii")
    return line_of


def _block_head(turn: Turn) -> str:
    vad = ", ".join(f"{v:.4f}" for v in turn.vad)
    return f"[{turn.start:.4f} - {turn.end:.4f}]\t{turn.id}\t{turn.category}\t[{vad}]"


def _annotator_lines(turn: Turn, evaluators: list[str], rng: np.random.Generator, show_quirks: bool) -> list[str]:
    self_rater = f"{turn.speaker}1"
    names = _evaluator_categories(turn.category, len(evaluators), rng)
    lines = []
    for i, (evaluator, name) in enumerate(zip(evaluators, names)):
        categories = [name]
        if (show_quirks and i == 1) or rng.random() < 0.2:
            categories.append(_other_name(name, rng))  # annotators may give several labels
        lines.append(f"C-{evaluator}:\t{''.join(c + '; ' for c in categories).rstrip()}\t({_comment(rng)})")
    if show_quirks or rng.random() < 0.3:
        lines.append(f"C-{self_rater}:\t;\t()")  # the actor left the self-evaluation empty
    else:
        lines.append(f"C-{self_rater}:\t{names[0]};\t()")
    for rater in [*evaluators, self_rater]:
        val, act, dom = (int(np.clip(round(v + rng.normal(0, 0.5)), 1, 5)) for v in turn.vad)
        lines.append(f"A-{rater}:\tval {val}; act {act}; dom  {dom};\t({_comment(rng)})")
    return lines


def _evaluator_categories(code: str, count: int, rng: np.random.Generator) -> list[str]:
    """What each evaluator said: the class for a majority; for xxx, no two agree."""
    if code == "xxx":
        return rng.choice(SIX_CLASS_NAMES, size=count, replace=False).tolist()
    names = [PROFILES[code].evaluator_name] * count
    names[int(rng.integers(count))] = SIX_CLASS_NAMES[int(rng.integers(len(SIX_CLASS_NAMES)))]
    return names


def _other_name(name: str, rng: np.random.Generator) -> str:
    choices = [n for n in SIX_CLASS_NAMES if n != name]
    return choices[int(rng.integers(len(choices)))]


def _comment(rng: np.random.Generator) -> str:
    return COMMENTS[int(rng.integers(len(COMMENTS)))] if rng.random() < 0.15 else ""


def _write_lines(path: Path, lines: list[str], crlf: bool, encoding: str) -> None:
    newline = "\r\n" if crlf else "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + newline for line in lines).encode(encoding))


# --------------------------------------------------------------------------------------------
# Word segmentations

SAMPLES_PER_FRAME = 160  # 10 ms at 16 kHz
# Words Sphinx's dictionary (cmudict) knows under a second pronunciation, written as variants.
VARIANT_WORDS = frozenset({"THE", "A", "TO", "WHAT", "AND", "YOU", "THAT", "FOR", "ARE", "WITH"})


def wdseg_text(text: str, span: tuple[int, int], n_samples: int) -> str | None:
    """The .wdseg file of an utterance whose speech fills samples [first, last) of its n_samples.

    The synthesizer gives the speech's span, not each word's: the span is shared among the words
    in proportion to their letters (a steady speaking rate). None where the text has no words (a
    noise-only turn) or the span has fewer frames than words: no alignment, as for a few real ones.
    """
    words = transcript_words(text)
    first, last = span[0] // SAMPLES_PER_FRAME, -(-span[1] // SAMPLES_PER_FRAME) - 1
    n_frames = n_samples // SAMPLES_PER_FRAME
    last = min(last, n_frames - 1)
    if not words or last - first + 1 < len(words):
        return None
    weights = np.cumsum([len(word) for word in words]) / sum(len(word) for word in words)
    ends = [first + int(round(w * (last - first + 1))) - 1 for w in weights]
    for i in range(len(ends)):  # every word at least one frame, the last one ending with the speech
        ends[i] = max(ends[i], (ends[i - 1] if i else first - 1) + 1)
    ends = [min(end, last - (len(ends) - 1 - i)) for i, end in enumerate(ends)]
    segments = [(0, first - 1, "<s>")] if first > 0 else []
    starts = [first] + [end + 1 for end in ends[:-1]]
    segments += [(start, end, _variant(word)) for start, end, word in zip(starts, ends, words)]
    if last < n_frames - 1:
        segments.append((last + 1, n_frames - 1, "</s>"))
    lines = [f"\t{'SFrm':>5} {'EFrm':>5} {'SegAScr':>10} Word"]
    total = 0
    for start, end, token in segments:
        score = _acoustic_score(start, end, token)
        total += score
        lines.append(f"\t{start:5d} {end:5d} {score:10d} {token}")
    lines.append(f" Total score: {total:11d}")
    return "".join(line + "\n" for line in lines)


def _variant(word: str) -> str:
    return f"{word}(2)" if word in VARIANT_WORDS else word


def _acoustic_score(start: int, end: int, token: str) -> int:
    """A negative log-likelihood-like score, deterministic: about -9000 per frame."""
    return -((end - start + 1) * 9000 + zlib.crc32(f"{token}{start}".encode()) % 4000)
