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

Decoding (decode_frames): PyAV (FFmpeg's libavcodec, one thread: the loader's parallelism is its
worker processes) decodes only what the kept frames need, from memory. The MP4's sample table is
read here (mer_data/media/mp4.py: where each coded frame lies, which are keyframes, the display
order), so no demuxer is opened per clip (its probe cost as much as decoding the kept frames); a
file that table reader does not take is opened with PyAV's demuxer instead, to the same packets. The packets fall into closed GOPs (a keyframe and what follows
it up to the next keyframe): a GOP without a kept frame is skipped whole, and in the others
decoding stops after the last packet a kept frame needs (in decode order every reference comes
before the frame using it). The converter forces a keyframe at every face frame (keyframes="faces",
mer_data/media/encoding.py), so at the stored interval each kept frame is a keyframe decoded
alone: 5 frames of a 68-frame clip instead of 61 read sequentially. Clips with open GOPs (frames
shown before their GOP's keyframe) are decoded sequentially. Only the kept frames are converted
to BGR (OpenCV's I420 conversion), and for face crops only the crop's region of each.
"""
from __future__ import annotations

import io
from bisect import bisect_left
from fractions import Fraction
from typing import Any, Sequence

import av
import cv2
import numpy as np
import torch

from mer_data.media.mp4 import VideoTrack, read_video_track
from mer_data.media.video import face_sample_frames

DEFAULT_CROP_SIZE = 48
FACE_MEAN = (0.485, 0.456, 0.406)  # ImageNet RGB mean
FACE_STD = (0.229, 0.224, 0.225)  # ImageNet RGB std
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
    """The BGR frames at the given clip indices (ascending, no repeats), decoding only what they need."""
    return [_to_bgr(frame) for frame in _decoded(mp4, indices, sample_id)]


def _decoded(mp4: bytes, indices: Sequence[int], sample_id: str) -> list[Any]:
    """The decoded (PyAV) frames at the given clip indices, not yet converted."""
    if not mp4:
        raise VideoError(f"{sample_id}: the mp4 member is empty")
    wanted = list(indices)
    track = read_video_track(mp4)
    if track is not None:   # the fast path: no demuxer, the sample table read here
        try:
            return _decoded_from_track(mp4, track, wanted, sample_id)
        except (VideoError, av.error.FFmpegError):
            pass   # the demuxer below decides, and words the error of a clip that truly fails
    try:
        # format="mp4" (the shard contract's container; also reads mov/3gp) spares the probe of every clip.
        with av.open(io.BytesIO(mp4), mode="r", format="mp4") as container:
            if not container.streams.video:
                raise VideoError(f"{sample_id}: the mp4 member has no video stream")
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            packets = [packet for packet in container.demux(stream) if packet.size and packet.pts is not None]
            frames = _decode_kept(stream.codec_context, packets, wanted, sample_id)
    except av.error.FFmpegError as error:
        raise VideoError(f"{sample_id}: cannot decode the mp4 member ({len(mp4)} bytes): {error}") from None
    return [frames[index] for index in wanted]


def _decoded_from_track(mp4: bytes, track: VideoTrack, wanted: list[int], sample_id: str) -> list[Any]:
    """_decoded's frames from a sample table read without a demuxer: the same packets, each with its
    display rank as pts, to a decoder opened with the track's avcC configuration."""
    codec = av.CodecContext.create("h264", "r")
    codec.extradata = track.extradata
    codec.thread_count = 1
    packets = []
    for index, rank in enumerate(track.display_ranks):
        packet = av.Packet(track.sample(mp4, index))
        packet.pts, packet.dts, packet.is_keyframe = rank, index, track.keyframes[index]
        packets.append(packet)
    frames = _decode_kept(codec, packets, wanted, sample_id)
    return [frames[index] for index in wanted]


def _decode_kept(codec: Any, packets: list[Any], wanted: list[int], sample_id: str) -> dict[int, Any]:
    """clip index -> decoded frame for the wanted indices: feed the decoder only the packets they need."""
    # A frame's clip index is its rank in presentation order, as a sequential decoder numbers it.
    index_of_pts = {pts: index for index, pts in enumerate(sorted(packet.pts for packet in packets))}
    if not index_of_pts:
        raise _short_clip(sample_id, 0, wanted[0])
    if wanted[-1] >= len(index_of_pts):
        raise _short_clip(sample_id, len(index_of_pts), wanted[-1])
    want = set(wanted)
    kept: dict[int, Any] = {}
    for packet in _packets_needed(packets, index_of_pts, want) + [None]:   # None drains the decoder
        for frame in codec.decode(packet):
            index = index_of_pts.get(frame.pts)
            if index in want and index not in kept:
                kept[index] = frame
    if len(kept) < len(want):
        raise _short_clip(sample_id, len(kept), min(want - set(kept)))
    return kept


def _packets_needed(packets: list[Any], index_of_pts: dict[int, int], want: set[int]) -> list[Any]:
    """The packets (decode order) that the wanted frames need: per closed GOP holding a wanted
    frame, its packets up to the last wanted one; all packets up to the last wanted one when a
    GOP is open (a frame shown before its GOP's keyframe may reference the GOP before)."""
    gops = _gops(packets)
    if any(packet.pts < gop[0].pts for gop in gops for packet in gop):
        gops = [packets]   # open GOPs (or no keyframe flags): decode sequentially
    needed: list[Any] = []
    for gop in gops:
        last = max((position for position, packet in enumerate(gop) if index_of_pts[packet.pts] in want), default=-1)
        needed += gop[:last + 1]
    return needed


def _gops(packets: list[Any]) -> list[list[Any]]:
    """The packets split before every keyframe (the first GOP may start without one)."""
    gops: list[list[Any]] = []
    for packet in packets:
        if packet.is_keyframe or not gops:
            gops.append([])
        gops[-1].append(packet)
    return gops


def _bgr_region(frame: Any, left: int, top: int, width: int, height: int) -> np.ndarray:
    """The BGR pixels [top:top+height, left:left+width] of a decoded frame, converting only a region
    around them where the frame is 4:2:0 (the same pixels as converting the whole frame: OpenCV's
    I420 conversion takes each pixel's chroma from its own 2x2 block, and the region starts on
    even coordinates)."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        region = _i420_region(frame.to_ndarray(format="yuv420p"), frame.width, frame.height, left, top, width, height)
        if region is not None:
            return region
    return _to_bgr(frame)[top:top + height, left:left + width]


def _i420_region(planes: np.ndarray, frame_width: int, frame_height: int, left: int, top: int, width: int,
                 height: int) -> np.ndarray | None:
    """BGR of the region from stacked I420 planes, or None where no aligned region fits the frame."""
    x0, y0 = left - left % 2, top - top % 2
    x1 = min(frame_width, left + width + (left + width) % 2)
    rows = 4 * -(-(top + height - y0) // 4)   # OpenCV's I420 input needs a height divisible by 4
    while y0 > 0 and y0 + rows > frame_height:
        y0 -= 2
        rows = 4 * -(-(top + height - y0) // 4)
    if y0 + rows > frame_height:
        return None
    luma, u, v = _i420_planes(planes, frame_width, frame_height)
    cx0, cx1, cy0, cy1 = x0 // 2, x1 // 2, y0 // 2, (y0 + rows) // 2
    stacked = np.concatenate([luma[y0:y0 + rows, x0:x1].reshape(-1), u[cy0:cy1, cx0:cx1].reshape(-1),
                              v[cy0:cy1, cx0:cx1].reshape(-1)]).reshape(rows * 3 // 2, x1 - x0)
    bgr = cv2.cvtColor(stacked, cv2.COLOR_YUV2BGR_I420)
    return bgr[top - y0:top - y0 + height, left - x0:left - x0 + width]


def _to_bgr(frame: Any) -> np.ndarray:
    """A decoded frame as an OpenCV BGR image (4:2:0 frames through OpenCV's I420 conversion, which
    is faster than libswscale's; other layouts through PyAV)."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        planes = frame.to_ndarray(format="yuv420p")   # [Y; U; V] stacked: (3h/2, w)
        return cv2.cvtColor(planes, cv2.COLOR_YUV2BGR_I420)
    return frame.to_ndarray(format="bgr24")


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
    frames = _decoded(mp4, [index for index, _ in plan], sample_id)
    crops = np.stack([_face_crop(frame, box, size) for frame, (_, box) in zip(frames, plan)])
    return normalise_crops(crops, normalisation)


def _face_crop(frame: Any, box: Box, size: int) -> np.ndarray:
    """crop_face of a decoded frame, converting only the crop's pixels to BGR (the same result)."""
    left, top, side = square_crop(box, frame.width, frame.height)
    patch = _bgr_region(frame, left, top, side, side)
    resized = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)


def _i420_planes(planes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Y, U, V) views of PyAV's stacked yuv420p array of a width x height frame."""
    flat = planes.reshape(-1)
    luma_size, chroma_size = width * height, width * height // 4
    return (flat[:luma_size].reshape(height, width),
            flat[luma_size:luma_size + chroma_size].reshape(height // 2, width // 2),
            flat[luma_size + chroma_size:].reshape(height // 2, width // 2))
