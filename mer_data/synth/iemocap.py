"""A synthetic IEMOCAP release: the real layout and file formats, drawn faces and synthetic speech.

    synth_iemocap(Path("raw"))  ->  raw/IEMOCAP_full_release/ and raw/synth_truth.json

Layout (as in the real release, for each dialog `<d>` of session N):
    Session{N}/dialog/avi/DivX/<d>.avi         720x480 (frame_size), 30000/1001 fps, MPEG-4 Part 2 ("DIVX")
    Session{N}/dialog/wav/<d>.wav              16 kHz, 16-bit, stereo
    Session{N}/dialog/transcriptions/<d>.txt   `<id> [SSS.SSSS-EEE.EEEE]: text`
    Session{N}/dialog/EmoEvaluation/<d>.txt    `%` header, tab-separated block heads, annotator lines
    Session{N}/sentences/wav/<d>/<id>.wav      16 kHz mono: the utterance cut from its speaker's channel
    Session{N}/sentences/ForcedAlignment/<d>/<id>.wdseg   Sphinx word segmentation (10 ms frames) from
                                               the synthetic speech's own span; none for noise-only turns

Conventions the converter relies on:
- Sides: the actor named by the session letter (the F of `Ses01F_...`) is on the LEFT half of the
  video, the other actor on the RIGHT. Each half has its own background colour and a constant
  colour patch in its top-left corner (`faces.SIDE_BACKGROUND`, `faces.SIDE_PATCH`, BGR).
- Audio channels: channel 0 (left) carries the left actor's speech, channel 1 the other actor's;
  each also holds low-level noise and a faint cross-talk of the other actor.
- Times: annotation times are on the audio timeline. A dialog's `av_offset` is the number of
  seconds by which its audio is later than its video: what is heard at audio time t is seen at
  video time t - av_offset. The mouth of each face opens with the RMS of its speaker's channel.
- Emotion shows in every modality, with noise: words (text), pitch/energy/rate (voice), mouth
  curvature and brow angle (face), V/A/D ratings; see `emotions.PROFILES`.

Quirks of the real annotation files, all present: the `%` header; multi-label and empty annotator
lines (in the first block of every EmoEvaluation file); codes xxx/oth/sur/fea/dis besides the six
classes; an id-less backchannel (`M: Yeah.`) and an unlabelled `<dialog>_<S>XX0` id with
`[LAUGHTER]` in every transcript; labelled utterances whose text is only a noise tag; CRLF line
ends (transcripts of odd-numbered dialogs, EmoEvaluation files of even-numbered ones, counting
dialogs from 0 in corpus order); a cp1252 byte (an accented word such as "café") in the first
utterance of every even-numbered dialog's transcript; transcript lines of overlapping turns out of
time order (every dialog of 3+ turns has an overlap).

`out/synth_truth.json` (outside the release root), keys:
    corpus ("iemocap"), generator, version, release_root ("IEMOCAP_full_release"),
    options: sessions, dialogs_per_session, utterances_per_dialog, seed, ids_from, frame_size
             [w, h], voice (asked), voice_engine ("espeak" | "synth"), voice_engine_version
             (espeak-ng's, e.g. "1.51"; null for "synth"), av_offsets {dialog: s}
    video: fps (float), fps_fraction ("30000/1001"), width, height, codec ("mpeg4"), fourcc ("DIVX")
    audio: sample_rate (16000), channels (2), channel_of_side {"left": 0, "right": 1}
    sides: {"left"|"right": {"background": [b, g, r], "patch": [b, g, r], "patch_size_fraction": f}}
    dialogs: {name: {session, left_speaker, duration, frames, fps, fps_fraction, samples,
              sample_rate, av_offset, files {video, audio, transcript, labels, sentences} (relative
              to the release root), transcript_crlf, labels_crlf, asides [{kind ("backchannel" |
              "xx"), line}], non_utf8_ids [ids whose transcript line holds a cp1252 byte]}}
    utterances: [{id, dialog, session, speaker, gender, side, channel, start, end, category,
                  vad [v, a, d], text (exactly as decoded), noise_only, av_offset, sentence_wav,
                  wdseg (its path, null where there is none), transcript_line, labels_line}], in
                  dialog order, then time order.

With ids_from="dai2021" the corpus holds exactly the 7,380 utterance ids of the Dai et al. (2021)
split lists (six-class labels drawn by seed) plus one extra utterance per dialog with another code;
utterances are then short (0.3-0.6 s) so that the whole corpus renders in a minute or two at a
tiny frame size. Output is deterministic: the same call gives byte-identical files.

`plan_corpus` gives the dialog scripts (times, labels, texts, cues) without writing anything;
`synth_iemocap` writes the annotations from them and renders the media of each dialog in a
separate process (`render.render_dialog`), seeded per dialog so that the order does not matter.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from importlib import resources
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

import mer_data
from mer_data.shards.layout import SPLITS
from mer_data.synth import faces
from mer_data.synth.emotions import OTHER_CODES, draw_other_code, draw_six_class, draw_style, draw_vad
from mer_data.synth.iemocap_files import write_labels, write_transcript
from mer_data.synth.options import IEMOCAP_DEFAULTS
from mer_data.synth.render import FPS, render_dialog
from mer_data.synth.script import Aside, DialogScript, Turn
from mer_data.synth.text import BACKCHANNELS, NOISE_TAGS, sentence
from mer_data.synth.voice import SAMPLE_RATE, engine_version, resolve_voice

RELEASE_DIR = "IEMOCAP_full_release"
TRUTH_FILE = "synth_truth.json"

# Dialog names for the default corpus, rotated per session so that impro and script names of
# different lengths (`impro05a`, `script01_1b`) all occur.
DIALOG_NAMES = ("impro01", "script01_1b", "impro05a", "script02_2", "impro03", "script01_3", "impro05b", "script03_1")
SWITCH_SPEAKER_PROBABILITY = 0.85
OVERLAP_PROBABILITY = 0.15
NOISE_TURN_PROBABILITY = 0.04
OTHER_CODE_FRACTION = 0.2
ACCENTED_WORDS = ("café", "naïve", "résumé")
_DIALOG_NAME = re.compile(r"^Ses(?P<session>\d+)(?P<letter>[FM])_")


@dataclass(frozen=True)
class Timing:
    """Ranges (seconds) from which a dialog's timeline is drawn."""

    turn: tuple[float, float]
    noise_turn: tuple[float, float]
    gap: tuple[float, float]
    overlap: tuple[float, float]
    lead_in: tuple[float, float]
    tail: tuple[float, float]


