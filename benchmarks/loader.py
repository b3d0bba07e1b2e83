"""Benchmark: our streaming shard loader against a loader of the published layout, and the model's appetite.

  ours        model.data: webdataset over the shards, FLAC -> log-mel chunks (torch.stft), MP4 ->
              face crops (OpenCV, sequential decode, stored boxes), texts tokenized per batch.
  reference   the published layout (Dai et al. 2021): one folder per utterance holding EVERY video
              frame of the clip as a JPEG (cv2.imwrite, default quality, as the notebooks wrote
              them), a 16-bit WAV, the transcript and the metadata; a torch Dataset reads the
              frames sampled every --frame-interval-ms (the same frames as ours) with PIL, crops
              them with the same stored boxes (PIL crop + BOX resize: area averaging, as INTER_AREA),
              computes the same log-mel with librosa, and batches with the same collate.

The reference folders are exported once, untimed, from the same shards (bench-out/loader/). Both
loaders run with 2 DataLoader workers, batch size 8, in evaluation order (no shuffling: an
unbalanced shard shuffle would measure the tiny demo's shard count, not decoding), over the same
samples repeated to at least --samples per pass; the passes alternate ours/reference (--repeats
rounds, the order flipped each round) and the median is compared. Before timing, the outputs of the
two are compared on a few samples (same counts; mel and crops equal within JPEG/resampling error),
so both do the same work.

Then, if model/nets.py exists, the model's consumption: FE2E forward + backward (AdamW step
included) on CPU per batch of the same loader, in samples/s, against the loader's samples/s.

    .venv/bin/python benchmarks/loader.py                       # /work/dev-demo/shards, ~2 min
    .venv/bin/python benchmarks/loader.py --shards SHARDS/ --samples 2000
    .venv/bin/python benchmarks/loader.py --frame-interval-ms 100

The machine may be shared: each pass waits (up to --idle-wait s) for other work to stop and
records how many cores other processes used meanwhile. Last line of the output: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One thread per DataLoader worker for both loaders: with 2 workers on a small machine, numpy's
# BLAS threads (librosa's mel product) would oversubscribe the cores and slow the reference down
# for a reason that has nothing to do with its layout. Set before numpy loads; the workers inherit it.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import torch  # noqa: E402
import webdataset as wds  # noqa: E402
from PIL import Image  # noqa: E402

from model import audio as mel  # noqa: E402
from model.data import _Collate, DecodedSample, decode_sample, loader_over, make_dataset, resolve_shards  # noqa: E402
from model.frames import frame_plan, normalise_crops, square_crop  # noqa: E402
from model.labels import label_space_of, targets  # noqa: E402

DEFAULT_SHARDS = "/work/dev-demo/shards"
WORK = REPO / "bench-out" / "loader"
WORKERS = 2
BATCH_SIZE = 8
TARGET_RATIO = 2.0  # ours samples/s over the reference's (the issue)
EXPORT_VERSION = 1  # bump when the exported layout changes


# --------------------------------------------------------------------------------------------
# The reference: the published layout and a loader of it


def raw_samples(shards: list[str]):
    """The shards' samples as member bytes (no decoding)."""
    yield from wds.DataPipeline(wds.SimpleShardList(shards), wds.tarfile_to_samples())


def export_reference(shards: list[str], out: Path) -> list[Path]:
    """One folder per utterance: every clip frame as frame_NNNNN.jpg, audio.wav, text.txt, meta.json."""
    stamp = out / "exported.json"
    fingerprint = {"version": EXPORT_VERSION, "shards": [(s, os.path.getsize(s)) for s in shards]}
    if stamp.is_file() and json.loads(stamp.read_text()) == fingerprint:
        return [out / line for line in (out / "folders.txt").read_text().split()]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    folders = []
    for sample in raw_samples(shards):
        folder = out / sample["__key__"]
        folder.mkdir()
        _write_all_frames(sample["mp4"], folder)
        waveform = mel.decode_flac(sample["flac"], sample["__key__"])
        soundfile.write(folder / "audio.wav", waveform, mel.SAMPLE_RATE, subtype="PCM_16")
        (folder / "text.txt").write_bytes(sample["txt"])
        (folder / "meta.json").write_bytes(sample["json"])
        folders.append(folder)
    (out / "folders.txt").write_text("\n".join(folder.name for folder in folders))
    stamp.write_text(json.dumps(fingerprint))
    return folders


