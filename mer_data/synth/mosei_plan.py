"""Planning a synthetic CMU-MOSEI release: which videos, their segments, labels and quirks.

Three kinds of corpus:
- the default: `videos` videos with generated YouTube-like ids. The first five have roles that
  put every quirk of the real release in (see ROLES); the rest are ordinary videos of the
  DEFAULT_FORMATS in turn;
- `ids_from="dai2021"`: the 3,001 videos and 20,477 utterance ids of the Dai et al. (2021)
  split lists, every listed clip labelled, tiny media;
- `ids_from="sdk"`: the 3,227 video ids of the SDK's standard folds, one to three labelled clips
  each (none for the last two ids of the test fold: the real folds also hold two test videos
  without labels), plus two labelled videos that are in no fold; tiny media.
Only quirks that change no outcome (time precision, trailing spaces, blank lines, path prefixes,
empty MTurk rows) appear in the --ids-from corpora, so that their split counts are exact.

Each video is planned from its own generator (seed and video id), so that planning order does
not matter and a subset (`videos=N` with ids_from) plans its videos as the full corpus does.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from mer_data.corpora.splits import SPLITS, load_dai2021_lists, load_mosei_std_folds
from mer_data.synth.emotions import draw_style
from mer_data.synth.mosei_files import LabelsOnlyVideo
from mer_data.synth.mosei_labels import STYLE_CODE, draw_dominant, draw_ratings
from mer_data.synth.mosei_script import OrphanLabel, SegmentScript, VideoFormat, VideoScript
from mer_data.synth.options import MOSEI_DEFAULTS
from mer_data.synth.text import sentence
from mer_data.synth.voice import SAMPLE_RATE

IDS_FROM = ("dai2021", "sdk")
DEFAULT_VIDEOS = MOSEI_DEFAULTS.videos
DEFAULT_FORMATS = (VideoFormat(640, 360, Fraction(30)), VideoFormat(1280, 720, Fraction(30000, 1001)),
                   VideoFormat(480, 360, Fraction(25)), VideoFormat(854, 480, Fraction(24)))
LONG_FORMAT = VideoFormat(480, 360, Fraction(25))
TINY_FORMAT = VideoFormat(96, 54, Fraction(5))
# The long video repeats a rendered unit of about this length (750 frames at 25 fps).
LONG_UNIT_SECONDS = 30
LONG_UNIT_SEGMENTS = 5

# What the first videos of the default corpus are there to show (index -> role).
ROLES = ("transcript_quirks", "no_wav_and_black", "long", "past_end_and_partial_labels", "no_video_stream")
SEGMENTS_PER_VIDEO = (5, 8)
SEPARATOR_TEXT = " ___ "
NEGATIVE_START = -0.04
CSD_JITTER_S = 0.004
SDK_EXTRA_VIDEOS = 2
SDK_UNLABELLED_TEST_VIDEOS = 2
YOUTUBE_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@dataclass(frozen=True)
class Timing:
    """Ranges (seconds) from which a video's timeline is drawn."""

    segment: tuple[float, float]
    gap: tuple[float, float]
    overlap: tuple[float, float]
    lead_in: tuple[float, float]
    tail: tuple[float, float]


FULL_TIMING = Timing(segment=(1.5, 4.0), gap=(0.2, 1.0), overlap=(0.1, 0.3), lead_in=(0.5, 1.5), tail=(0.8, 1.5))
TINY_TIMING = Timing(segment=(0.3, 0.6), gap=(0.05, 0.2), overlap=(0.05, 0.1), lead_in=(0.2, 0.4), tail=(0.2, 0.4))


@dataclass(frozen=True)
class ReleasePlan:
    scripts: list[VideoScript]
    labels_only: list[LabelsOnlyVideo]
    roles: dict[str, str]  # video id -> role, for the default corpus's role videos


def plan_release(*, videos: int | None = None, seed: int = 0, ids_from: str | None = None,
                 long_video_minutes: float = 10.0, long_video_format: VideoFormat = LONG_FORMAT) -> ReleasePlan:
    """The scripts of every video, without writing anything (cheap). `long_video_format`: the
    size and rate of the default corpus's long video (the benchmarks ask for 1280x720)."""
    if videos is not None and videos < 1:
        raise ValueError(f"videos must be at least 1, not {videos}")
    if ids_from is None:
        if long_video_minutes < 0 or not math.isfinite(long_video_minutes):
            raise ValueError(f"long_video_minutes must be a number >= 0, not {long_video_minutes}")
        return _default_release(videos or DEFAULT_VIDEOS, seed, long_video_minutes, long_video_format)
    if ids_from == "dai2021":
        return _dai2021_release(videos, seed)
    if ids_from == "sdk":
        return _sdk_release(videos, seed)
    raise ValueError(f"ids_from must be None or one of {', '.join(IDS_FROM)}, not {ids_from!r}")