FULL_TIMING = Timing(turn=(1.0, 4.0), noise_turn=(0.6, 1.5), gap=(0.15, 0.8), overlap=(0.2, 0.6),
                     lead_in=(1.0, 2.5), tail=(1.0, 2.0))
# ids_from="dai2021": 7,500 short utterances, so that the whole corpus renders quickly.
TINY_TIMING = Timing(turn=(0.3, 0.6), noise_turn=(0.3, 0.6), gap=(0.05, 0.25), overlap=(0.05, 0.12),
                     lead_in=(0.3, 0.6), tail=(0.3, 0.5))


@dataclass(frozen=True)
class Skeleton:
    """A dialog before times and content: who speaks, in which order, under which number."""

    name: str
    session: int
    left_speaker: str
    turns: tuple[tuple[str, int], ...]  # (speaker, number) in speaking order

    def turn_id(self, speaker: str, number: int) -> str:
        return f"{self.name}_{speaker}{number:03d}"


def synth_iemocap(out: Path, *, sessions: Sequence[int] = IEMOCAP_DEFAULTS.sessions,
                  dialogs_per_session: int = IEMOCAP_DEFAULTS.dialogs_per_session,
                  utterances_per_dialog: int = IEMOCAP_DEFAULTS.utterances_per_dialog, seed: int = IEMOCAP_DEFAULTS.seed,
                  ids_from: str | None = None, frame_size: tuple[int, int] = IEMOCAP_DEFAULTS.frame_size,
                  voice: str = IEMOCAP_DEFAULTS.voice,
                  av_offsets: Mapping[str, float] | None = None, progress: bool = False) -> Path:
    """Write a synthetic corpus to out/IEMOCAP_full_release/ and return that root."""
    engine = resolve_voice(voice)
    frame_size = _checked_frame_size(frame_size)
    scripts = plan_corpus(sessions=sessions, dialogs_per_session=dialogs_per_session,
                          utterances_per_dialog=utterances_per_dialog, seed=seed, ids_from=ids_from,
                          av_offsets=av_offsets)
    out = Path(out)
    root = prepare_release_dir(out, RELEASE_DIR)
    lines = _write_annotations(scripts, root, seed)
    media = _render_all(scripts, root, frame_size, engine, progress)
    options = {
        "sessions": sorted({s.session for s in scripts}), "dialogs_per_session": dialogs_per_session,
        "utterances_per_dialog": utterances_per_dialog, "seed": seed, "ids_from": ids_from,
        "frame_size": list(frame_size), "voice": voice, "voice_engine": engine,
        "voice_engine_version": engine_version(engine),
        "av_offsets": {s.name: s.av_offset for s in scripts},
    }
    truth = _truth(scripts, lines, media, options, frame_size)
    (out / TRUTH_FILE).write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return root


