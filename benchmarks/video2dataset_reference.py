"""video2dataset cutting IEMOCAP dialogs into clips: the second reference of convert_iemocap.py.

video2dataset (1.3.0) is the tool a user would pick to cut long videos into clips in WebDataset
shards: each input row is a video and its clip spans; its ClippingSubsampler with `precision: exact`
re-encodes the video with a forced keyframe at every cut and cuts it with ffmpeg's segment muxer,
in one pass per video. It runs here as its documentation shows, with one process and one thread
(the per-core comparison), video only (IEMOCAP's speech is a separate WAV) and its own encoder
settings (ffmpeg's libx264 defaults).

Run by convert_iemocap.py with an interpreter where video2dataset is installed (it pins its own
torch, so it lives in its own environment: `python -m venv v2d && v2d/bin/pip install
video2dataset==1.3.0`); it imports nothing of mer-data:

    V2D_PYTHON benchmarks/video2dataset_reference.py DIALOGS_JSON OUT all|non-overlapping

`all`: every utterance of each dialog, in time order (IEMOCAP's turns overlap where speakers talk
over each other; a segment muxer cannot cut overlapping spans, so such a dialog fails whole).
`non-overlapping`: each dialog's utterances that start after the previous kept one ends, which
video2dataset can cut. The last line printed is a JSON object: clips asked for, clips written,
dialogs that failed and the first error messages.
"""
from __future__ import annotations

import glob
import json
import sys
import tarfile
from pathlib import Path

CONFIG = {
    "subsampling": {"ClippingSubsampler": {"args": {"precision": "exact", "min_length": 0.0}}},
    "reading": {"yt_args": {"download_size": 360, "download_audio_rate": 44100, "yt_metadata_args": None},
                "timeout": 60, "sampler": None},
    "storage": {"number_sample_per_shard": 1000, "oom_shard_count": 5, "captions_are_subtitles": False},
    "distribution": {"processes_count": 1, "thread_count": 1, "subjob_size": 1000, "distributor": "multiprocessing"},
}


def spans(utterances: list[dict], mode: str) -> list[list[float]]:
    ordered = sorted(utterances, key=lambda u: (u["start"], u["end"]))
    if mode == "all":
        return [[u["start"], u["end"]] for u in ordered]
    kept: list[list[float]] = []
    for u in ordered:
        if not kept or u["start"] >= kept[-1][1]:
            kept.append([u["start"], u["end"]])
    return kept


def main(dialogs_json: Path, out: Path, mode: str) -> dict:
    import pandas as pd
    from video2dataset import video2dataset

    dialogs = json.loads(dialogs_json.read_text(encoding="utf-8"))
    rows = [{"url": d["video"], "clips": spans(d["utterances"], mode)} for d in dialogs]
    (out / "tmp").mkdir(parents=True, exist_ok=True)   # video2dataset writes its copies there
    urls = out / "urls.parquet"
    pd.DataFrame(rows).to_parquet(urls)
    video2dataset(url_list=str(urls), output_folder=str(out / "shards"), output_format="webdataset",
                  input_format="parquet", url_col="url", clip_col="clips", encode_formats={"video": "mp4"},
                  config=CONFIG, tmp_dir=str(out / "tmp"))
    written = 0
    for shard in glob.glob(str(out / "shards" / "*.tar")):
        with tarfile.open(shard) as tar:
            written += sum(1 for member in tar.getmembers() if member.name.endswith(".mp4"))
    failed, errors = 0, []
    for stats in glob.glob(str(out / "shards" / "*_stats.json")):
        data = json.loads(Path(stats).read_text(encoding="utf-8"))
        failed += data.get("failed_to_download", 0) + data.get("failed_to_subsample", 0)
        errors += [f"{count} x {status}" for status, count in data.get("status_dict", {}).items() if status != "success"]
    return {"mode": mode, "dialogs": len(rows), "clips_asked": sum(len(r["clips"]) for r in rows),
            "clips_written": written, "dialogs_failed": failed, "errors": errors[:5]}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])))