def _write_all_frames(mp4: bytes, folder: Path) -> None:
    clip = folder / "clip.mp4"
    clip.write_bytes(mp4)
    capture = cv2.VideoCapture(str(clip))
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        cv2.imwrite(str(folder / f"frame_{index:05d}.jpg"), frame)
        index += 1
    capture.release()
    clip.unlink()


class ReferenceDataset(torch.utils.data.Dataset):
    """The published layout's loader, doing our loader's work: same frames, boxes, sizes and log-mel."""

    def __init__(self, folders: list[Path], label_names: tuple[str, ...], frame_interval_ms: int | None,
                 crop_size: int):
        self.folders, self.label_names = folders, label_names
        self.frame_interval_ms, self.crop_size = frame_interval_ms, crop_size

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, index: int) -> DecodedSample:
        folder = self.folders[index]
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        crops = np.stack([self._crop(folder / f"frame_{frame:05d}.jpg", box)
                          for frame, box in frame_plan(meta, self.frame_interval_ms)])
        waveform, _ = soundfile.read(folder / "audio.wav", dtype="float32")
        return DecodedSample(id=folder.name, frames=normalise_crops(crops), mel_chunks=self._mel_chunks(waveform),
                             text=(folder / "text.txt").read_text(encoding="utf-8"),
                             target=targets(meta, self.label_names))

    def _crop(self, path: Path, box) -> np.ndarray:
        with Image.open(path) as image:
            image = image.convert("RGB")
            left, top, side = square_crop(box, image.width, image.height)
            face = image.crop((left, top, left + side, top + side)).resize((self.crop_size,) * 2, Image.BOX)
            return np.asarray(face)

    @staticmethod
    def _mel_chunks(waveform: np.ndarray) -> torch.Tensor:
        import librosa

        power = librosa.feature.melspectrogram(
            y=waveform, sr=mel.SAMPLE_RATE, n_fft=mel.N_FFT, hop_length=mel.HOP_SAMPLES,
            win_length=mel.WINDOW_SAMPLES, window="hann", center=True, pad_mode="constant", power=2.0,
            n_mels=mel.N_MELS, fmin=0.0, fmax=mel.SAMPLE_RATE / 2)
        features = (np.log(np.maximum(power, mel.LOG_FLOOR)) - mel.LOG_MEL_MEAN) / mel.LOG_MEL_STD
        return mel.cut_chunks(torch.from_numpy(features.astype(np.float32)))


# --------------------------------------------------------------------------------------------
# The two loaders, built the same way


def our_loader(shards: list[str], repeats: int, tokenizer, names, interval, crop_size):
    repeated = shards * repeats
    dataset = make_dataset(repeated, tokenizer=tokenizer, batch_size=BATCH_SIZE, shuffle=False, label_names=names,
                           frame_interval_ms=interval, crop_size=crop_size)
    return loader_over(dataset, shards=repeated, label_names=names, workers=WORKERS, persistent=False)


def reference_loader(folders: list[Path], repeats: int, tokenizer, names, interval, crop_size):
    dataset = ReferenceDataset(folders * repeats, names, interval, crop_size)
    return torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=False, num_workers=WORKERS,
                                       collate_fn=_Collate(tokenizer, names))


def check_same_work(shards: list[str], folders: list[Path], names, interval, crop_size, count: int = 8) -> dict:
    """Our decoded samples against the reference's for the first `count` samples: counts and differences."""
    reference = ReferenceDataset(folders, names, interval, crop_size)
    by_id = {folder.name: i for i, folder in enumerate(folders)}
    mel_diff = crop_diff = 0.0
    checked = 0
    for sample in raw_samples(shards):
        ours = decode_sample(sample, label_names=names, frame_interval_ms=interval, crop_size=crop_size)
        theirs = reference[by_id[ours.id]]
        if ours.frames.shape != theirs.frames.shape or ours.mel_chunks.shape != theirs.mel_chunks.shape:
            raise SystemExit(f"{ours.id}: the loaders disagree on shapes: frames {tuple(ours.frames.shape)} vs "
                             f"{tuple(theirs.frames.shape)}, chunks {tuple(ours.mel_chunks.shape)} vs "
                             f"{tuple(theirs.mel_chunks.shape)}")
        if not np.array_equal(ours.target, theirs.target) or ours.text != theirs.text:
            raise SystemExit(f"{ours.id}: the loaders disagree on the target or the text")
        mel_diff = max(mel_diff, float((ours.mel_chunks - theirs.mel_chunks).abs().max()))
        crop_diff = max(crop_diff, float((ours.frames - theirs.frames).abs().mean()))
        checked += 1
        if checked == count:
            break
    # In normalised units: log-mel / 3.1; crops / ~0.226 (1/255 of a pixel level is ~0.017).
    return {"samples": checked, "mel_max_abs_diff": mel_diff, "crop_mean_abs_diff": crop_diff}