def plan_corpus(*, sessions: Sequence[int] = (1, 2, 3, 4, 5), dialogs_per_session: int = 2,
                utterances_per_dialog: int = 24, seed: int = 0, ids_from: str | None = None,
                av_offsets: Mapping[str, float] | None = None) -> list[DialogScript]:
    """The scripts of every dialog, in corpus order, without writing anything (cheap)."""
    rng = np.random.default_rng([seed, _stable_hash("corpus")])
    if ids_from is None:
        skeletons = default_skeletons(_checked_sessions(sessions), dialogs_per_session, utterances_per_dialog, rng)
        codes = _codes_with_minority(skeletons, rng)
        timing = FULL_TIMING
    elif ids_from == "dai2021":
        skeletons, codes = dai2021_skeletons(rng)
        timing = TINY_TIMING
    else:
        raise ValueError(f"ids_from must be None or 'dai2021', got {ids_from!r}")
    offsets = _checked_offsets(av_offsets, [s.name for s in skeletons])
    return [plan_dialog(s, codes, index, seed, offsets[s.name], timing) for index, s in enumerate(skeletons)]


# --------------------------------------------------------------------------------------------
# Checking the options


def _checked_frame_size(frame_size: tuple[int, int]) -> tuple[int, int]:
    width, height = (int(v) for v in frame_size)
    # Each half must have an even width too: the converter encodes the halves separately.
    if width < 32 or height < 24 or width % 4 or height % 2:
        raise ValueError(f"frame_size must be (width, height), width a multiple of 4 >= 32, height even >= 24; "
                         f"got {frame_size}")
    return width, height


def _checked_sessions(sessions: Sequence[int]) -> list[int]:
    chosen = [int(s) for s in sessions]
    if not chosen or len(set(chosen)) != len(chosen) or not all(1 <= s <= 99 for s in chosen):
        raise ValueError(f"sessions must be distinct numbers in 1..99, got {list(sessions)}")
    return chosen


def _checked_offsets(av_offsets: Mapping[str, float] | None, names: list[str]) -> dict[str, float]:
    given = dict(av_offsets or {})
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ValueError(f"av_offsets names dialogs that this corpus does not have: {unknown}; it has {names}")
    return {name: float(given.get(name, 0.0)) for name in names}


def prepare_release_dir(out: Path, release_dir: str) -> Path:
    """The empty folder `out/release_dir`. A previous synthetic corpus (it has a truth file beside
    it) is replaced; anything else is left alone, so that a real release is never overwritten."""
    root = out / release_dir
    if root.exists() and any(root.iterdir()):
        if not (out / TRUTH_FILE).is_file():
            raise FileExistsError(f"{root} exists and is not a synthetic corpus (no {TRUTH_FILE} beside it)")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    return root


# --------------------------------------------------------------------------------------------
# Planning: skeletons (who speaks when), labels, then full scripts


def _stable_hash(text: str) -> int:
    # Python's hash() differs between processes; seeds must not.
    return zlib.crc32(text.encode("utf-8"))


def default_skeletons(sessions: list[int], dialogs_per_session: int, utterances_per_dialog: int,
                      rng: np.random.Generator) -> list[Skeleton]:
    if dialogs_per_session < 1 or utterances_per_dialog < 2:
        raise ValueError("dialogs_per_session must be >= 1 and utterances_per_dialog >= 2")
    skeletons = []
    for session in sessions:
        for index in range(dialogs_per_session):
            letter = "FM"[index % 2]
            name = f"Ses{session:02d}{letter}_{_dialog_kind(session, index)}"
            skeletons.append(Skeleton(name, session, letter, _alternating_turns(utterances_per_dialog, rng)))
    return skeletons


def _dialog_kind(session: int, index: int) -> str:
    if index >= len(DIALOG_NAMES):
        return f"impro{index + 1:02d}"
    return DIALOG_NAMES[(2 * (session - 1) + index) % len(DIALOG_NAMES)]


