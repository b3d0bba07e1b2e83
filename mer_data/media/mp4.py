"""The sample table of an MP4's video track, read from its bytes without a demuxer or a decoder.

The converter counts each finished clip's samples with it (media/graph.py), the loader decodes
from it.

A loader that knows where each coded frame lies, which ones are keyframes and in which order they
are shown can hand a decoder exactly the packets it needs (mer_data.model.frames), skipping the
container probe that opening the file with FFmpeg costs for every clip (~1 ms, as much as decoding
the kept frames). ISO/IEC 14496-12 boxes read here: moov/trak/mdia/hdlr (the video track),
minf/stbl/stsd (the avc1 sample entry and its avcC decoder configuration), stts and ctts (decode
times and composition offsets), stss (keyframes), stsz, stsc and stco/co64 (where each sample lies).

Anything else (fragmented files, other codecs, several video tracks, damaged tables) gives None,
and the caller falls back to a real demuxer: this is a fast path, never the only one.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}
_TABLES = {b"hdlr", b"stsd", b"stts", b"ctts", b"stss", b"stsz", b"stsc", b"stco", b"co64"}
# Bytes of a VisualSampleEntry (avc1) before its child boxes: the 8-byte box header, 8 of
# SampleEntry, 70 of VisualSampleEntry.
_VISUAL_ENTRY_HEADER = 86


@dataclass(frozen=True)
class VideoTrack:
    """The H.264 video track of an MP4: its decoder configuration and, per sample in decode order,
    where its bytes lie, whether it is a keyframe and its rank in presentation order."""

    extradata: bytes          # the avcC box's payload (SPS and PPS), what the decoder is opened with
    offsets: list[int]
    sizes: list[int]
    keyframes: list[bool]
    display_ranks: list[int]  # the frame index a sequential decoder gives each sample

    def sample(self, data: bytes, index: int) -> bytes:
        return data[self.offsets[index]:self.offsets[index] + self.sizes[index]]


def video_sample_count(data: bytes) -> int:
    """How many samples the MP4's single video track holds, as its stsz box says; -1 where the file
    has no readable one (cut off: ffmpeg writes the moov box last, or moves it first, at the end)."""
    try:
        tracks = [tables for tables in _tracks(data) if tables.get(b"hdlr", b"")[8:12] == b"vide"]
        if len(tracks) != 1 or b"stsz" not in tracks[0]:
            return -1
        return struct.unpack_from(">I", tracks[0][b"stsz"], 8)[0]
    except (struct.error, ValueError):
        return -1


def read_video_track(data: bytes) -> VideoTrack | None:
    """The single H.264 video track of the MP4 in `data`, or None (see the module doc)."""
    try:
        tracks = [tables for tables in _tracks(data) if tables.get(b"hdlr", b"")[8:12] == b"vide"]
        if len(tracks) != 1:
            return None
        return _video_track(tracks[0], len(data))
    except (struct.error, ValueError, IndexError, KeyError):
        return None


def _boxes(data: bytes, start: int, end: int):
    """(type, payload start, payload end) of the boxes in data[start:end]."""
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", data, start + 8)[0], 16
        elif size == 0:
            size = end - start
        if size < header or start + size > end:
            raise ValueError("box runs past its parent")
        yield kind, start + header, start + size
        start += size


def _tracks(data: bytes) -> list[dict[bytes, bytes]]:
    """Per trak box, its tables by type (payloads)."""
    moov = [(s, e) for kind, s, e in _boxes(data, 0, len(data)) if kind == b"moov"]
    if len(moov) != 1:
        return []
    return [_tables(data, s, e) for kind, s, e in _boxes(data, *moov[0]) if kind == b"trak"]


def _tables(data: bytes, start: int, end: int) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    for kind, s, e in _boxes(data, start, end):
        if kind in _CONTAINERS:
            found.update(_tables(data, s, e))
        elif kind in _TABLES:
            found[kind] = data[s:e]
    return found


def _video_track(tables: dict[bytes, bytes], file_size: int) -> VideoTrack | None:
    extradata = _avcc(tables[b"stsd"])
    if extradata is None:
        return None
    sizes = _sample_sizes(tables[b"stsz"])
    count = len(sizes)
    offsets = _sample_offsets(tables[b"stsc"], _chunk_offsets(tables), sizes)
    if len(offsets) != count or any(o + s > file_size for o, s in zip(offsets, sizes)):
        return None
    decode_times = _expand(_pairs(tables[b"stts"]), count, cumulative=True)
    composition = _expand(_pairs(tables[b"ctts"], signed=True), count) if b"ctts" in tables else [0] * count
    shown = [d + c for d, c in zip(decode_times, composition)]
    order = sorted(range(count), key=lambda i: shown[i])
    ranks = [0] * count
    for rank, sample in enumerate(order):
        ranks[sample] = rank
    keyframes = [True] * count
    if b"stss" in tables:
        keyframes = [False] * count
        for number in _entries(tables[b"stss"], ">I"):
            keyframes[number - 1] = True
    return VideoTrack(extradata, offsets, sizes, keyframes, ranks)


def _avcc(stsd: bytes) -> bytes | None:
    """The avcC payload of the first (only) sample entry when it is avc1, else None."""
    (entries,) = struct.unpack_from(">I", stsd, 4)
    if entries != 1:
        return None
    size, kind = struct.unpack_from(">I4s", stsd, 8)
    if kind != b"avc1":
        return None
    entry = stsd[8:8 + size]
    for child, s, e in _boxes(entry, _VISUAL_ENTRY_HEADER, len(entry)):
        if child == b"avcC":
            return entry[s:e]
    return None


def _entries(table: bytes, fmt: str) -> list[int]:
    """The entries of a full box's table: version/flags, a count, then `count` fixed-size records."""
    (count,) = struct.unpack_from(">I", table, 4)
    width = struct.calcsize(fmt)
    return [struct.unpack_from(fmt, table, 8 + i * width)[0] for i in range(count)]


