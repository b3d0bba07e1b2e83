"""IEMOCAP's word timings: the Sphinx forced alignments `sentences/ForcedAlignment/<dialog>/<utt>.wdseg`.

The format (Sphinx-3 `s3align -wdsegdir`), one file per utterance, times in 10 ms frames from the
start of the utterance's sentence WAV (its labelled interval):

    \\t SFrm  EFrm    SegAScr Word
    \\t    0    32    -409713 <s>
    \\t   33    51    -196045 WHAT(2)
    ...
     Total score:    -3386745

A header line, one line per segment (first and last frame, both inclusive, the acoustic score and
the token), and a total-score line. Tokens are upper case; a pronunciation variant carries its
number (`WHAT(2)`). How the tokens are read:
- `<s>`, `</s>`, `<sil>`: silences; dropped;
- `++BREATH++`-style tokens (Sphinx fillers, `++...++`): noise or filler, kept with `filler: true`
  so that a model can use or skip them, and left out of the comparison with the transcript;
- anything else is a word: `word` is the token without its variant marker, `token` the raw token.
A word's start is SFrm * 10 ms, its end (EFrm + 1) * 10 ms.

A file with any line out of this format yields no words at all (a partial alignment would place
the words it keeps wrongly); the Problem names the file and line. Nothing here drops an utterance.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from mer_data.records import Problem

FRAME_S = 0.01
# What became of an utterance's .wdseg file (Utterance.word_timings, the card's counts.word_timings).
WORD_TIMING_STATUSES = ("present", "missing", "malformed")
CONTROL_TOKENS = frozenset({"<s>", "</s>", "<sil>"})
HEADER = ("SFrm", "EFrm", "SegAScr", "Word")
# A word may end this much after the utterance: one frame of Sphinx's rounding and one of ours.
END_TOLERANCE_S = 0.02
# Share of words that may differ between the alignment and the transcript before validate says so.
MISMATCH_THRESHOLD = 0.2

_SEGMENT = re.compile(r"^(?P<start>\d+)\s+(?P<end>\d+)\s+(?P<score>-?\d+)\s+(?P<token>\S+)$")
_TOTAL = re.compile(r"^Total score:\s*-?\d+$")
_VARIANT = re.compile(r"\(\d+\)$")
_FILLER = re.compile(r"^\+\+.*\+\+$")
# Transcript words: letters, digits and inner apostrophes; bracketed noise tags are not words.
_TRANSCRIPT_TAG = re.compile(r"\[[^\]]*\]")
_WORD_CHARS = re.compile(r"[^\w']+")


@dataclass(frozen=True)
class WordTiming:
    """One aligned token: seconds from the utterance start."""

    word: str  # the token without its variant marker: "WHAT"
    start: float
    end: float
    token: str  # as in the file: "WHAT(2)"
    filler: bool  # a `++...++` noise or filler token, not a transcript word

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def wdseg_path(session_dir: str, dialog: str, utterance: str) -> str:
    """Where the release keeps an utterance's word segmentation (relative to the release root)."""
    return f"{session_dir}/sentences/ForcedAlignment/{dialog}/{utterance}.wdseg"


def read_wdseg(path: Path, rel: str) -> tuple[list[WordTiming] | None, Problem | None]:
    """(words, None) from a .wdseg file, or (None, the Problem) where it is out of format."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    return parse_wdseg(text, rel)


def parse_wdseg(text: str, rel: str) -> tuple[list[WordTiming] | None, Problem | None]:
    """(words, None), or (None, a Problem naming `rel` and the first line out of format)."""
    words: list[WordTiming] = []
    header_seen = total_seen = False
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()  # also the CR of CRLF files
        if not line:
            continue
        reason = None
        if total_seen:
            reason = "a line after the 'Total score:' line"
        elif not header_seen:
            header_seen = tuple(line.split()) == HEADER
            reason = None if header_seen else f"expected the header '{' '.join(HEADER)}'"
        elif _TOTAL.match(line):
            total_seen = True
        else:
            reason = _read_segment(line, words)
        if reason:
            return None, Problem(rel, number, f"malformed word segmentation: {reason}: {line[:60]!r}")
    if not total_seen:
        return None, Problem(rel, None, "malformed word segmentation: no 'Total score:' line (cut short?)")
    return words, None


def _read_segment(line: str, words: list[WordTiming]) -> str | None:
    """Append the segment's word (control tokens are dropped); the reason where it is malformed."""
    match = _SEGMENT.match(line)
    if match is None:
        return "expected 'SFrm EFrm SegAScr Word'"
    first, last, token = int(match["start"]), int(match["end"]), match["token"]
    if last < first:
        return f"end frame {last} before start frame {first}"
    if token in CONTROL_TOKENS:
        return None
    word = _VARIANT.sub("", token)
    if not word:
        return f"token {token!r} is only a variant marker"
    words.append(WordTiming(word, round(first * FRAME_S, 2), round((last + 1) * FRAME_S, 2), token,
                            bool(_FILLER.match(word))))
    return None


# --------------------------------------------------------------------------------------------
# Checks, shared by the raw and the shard audit (words as WordTiming or as metadata dicts)


def timing_problems(words: list[dict], duration: float) -> list[tuple[str, str]]:
    """(finding kind, message) for words past the utterance's end and words out of order or overlapping."""
    found = []
    late = [w for w in words if w["end"] > duration + END_TOLERANCE_S or w["start"] < 0]
    if late:
        shown = ", ".join(f"{w['token']} [{w['start']:.2f}, {w['end']:.2f}]" for w in late[:3])
        found.append(("word-past-utterance-end", f"{len(late)} word(s) outside the utterance's "
                      f"{duration:.2f} s (tolerance {END_TOLERANCE_S} s): {shown}"))
    disorder = [(a, b) for a, b in zip(words, words[1:]) if b["start"] < a["end"] - 1e-9]
    disorder += [(w, w) for w in words if w["end"] <= w["start"]]
    if disorder:
        a, b = disorder[0]
        found.append(("word-timings-unordered", f"{len(disorder)} word(s) out of time order, overlapping or empty; "
                      f"first: {a['token']} [{a['start']:.2f}, {a['end']:.2f}] / {b['token']} "
                      f"[{b['start']:.2f}, {b['end']:.2f}]"))
    return found


def transcript_words(text: str) -> list[str]:
    """The transcript's words, upper case, without punctuation and bracketed noise tags."""
    plain = _TRANSCRIPT_TAG.sub(" ", text)
    return [w.strip("'").upper() for w in _WORD_CHARS.sub(" ", plain).split() if w.strip("'")]


def mismatch_rate(words: list[dict], text: str) -> float:
    """Share of words that the alignment and the transcript do not have in common (0: the same
    words in the same order), case and punctuation aside; fillers are not counted."""
    aligned = [part for w in words if not w["filler"] for part in transcript_words(w["word"])]  # the same rules
    said = transcript_words(text)
    longest = max(len(aligned), len(said))
    if longest == 0:
        return 0.0
    matched = sum(block.size for block in SequenceMatcher(None, aligned, said, autojunk=False).get_matching_blocks())
    return (longest - matched) / longest


def check_words(words: list[dict], duration: float, text: str) -> list[tuple[str, str]]:
    """Every (finding kind, message) about one utterance's words."""
    found = timing_problems(words, duration)
    rate = mismatch_rate(words, text)
    if rate > MISMATCH_THRESHOLD:
        found.append(("word-transcript-mismatch", f"{rate:.0%} of the aligned words differ from the transcript's "
                      f"(threshold {MISMATCH_THRESHOLD:.0%})"))
    return found
