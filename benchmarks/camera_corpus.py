"""A camera-like IEMOCAP-layout corpus made from a synthetic one, for benchmarks.

The synthetic release draws two faces on flat backgrounds: H.264 (and JPEG) compress that far
better and faster than camera footage, which flatters every encoder. This copies a synthetic
release and re-renders each dialog AVI as footage closer to a camera's, keeping everything else
(timings, audio, annotations, the two speakers and their faces) as it was:

  * a textured background that moves: an elementary cellular automaton (rule 110, a busy
    irregular texture) scrolling down one row per frame, softened, blended over the whole frame
    at 30% (the faces stay detectable);
  * sensor noise: temporal Gaussian noise on every pixel of every frame;
  * MPEG-4 Part 2 in AVI, DivX-tagged, as IEMOCAP ships, at 2.5 Mbit/s (IEMOCAP's DivX files hold
    about 1 GB per hour of 720x480 video: ~2.2 Mbit/s; a fixed quantizer would keep every speck of
    the noise and make a 20+ Mbit/s file that costs every method more to decode than a real one).

Files other than the AVIs are hard-linked (copied where links are not possible), so the copy
costs little disk. Deterministic: the texture and the noise are seeded.

    python benchmarks/camera_corpus.py SYNTHETIC_RELEASE_ROOT OUT_FOLDER
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TEXTURE_OPACITY = 0.3
NOISE_STRENGTH = 10   # ffmpeg noise filter, alls: amplitude on the 0-255 scale
AVI_CODEC = ["-c:v", "mpeg4", "-vtag", "DIVX", "-b:v", "2500k"]


def camera_filter(width: int, height: int, rate: str, seed: int) -> str:
    """The filter graph: [0:v] (the drawn dialog) -> [out] (camera-like)."""
    texture = (f"cellauto=s={width}x{height}:rule=110:rate={rate}:random_fill_ratio=0.5:random_seed={seed}"
               ":scroll=1:full=1,gblur=sigma=1.2,format=yuv420p")
    return (f"{texture}[texture];[0:v]format=yuv420p[drawn];"
            f"[drawn][texture]blend=all_expr='A*{1 - TEXTURE_OPACITY}+B*{TEXTURE_OPACITY}':shortest=1,"
            f"noise=alls={NOISE_STRENGTH}:allf=t:all_seed={seed}[out]")


def render_camera_like(source: Path, target: Path, seed: int) -> None:
    """Re-render one dialog AVI (its audio track, if any, copied as is)."""
    width, height, rate = _video_format(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
               "-filter_complex", camera_filter(width, height, rate, seed),
               "-map", "[out]", "-map", "0:a?", *AVI_CODEC, "-c:a", "copy", str(target)]
    subprocess.run(command, check=True)


def _video_format(path: Path) -> tuple[int, int, str]:
    """(width, height, exact frame rate as ffmpeg writes it), from the converter's own probe."""
    from mer_data.media.video import VideoSource

    source = VideoSource.probe(path)
    return source.width, source.height, f"{source.fps.numerator}/{source.fps.denominator}"


def make_camera_corpus(source_root: Path, out: Path) -> Path:
    """Copy the release at `source_root` (IEMOCAP_full_release) to out/IEMOCAP_full_release with
    camera-like AVIs; returns the new root. An existing complete copy is reused."""
    root = out / source_root.name
    done = out / ".complete"
    if done.is_file():
        return root
    shutil.rmtree(out, ignore_errors=True)
    avis = []
    for path in sorted(source_root.rglob("*")):
        target = root / path.relative_to(source_root)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.suffix.lower() == ".avi":
            avis.append((path, target))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
    # One ffmpeg per dialog, as many at once as there are cores (before any measurement).
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(lambda job: render_camera_like(*job), [(path, target, seed)
                                                             for seed, (path, target) in enumerate(avis)]))
    done.write_text("ok\n")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source_root", type=Path, help="a synthetic release root (IEMOCAP_full_release)")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    print(make_camera_corpus(args.source_root, args.out))


if __name__ == "__main__":
    main()