def _pairs(table: bytes, signed: bool = False) -> list[tuple[int, int]]:
    version = table[0]
    (count,) = struct.unpack_from(">I", table, 4)
    fmt = ">Ii" if signed and version == 1 else ">II"
    return [struct.unpack_from(fmt, table, 8 + 8 * i) for i in range(count)]


def _expand(pairs: list[tuple[int, int]], count: int, cumulative: bool = False) -> list[int]:
    """Run-length (count, value) pairs to one value per sample (running sums of them for stts)."""
    values, total = [], 0
    for run, value in pairs:
        for _ in range(run):
            values.append(total if cumulative else value)
            total += value
    if len(values) != count:
        raise ValueError("table does not cover every sample")
    return values


def _sample_sizes(stsz: bytes) -> list[int]:
    uniform, count = struct.unpack_from(">II", stsz, 4)
    if uniform:
        return [uniform] * count
    return list(struct.unpack_from(f">{count}I", stsz, 12))


def _chunk_offsets(tables: dict[bytes, bytes]) -> list[int]:
    if b"stco" in tables:
        return _entries(tables[b"stco"], ">I")
    return _entries(tables[b"co64"], ">Q")


def _sample_offsets(stsc: bytes, chunks: list[int], sizes: list[int]) -> list[int]:
    """Each sample's file offset: chunks hold runs of consecutive samples (stsc maps chunk -> count)."""
    runs = [struct.unpack_from(">III", stsc, 8 + 12 * i)[:2] for i in range(struct.unpack_from(">I", stsc, 4)[0])]
    offsets, sample = [], 0
    for index, (first_chunk, per_chunk) in enumerate(runs):
        last_chunk = runs[index + 1][0] - 1 if index + 1 < len(runs) else len(chunks)
        for chunk in range(first_chunk, last_chunk + 1):
            position = chunks[chunk - 1]
            for _ in range(per_chunk):
                if sample >= len(sizes):
                    return offsets
                offsets.append(position)
                position += sizes[sample]
                sample += 1
    return offsets
