"""Clips with a keyframe at every face frame, and a loader that decodes only what it keeps.

The converter's default encoding (mer_data/media/encoding.py) forces a keyframe at each face frame;
the loader (mer_data.model.frames.decode_frames) then skips every packet the kept frames do not
need. Checked here: where the keyframes are, for both keyframe policies; that skipping packets
gives exactly the frames a sequential decode of the whole clip gives, whatever frames are asked
for; and that at the stored interval only the kept frames' packets are decoded.
"""
from __future__ import annotations

import io
import json
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from mer_data.media import cut_recording
from mer_data.media.encoding import VideoEncoding
from mer_data.media.video import face_sample_frames
from mer_data.model import frames as frames_module
from mer_data.model.frames import VideoError, decode_frames
from mer_data.records import CutRequest

FPS = Fraction(30000, 1001)
WIDTH, HEIGHT, SECONDS = 320, 240, 7
REQUESTS = [CutRequest("long", 0.2, 6.0, "left", 0), CutRequest("short", 1.0, 2.3, "right", 1)]


def write_sources(folder: Path) -> tuple[Path, Path]:
    """A moving test pattern (every frame differs, so a wrong frame cannot pass for the right one)
    as an MPEG-4 AVI, and a stereo 16 kHz WAV."""
    video, audio = folder / "dialog.avi", folder / "dialog.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={WIDTH}x{HEIGHT}:rate=30000/1001:duration={SECONDS}",
                    "-c:v", "mpeg4", "-q:v", "3", str(video)], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=frequency=220:duration={SECONDS}",
                    "-ac", "2", "-ar", "16000", str(audio)], check=True)
    return video, audio


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, dict[str, tuple[bytes, dict]]]:
    """policy -> key -> (mp4 bytes, face facts), cut by the converter."""
    folder = tmp_path_factory.mktemp("keyframes")
    video, audio = write_sources(folder)
    cut = {}
    for policy in ("faces", "gop"):
        results, problems = cut_recording(video, audio, REQUESTS, folder / policy,
                                          encoding=VideoEncoding(keyframes=policy))
        assert not problems
        cut[policy] = {result.key: (result.mp4.read_bytes(), result.faces) for result in results}
    return cut


def keyframe_indices(mp4: bytes) -> list[int]:
    with av.open(io.BytesIO(mp4)) as container:
        packets = [p for p in container.demux(container.streams.video[0]) if p.size]
    order = sorted(p.pts for p in packets)
    return sorted(order.index(p.pts) for p in packets if p.is_keyframe)


def all_frames_in_order(mp4: bytes) -> list[np.ndarray]:
    """Every frame, decoded sequentially by a plain PyAV loop: what skipping must reproduce."""
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        return [frames_module._to_bgr(frame) for frame in container.decode(stream)]


def test_faces_policy_puts_a_keyframe_at_every_face_frame_and_gop_does_not(clips):
    for key, (mp4, faces) in clips["faces"].items():
        face_frames = [face["frame"] for face in faces["frames"]]
        assert len(face_frames) >= 3 if key == "long" else len(face_frames) >= 2
        assert keyframe_indices(mp4) == face_frames   # each clip starts at face frame 0
    long_mp4, long_faces = clips["gop"]["long"]
    assert keyframe_indices(long_mp4) == [0, 60, 120]   # every 2 s at 29.97 fps
    assert len(long_faces["frames"]) == 12


def test_faces_policy_clips_are_larger_but_hold_the_same_pictures(clips):
    for key in ("long", "short"):
        keyed, sparse = clips["faces"][key][0], clips["gop"][key][0]
        assert len(keyed) > len(sparse)
        a, b = all_frames_in_order(keyed), all_frames_in_order(sparse)
        assert len(a) == len(b)
        # The same source frames, encoded twice: close, not equal (different references).
        assert max(float(np.abs(x.astype(int) - y).mean()) for x, y in zip(a, b)) < 6


@pytest.mark.parametrize("policy", ["faces", "gop"])
def test_skipping_packets_gives_exactly_the_sequential_frames(clips, policy):
    for mp4, faces in clips[policy].values():
        everything = all_frames_in_order(mp4)
        count = len(everything)
        for wanted in ([face["frame"] for face in faces["frames"]],
                       list(face_sample_frames(count, FPS, 100)),     # a denser sampling than stored
                       [count - 1], [1, 2], list(range(count))):
            got = decode_frames(mp4, wanted, "clip")
            assert len(got) == len(wanted)
            for index, frame in zip(wanted, got):
                assert np.array_equal(frame, everything[index]), (policy, index)


def test_at_the_stored_interval_only_the_kept_frames_are_decoded(clips, monkeypatch):
    decoded = []
    original = frames_module._packets_needed

    def counting(packets, index_of_pts, want):
        needed = original(packets, index_of_pts, want)
        decoded.append((len(needed), len(packets), len(want)))
        return needed

    monkeypatch.setattr(frames_module, "_packets_needed", counting)
    for policy in ("faces", "gop"):
        mp4, faces = clips[policy]["long"]
        decode_frames(mp4, [face["frame"] for face in faces["frames"]], "clip")
    (faces_needed, total, kept), (gop_needed, _, _) = decoded
    assert faces_needed == kept == 12 and total == 174
    # With a keyframe every 2 s the kept frames need most of the clip (frames up to each one).
    assert gop_needed > 10 * kept


class FakePacket:
    def __init__(self, pts: int, key: bool):
        self.pts, self.is_keyframe = pts, key


