"""Visual feature sequences of one utterance: appearance descriptors of the stored face crops over time.

"appearance" (landmark-free, OpenCV only): for every frame on which the converter's face detector
found a face (`faces.frames` with a box, every `faces.interval_ms`, 500 ms by default), the face is
cropped as the end-to-end loader crops it (model/frames.py: the box made square, the same decoder),
converted to grayscale and resized to 64 x 64 (values in [0, 1]); then

- HOG (Dalal & Triggs 2005; cv2.HOGDescriptor): 16 x 16-pixel cells, 2 x 2-cell blocks with a
  one-cell stride (3 x 3 blocks), 9 unsigned orientation bins: 324 values, named
  `hog_b<bx><by>_c<cx><cy>_o<bin>` in OpenCV's order (block column, block row, cell column, cell
  row, bin);
- for three fixed regions of the face crop, the Haar detector's box being roughly brow-to-chin:
  `brows_eyes` (rows 15-50%, all columns), `mouth` (rows 65-95%, columns 25-75%) and the whole
  `face`: the mean and standard deviation of the intensity, the gradient energy (mean squared Sobel
  magnitude: texture, wrinkles, an open mouth) and the frame-to-frame change (mean absolute
  intensity difference from the previous face frame of the sequence; 0 on the first).

Frames without a detected face are skipped: their times are not in the sequence, and an utterance
without any face has an empty sequence (the baselines treat it as a missing modality). A step's
time is its frame's time in the clip plus the clip's offset from the utterance start
(`alignment.video_start_offset_s`): seconds from the utterance start.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from mer_data.model.features.table import ModalitySpec
from mer_data.model.frames import crop_face, decode_frames

KINDS = ("appearance",)
EXTRACTOR = "opencv-hog-face-regions"
CROP_SIZE = 64
HOG_CELL = 16
HOG_BLOCK = 32
HOG_STRIDE = 16
HOG_BINS = 9
# (first row, last row, first column, last column) as fractions of the face crop.
REGIONS = {"brows_eyes": (0.15, 0.50, 0.0, 1.0), "mouth": (0.65, 0.95, 0.25, 0.75), "face": (0.0, 1.0, 0.0, 1.0)}
REGION_STATISTICS = ("mean", "std", "gradient_energy", "change")

Sequence = tuple[list[str], np.ndarray, np.ndarray]


@lru_cache(maxsize=1)
def _hog() -> cv2.HOGDescriptor:
    return cv2.HOGDescriptor((CROP_SIZE, CROP_SIZE), (HOG_BLOCK, HOG_BLOCK), (HOG_STRIDE, HOG_STRIDE),
                             (HOG_CELL, HOG_CELL), HOG_BINS)


def _hog_names() -> list[str]:
    blocks = (CROP_SIZE - HOG_BLOCK) // HOG_STRIDE + 1
    cells = HOG_BLOCK // HOG_CELL
    return [f"hog_b{bx}{by}_c{cx}{cy}_o{o}" for bx in range(blocks) for by in range(blocks)
            for cx in range(cells) for cy in range(cells) for o in range(HOG_BINS)]


def appearance_names() -> list[str]:
    return _hog_names() + [f"{region}_{statistic}" for region in REGIONS for statistic in REGION_STATISTICS]


def _region_slices(size: int) -> dict[str, tuple[slice, slice]]:
    return {name: (slice(round(top * size), round(bottom * size)), slice(round(left * size), round(right * size)))
            for name, (top, bottom, left, right) in REGIONS.items()}


def gray_face(frame_bgr: np.ndarray, box) -> np.ndarray:
    """uint8 [CROP_SIZE, CROP_SIZE] grayscale face crop, cut as the end-to-end loader cuts it."""
    return cv2.cvtColor(crop_face(frame_bgr, box, CROP_SIZE), cv2.COLOR_RGB2GRAY)


def describe_face(face: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """The appearance vector of one uint8 grayscale face crop (`previous`: the sequence's last one, or None)."""
    hog = _hog().compute(face).reshape(-1)
    intensity = face.astype(np.float32) / 255.0
    gx = cv2.Sobel(intensity, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(intensity, cv2.CV_32F, 0, 1, ksize=3)
    energy = gx * gx + gy * gy
    change = np.zeros_like(intensity) if previous is None else np.abs(intensity - previous.astype(np.float32) / 255.0)
    statistics = []
    for rows, columns in _region_slices(CROP_SIZE).values():
        region = intensity[rows, columns]
        statistics += [region.mean(), region.std(), energy[rows, columns].mean(), change[rows, columns].mean()]
    return np.concatenate([hog, np.asarray(statistics, dtype=np.float32)]).astype(np.float32)


def appearance(mp4: bytes, meta: dict[str, Any]) -> Sequence:
    """The appearance descriptors of the sample's face frames, timed from the utterance start."""
    sample_id = meta.get("id", "<sample>")
    with_face = sorted((int(entry["frame"]), float(entry["time"]), entry["box"])
                       for entry in meta["faces"]["frames"] if entry["box"] is not None)
    names = appearance_names()
    if not with_face:
        return names, np.zeros((0, len(names)), dtype=np.float32), np.zeros(0, dtype=np.float32)
    frames = decode_frames(mp4, [index for index, _, _ in with_face], sample_id)
    vectors, previous = [], None
    for frame, (_, _, box) in zip(frames, with_face):
        face = gray_face(frame, box)
        vectors.append(describe_face(face, previous))
        previous = face
    offset = _clip_offset(meta)
    times = np.asarray([offset + time for _, time, _ in with_face], dtype=np.float32)
    return names, np.stack(vectors), times


def _clip_offset(meta: dict[str, Any]) -> float:
    """Seconds from the utterance start to the clip's first frame."""
    alignment = meta.get("alignment") or {}
    if alignment.get("video_start_offset_s") is not None:
        return float(alignment["video_start_offset_s"])
    return float(meta["video"]["start_time"]) - float(meta["start"])


def visual_spec(kind: str, interval_ms: int | None) -> ModalitySpec:
    """What the card records for the visual modality (`interval_ms`: the shards' face-sampling interval)."""
    if kind not in KINDS:
        raise ValueError(f"unknown visual features {kind!r}; expected one of {', '.join(KINDS)}")
    return ModalitySpec(role="v", extractor=EXTRACTOR, names=appearance_names(),
                        description="HOG and fixed-region statistics (brows/eyes, mouth, face: mean, std, gradient "
                                    "energy, frame-to-frame change) of 64x64 grayscale face crops at the stored "
                                    "face-detector frames; frames without a face skipped",
                        step_seconds=interval_ms / 1000 if interval_ms else None, timed=True,
                        options={"crop_size": CROP_SIZE, "hog": {"cell": HOG_CELL, "block": HOG_BLOCK,
                                                                 "stride": HOG_STRIDE, "bins": HOG_BINS},
                                 "regions": {name: list(bounds) for name, bounds in REGIONS.items()},
                                 "opencv": cv2.__version__})