def stable_hash(text: str) -> int:
    # Python's hash() differs between processes; seeds must not.
    return zlib.crc32(text.encode("utf-8"))


def _rng(seed: int, *names: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(stable_hash(name) for name in names)])


# --------------------------------------------------------------------------------------------
# The default corpus


def _default_release(count: int, seed: int, long_minutes: float, long_format: VideoFormat) -> ReleasePlan:
    ids = youtube_ids(count, _rng(seed, "video ids"))
    roles = {video_id: ROLES[index] for index, video_id in enumerate(ids[:len(ROLES)])}
    if not long_minutes:
        roles = {video_id: role for video_id, role in roles.items() if role != "long"}
    scripts = [_default_video(index, video_id, roles.get(video_id), seed, long_minutes, long_format)
               for index, video_id in enumerate(ids)]
    labels_only = [_labels_only_video(ids, seed)]
    return ReleasePlan(scripts, labels_only, roles)


def youtube_ids(count: int, rng: np.random.Generator) -> list[str]:
    """Distinct 11-character ids; the first starts with "-", the second with "_" (never "__")."""
    ids: list[str] = []
    while len(ids) < count:
        chars = [YOUTUBE_ID_CHARS[i] for i in rng.integers(len(YOUTUBE_ID_CHARS), size=11)]
        if len(ids) < 2:
            chars[0] = "-_"[len(ids)]
        elif chars[0] in "-_":
            chars[0] = "Q"
        if chars[1] == "_":
            chars[1] = "x"
        video_id = "".join(chars)
        if video_id not in ids:
            ids.append(video_id)
    return ids


def _default_video(index: int, video_id: str, role: str | None, seed: int, long_minutes: float,
                   long_format: VideoFormat) -> VideoScript:
    rng = _rng(seed, video_id)
    if role == "long":
        return _long_video(video_id, seed, long_minutes, long_format, rng)
    count = int(rng.integers(SEGMENTS_PER_VIDEO[0], SEGMENTS_PER_VIDEO[1] + 1))
    # Random overlaps elsewhere; none beside the black segments, whose clips must be all black or not.
    random_overlaps = {i for i in range(1, count) if rng.random() < 0.1}
    overlaps = {"transcript_quirks": {2}, "no_wav_and_black": set()}.get(role, random_overlaps)
    times = _timeline(count, FULL_TIMING, rng, overlaps)
    if role == "transcript_quirks":
        times[0] = (NEGATIVE_START, times[0][1])
    video = None if role == "no_video_stream" else DEFAULT_FORMATS[index % len(DEFAULT_FORMATS)]
    duration = _media_duration(times[-1][1] + rng.uniform(*FULL_TIMING.tail), video)
    if role == "past_end_and_partial_labels":
        times += [(round(times[-1][1] + 0.2, 4), round(duration + 1.5, 4)),  # runs past the end
                  (round(duration + 2.0, 4), round(duration + 4.0, 4))]  # starts past the end
    time_style = "mixed" if role == "transcript_quirks" else ("ms", "short", "eleven")[int(rng.integers(3))]
    segments = [_segment(clip, start, end, _time_style(time_style, clip), rng, labelled=True)
                for clip, (start, end) in enumerate(times)]
    segments = _apply_role(role, segments, rng)
    line_order = list(range(len(segments)))
    if role == "transcript_quirks":
        line_order = [2, 0, 3, 1, *line_order[4:]][::-1]
    return VideoScript(
        video_id=video_id, speaker="FM"[int(rng.integers(2))], background=("left", "right")[int(rng.integers(2))],
        format=video, duration=duration, unit_duration=duration, repeats=1, segments=tuple(segments),
        line_order=tuple(line_order), blank_lines_after=_blank_lines(role, len(segments), rng),
        crlf=role == "past_end_and_partial_labels", has_wav=role != "no_wav_and_black", tiny=False,
        mturk_video_id=_mturk_id(video_id, role), mturk_batch=index % 2, orphan_labels=_orphans(role, segments, rng),
        seed=(seed, stable_hash(video_id), 1),
    )