def test_open_gops_are_decoded_sequentially():
    # Decode order I0 P3 B1 B2 | I6 B4 B5 P7: B4 and B5 are shown before their GOP's keyframe
    # (an open GOP), so they may reference the first GOP: nothing may be skipped before them.
    packets = [FakePacket(p, k) for p, k in ((0, True), (3, False), (1, False), (2, False),
                                              (6, True), (4, False), (5, False), (7, False))]
    index_of_pts = {pts: pts for pts in range(8)}
    assert frames_module._packets_needed(packets, index_of_pts, {4}) == packets[:6]
    # The same GOPs closed: only the second GOP's packets up to frame 5's.
    closed = [FakePacket(p, k) for p, k in ((0, True), (3, False), (1, False), (2, False),
                                             (4, True), (7, False), (5, False), (6, False))]
    assert frames_module._packets_needed(closed, index_of_pts, {5}) == closed[4:7]


def test_undecodable_and_short_clips_are_errors_naming_the_sample(clips):
    mp4, _ = clips["faces"]["short"]
    with pytest.raises(VideoError, match="clip-3: the mp4 member decodes to 39 frames, but frame 39 is needed"):
        decode_frames(mp4, [0, 39], "clip-3")
    with pytest.raises(VideoError, match="clip-4: cannot decode the mp4 member"):
        decode_frames(b"not a video at all" * 10, [0], "clip-4")
    with pytest.raises(VideoError, match="clip-5: the mp4 member is empty"):
        decode_frames(b"", [0], "clip-5")


def test_the_card_records_the_encoding_and_the_cli_sets_it(small_corpus, small_shards, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mer_data import schemas
    from mer_data.cli import main
    from mer_data.pipelines import convert as convert_module

    shards, _ = small_shards
    card = json.loads((shards / "dataset.json").read_text())
    assert card["options"]["encoding"] == VideoEncoding().to_json()
    assert not schemas.errors("dataset", card)
    # The CLI's options reach the conversion (its run is replaced: the options are the point).
    seen = {}

    def run_conversion(plan, out, options, **kwargs):
        seen["options"] = options
        raise SystemExit(0)

    monkeypatch.setattr(convert_module, "run_conversion", run_conversion)
    root, _ = small_corpus
    CliRunner().invoke(main, ["convert", "iemocap", str(root), str(tmp_path / "out"), "--x264-preset", "faster",
                              "--x264-tune", "none", "--crf", "28", "--keyframes", "gop", "--max-height", "240"])
    assert seen["options"].encoding == VideoEncoding("faster", "none", 28, "gop")
    assert seen["options"].max_height == 240
    refused = CliRunner().invoke(main, ["convert", "iemocap", str(root), str(tmp_path / "o2"), "--keyframes", "all"])
    assert refused.exit_code == 2 and "'all' is not one of 'faces', 'gop'" in refused.output


def test_encoding_values_are_checked():
    with pytest.raises(ValueError, match="x264 preset must be one of"):
        VideoEncoding(preset="warp")
    with pytest.raises(ValueError, match="crf must be between 0 and 51"):
        VideoEncoding(crf=60)
    assert VideoEncoding.from_json(None) == VideoEncoding()
    assert "tune" not in VideoEncoding(tune="none").x264_options(FPS)
    assert VideoEncoding().x264_options(FPS)["g"] == 60


def test_regions_and_face_crops_convert_only_what_they_keep(clips):
    mp4, _ = clips["faces"]["long"]
    frames = frames_module._decoded(mp4, [0, 45, 90], "clip")
    width, height = frames[0].width, frames[0].height    # 160 x 240: the left half of 320 x 240
    rng = np.random.default_rng(0)
    boxes = [None, [0, 0, width, height], [width - 7, height - 9, 7, 9], [1, 1, 31, 33], [3, 201, 37, 37]]
    boxes += [[int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20)), int(rng.integers(5, 90)),
               int(rng.integers(5, 90))] for _ in range(30)]
    for frame in frames:
        whole = frames_module._to_bgr(frame)
        for box in boxes:
            left, top, side = frames_module.square_crop(box, width, height)
            region = frames_module._bgr_region(frame, left, top, side, side)
            assert np.array_equal(region, whole[top:top + side, left:left + side]), box
            assert np.array_equal(frames_module._face_crop(frame, box, 48), frames_module.crop_face(whole, box, 48))


def test_the_sample_table_is_read_without_a_demuxer_and_unusual_files_fall_back(clips, monkeypatch):
    from mer_data.media.mp4 import read_video_track, video_sample_count

    mp4, faces = clips["faces"]["long"]
    track = read_video_track(mp4)
    assert track is not None and len(track.sizes) == 174
    assert sorted(track.display_ranks) == list(range(174))
    assert [rank for rank, key in zip(track.display_ranks, track.keyframes) if key] == keyframe_indices(mp4)
    wanted = [face["frame"] for face in faces["frames"]] + [173]
    fast = decode_frames(mp4, wanted, "clip")
    # The demuxer's path (taken for any file the table reader does not take) gives the same frames.
    monkeypatch.setattr(frames_module, "read_video_track", lambda data: None)
    slow = decode_frames(mp4, wanted, "clip")
    assert all(np.array_equal(a, b) for a, b in zip(fast, slow))
    assert read_video_track(b"\x00\x00\x00\x18ftypisom, then nothing") is None
    assert read_video_track(mp4[: len(mp4) // 2]) is None   # cut off: its samples lie past the end
    # The converter's check of a finished clip counts with the same reader.
    assert video_sample_count(mp4) == 174
    assert video_sample_count(mp4[: len(mp4) // 2]) == -1 and video_sample_count(b"") == -1
