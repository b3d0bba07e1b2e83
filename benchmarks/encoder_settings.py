"""Benchmark: the clips' libx264 settings, each measured for conversion CPU, bytes and loader decode.

On each corpus (the synthetic IEMOCAP layout, and a camera-like copy of it: benchmarks/camera_corpus.py)
and for each setting, a fresh process cuts every utterance of the corpus with the converter's own
media step (mer_data.media.cut.cut_recording: one ffmpeg graph per dialog, face detection included;
no Dask, no packing, which do not depend on the setting) and reports:

  cut CPU-s      user+sys of that process and its ffmpeg children during the cut (imports excluded)
  MB             bytes of the MP4 clips (the FLACs do not depend on the setting)
  decode ms      CPU ms per clip of the loader's decoder (mer_data.model.frames.decode_frames, one
                 thread) reading the frames the model keeps by default (the face frames, every 500 ms),
                 and at 100 ms (every third frame) for a denser sampling

Settings: presets x tune (none / fastdecode) x keyframes (gop: every 2 s / faces: at each face
frame), ultrafast, and the default (superfast / fastdecode / faces) downscaled to 240 rows
(--max-height 240). One run per setting, each in its
own process on an idle machine (the script waits for one); the last line is one JSON object.

    .venv/bin/python benchmarks/encoder_settings.py                 # 2 corpora x ~3 min of video
    .venv/bin/python benchmarks/encoder_settings.py --minutes 6 --corpora camera
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(SCRIPT.parent))
from camera_corpus import make_camera_corpus  # noqa: E402
from convert_iemocap import ensure_corpus, load_dialogs, plan_dialogs, save_dialogs  # noqa: E402
from machine import wait_until_idle  # noqa: E402

PRESETS = ("superfast", "veryfast", "faster")
DENSE_INTERVAL_MS = 100


def settings() -> list[dict]:
    """Every setting measured: name -> VideoEncoding fields (+ max_height)."""
    grid = [{"preset": preset, "tune": tune, "keyframes": keyframes}
            for preset in PRESETS for tune in ("none", "fastdecode") for keyframes in ("gop", "faces")]
    grid.append({"preset": "ultrafast", "tune": "none", "keyframes": "gop"})
    grid.append({"preset": "superfast", "tune": "fastdecode", "keyframes": "faces", "max_height": 240})
    return grid


def label(setting: dict) -> str:
    text = f"{setting['preset']} / {setting['tune']} / {setting['keyframes']}"
    return text + (f" / {setting['max_height']} rows" if setting.get("max_height") else "")


# --------------------------------------------------------------------------------------------
# The child: cut with one setting, then decode what was cut


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def child(dialogs_json: Path, out: Path, setting: dict) -> dict:
    import cv2

    from mer_data.media.cut import cut_recording
    from mer_data.media.encoding import VideoEncoding
    from mer_data.media.video import face_sample_frames
    from mer_data.model.frames import decode_frames
    from mer_data.records import CutRequest

    cv2.setNumThreads(1)
    encoding = VideoEncoding(preset=setting["preset"], tune=setting["tune"], keyframes=setting["keyframes"])
    results, problems = [], []
    before = _cpu_seconds()
    for dialog in load_dialogs(dialogs_json):
        requests = [CutRequest(u["id"], u["start"], u["end"], u["region"], u["channel"]) for u in dialog.utterances]
        done, failed = cut_recording(Path(dialog.video), Path(dialog.audio), requests, out / dialog.name,
                                     max_height=setting.get("max_height"), encoding=encoding)
        results += done
        problems += failed
    cut_cpu = _cpu_seconds() - before
    mp4s = [result.mp4 for result in results]
    decode = {}
    for name, interval in (("faces", None), ("dense", DENSE_INTERVAL_MS)):
        clips = [(path.read_bytes(), _kept(result, interval, face_sample_frames)) for path, result in zip(mp4s, results)]
        start = time.process_time()
        for data, kept in clips:
            decode_frames(data, kept)
        decode[name] = (time.process_time() - start) / len(clips) * 1000
    return {"cut_cpu_s": cut_cpu, "clips": len(results), "rejected": len(problems),
            "mp4_bytes": sum(path.stat().st_size for path in mp4s),
            "decode_ms_faces": decode["faces"], "decode_ms_dense": decode["dense"]}


def _kept(result, interval_ms, face_sample_frames) -> list[int]:
    if interval_ms is None:
        return [face["frame"] for face in result.faces["frames"]]
    from fractions import Fraction
    return list(face_sample_frames(result.video["frames"], Fraction(result.video["fps_fraction"]), interval_ms))


# --------------------------------------------------------------------------------------------
# The parent


def corpora(work: Path, minutes: float, names: list[str]) -> dict[str, Path]:
    synthetic = ensure_corpus(work / "corpus-synthetic", minutes, sessions=(1,), dialogs_per_session=2)
    found = {"synthetic": synthetic}
    if "camera" in names:
        print("making the camera-like copy ...", flush=True)
        found["camera"] = make_camera_corpus(synthetic, work / "corpus-camera")
    return {name: found[name] for name in names}


def measure(corpus: str, raw: Path, work: Path, idle_wait_s: float) -> list[dict]:
    dialogs = plan_dialogs(raw)
    dialogs_json = save_dialogs(dialogs, work / f"dialogs-{corpus}.json")
    minutes = sum(d.duration for d in dialogs) / 60
    rows = []
    for setting in settings():
        out = work / f"out-{corpus}"
        shutil.rmtree(out, ignore_errors=True)
        if idle_wait_s > 0:
            wait_until_idle(idle_wait_s)
        done = subprocess.run([sys.executable, str(SCRIPT), "_child", str(dialogs_json), str(out), json.dumps(setting)],
                              check=True, capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"))
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        row = {"corpus": corpus, "video_minutes": round(minutes, 2), "setting": label(setting), **setting, **figures}
        rows.append(row)
        print(f"  {corpus:9s} {label(setting):40s} cut {figures['cut_cpu_s']:6.1f} CPU-s  "
              f"{figures['mp4_bytes'] / 1e6:7.1f} MB  decode {figures['decode_ms_faces']:5.1f} ms/clip "
              f"({figures['decode_ms_dense']:5.1f} at {DENSE_INTERVAL_MS} ms)  clips {figures['clips']}", flush=True)
    shutil.rmtree(work / f"out-{corpus}", ignore_errors=True)
    return rows


def markdown(rows: list[dict]) -> str:
    """One table per corpus, each figure also relative to the previous default (veryfast / none / gop)."""
    lines = []
    for corpus in dict.fromkeys(row["corpus"] for row in rows):
        mine = [row for row in rows if row["corpus"] == corpus]
        base = next(row for row in mine if row["setting"] == "veryfast / none / gop")
        lines += [f"\n{corpus} ({mine[0]['video_minutes']} min of video, {mine[0]['clips']} clips)\n",
                  "| preset / tune / keyframes | cut CPU-s | MB | decode ms/clip (500 ms) | decode ms/clip (100 ms) |",
                  "|---|---|---|---|---|"]
        for row in mine:
            lines.append(f"| {row['setting']} | {row['cut_cpu_s']:.1f} ({row['cut_cpu_s'] / base['cut_cpu_s']:.2f}x) "
                         f"| {row['mp4_bytes'] / 1e6:.1f} ({row['mp4_bytes'] / base['mp4_bytes']:.2f}x) "
                         f"| {row['decode_ms_faces']:.1f} ({row['decode_ms_faces'] / base['decode_ms_faces']:.2f}x) "
                         f"| {row['decode_ms_dense']:.1f} ({row['decode_ms_dense'] / base['decode_ms_dense']:.2f}x) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "bench-out" / "encoder_settings")
    parser.add_argument("--minutes", type=float, default=3.0, help="minutes of dialog video per corpus [3]")
    parser.add_argument("--corpora", default="synthetic,camera", help="synthetic, camera or both [both]")
    parser.add_argument("--idle-wait", type=float, default=120.0, help="seconds to wait for an idle machine [120]")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for corpus, raw in corpora(args.work, args.minutes, args.corpora.split(",")).items():
        rows += measure(corpus, raw, args.work, args.idle_wait)
    print(markdown(rows))
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        print(json.dumps(child(Path(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4]))))
    else:
        main()
