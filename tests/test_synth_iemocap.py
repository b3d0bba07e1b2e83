"""The synthetic IEMOCAP release: layout, media formats, determinism, faces, sync and annotation quirks."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from mer_data.media.faces import detect_face
from mer_data.synth import faces, render
from mer_data.corpora.iemocap import SIX_CLASSES
from mer_data.synth.emotions import OTHER_CODES, draw_style
from mer_data.synth.iemocap import (
    FULL_TIMING,
    RELEASE_DIR,
    TRUTH_FILE,
    dai2021_ids,
    plan_corpus,
    synth_iemocap,
)
from mer_data.synth.text import NOISE_TAGS
from mer_data.synth.voice import SAMPLE_RATE, espeak_available, speak
from tests.conftest import on_one_cpu

FPS = 30000 / 1001
MAX_LAG = 15  # frames searched either way when measuring A/V sync
OFFSET_DIALOG = "Ses01M_script01_1b"
OFFSET_S = 0.2
SMALL = dict(sessions=(1,), dialogs_per_session=2, utterances_per_dialog=8, av_offsets={OFFSET_DIALOG: OFFSET_S})
HEAD = re.compile(r"^\[(\d+\.\d{4}) - (\d+\.\d{4})\]\t(\S+)\t(\w+)\t\[(\d\.\d{4}), (\d\.\d{4}), (\d\.\d{4})\]$")
TRANSCRIPT = re.compile(r"^(\S+) \[(\d{3}\.\d{4})-(\d{3}\.\d{4})\]: (.*)$")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_iemocap")
    root = synth_iemocap(out, **SMALL)
    truth = json.loads((out / TRUTH_FILE).read_text(encoding="utf-8"))
    return out, root, truth


def _lines(path: Path, encoding: str = "ascii") -> list[str]:
    return path.read_bytes().decode(encoding).replace("\r\n", "\n").split("\n")


def _frames(path: Path):
    capture = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def _halves(frame: np.ndarray) -> dict[str, np.ndarray]:
    width = frame.shape[1] // 2
    return {"left": np.ascontiguousarray(frame[:, :width]), "right": np.ascontiguousarray(frame[:, width:])}


def _frame_rms(channel: np.ndarray, first_frame: int, count: int) -> np.ndarray:
    """RMS of the channel over one frame period around the times of frames first_frame.. (may be
    negative or past the end: silence there)."""
    energy = np.concatenate([[0.0], np.cumsum(channel.astype(np.float64) ** 2)])
    centres = np.arange(first_frame, first_frame + count) / FPS * SAMPLE_RATE
    half = SAMPLE_RATE / FPS / 2
    low = np.clip(np.round(centres - half), 0, len(channel)).astype(int)
    high = np.clip(np.round(centres + half), 0, len(channel)).astype(int)
    return np.sqrt((energy[high] - energy[low]) / np.maximum(high - low, 1))


def _mouth_darkness(path: Path) -> dict[str, np.ndarray]:
    """Per frame and side, the number of dark pixels in the mouth box: how open the mouth is."""
    areas = {"left": [], "right": []}
    for frame in _frames(path):
        for side, half in _halves(frame).items():
            x, y, w, h = faces.mouth_box((half.shape[1], half.shape[0]))
            gray = cv2.cvtColor(half[y : y + h, x : x + w], cv2.COLOR_BGR2GRAY)
            areas[side].append(int((gray < 50).sum()))
    return {side: np.array(a, dtype=float) for side, a in areas.items()}


# --------------------------------------------------------------------------------------------
# Layout and formats


def test_release_layout(corpus):
    out, root, truth = corpus
    assert root == out / RELEASE_DIR and (out / TRUTH_FILE).is_file()
    assert not (root / TRUTH_FILE).exists()  # the truth stays outside the release
    for name, dialog in truth["dialogs"].items():
        session = root / f"Session{dialog['session']}"
        assert (session / "dialog" / "avi" / "DivX" / f"{name}.avi").is_file()
        assert (session / "dialog" / "wav" / f"{name}.wav").is_file()
        assert (session / "dialog" / "transcriptions" / f"{name}.txt").is_file()
        assert (session / "dialog" / "EmoEvaluation" / f"{name}.txt").is_file()
        assert dialog["files"]["video"] == f"Session{dialog['session']}/dialog/avi/DivX/{name}.avi"
    for utt in truth["utterances"]:
        assert (root / utt["sentence_wav"]).is_file()
        assert utt["sentence_wav"] == f"Session1/sentences/wav/{utt['dialog']}/{utt['id']}.wav"
        if utt["wdseg"] is not None:
            assert utt["wdseg"] == f"Session1/sentences/ForcedAlignment/{utt['dialog']}/{utt['id']}.wdseg"
            assert (root / utt["wdseg"]).is_file()
    names = set(truth["dialogs"])
    assert names == {"Ses01F_impro01", OFFSET_DIALOG}  # impro and script names, both session letters


def test_video_is_divx_avi_at_ntsc_rate(corpus):
    _, root, truth = corpus
    assert len(truth["dialogs"]) == SMALL["dialogs_per_session"]
    for dialog in truth["dialogs"].values():
        command = ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(root / dialog["files"]["video"])]
        probe = subprocess.run(command, capture_output=True, check=True, text=True)
        info = json.loads(probe.stdout)
        (video,) = [s for s in info["streams"] if s["codec_type"] == "video"]
        assert info["format"]["format_name"] == "avi"
        assert (video["codec_name"], video["codec_tag_string"]) == ("mpeg4", "DIVX")
        assert (video["width"], video["height"]) == (720, 480)
        assert video["r_frame_rate"] == "30000/1001"
        assert int(video["nb_frames"]) == dialog["frames"] == int(dialog["duration"] * 30000 / 1001)


def test_dialog_wav_is_stereo_16k_pcm(corpus):
    _, root, truth = corpus
    assert len(truth["dialogs"]) == SMALL["dialogs_per_session"]
    for dialog in truth["dialogs"].values():
        info = sf.info(str(root / dialog["files"]["audio"]))
        assert (info.channels, info.samplerate, info.subtype) == (2, 16000, "PCM_16")
        assert info.frames == dialog["samples"] == round(dialog["duration"] * 16000)


def test_sentence_wavs_are_the_speakers_channel_cut_at_the_interval(corpus):
    _, root, truth = corpus
    assert len(truth["utterances"]) == SMALL["dialogs_per_session"] * SMALL["utterances_per_dialog"]
    for utt in truth["utterances"]:
        dialog_audio, _ = sf.read(str(root / truth["dialogs"][utt["dialog"]]["files"]["audio"]), dtype="int16")
        sentence, rate = sf.read(str(root / utt["sentence_wav"]), dtype="int16")
        first, last = round(utt["start"] * 16000), round(utt["end"] * 16000)
        assert rate == 16000 and sentence.ndim == 1
        np.testing.assert_array_equal(sentence, dialog_audio[first:last, utt["channel"]])
        assert np.abs(sentence).max() > 1000  # not silence: the speech is in its interval


def _digests(folder: Path) -> dict[str, str]:
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_same_call_gives_identical_bytes(corpus, tmp_path):
    out, _, truth = corpus
    synth_iemocap(tmp_path, **SMALL)
    first, second = _digests(out), _digests(tmp_path)
    aligned = sum(u["wdseg"] is not None for u in truth["utterances"])  # the .wdseg files
    assert aligned and len(first) == 2 * 4 + 16 + aligned + 1
    assert first == second


def test_frames_given_to_the_encoder_do_not_depend_on_the_number_of_cpus(tmp_path, monkeypatch):
    # ffmpeg slices the BGR -> yuv420p conversion over its filter threads (one per CPU unless
    # pinned), each count rounding differently. The encoder mostly hides that, not always: the
    # frames it is given are stored raw here, where every difference shows.
    monkeypatch.setattr(render, "VIDEO_CODEC", ["-c:v", "rawvideo", "-f", "rawvideo"])
    tiny = dict(sessions=(1,), dialogs_per_session=1, utterances_per_dialog=2, frame_size=(96, 64), voice="synth")
    synth_iemocap(tmp_path / "all-cpus", **tiny)  # one dialog: rendered in this process
    with on_one_cpu():
        synth_iemocap(tmp_path / "one-cpu", **tiny)
    on_all, on_one = _digests(tmp_path / "all-cpus"), _digests(tmp_path / "one-cpu")
    assert any(name.endswith(".avi") for name in on_all)
    assert on_all == on_one


# --------------------------------------------------------------------------------------------
# Faces, sides, channels and sync


def test_haar_detector_finds_the_faces(corpus):
    _, root, truth = corpus
    found = sampled = 0
    for dialog in truth["dialogs"].values():
        for index, frame in enumerate(_frames(root / dialog["files"]["video"])):
            if index % 10:
                continue
            for half in _halves(frame).values():
                sampled += 1
                found += detect_face(half) is not None
    assert sampled >= 100
    assert found / sampled >= 0.9


def test_sides_are_distinct_and_the_session_letter_actor_is_left(corpus):
    _, root, truth = corpus
    for dialog in truth["dialogs"].values():
        frame = next(_frames(root / dialog["files"]["video"]))
        right_speaker = "M" if dialog["left_speaker"] == "F" else "F"
        for side, half in _halves(frame).items():
            patch = faces.patch_size(half.shape[0])
            corner = half[2 : patch - 2, 2 : patch - 2].reshape(-1, 3).mean(axis=0)
            background = half[patch + 4 : patch + 12, patch + 4 : patch + 12].reshape(-1, 3).mean(axis=0)
            assert np.abs(corner - truth["sides"][side]["patch"]).max() < 30
            assert np.abs(background - truth["sides"][side]["background"]).max() < 30
            clothes = half[-6:, half.shape[1] // 2 - 4 : half.shape[1] // 2 + 4].reshape(-1, 3).mean(axis=0)
            speaker = dialog["left_speaker"] if side == "left" else right_speaker
            assert np.abs(clothes - faces.LOOKS[speaker].clothes).max() < 30
    assert np.abs(np.subtract(truth["sides"]["left"]["patch"], truth["sides"]["right"]["patch"])).max() > 150


def test_each_channel_carries_its_own_speaker(corpus):
    _, root, truth = corpus
    utterances = truth["utterances"]
    checked = 0
    for utt in utterances:
        assert utt["channel"] == (0 if utt["speaker"] == utt["dialog"].split("_")[0][-1] else 1)
        assert utt["side"] == ("left" if utt["channel"] == 0 else "right")
        others = [o for o in utterances if o["dialog"] == utt["dialog"] and o["id"] != utt["id"]]
        if utt["noise_only"] or any(o["start"] < utt["end"] and utt["start"] < o["end"] for o in others):
            continue
        audio, _ = sf.read(str(root / truth["dialogs"][utt["dialog"]]["files"]["audio"]))
        span = audio[round(utt["start"] * 16000) : round(utt["end"] * 16000)]
        own, other = np.sqrt(np.mean(span**2, axis=0))[[utt["channel"], 1 - utt["channel"]]]
        assert own > 8 * other
        assert other > 0  # the faint noise and cross-talk are there
        checked += 1
    assert checked >= 6


def test_mouth_opening_follows_the_speakers_envelope_shifted_by_the_av_offset(corpus):
    _, root, truth = corpus
    assert set(truth["dialogs"]) >= {OFFSET_DIALOG}  # the shifted dialog is among those checked
    for name, dialog in truth["dialogs"].items():
        audio, _ = sf.read(str(root / dialog["files"]["audio"]))
        mouths = _mouth_darkness(root / dialog["files"]["video"])
        shift = round(dialog["av_offset"] * FPS)  # frame f shows the audio at f + shift
        assert dialog["av_offset"] == (OFFSET_S if name == OFFSET_DIALOG else 0.0)
        for side, channel in (("left", 0), ("right", 1)):
            mouth = mouths[side]
            rms = _frame_rms(audio[:, channel], -MAX_LAG, len(mouth) + 2 * MAX_LAG)
            # corr[lag]: how well the mouth in frame f follows the audio at the time of frame f + lag
            corr = {lag: np.corrcoef(mouth, rms[MAX_LAG + lag : MAX_LAG + lag + len(mouth)])[0, 1]
                    for lag in range(-MAX_LAG, MAX_LAG + 1)}
            best_lag = max(corr, key=corr.get)
            assert corr[best_lag] > 0.8, (name, side, corr[best_lag])
            assert abs(best_lag - shift) <= 1, (name, side, best_lag, shift)


# --------------------------------------------------------------------------------------------
# Annotation files and their quirks


def _labels(root: Path, dialog: dict) -> list[str]:
    return _lines(root / dialog["files"]["labels"])


def test_emoevaluation_heads_match_the_truth(corpus):
    _, root, truth = corpus
    by_id = {u["id"]: u for u in truth["utterances"]}
    seen = set()
    for dialog in truth["dialogs"].values():
        lines = _labels(root, dialog)
        assert lines[0] == "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]" and lines[1] == ""
        for number, line in enumerate(lines, start=1):
            match = HEAD.match(line)
            if not match:
                continue
            utt = by_id[match[3]]
            assert (float(match[1]), float(match[2]), match[4]) == (utt["start"], utt["end"], utt["category"])
            assert [float(v) for v in match.group(5, 6, 7)] == utt["vad"]
            assert all(1.0 <= v <= 5.0 for v in utt["vad"])
            assert utt["labels_line"] == number and lines[number - 2] == ""
            seen.add(utt["id"])
    assert seen == set(by_id)


def test_emoevaluation_quirks(corpus):
    _, root, truth = corpus
    for dialog in truth["dialogs"].values():
        lines = _labels(root, dialog)
        assert any(re.match(r"^C-E\d:\t\w+; \w+;\t\(.*\)$", line) for line in lines), "multi-label line"
        assert any(re.match(r"^C-[FM]1:\t;\t\(\)$", line) for line in lines), "empty annotator line"
        assert any(re.match(r"^A-E\d:\tval \d; act \d; dom  \d;\t\(.*\)$", line) for line in lines)
    codes = Counter(u["category"] for u in truth["utterances"])
    assert set(OTHER_CODES) <= set(codes)
    assert sum(codes[c] for c in SIX_CLASSES) > len(truth["utterances"]) / 2


def test_transcripts_match_the_truth_and_hold_the_quirks(corpus):
    _, root, truth = corpus
    by_id = {u["id"]: u for u in truth["utterances"]}
    non_utf8 = out_of_order = 0
    for name, dialog in truth["dialogs"].items():
        raw = (root / dialog["files"]["transcript"]).read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            non_utf8 += 1
        lines = _lines(root / dialog["files"]["transcript"], "cp1252")
        idless = [line for line in lines if re.match(r"^[MF]: \S", line)]
        timed = [TRANSCRIPT.match(line) for line in lines if TRANSCRIPT.match(line)]
        xx = [m for m in timed if re.match(rf"^{name}_[MF]XX\d$", m[1])]
        labelled = [m for m in timed if m[1] in by_id]
        assert idless and xx and not any(m[1] in by_id for m in xx)
        assert len(labelled) == sum(u["dialog"] == name for u in truth["utterances"])
        for m in labelled:
            utt = by_id[m[1]]
            assert (float(m[2]), float(m[3]), m[4]) == (utt["start"], utt["end"], utt["text"])
        starts = [float(m[2]) for m in labelled]
        out_of_order += any(b < a for a, b in zip(starts, starts[1:]))
        aside_lines = [a["line"] for a in dialog["asides"]]
        assert sorted(aside_lines) == sorted(line for line in lines if line in aside_lines)
    assert non_utf8 >= 1 and out_of_order >= 1
    assert any(not u["text"].isascii() for u in truth["utterances"])  # e.g. "café", decoded
    noise_only = [u for u in truth["utterances"] if u["noise_only"]]
    assert noise_only and all(u["text"] in NOISE_TAGS for u in noise_only)


def test_crlf_in_some_files_only(corpus):
    _, root, truth = corpus
    files = [root / d["files"][kind] for d in truth["dialogs"].values() for kind in ("transcript", "labels")]
    crlf = [f for f in files if b"\r\n" in f.read_bytes()]
    assert 0 < len(crlf) < len(files)
    for f in crlf:
        data = f.read_bytes()
        assert data.count(b"\n") == data.count(b"\r\n")  # consistently CRLF within a file
    for d in truth["dialogs"].values():
        assert (b"\r\n" in (root / d["files"]["transcript"]).read_bytes()) == d["transcript_crlf"]


def test_ids_and_timeline(corpus):
    _, _, truth = corpus
    assert len(truth["dialogs"]) == SMALL["dialogs_per_session"]
    for name in truth["dialogs"]:
        turns = sorted((u for u in truth["utterances"] if u["dialog"] == name), key=lambda u: u["start"])
        assert len(turns) == SMALL["utterances_per_dialog"], name
        for speaker in "FM":
            own = [u for u in turns if u["speaker"] == speaker]
            assert own, (name, speaker)
            assert [u["id"] for u in own] == [f"{name}_{speaker}{i:03d}" for i in range(len(own))]
            assert all(a["end"] <= b["start"] for a, b in zip(own, own[1:]))
        assert any(b["start"] < a["end"] for a, b in zip(turns, turns[1:])), "some overlap"
        for u in turns:
            low, high = FULL_TIMING.noise_turn if u["noise_only"] else FULL_TIMING.turn
            assert low - 1e-3 <= u["end"] - u["start"] <= high + 1e-3


# --------------------------------------------------------------------------------------------
# Emotion cues and options


def test_text_predicts_the_class_well_but_not_perfectly():
    """A bag-of-words classifier fitted on half the scripts of a larger corpus, scored on the rest."""
    scripts = plan_corpus(dialogs_per_session=12, seed=1)
    turns = [t for s in scripts for t in s.turns if t.category in SIX_CLASSES and t.text not in NOISE_TAGS]
    train, test = turns[::2], turns[1::2]
    counts = {c: Counter() for c in SIX_CLASSES}
    for t in train:
        counts[t.category].update(t.text.lower().strip(".!?").split())

    def predict(text: str) -> str:
        words = text.lower().strip(".!?").split()
        def log_likelihood(code: str) -> float:
            total = sum(counts[code].values()) + 500  # add-one smoothing over a ~500-word vocabulary
            return sum(np.log((counts[code][w] + 1) / total) for w in words)

        return max(SIX_CLASSES, key=log_likelihood)

    accuracy = np.mean([predict(t.text) == t.category for t in test])
    assert 0.6 < accuracy < 0.98


def test_face_predicts_the_class_better_than_chance_but_not_perfectly():
    """Nearest class centroid on the pixels of brows and mouth, for faces drawn with jittered cues."""
    rng = np.random.default_rng(0)
    head = faces.TalkingHead((120, 160), "left", faces.LOOKS["F"])
    pictures, labels = [], []
    for code in SIX_CLASSES:
        for _ in range(40):
            style = draw_style(code, rng)
            expression = faces.Expression(rng.uniform(0, 0.4), style.mouth_curve, style.brow_angle)
            gray = cv2.cvtColor(head.render(expression, shift=tuple(rng.uniform(-1, 1, 2))), cv2.COLOR_BGR2GRAY)
            pictures.append(cv2.resize(gray[40:130, 20:100], (20, 22), interpolation=cv2.INTER_AREA).ravel() / 255.0)
            labels.append(code)
    pictures, labels = np.array(pictures), np.array(labels)
    train = np.arange(len(labels)) % 2 == 0
    centroids = {code: pictures[train & (labels == code)].mean(axis=0) for code in SIX_CLASSES}
    predicted = [min(SIX_CLASSES, key=lambda c: np.sum((p - centroids[c]) ** 2)) for p in pictures[~train]]
    accuracy = np.mean(np.array(predicted) == labels[~train])
    assert 0.35 < accuracy < 0.95  # chance is 1/6


NO_ESPEAK = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")


@pytest.mark.parametrize("engine", ["synth", pytest.param("espeak", marks=NO_ESPEAK)])
def test_voice_fits_the_interval_and_carries_the_class(engine):
    rng = np.random.default_rng(0)
    loudness = {}
    for code in ("ang", "neu", "sad"):
        levels = []
        for _ in range(8):
            samples = int(1.5 * SAMPLE_RATE)
            speech = speak("I just think the office was there.", samples, "F", draw_style(code, rng), rng, engine)
            assert len(speech) == samples and speech[0] == 0 and speech[-1] == 0
            levels.append(np.sqrt(np.mean(speech**2)))
        loudness[code] = np.mean(levels)
    assert loudness["ang"] > loudness["neu"] > loudness["sad"]


def test_truth_records_the_voice_engine_and_its_version(corpus):
    # espeak-ng's output changes between versions: two corpora can only be compared knowing it.
    _, _, truth = corpus
    options = truth["options"]
    assert options["voice_engine"] == ("espeak" if espeak_available() else "synth")
    if options["voice_engine"] == "espeak":
        assert re.fullmatch(r"\d+(\.\d+)+\S*", options["voice_engine_version"])
    else:
        assert options["voice_engine_version"] is None


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="ids_from"):
        synth_iemocap(tmp_path, ids_from="nope")
    with pytest.raises(ValueError, match="av_offsets"):
        synth_iemocap(tmp_path, sessions=(1,), dialogs_per_session=1, av_offsets={"Ses09F_impro01": 0.1})
    with pytest.raises(ValueError, match="frame_size"):
        synth_iemocap(tmp_path, frame_size=(721, 480))
    with pytest.raises(ValueError, match="voice"):
        synth_iemocap(tmp_path, voice="robot")
    (tmp_path / RELEASE_DIR).mkdir()
    (tmp_path / RELEASE_DIR / "Session1").mkdir()  # looks like a real release: never overwritten
    with pytest.raises(FileExistsError):
        synth_iemocap(tmp_path, sessions=(1,), dialogs_per_session=1, utterances_per_dialog=2)


@pytest.mark.slow
def test_dai2021_ids_at_tiny_size(tmp_path):
    root = synth_iemocap(tmp_path, ids_from="dai2021", frame_size=(64, 48), voice="synth")
    truth = json.loads((tmp_path / TRUTH_FILE).read_text(encoding="utf-8"))
    listed = {utt for ids in dai2021_ids().values() for utt in ids}
    six = {u["id"] for u in truth["utterances"] if u["category"] in SIX_CLASSES}
    others = [u for u in truth["utterances"] if u["category"] not in SIX_CLASSES]
    assert len(listed) == 7380 and six == listed
    assert others and set(OTHER_CODES) <= {u["category"] for u in others}
    assert not {u["id"] for u in others} & listed
    assert {d["session"] for d in truth["dialogs"].values()} == {1, 2, 3, 4, 5}
    assert len(list(root.glob("Session*/sentences/wav/*/*.wav"))) == len(truth["utterances"])
    assert all(0.3 - 1e-3 <= u["end"] - u["start"] <= 0.6 + 1e-3 for u in truth["utterances"])
    video = next(iter(truth["dialogs"].values()))["files"]["video"]
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                            "-of", "csv=p=0", str(root / video)], capture_output=True, check=True, text=True)
    assert probe.stdout.strip() == "64,48"