# Per role, the segment (by index; -1 is the last) that carries each quirk.
_ROLE_SEGMENTS = {
    "transcript_quirks": {"trailing_3": 0, "separator": 1, "trailing_1": 3, "unlabelled": -1},
    "no_wav_and_black": {"unlabelled": 1, "black_full": 2, "black_second_half": 3},
    "past_end_and_partial_labels": {"unlabelled": 0, "mturk_only": 1, "csd_only": 2},
}


def _apply_role(role: str | None, segments: list[SegmentScript], rng: np.random.Generator) -> list[SegmentScript]:
    """The role's quirks on the planned segments; every video has one unlabelled segment."""
    where = dict(_ROLE_SEGMENTS.get(role, {}))
    where.setdefault("unlabelled", 1 + int(rng.integers(len(segments) - 1)) if len(segments) > 1 else 0)
    changes = {
        "unlabelled": dict(ratings=(), in_csd=False, in_mturk=False, csd_interval=None),
        "trailing_3": dict(trailing_spaces=3),
        "trailing_1": dict(trailing_spaces=1),
        "black_full": dict(black="full"),
        "black_second_half": dict(black="second_half"),
        "mturk_only": dict(in_csd=False, csd_interval=None),
        "csd_only": dict(in_mturk=False),
    }
    segments = list(segments)
    for quirk, index in where.items():
        segment = segments[index]
        if quirk == "separator":
            words = segment.text.split(" ")
            segments[index] = replace(segment, text=words[0] + SEPARATOR_TEXT + " ".join(words[1:] or ["right"]))
        else:
            segments[index] = replace(segment, **changes[quirk])
    return segments


def _blank_lines(role: str | None, count: int, rng: np.random.Generator) -> tuple[int, ...]:
    if role == "transcript_quirks":
        return (2, count)  # one inside, one at the end
    return (count,) if rng.random() < 0.3 else ()


def _mturk_id(video_id: str, role: str | None) -> str:
    if role == "transcript_quirks":
        return f"videos/{video_id}.mp4"
    if role == "past_end_and_partial_labels":
        return f"C:\\MOSEI\\Videos\\{video_id}.mp4"
    return video_id


def _orphans(role: str | None, segments: list[SegmentScript], rng: np.random.Generator) -> tuple[OrphanLabel, ...]:
    """Role "transcript_quirks": a .csd interval and MTurk rows of a clip that match no segment."""
    if role != "transcript_quirks":
        return ()
    last_end = max(s.end for s in segments)
    interval = (round(last_end + 30.0, 4), round(last_end + 33.0, 4))
    clip = max(s.clip for s in segments) + 50
    return (OrphanLabel(None, interval, draw_ratings(draw_dominant(rng), rng)),
            OrphanLabel(clip, None, draw_ratings(draw_dominant(rng), rng)))


def _labels_only_video(ids: list[str], seed: int) -> LabelsOnlyVideo:
    """Labels (both forms) of a video the release has neither transcript nor media for."""
    rng = _rng(seed, "labels without a video")
    # The first two generated ids start with "-" and "_": skip them, and any id the corpus has.
    video_id = next(v for v in youtube_ids(len(ids) + 3, _rng(seed, "orphan id"))[2:] if v not in ids)
    labels = tuple(OrphanLabel(clip, (round(1.0 + 3 * clip, 4), round(3.5 + 3 * clip, 4)),
                               draw_ratings(draw_dominant(rng), rng)) for clip in range(2))
    return LabelsOnlyVideo(video_id, labels)


def long_unit_seconds(video: VideoFormat) -> Fraction:
    """About LONG_UNIT_SECONDS, in whole frames that are also whole audio samples (at 30000/1001
    fps, 15 frames are 8,008 samples): the unit repeats without drifting."""
    step = (Fraction(SAMPLE_RATE) / video.fps).denominator
    return Fraction(math.ceil(LONG_UNIT_SECONDS * video.fps / step) * step) / video.fps


