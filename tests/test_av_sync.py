"""A/V offset estimation: offsets injected into a synthetic release are recovered from its shards.

The acceptance test shifts the dialog WAVs of a freshly synthesized release (the faces were drawn
from the unshifted speech), converts it, and estimates every recording's offset from the shards.
"""
from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mer_data.synth import faces
from mer_data.synth.iemocap import synth_iemocap
from mer_data.validation import av_sync
from tests.conftest import convert

# Audio delay injected per dialog, seconds (> 0: prepend silence, the audio comes late).
SHIFTS = {
    "Ses01F_impro01": 0.2,
    "Ses01M_script01_1b": -0.2,
    "Ses02F_impro05a": 0.5,
    "Ses02M_script02_2": -0.5,
    "Ses03F_impro03": 0.0,
    "Ses03M_script01_3": 0.0,
}
ALL_CODES = ("ang", "exc", "fru", "hap", "neu", "sad", "sur", "fea", "dis", "oth", "xxx")


def shift_wav(path: Path, seconds: float) -> None:
    """Delay (seconds > 0: silence in front, the end trimmed) or advance (< 0: the start dropped,
    silence at the end) every channel of a WAV, keeping its length."""
    pcm, rate = sf.read(path, dtype="int16", always_2d=True)
    count = int(round(abs(seconds) * rate))
    shifted = np.zeros_like(pcm)
    if seconds > 0:
        shifted[count:] = pcm[: len(pcm) - count]
    else:
        shifted[: len(pcm) - count] = pcm[count:]
    sf.write(path, shifted, rate, subtype="PCM_16")


def shard_samples(folder: Path):
    """(meta, flac bytes, mp4 bytes) of every sample in the folder's shards."""
    for shard in sorted(folder.glob("*.tar")):
        with tarfile.open(shard) as tar:
            members: dict[str, dict[str, bytes]] = {}
            for member in tar.getmembers():
                key, _, extension = member.name.partition(".")
                members.setdefault(key, {})[extension] = tar.extractfile(member).read()
        for parts in members.values():
            yield json.loads(parts["json"]), parts["flac"], parts["mp4"]


@pytest.fixture(scope="module")
def shifted_shards(tmp_path_factory) -> Path:
    """Shards of a 6-dialog release whose dialog audio was shifted by SHIFTS before conversion."""
    out = tmp_path_factory.mktemp("av-shifted")
    root = synth_iemocap(out / "raw", sessions=(1, 2, 3), dialogs_per_session=2, utterances_per_dialog=6,
                         seed=5, frame_size=(360, 240))
    assert sorted(SHIFTS) == sorted(p.stem for p in root.glob("Session*/dialog/wav/*.wav"))
    for dialog, seconds in SHIFTS.items():
        if seconds:
            shift_wav(next(root.glob(f"Session*/dialog/wav/{dialog}.wav")), seconds)
    shards = out / "shards"
    convert(root, shards, classes=ALL_CODES)
    return shards


def test_injected_offsets_are_recovered_with_sign_within_two_frames(shifted_shards):
    curves = [curve for meta, flac, mp4 in shard_samples(shifted_shards)
              if (curve := av_sync.utterance_sync_curve(flac, mp4, meta, max_lag_s=1.0)) is not None]
    estimates = {e.recording: e for e in av_sync.offsets_by_recording(curves)}
    assert sorted(estimates) == sorted(SHIFTS)
    measured = {name: e.to_dict(threshold_s=0.1) for name, e in estimates.items()}
    print("recovered A/V offsets:", json.dumps(measured, indent=1))
    for name, injected in SHIFTS.items():
        estimate = estimates[name]
        fps = curves[0].fps
        error_frames = abs(estimate.offset_s - injected) * fps
        if injected:
            assert np.sign(estimate.offset_s) == np.sign(injected), (name, estimate)
            assert error_frames <= 2, (name, injected, estimate)
            assert measured[name]["flagged"]
        else:
            assert error_frames <= 1, (name, estimate)
            assert not measured[name]["flagged"]
        assert estimate.confidence > 0.5, (name, estimate)
        assert estimate.utterances >= 4