def _alternating_turns(count: int, rng: np.random.Generator) -> tuple[tuple[str, int], ...]:
    """Speakers mostly take turns; each speaker's utterances are numbered from 000."""
    speaker = "FM"[int(rng.integers(2))]
    numbers = {"F": 0, "M": 0}
    turns = []
    for _ in range(count):
        turns.append((speaker, numbers[speaker]))
        numbers[speaker] += 1
        if rng.random() < SWITCH_SPEAKER_PROBABILITY:
            speaker = "M" if speaker == "F" else "F"
    return tuple(turns)


def _codes_with_minority(skeletons: list[Skeleton], rng: np.random.Generator) -> dict[str, str]:
    """Six-class labels, except for a random fifth of the utterances that get the other codes."""
    ids = [s.turn_id(*turn) for s in skeletons for turn in s.turns]
    count = min(len(ids), max(len(OTHER_CODES), round(OTHER_CODE_FRACTION * len(ids))))
    minority = sorted(rng.permutation(len(ids))[:count].tolist())
    codes = {utt: draw_six_class(rng) for utt in ids}
    codes.update({ids[i]: code for i, code in zip(minority, _other_codes(count, rng))})
    return codes


def _other_codes(count: int, rng: np.random.Generator) -> list[str]:
    """Each other code once (so filtering meets them all), then mostly xxx as in the release."""
    return list(OTHER_CODES[:count]) + [draw_other_code(rng) for _ in range(count - len(OTHER_CODES))]


def dai2021_ids() -> dict[str, list[str]]:
    """The published Dai et al. (2021) IEMOCAP utterance ids, per split."""
    folder = resources.files("mer_data").joinpath("data", "splits", "dai2021", "iemocap")
    return {split: folder.joinpath(f"{split}.txt").read_text(encoding="utf-8").split() for split in SPLITS}


def dai2021_skeletons(rng: np.random.Generator) -> tuple[list[Skeleton], dict[str, str]]:
    """One skeleton per dialog named by the split lists, plus one extra utterance per dialog."""
    turns_of: dict[str, set[tuple[str, int]]] = {}
    for utt in (utt for ids in dai2021_ids().values() for utt in ids):
        dialog, _, turn = utt.rpartition("_")
        turns_of.setdefault(dialog, set()).add((turn[0], int(turn[1:])))
    codes: dict[str, str] = {}
    skeletons, extras = [], []
    for dialog in sorted(turns_of):
        match = _DIALOG_NAME.match(dialog)
        if match is None:
            raise ValueError(f"unexpected dialog name {dialog!r} in the dai2021 split lists")
        listed = turns_of[dialog]
        extra = _unused_turn(listed, rng)
        # Numbers count each speaker's turns in time order, so speaking order follows them.
        order = sorted(listed | {extra}, key=lambda t: (t[1], t[0]))
        skeleton = Skeleton(dialog, int(match["session"]), match["letter"], tuple(order))
        skeletons.append(skeleton)
        codes.update({skeleton.turn_id(*t): draw_six_class(rng) for t in sorted(listed)})
        extras.append(skeleton.turn_id(*extra))
    codes.update(zip(extras, _other_codes(len(extras), rng)))
    return skeletons, codes


def _unused_turn(turns: set[tuple[str, int]], rng: np.random.Generator) -> tuple[str, int]:
    speaker = "FM"[int(rng.integers(2))]
    used = {number for s, number in turns if s == speaker}
    return speaker, min(set(range(len(used) + 1)) - used)


