"""The speaker's video to the visual CNN's input: MP4 bytes + metadata -> face crops [n, 3, S, S].

Frames are taken every `interval_ms` of the clip: by default the frames the converter ran the face
detector on (`faces.frames`, every `faces.interval_ms`), each cropped with its stored box. Another
interval picks the clip frames nearest to 0, interval, 2*interval, ... (the converter's own rule,
mer_data.media.video.face_sample_frames) and gives each the stored box nearest in time.

A crop is the box made square (side = the longer side, same centre), shrunk to the frame's short
side if larger and shifted inside the frame; where the detector found no face (box null) the crop
is the centred square of the frame's short side. Crops are resized to S x S with cv2.INTER_AREA,
converted BGR -> RGB and normalised per channel (FACE_NORMALISATIONS; TrainConfig.face_normalisation):
"imagenet" (the default) scales to [0, 1] and applies the ImageNet mean/std (FACE_MEAN, FACE_STD:
the usual constants for RGB CNN inputs); "dai2021" applies the official code's transforms.Normalize(
mean=[159, 111, 102], std=[37, 33, 32]) to the 0-255 values, in RGB order as there (its faces come
from PIL images through MTCNN with post_process=False: RGB, 0-255).

Decoding: OpenCV's FFmpeg backend, one decoder thread (the loader's parallelism is its worker
processes), reading the clip sequentially and converting only the frames kept (`grab` decodes,
`retrieve` converts). cv2.VideoCapture needs a file: the bytes go to a temporary file in /dev/shm
(memory) when it exists, removed right after. Measured on the demo shards (360x480 H.264 clips,
~68 frames, 6 kept): ~12 ms per clip; an `ffmpeg` subprocess with a `select` filter and a raw RGB
pipe took ~100 ms per clip (process start-up and probing dominate at this clip length).
"""
from __future__ import annotations

import os
import tempfile
from bisect import bisect_left
from fractions import Fraction
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from mer_data.media.video import face_sample_frames

DEFAULT_CROP_SIZE = 48
FACE_MEAN = (0.485, 0.456, 0.406)  # ImageNet RGB mean
FACE_STD = (0.229, 0.224, 0.225)  # ImageNet RGB std
_TEMP_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
DAI2021_FACE_MEAN = (159.0, 111.0, 102.0)   # the official code's, RGB on the 0-255 scale
DAI2021_FACE_STD = (37.0, 33.0, 32.0)
IMAGENET = "imagenet"
DAI2021 = "dai2021"
# (mean, std) per RGB channel on the 0-255 scale
FACE_NORMALISATIONS = {
    IMAGENET: (tuple(255 * m for m in FACE_MEAN), tuple(255 * s for s in FACE_STD)),
    DAI2021: (DAI2021_FACE_MEAN, DAI2021_FACE_STD),
}

Box = Sequence[int] | None


class VideoError(ValueError):
    """Video bytes that cannot be decoded, or metadata that does not match them (named by sample id)."""


def frame_plan(meta: dict[str, Any], interval_ms: int | None = None) -> list[tuple[int, Box]]:
    """The (clip frame index, stored face box or None) pairs to crop, in clip order, at least one.

    `interval_ms` None or equal to the stored `faces.interval_ms`: exactly the stored frames.
    Otherwise the frames sampled every `interval_ms`, each with the box of the nearest stored frame.
    """
    faces = meta["faces"]
    stored = sorted(((int(entry["frame"]), entry["box"]) for entry in faces["frames"]), key=lambda pair: pair[0])
    if stored and (interval_ms is None or interval_ms == faces["interval_ms"]):
        return stored
    if interval_ms is not None and interval_ms < 1:
        raise VideoError(f"{meta.get('id')}: the frame interval must be at least 1 ms, not {interval_ms}")
    video = meta["video"]
    interval = interval_ms if interval_ms is not None else faces["interval_ms"]
    wanted = face_sample_frames(int(video["frames"]), Fraction(video["fps_fraction"]), int(interval)) or (0,)
    return [(index, _nearest_box(stored, index)) for index in wanted]


def _nearest_box(stored: list[tuple[int, Box]], index: int) -> Box:
    """The box of the stored frame nearest to `index` (the earlier one on a tie); None if none stored."""
    if not stored:
        return None
    frames = [frame for frame, _ in stored]
    position = bisect_left(frames, index)
    candidates = [p for p in (position - 1, position) if 0 <= p < len(stored)]
    best = min(candidates, key=lambda p: (abs(frames[p] - index), frames[p]))
    return stored[best][1]