def test_unusable_samples_give_no_curve(shifted_shards):
    meta, flac, mp4 = next(iter(shard_samples(shifted_shards)))
    assert av_sync.utterance_sync_curve(flac, mp4, meta) is not None
    no_faces = json.loads(json.dumps(meta))
    for entry in no_faces["faces"]["frames"]:
        entry["box"] = None
    assert av_sync.utterance_sync_curve(flac, mp4, no_faces) is None
    samples, rate = sf.read(io.BytesIO(flac), dtype="int16")
    silent = _flac_bytes(np.zeros_like(samples), rate)
    assert av_sync.utterance_sync_curve(silent, mp4, meta) is None
    assert av_sync.utterance_sync_curve(b"not a flac", mp4, meta) is None
    assert av_sync.utterance_sync_curve(flac, b"not an mp4", meta) is None


def _flac_bytes(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def test_curve_lags_are_audio_minus_video():
    """Speech that repeats the mouth 5 frames later peaks at lag +5: positive means audio late."""
    rng = np.random.default_rng(0)
    mouth = np.convolve(rng.normal(size=120), np.ones(4) / 4, mode="same")
    speech = np.concatenate([np.full(5, np.nan), mouth[:-5]])
    lags = np.arange(-10, 11)
    correlation, overlap = av_sync.lagged_correlation(mouth, speech, lags)
    assert lags[np.nanargmax(correlation)] == 5
    assert correlation[lags == 5][0] == pytest.approx(1.0)
    assert overlap[lags == 5][0] == 115


def test_frame_boxes_interpolate_between_detections_and_hold_at_the_ends():
    fps = 30.0
    frames = [{"frame": 0, "time": 0.0, "box": [10, 20, 100, 100]},
              {"frame": 15, "time": 0.5, "box": [40, 20, 130, 100]},
              {"frame": 30, "time": 1.0, "box": None}]
    boxes = av_sync.frame_boxes(frames, 60, fps)
    assert boxes[5].tolist() == pytest.approx([20, 20, 110, 100])
    assert boxes[40].tolist() == [40, 20, 130, 100]  # held after the last detection
    assert np.isnan(boxes[15 + int(av_sync.MAX_BOX_GAP_S * fps) + 1]).all()  # too far from any box
    assert av_sync.frame_boxes([{"frame": 0, "time": 0.0, "box": None}], 60, fps) is None


def test_mouth_region_of_a_detected_face_darkens_as_the_mouth_opens():
    """The region taken inside the detector's box covers the drawn mouth, whose opening it measures."""
    from mer_data.media.faces import detect_face

    head = faces.TalkingHead((360, 480), "left", faces.LOOKS["F"])
    box = detect_face(head.render(faces.Expression()))
    assert box is not None
    darkness = []
    for opening in (0.0, 0.25, 0.5, 0.75, 1.0):
        image = head.render(faces.Expression(mouth_open=opening))
        x0, y0, x1, y1 = av_sync.mouth_region(np.asarray(box, dtype=float), image.shape[1], image.shape[0])
        gray = image[y0:y1, x0:x1].mean(axis=2)
        darkness.append(255 - gray.mean())
    assert np.all(np.diff(darkness) > 1.0), darkness


def test_the_search_near_the_previous_face_finds_it_and_falls_back_to_the_whole_image(monkeypatch):
    from mer_data.media import faces as face_detection

    head = faces.TalkingHead((360, 480), "left", faces.LOOKS["F"])
    image = head.render(faces.Expression())
    full = face_detection.detect_face(image)
    x, y, w, h = full
    near_results = []
    search_near = face_detection._search_near
    monkeypatch.setattr(face_detection, "_search_near", lambda *a: near_results.append(search_near(*a)) or near_results[-1])
    near = face_detection.detect_face(image, near=[x + 4, y - 3, w, h])    # last frame's face, moved
    assert near_results[0] is not None, "the face was not found near its last place"
    assert _iou(near, full) > 0.9
    # Nothing near a box in an empty corner, at its small size: the whole image is searched.
    assert face_detection.detect_face(image, near=[0, 0, 40, 40]) == full
    # A face that is gone is not reported at its old place.
    blank = np.full_like(image, 128)
    assert face_detection.detect_face(blank, near=full) is None


def _iou(a: list[int], b: list[int]) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)