def plan_dialog(skeleton: Skeleton, codes: Mapping[str, str], index: int, seed: int, av_offset: float,
                timing: Timing) -> DialogScript:
    """The full script of dialog number `index` (corpus order): times, labels, texts, styles, quirks."""
    rng = np.random.default_rng([seed, _stable_hash(skeleton.name)])
    speakers = [speaker for speaker, _ in skeleton.turns]
    noise_turns = _noise_turns(len(speakers), rng)
    durations = [rng.uniform(*(timing.noise_turn if i in noise_turns else timing.turn)) for i in range(len(speakers))]
    times = _timeline(speakers, durations, timing, rng)
    accented = ACCENTED_WORDS[(index // 2) % len(ACCENTED_WORDS)] if index % 2 == 0 else None
    turns = []
    for i, ((speaker, number), (start, end)) in enumerate(zip(skeleton.turns, times)):
        turn_id = skeleton.turn_id(speaker, number)
        code = codes[turn_id]
        style = draw_style(code, rng)
        if i in noise_turns:
            text = NOISE_TAGS[int(rng.integers(len(NOISE_TAGS)))]
        else:
            text = sentence(code, _word_count(end - start, style.rate), rng, extra_word=accented if i == 0 else None)
        turns.append(Turn(turn_id, speaker, start, end, text, code, draw_vad(code, rng), style))
    duration = round(max(t.end for t in turns) + rng.uniform(*timing.tail), 4)
    return DialogScript(
        name=skeleton.name, session=skeleton.session, left_speaker=skeleton.left_speaker, turns=tuple(turns),
        asides=_asides(skeleton.name, turns, rng), duration=duration, av_offset=av_offset,
        transcript_crlf=index % 2 == 1, labels_crlf=index % 2 == 0,
        seed=(seed, _stable_hash(skeleton.name), 1),
    )


def _noise_turns(count: int, rng: np.random.Generator) -> set[int]:
    """Turns whose text is only a noise tag: one in every dialog of 3+ turns (never the first,
    which may carry the accented word), and a few more at random."""
    chosen = {i for i in range(1, count) if rng.random() < NOISE_TURN_PROBABILITY}
    if count >= 3:
        chosen.add(1 + int(rng.integers(count - 1)))
    return chosen


def _timeline(speakers: list[str], durations: list[float], timing: Timing,
              rng: np.random.Generator) -> list[tuple[float, float]]:
    """(start, end) per turn: small gaps, and some overlaps where the speaker changes (the first
    change of speaker always overlaps, so that every dialog has one). Same-speaker turns never overlap."""
    changes = [i for i in range(1, len(speakers)) if speakers[i] != speakers[i - 1]]
    forced_overlap = changes[0] if changes and len(speakers) >= 3 else None
    times: list[tuple[float, float]] = []
    last_end = {"F": 0.0, "M": 0.0}
    for i, (speaker, duration) in enumerate(zip(speakers, durations)):
        if i == 0:
            start = rng.uniform(*timing.lead_in)
        elif speaker != speakers[i - 1] and (i == forced_overlap or rng.random() < OVERLAP_PROBABILITY):
            previous_start, previous_end = times[-1]
            overlap = min(rng.uniform(*timing.overlap), 0.4 * (previous_end - previous_start), 0.4 * duration)
            start = previous_end - overlap
        else:
            start = max(last_end.values()) + rng.uniform(*timing.gap)
        start = round(max(start, last_end[speaker] + 0.05), 4)
        end = round(start + duration, 4)
        times.append((start, end))
        last_end[speaker] = end
    return times


def _word_count(seconds: float, syllables_per_second: float) -> int:
    # About 1.4 syllables per English word; leave room for pauses and the lead-in.
    return max(1, round((seconds - 0.12) * syllables_per_second / 1.4 * 0.8))


def _asides(dialog: str, turns: list[Turn], rng: np.random.Generator) -> tuple[Aside, ...]:
    """An id-less backchannel and an unlabelled XX laugh, each after a random turn."""
    after = int(rng.integers(len(turns)))
    speaker = "FM"[int(rng.integers(2))]
    backchannel = Aside("backchannel", f"{speaker}: {BACKCHANNELS[int(rng.integers(len(BACKCHANNELS)))]}", after)
    host = turns[int(rng.integers(len(turns)))]
    laugher = "M" if host.speaker == "F" else "F"
    start = round(host.start + 0.1 * (host.end - host.start), 4)
    end = round(start + 0.5 * (host.end - host.start), 4)
    laugh = Aside("xx", f"{dialog}_{laugher}XX0 [{start:08.4f}-{end:08.4f}]: [LAUGHTER]", turns.index(host))
    return (backchannel, laugh)


# --------------------------------------------------------------------------------------------
# Writing


def dialog_paths(root: Path, script: DialogScript) -> dict[str, Path]:
    session = root / f"Session{script.session}"
    return {
        "video": session / "dialog" / "avi" / "DivX" / f"{script.name}.avi",
        "audio": session / "dialog" / "wav" / f"{script.name}.wav",
        "transcript": session / "dialog" / "transcriptions" / f"{script.name}.txt",
        "labels": session / "dialog" / "EmoEvaluation" / f"{script.name}.txt",
        "sentences": session / "sentences" / "wav" / script.name,
        "alignment": session / "sentences" / "ForcedAlignment" / script.name,
    }


def _write_annotations(scripts: list[DialogScript], root: Path, seed: int) -> dict[str, dict[str, dict[str, int]]]:
    """Write every dialog's annotation files; return {dialog: {"transcript"|"labels": {id: line}}}."""
    lines = {}
    for script in scripts:
        paths = dialog_paths(root, script)
        rng = np.random.default_rng([seed, _stable_hash(script.name), 2])
        lines[script.name] = {
            "transcript": write_transcript(script, paths["transcript"]),
            "labels": write_labels(script, paths["labels"], rng),
        }
    return lines


def _worker_count(jobs: int) -> int:
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(jobs, available))


def _render_all(scripts: list[DialogScript], root: Path, frame_size: tuple[int, int], engine: str,
                progress: bool) -> dict[str, dict]:
    """Render every dialog's media, in parallel processes; the output does not depend on the order."""
    jobs = sorted(scripts, key=lambda s: -s.duration)  # longest first keeps the pool busy to the end
    workers = _worker_count(len(jobs))
    media: dict[str, dict] = {}
    with tqdm(total=len(jobs), desc="synth iemocap", unit="dialog", disable=not progress) as bar:
        if workers == 1:
            for script in jobs:
                media[script.name] = render_dialog(script, dialog_paths(root, script), frame_size, engine)
                bar.update()
            return media
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(render_dialog, s, dialog_paths(root, s), frame_size, engine): s.name for s in jobs}
            for future in as_completed(futures):
                media[futures[future]] = future.result()
                bar.update()
    return media