# --------------------------------------------------------------------------------------------
# Measuring


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (/proc/stat)."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(max_wait_s: float, threshold_cores: float = 0.25, window_s: float = 2.0) -> float:
    """Wait (at most max_wait_s) until other work uses < threshold_cores; returns the last load seen."""
    deadline = time.monotonic() + max_wait_s
    while True:
        before = machine_busy_seconds()
        time.sleep(window_s)
        load = (machine_busy_seconds() - before) / window_s
        if load < threshold_cores or time.monotonic() >= deadline:
            return load


def own_cpu_seconds() -> float:
    """CPU seconds of this process and its finished (joined) children: the DataLoader workers."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_pass(make) -> dict:
    """Build a loader with `make()` and iterate it once (worker start-up included): samples/s and CPU."""
    busy, cpu = machine_busy_seconds(), own_cpu_seconds()
    start = time.perf_counter()
    loader = make()
    samples = sum(len(batch) for batch in loader)
    del loader  # joins the workers, so that their CPU time is counted
    wall = time.perf_counter() - start
    used = own_cpu_seconds() - cpu
    other = max(0.0, machine_busy_seconds() - busy - used) / wall
    return {"samples": samples, "wall_s": wall, "samples_per_s": samples / wall, "cpu_s": used,
            "samples_per_cpu_s": samples / used, "other_cores": other}


def consumption(loader_make, names, text_encoder: str | None, batches: int) -> dict:
    """FE2E forward + backward + AdamW step on CPU per batch of our loader, in samples/s.

    The batches are loaded first, so that the model has every core to itself while it is timed.
    """
    from model.nets import build_model

    loaded = []
    for batch in loader_make():
        loaded.append(batch)
        if len(loaded) > batches:
            break
    torch.manual_seed(0)
    model = build_model("fe2e", names, modalities="tav", text_encoder=text_encoder)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    samples, seconds = 0, 0.0
    for step, batch in enumerate(loaded):
        start = time.perf_counter()
        loss = loss_fn(model(batch).logits, batch.targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step > 0:  # the first step allocates and warms up
            seconds += time.perf_counter() - start
            samples += len(batch)
    timed = len(loaded) - 1
    return {"text_encoder": text_encoder or "MiniLM (bundled default)", "torch_threads": torch.get_num_threads(),
            "batches": timed, "samples_per_s": samples / seconds, "seconds_per_batch": seconds / timed}


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", default=DEFAULT_SHARDS, help="folder of converted shards (every split is used)")
    parser.add_argument("--samples", type=int, default=768, help="samples per timed pass, at least (default 768)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds of both loaders (default 3)")
    parser.add_argument("--frame-interval-ms", type=int, default=None,
                        help="frame sampling interval (default: the shards' stored face interval)")
    parser.add_argument("--crop-size", type=int, default=48)
    parser.add_argument("--idle-wait", type=float, default=30.0, help="seconds to wait for other work before a pass")
    parser.add_argument("--model-batches", type=int, default=10, help="timed FE2E steps (0: skip the model)")
    parser.add_argument("--text-encoder", default=None, help="for the model's consumption (default: bundled MiniLM)")
    args = parser.parse_args(argv)

    from model.text import load_tokenizer

    shards = [shard for split in ("train", "valid", "test") for shard in _split_shards(args.shards, split)]
    names = label_space_of(shards)[1]
    tokenizer = load_tokenizer(args.text_encoder)
    print(f"exporting the reference layout to {WORK / 'reference'} (once, untimed) ...", flush=True)
    folders = export_reference(shards, WORK / "reference")
    per_pass = len(folders)
    repeats = max(1, math.ceil(args.samples / per_pass))
    jpegs = sum(1 for folder in folders for name in os.listdir(folder) if name.endswith(".jpg"))
    print(f"{per_pass} utterances from {len(shards)} shards ({sum(map(os.path.getsize, shards)) / 2**20:.1f} MB); "
          f"reference: {jpegs} JPEGs, {_folder_mb(WORK / 'reference'):.1f} MB; "
          f"{per_pass * repeats} samples per pass, {WORKERS} workers, batch {BATCH_SIZE}", flush=True)

    same = check_same_work(shards, folders, names, args.frame_interval_ms, args.crop_size)
    print(f"same work: {same['samples']} samples, equal shapes/targets/texts; mel max |diff| "
          f"{same['mel_max_abs_diff']:.2e}, crops mean |diff| {same['crop_mean_abs_diff']:.3f} (normalised units)")

    makers = {
        "ours": lambda: our_loader(shards, repeats, tokenizer, names, args.frame_interval_ms, args.crop_size),
        "reference": lambda: reference_loader(folders, repeats, tokenizer, names, args.frame_interval_ms,
                                              args.crop_size),
    }
    runs: dict[str, list[dict]] = {"ours": [], "reference": []}
    for round_index in range(args.repeats):
        order = ("ours", "reference") if round_index % 2 == 0 else ("reference", "ours")
        for name in order:
            wait_until_idle(args.idle_wait)
            result = timed_pass(makers[name])
            runs[name].append(result)
            print(f"  round {round_index + 1} {name:9s} {result['samples_per_s']:7.1f} samples/s "
                  f"{result['samples_per_cpu_s']:7.1f} samples/CPU-s  (other work: {result['other_cores']:.2f} cores)",
                  flush=True)

    figures = summarise(runs)
    print(f"ours      {figures['ours_samples_per_s']:7.1f} samples/s (median)  "
          f"{figures['ours_samples_per_cpu_s']:7.1f} samples/CPU-s")
    print(f"reference {figures['reference_samples_per_s']:7.1f} samples/s (median)  "
          f"{figures['reference_samples_per_cpu_s']:7.1f} samples/CPU-s")
    verdict = "PASS" if figures["ratio"] >= TARGET_RATIO else "MISS"
    print(f"ratio ours/reference: {figures['ratio']:.2f}x samples/s, {figures['cpu_ratio']:.2f}x per CPU-second "
          f"(target >= {TARGET_RATIO:g}x: {verdict})")

    model = None
    if args.model_batches > 0 and _nets_available():
        torch.set_num_threads(os.cpu_count() or 1)
        model = consumption(makers["ours"], names, args.text_encoder, args.model_batches)
        faster = figures["ours_samples_per_s"] > model["samples_per_s"]
        print(f"model: FE2E forward+backward on CPU ({model['text_encoder']}, {model['torch_threads']} threads): "
              f"{model['samples_per_s']:.1f} samples/s ({model['seconds_per_batch']:.2f} s per batch of "
              f"{BATCH_SIZE}); the loader is {'faster' if faster else 'SLOWER'} "
              f"({figures['ours_samples_per_s'] / model['samples_per_s']:.1f}x)")
    else:
        print("model consumption: not measured (model/nets.py is missing or --model-batches 0)")
    print(json.dumps({
        "shards": args.shards, "samples_per_pass": per_pass * repeats, "workers": WORKERS, "batch_size": BATCH_SIZE,
        "frame_interval_ms": args.frame_interval_ms, "crop_size": args.crop_size, **figures,
        "target_ratio": TARGET_RATIO, "ratio_pass": figures["ratio"] >= TARGET_RATIO, "same_work": same,
        "model_samples_per_s": None if model is None else model["samples_per_s"],
        "model_text_encoder": None if model is None else model["text_encoder"],
        "loader_faster_than_model": None if model is None else figures["ours_samples_per_s"] > model["samples_per_s"],
        "runs": runs,
    }))


def _split_shards(folder: str, split: str) -> list[str]:
    try:
        return resolve_shards(folder, split)
    except FileNotFoundError:
        return []


def _folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def _nets_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("model.nets") is not None


def summarise(runs: dict[str, list[dict]]) -> dict:
    median = {name: {key: statistics.median(run[key] for run in results)
                     for key in ("samples_per_s", "samples_per_cpu_s", "other_cores")}
              for name, results in runs.items()}
    return {
        "ours_samples_per_s": median["ours"]["samples_per_s"],
        "reference_samples_per_s": median["reference"]["samples_per_s"],
        "ratio": median["ours"]["samples_per_s"] / median["reference"]["samples_per_s"],
        "ours_samples_per_cpu_s": median["ours"]["samples_per_cpu_s"],
        "reference_samples_per_cpu_s": median["reference"]["samples_per_cpu_s"],
        "cpu_ratio": median["ours"]["samples_per_cpu_s"] / median["reference"]["samples_per_cpu_s"],
        "other_cores_median": max(median["ours"]["other_cores"], median["reference"]["other_cores"]),
    }


if __name__ == "__main__":
    main()