def _long_video(video_id: str, seed: int, minutes: float, video: VideoFormat, rng: np.random.Generator) -> VideoScript:
    """A unit of about LONG_UNIT_SECONDS repeated to at least `minutes`; labels on the first and the
    last repetition (the transcript covers every repetition, like MOSEI's partly labelled ones)."""
    unit_seconds = long_unit_seconds(video)
    repeats = max(1, math.ceil(Fraction(round(minutes * 60 * 1000), 1000) / unit_seconds))
    times = _timeline(LONG_UNIT_SEGMENTS, FULL_TIMING, rng, set())
    time_style = ("ms", "short")[int(rng.integers(2))]
    unit = [_segment(clip, start, end, time_style, rng, labelled=True) for clip, (start, end) in enumerate(times)]
    segments = []
    for repeat in range(repeats):
        labelled = repeat in (0, repeats - 1)
        for segment in unit:
            shift = float(repeat * unit_seconds)
            segments.append(_shifted(segment, repeat * len(unit) + segment.clip, shift, labelled, time_style, rng))
    return VideoScript(
        video_id=video_id, speaker="FM"[int(rng.integers(2))], background=("left", "right")[int(rng.integers(2))],
        format=video, duration=float(repeats * unit_seconds), unit_duration=float(unit_seconds),
        repeats=repeats, segments=tuple(segments), line_order=tuple(range(len(segments))), blank_lines_after=(),
        crlf=False, has_wav=True, tiny=False, mturk_video_id=video_id, mturk_batch=0, orphan_labels=(),
        seed=(seed, stable_hash(video_id), 1),
    )


def _shifted(segment: SegmentScript, clip: int, shift: float, labelled: bool, time_style: str,
             rng: np.random.Generator) -> SegmentScript:
    start, end = round(segment.start + shift, 4), round(segment.end + shift, 4)
    start_text, end_text = _time_text(start, time_style, rng), _time_text(end, time_style, rng)
    start, end = float(start_text), float(end_text)
    if not labelled:
        return replace(segment, clip=clip, start=start, end=end, start_text=start_text, end_text=end_text,
                       ratings=(), in_csd=False, in_mturk=False, csd_interval=None)
    return replace(segment, clip=clip, start=start, end=end, start_text=start_text, end_text=end_text,
                   csd_interval=_csd_interval(start, end, rng))


# --------------------------------------------------------------------------------------------
# Segments, times and their spelling


def _timeline(count: int, timing: Timing, rng: np.random.Generator, overlaps: set[int]) -> list[tuple[float, float]]:
    """(start, end) per segment, in clip order: gaps, and an overlap with the previous segment for
    the indices in `overlaps` (MOSEI's segment boundaries do overlap)."""
    times: list[tuple[float, float]] = []
    for index in range(count):
        if index == 0:
            start = rng.uniform(*timing.lead_in)
        elif index in overlaps:
            start = times[-1][1] - rng.uniform(*timing.overlap)
        else:
            start = times[-1][1] + rng.uniform(*timing.gap)
        start = round(start, 4)
        times.append((start, round(start + rng.uniform(*timing.segment), 4)))
    return times


def _media_duration(seconds: float, video: VideoFormat | None) -> float:
    """A duration of whole frames (the video and the audio end together) or, without video, of
    whole milliseconds."""
    if video is None:
        return round(seconds, 3)
    return float(Fraction(math.ceil(Fraction(seconds) * video.fps)) / video.fps)


def _time_style(style: str, clip: int) -> str:
    """"mixed" spells the times of consecutive clips in each of the styles in turn."""
    return ("eleven", "ms", "short")[clip % 3] if style == "mixed" else style


def _time_text(seconds: float, style: str, rng: np.random.Generator) -> str:
    """A time as the release spells it: "12.345", "12.3456" or "12.34561234567" (11 decimals,
    with digits beyond the planned 4)."""
    if style == "ms":
        return f"{seconds:.3f}"
    if style == "eleven":
        return f"{seconds + (rng.uniform(0, 1e-4) if seconds > 0 else 0.0):.11f}"
    return repr(seconds)


def _csd_interval(start: float, end: float, rng: np.random.Generator) -> tuple[float, float]:
    """The interval the .csd stores for a segment: its times off by a few milliseconds (the
    SDK's own rounding), a negative start kept negative."""
    jitter = rng.uniform(-CSD_JITTER_S, CSD_JITTER_S, size=2)
    csd_start = start if start < 0 else round(max(0.0, start + float(jitter[0])), 6)
    return csd_start, round(end + float(jitter[1]), 6)


def _segment(clip: int, start: float, end: float, time_style: str, rng: np.random.Generator, *,
             labelled: bool) -> SegmentScript:
    start_text, end_text = _time_text(start, time_style, rng), _time_text(end, time_style, rng)
    start, end = float(start_text), float(end_text)
    dominant = draw_dominant(rng)
    code = STYLE_CODE[dominant]
    style = draw_style(code, rng)
    text = sentence(code, _word_count(end - max(start, 0.0), style.rate), rng)
    ratings = draw_ratings(dominant, rng) if labelled else ()
    return SegmentScript(clip=clip, start=start, end=end, start_text=start_text, end_text=end_text, text=text,
                         trailing_spaces=0, style_code=code, dominant=dominant, style=style, ratings=ratings,
                         in_csd=labelled, in_mturk=labelled,
                         csd_interval=_csd_interval(start, end, rng) if labelled else None)