def square_crop(box: Box, width: int, height: int) -> tuple[int, int, int]:
    """(x, y, side) of the square crop for `box` in a width x height frame (see the module doc)."""
    short = min(width, height)
    if box is None:
        return (width - short) // 2, (height - short) // 2, short
    x, y, w, h = (float(v) for v in box)
    side = int(min(max(w, h, 1.0), short))
    left = int(round(x + w / 2 - side / 2))
    top = int(round(y + h / 2 - side / 2))
    return min(max(left, 0), width - side), min(max(top, 0), height - side), side


def crop_face(frame_bgr: np.ndarray, box: Box, size: int = DEFAULT_CROP_SIZE) -> np.ndarray:
    """uint8 RGB [size, size, 3] face crop of a decoded BGR frame (square-expanded, resized INTER_AREA)."""
    height, width = frame_bgr.shape[:2]
    left, top, side = square_crop(box, width, height)
    patch = frame_bgr[top:top + side, left:left + side]
    resized = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)  # a channel swap: the same as converting first


def check_face_normalisation(name: str) -> str:
    if name not in FACE_NORMALISATIONS:
        raise ValueError(f"unknown face normalisation {name!r}; choose one of {', '.join(FACE_NORMALISATIONS)}")
    return name


def normalise_crops(crops: np.ndarray, normalisation: str = IMAGENET) -> torch.Tensor:
    """uint8 [n, S, S, 3] RGB -> float32 [n, 3, S, S], normalised per channel (FACE_NORMALISATIONS)."""
    mean, std = FACE_NORMALISATIONS[check_face_normalisation(normalisation)]
    images = torch.from_numpy(crops).permute(0, 3, 1, 2).float()
    mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((images - mean) / std).contiguous()


def decode_frames(mp4: bytes, indices: Sequence[int], sample_id: str = "<sample>") -> list[np.ndarray]:
    """The BGR frames at the given clip indices (ascending, no repeats), decoded sequentially."""
    if not mp4:
        raise VideoError(f"{sample_id}: the mp4 member is empty")
    handle, path = tempfile.mkstemp(suffix=".mp4", dir=_TEMP_DIR)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(mp4)
        capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        try:
            if not capture.isOpened():
                raise VideoError(f"{sample_id}: cannot open the mp4 member ({len(mp4)} bytes): not a readable video")
            return _read_frames(capture, indices, sample_id)
        finally:
            capture.release()
    finally:
        os.unlink(path)


def _read_frames(capture: "cv2.VideoCapture", indices: Sequence[int], sample_id: str) -> list[np.ndarray]:
    wanted = list(indices)
    frames: list[np.ndarray] = []
    position = 0
    for index in wanted:
        while position < index:  # decode without converting: these frames are not kept
            if not capture.grab():
                raise _short_clip(sample_id, position, index)
            position += 1
        ok, frame = capture.read()
        if not ok or frame is None:
            raise _short_clip(sample_id, position, index)
        position += 1
        frames.append(frame)
    return frames


def _short_clip(sample_id: str, decoded: int, wanted: int) -> VideoError:
    if decoded == 0:
        return VideoError(f"{sample_id}: the mp4 member has no decodable frame (corrupt or not H.264 video)")
    return VideoError(f"{sample_id}: the mp4 member decodes to {decoded} frames, but frame {wanted} is needed "
                      "(metadata and video disagree, or the video is truncated)")


def face_crops(mp4: bytes, meta: dict[str, Any], *, interval_ms: int | None = None,
               size: int = DEFAULT_CROP_SIZE, normalisation: str = IMAGENET) -> torch.Tensor:
    """float32 [n, 3, size, size] normalised RGB face crops of the frames sampled every `interval_ms`
    (default: the stored faces.interval_ms), n >= 1; `normalisation`: a FACE_NORMALISATIONS name."""
    sample_id = meta.get("id", "<sample>")
    plan = frame_plan(meta, interval_ms)
    frames = decode_frames(mp4, [index for index, _ in plan], sample_id)
    crops = np.stack([crop_face(frame, box, size) for frame, (_, box) in zip(frames, plan)])
    return normalise_crops(crops, normalisation)