def _curve(recording: str, peak_lag: float, width: float = 4.0, max_lag: int = 30, weight: float = 90.0,
           overlap: int = 80) -> av_sync.SyncCurve:
    lags = np.arange(-max_lag, max_lag + 1)
    values = np.exp(-0.5 * ((lags - peak_lag) / width) ** 2)
    return av_sync.SyncCurve(recording, f"{recording}_F000", 29.97, tuple(int(v) for v in lags),
                             tuple(float(v) for v in values), tuple([overlap] * len(lags)), weight)


def test_combine_curves_refines_the_peak_between_frames():
    estimate = av_sync.combine_curves([_curve("Ses01F_impro01", 4.4), _curve("Ses01F_impro01", 4.4)])
    assert estimate.offset_frames == pytest.approx(4.4, abs=0.1)
    assert estimate.offset_s == pytest.approx(estimate.offset_frames / 29.97)
    assert estimate.utterances == 2 and estimate.confidence > 0.5


def test_combine_curves_weights_utterances_by_overlapping_frames():
    heavy, light = _curve("r", -8.0, overlap=200), _curve("r", 6.0, overlap=20)
    assert av_sync.combine_curves([heavy, light]).offset_frames == pytest.approx(-8.0, abs=0.5)


def test_thinly_supported_lags_do_not_make_a_peak():
    """A few frames overlapping at an extreme lag can correlate perfectly by chance; where no other
    utterance reaches that lag, it would be the recording's peak without the support rule."""
    lags = tuple(range(-30, 31))
    gauss = [0.9 * np.exp(-0.5 * ((lag - 3) / 4) ** 2) for lag in lags]
    reaching = [abs(lag) <= 20 for lag in lags]
    values = tuple(g if ok else float("nan") for g, ok in zip(gauss, reaching))
    real = av_sync.SyncCurve("r", "r_F000", 29.97, lags, values, tuple(80 if ok else 0 for ok in reaching), 80.0)
    chance = av_sync.SyncCurve("r", "r_M001", 29.97, lags, tuple(1.0 if lag == 30 else float("nan") for lag in lags),
                               tuple(12 if lag == 30 else 0 for lag in lags), 40.0)
    assert av_sync.combine_curves([real, chance]).offset_frames == pytest.approx(3.0, abs=0.2)
    assert av_sync.combine_curves([chance]).offset_frames == 30  # alone, it is all there is


def test_a_peak_at_the_edge_of_the_lag_range_has_no_confidence():
    estimate = av_sync.combine_curves([_curve("r", 45.0, width=10.0)])
    assert estimate.offset_frames == 30 and estimate.confidence == 0.0
    with pytest.raises(ValueError, match="at least one curve"):
        av_sync.combine_curves([])


def test_curves_and_estimates_are_json_and_pickle_friendly():
    curve = _curve("Ses01F_impro01", 2.0)
    assert pickle.loads(pickle.dumps(curve)) == curve
    json.dumps(curve.to_dict())
    entry = av_sync.combine_curves([curve]).to_dict(threshold_s=0.1)
    assert set(entry) == {"recording", "offset_s", "offset_frames", "confidence", "utterances", "flagged"}
    assert json.loads(json.dumps(entry)) == entry and entry["flagged"] is False
