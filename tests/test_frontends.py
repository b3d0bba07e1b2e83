"""The official input pipeline of Dai et al. (2021): its mel front end and face normalisation, and the
loader options that select them (model/audio.py, model/frames.py, model/data.py)."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import soundfile
import torch


def _known_signal(seconds: float = 1.37, rate: int = 16000) -> np.ndarray:
    """A 440 Hz tone, a rising chirp and a little noise: energy in many bands, not a multiple of the hop."""
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * rate)) / rate
    chirp = np.sin(2 * np.pi * (200 * t + 1500 * t ** 2))
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * chirp + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _librosa_reference(signal: np.ndarray) -> np.ndarray:
    """torchaudio.transforms.MelSpectrogram(sample_rate=16000, win_length=400)'s definition, through librosa."""
    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # 128 bands on 201 bins: the lowest filters are empty (torchaudio warns too)
        return librosa.feature.melspectrogram(y=signal, sr=16000, n_fft=400, hop_length=200, win_length=400,
                                              window="hann", center=True, pad_mode="reflect", power=2.0,
                                              n_mels=128, fmin=0.0, fmax=8000.0, htk=True, norm=None)


def test_official_mel_matches_an_independent_computation():
    from mer_data.model.audio import dai2021_mel

    signal = _known_signal()
    ours = dai2021_mel(signal).numpy()
    reference = _librosa_reference(signal)
    assert ours.shape == reference.shape == (128, 1 + signal.size // 200)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-6 * float(reference.max()))
    # power values: no log, no normalisation (a log-mel would be mostly negative)
    assert ours.min() >= 0 and ours.max() > 1


def test_official_filterbank_is_htk_without_area_normalisation():
    import librosa

    from mer_data.model.audio import htk_mel_filterbank

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = librosa.filters.mel(sr=16000, n_fft=400, n_mels=128, fmin=0.0, fmax=8000.0, htk=True, norm=None)
    ours = htk_mel_filterbank().numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    assert ours.max() == pytest.approx(1.0, abs=0.02)   # triangles of peak ~1, not of unit area


def _flac(signal: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, signal, 16000, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def test_official_chunks_are_128_by_32_frames_and_the_last_is_right_padded():
    from mer_data.model.audio import dai2021_mel, mel_chunks

    signal = _known_signal(seconds=1.0)                 # 16000 samples -> 81 frames -> 3 chunks, 17 of padding
    flac = _flac(signal)
    chunks = mel_chunks(flac, "s1", "dai2021")
    assert chunks.shape == (3, 1, 128, 32)
    decoded, _ = soundfile.read(io.BytesIO(flac), dtype="float32")
    full = dai2021_mel(decoded)
    torch.testing.assert_close(chunks[2, 0, :, : 81 - 64], full[:, 64:])
    assert bool((chunks[2, 0, :, 81 - 64:] == 0).all())
    # The compact front end is still the default: 64 normalised log-mel bands.
    assert mel_chunks(flac, "s1").shape == (4, 1, 64, 32)     # 101 frames of 10 ms
    with pytest.raises(ValueError, match="unknown audio front end 'mfcc'"):
        mel_chunks(flac, "s1", "mfcc")


def test_official_face_normalisation_is_per_rgb_channel_on_0_255():
    from mer_data.model.frames import normalise_crops

    crop = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    crop[..., 0], crop[..., 1], crop[..., 2] = 159 + 37, 111, 102 - 32      # R one std up, G at the mean, B one down
    normalised = normalise_crops(crop, "dai2021")
    assert normalised.shape == (1, 3, 2, 2)
    torch.testing.assert_close(normalised[0, :, 0, 0], torch.tensor([1.0, 0.0, -1.0]))
    imagenet = normalise_crops(crop)                                        # the default is unchanged
    torch.testing.assert_close(imagenet[0, :, 0, 0], torch.tensor([(196 / 255 - 0.485) / 0.229,
                                                                   (111 / 255 - 0.456) / 0.224,
                                                                   (70 / 255 - 0.406) / 0.225]))
    with pytest.raises(ValueError, match="unknown face normalisation"):
        normalise_crops(crop, "bgr")


def test_the_loader_gives_the_official_inputs_when_asked(training_shards, tiny_text_encoder):
    from mer_data.model.data import make_loader
    from mer_data.model.frames import FACE_NORMALISATIONS
    from mer_data.model.text import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_text_encoder))
    common = dict(tokenizer=tokenizer, batch_size=3, workers=0, shuffle=False)
    compact = next(iter(make_loader([str(training_shards)], "valid", **common)))
    official = next(iter(make_loader([str(training_shards)], "valid", audio_frontend="dai2021",
                                     face_normalisation="dai2021", **common)))
    assert compact.ids == official.ids
    assert compact.mel_chunks.shape[1:] == (1, 64, 32) and official.mel_chunks.shape[1:] == (1, 128, 32)
    assert bool((official.mel_chunks >= 0).all())
    # Both normalisations of the same crops undo to the same 0-255 RGB pixels.
    pixels = {}
    for name, batch in (("imagenet", compact), ("dai2021", official)):
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in FACE_NORMALISATIONS[name])
        pixels[name] = batch.frames * std + mean
    torch.testing.assert_close(pixels["dai2021"], pixels["imagenet"], atol=1e-3, rtol=0)