def _word_count(seconds: float, syllables_per_second: float) -> int:
    # About 1.4 syllables per English word; leave room for pauses and the lead-in.
    return max(1, round((seconds - 0.12) * syllables_per_second / 1.4 * 0.8))


# --------------------------------------------------------------------------------------------
# The --ids-from corpora


def _dai2021_release(videos: int | None, seed: int) -> ReleasePlan:
    split_of = load_dai2021_lists("mosei")
    clips_of: dict[str, list[int]] = {}
    split_of_video: dict[str, str] = {}
    for utt_id, split in split_of.items():
        video_id, _, clip = utt_id.rpartition("_")
        clips_of.setdefault(video_id, []).append(int(clip))
        split_of_video[video_id] = split
    chosen = choose_videos(split_of_video, videos, _rng(seed, "dai2021 videos"))
    scripts = [_listed_video(video_id, sorted(clips_of[video_id]), seed, labelled=True) for video_id in chosen]
    return ReleasePlan(scripts, [], {})


def _sdk_release(videos: int | None, seed: int) -> ReleasePlan:
    fold_of = load_mosei_std_folds()
    test_ids = [video_id for video_id, fold in fold_of.items() if fold == "test"]
    unlabelled = set(test_ids[-SDK_UNLABELLED_TEST_VIDEOS:])
    chosen = choose_videos(fold_of, videos, _rng(seed, "sdk videos"))
    extras = [v for v in youtube_ids(len(fold_of) + SDK_EXTRA_VIDEOS + 2, _rng(seed, "unfolded ids"))[2:]
              if v not in fold_of][:SDK_EXTRA_VIDEOS]
    scripts = []
    for video_id in sorted(chosen + extras):
        clips = list(range(1 + stable_hash(video_id) % 3))
        scripts.append(_listed_video(video_id, clips, seed, labelled=video_id not in unlabelled))
    return ReleasePlan(scripts, [], {})


def choose_videos(group_of: dict[str, str], count: int | None, rng: np.random.Generator) -> list[str]:
    """Every video (count None), or `count` of them taken from the splits in turn (train, valid,
    test, train, ...), each split's videos in a seeded order; sorted by id."""
    if count is None:
        return sorted(group_of)
    queues = {split: sorted(v for v, group in group_of.items() if group == split) for split in SPLITS}
    queues = {split: [ids[i] for i in rng.permutation(len(ids))] for split, ids in queues.items()}
    chosen: list[str] = []
    while len(chosen) < count and any(queues.values()):
        for split in SPLITS:
            if queues[split] and len(chosen) < count:
                chosen.append(queues[split].pop())
    return sorted(chosen)


def _listed_video(video_id: str, clips: list[int], seed: int, *, labelled: bool) -> VideoScript:
    """A tiny video whose transcript holds `clips` in order; harmless quirks only."""
    rng = _rng(seed, video_id)
    extra_clip = labelled and rng.random() < 0.1  # an unlabelled segment after the listed ones
    times = _timeline(len(clips) + extra_clip, TINY_TIMING, rng, set())
    time_style = ("ms", "short", "eleven")[int(rng.integers(3))]
    numbers = clips + [max(clips) + 1] * extra_clip
    segments = [_segment(clip, start, end, time_style, rng, labelled=labelled and index < len(clips))
                for index, (clip, (start, end)) in enumerate(zip(numbers, times))]
    segments = [replace(s, trailing_spaces=1) if rng.random() < 0.1 else s for s in segments]
    duration = _media_duration(times[-1][1] + rng.uniform(*TINY_TIMING.tail), TINY_FORMAT)
    return VideoScript(
        video_id=video_id, speaker="FM"[int(rng.integers(2))], background=("left", "right")[int(rng.integers(2))],
        format=TINY_FORMAT, duration=duration, unit_duration=duration, repeats=1, segments=tuple(segments),
        line_order=tuple(s.clip for s in segments), blank_lines_after=(len(segments),) if rng.random() < 0.1 else (),
        crlf=False, has_wav=True, tiny=True,
        mturk_video_id=f"videos/{video_id}.mp4" if rng.random() < 0.1 else video_id,
        mturk_batch=stable_hash(video_id) % 2, orphan_labels=(), seed=(seed, stable_hash(video_id), 1),
    )