# --------------------------------------------------------------------------------------------
# The truth file


def _truth(scripts: list[DialogScript], lines: dict, media: dict, options: dict, frame_size: tuple[int, int]) -> dict:
    width, height = frame_size
    return {
        "corpus": "iemocap",
        "generator": __name__,
        "version": mer_data.__version__,
        "release_root": RELEASE_DIR,
        "options": options,
        "video": {"fps": float(FPS), "fps_fraction": f"{FPS.numerator}/{FPS.denominator}", "width": width,
                  "height": height, "codec": "mpeg4", "fourcc": "DIVX"},
        "audio": {"sample_rate": SAMPLE_RATE, "channels": 2, "channel_of_side": {"left": 0, "right": 1}},
        "sides": {side: {"background": list(faces.SIDE_BACKGROUND[side]), "patch": list(faces.SIDE_PATCH[side]),
                         "patch_size_fraction": faces.PATCH_FRACTION} for side in ("left", "right")},
        "dialogs": {s.name: _dialog_truth(s, media[s.name]) for s in scripts},
        "utterances": [_utterance_truth(s, turn, lines[s.name], turn.id in media[s.name]["aligned"])
                       for s in scripts for turn in s.turns],
    }


def _dialog_truth(script: DialogScript, media: dict) -> dict:
    files = dialog_paths(Path(), script)
    return {
        "session": script.session,
        "left_speaker": script.left_speaker,
        "duration": script.duration,
        "frames": media["frames"],
        "fps": float(FPS),
        "fps_fraction": f"{FPS.numerator}/{FPS.denominator}",
        "samples": media["samples"],
        "sample_rate": SAMPLE_RATE,
        "av_offset": script.av_offset,
        "files": {key: path.as_posix() for key, path in files.items()},
        "transcript_crlf": script.transcript_crlf,
        "labels_crlf": script.labels_crlf,
        "asides": [{"kind": a.kind, "line": a.line} for a in script.asides],
        "non_utf8_ids": [t.id for t in script.turns if not t.text.isascii()],
    }


def _utterance_truth(script: DialogScript, turn: Turn, lines: dict, aligned: bool) -> dict:
    session_folder = f"Session{script.session}"
    return {
        "id": turn.id,
        "dialog": script.name,
        "session": script.session,
        "speaker": turn.speaker,
        "gender": turn.speaker,
        "side": script.side_of(turn.speaker),
        "channel": script.channel_of(turn.speaker),
        "start": turn.start,
        "end": turn.end,
        "category": turn.category,
        "vad": list(turn.vad),
        "text": turn.text,
        "noise_only": turn.text in NOISE_TAGS,
        "av_offset": script.av_offset,
        "sentence_wav": f"{session_folder}/sentences/wav/{script.name}/{turn.id}.wav",
        "wdseg": f"{session_folder}/sentences/ForcedAlignment/{script.name}/{turn.id}.wdseg" if aligned else None,
        "transcript_line": lines["transcript"][turn.id],
        "labels_line": lines["labels"][turn.id],
    }
