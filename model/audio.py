"""Speech to the acoustic CNN's input: FLAC bytes -> waveform -> log-mel -> 32-frame chunks.

The log-mel: 16 kHz, 25 ms Hann window (400 samples) zero-padded to a 512-point FFT, 10 ms hop
(160 samples), centred frames (the signal padded with zeros by half a window at each end, so a
signal of L samples gives 1 + L // 160 frames), power spectrum, 64 Slaney mel bands from 0 to 8 kHz
(librosa.filters.mel, computed once), natural log with a floor, then a fixed normalisation.

Normalisation: fixed constants rather than per-utterance mean/std, because the absolute level is
an emotion cue (arousal: anger is loud, sadness quiet) that a per-utterance standardisation
removes, and fixed constants make a sample's features independent of its length and of the other
samples. LOG_MEL_MEAN/LOG_MEL_STD were measured on the train split of the default synthetic corpus
(the demo's shards, 116 utterances: mean -8.96, std 3.13 of the floored log-mel); they only
bring values to about zero mean and unit variance, the CNN's batch normalisation absorbs the rest
on another corpus. LOG_FLOOR (1e-8) is about the power that 16-bit quantisation noise leaves in a
mel band: digital silence maps to log(1e-8) instead of -inf.

Chunks: the log-mel [64, T] is cut into ceil(T / 32) chunks of 32 frames (320 ms), the last one
zero-padded (zero = the mean level after normalisation), as [n, 1, 64, 32]; at least one chunk.
"""
from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
import soundfile
import torch

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 400  # 25 ms
HOP_SAMPLES = 160  # 10 ms
N_FFT = 512
N_MELS = 64
CHUNK_FRAMES = 32
LOG_FLOOR = 1e-8
LOG_MEL_MEAN = -9.0
LOG_MEL_STD = 3.1


class AudioError(ValueError):
    """Audio bytes that cannot be decoded or are not what the shard format promises."""


@lru_cache(maxsize=1)
def _mel_filterbank() -> torch.Tensor:
    """[N_MELS, N_FFT // 2 + 1] Slaney mel filters, computed once per process."""
    import librosa  # imported here: only the filter computation needs it

    weights = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=0.0, fmax=SAMPLE_RATE / 2)
    return torch.from_numpy(weights.astype(np.float32))


@lru_cache(maxsize=1)
def _window() -> torch.Tensor:
    return torch.hann_window(WINDOW_SAMPLES, periodic=True)


def decode_flac(data: bytes, sample_id: str = "<sample>") -> np.ndarray:
    """FLAC (or any libsndfile format) bytes -> float32 mono waveform in [-1, 1] at 16 kHz."""
    try:
        waveform, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError) as error:  # libsndfile refuses the bytes
        raise AudioError(f"{sample_id}: cannot decode the audio ({len(data)} bytes): {error}") from error
    if rate != SAMPLE_RATE:
        raise AudioError(f"{sample_id}: audio is {rate} Hz, expected {SAMPLE_RATE}")
    if waveform.shape[1] != 1:
        raise AudioError(f"{sample_id}: audio has {waveform.shape[1]} channels, expected 1")
    if waveform.shape[0] == 0:
        raise AudioError(f"{sample_id}: audio is empty")
    return np.ascontiguousarray(waveform[:, 0])


def log_mel(waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
    """float32 [N_MELS, 1 + samples // HOP_SAMPLES] normalised log-mel of a 16 kHz waveform."""
    signal = torch.as_tensor(waveform, dtype=torch.float32)
    spectrum = torch.stft(signal, n_fft=N_FFT, hop_length=HOP_SAMPLES, win_length=WINDOW_SAMPLES,
                          window=_window(), center=True, pad_mode="constant", return_complex=True)
    power = spectrum.real.square() + spectrum.imag.square()
    mel = _mel_filterbank() @ power
    return (torch.log(mel.clamp_min(LOG_FLOOR)) - LOG_MEL_MEAN) / LOG_MEL_STD


def mel_frame_count(samples: int) -> int:
    """How many log-mel frames `log_mel` gives for a waveform of `samples` samples."""
    return 1 + samples // HOP_SAMPLES


def chunk_count(mel_frames: int) -> int:
    """How many 32-frame chunks a log-mel of `mel_frames` frames is cut into (at least one)."""
    return max(1, -(-mel_frames // CHUNK_FRAMES))


def cut_chunks(features: torch.Tensor) -> torch.Tensor:
    """[N_MELS, T] -> [ceil(T / 32), 1, N_MELS, 32], the last chunk zero-padded."""
    mels, frames = features.shape
    chunks = chunk_count(frames)
    padded = torch.nn.functional.pad(features, (0, chunks * CHUNK_FRAMES - frames))
    return padded.reshape(mels, chunks, CHUNK_FRAMES).permute(1, 0, 2).unsqueeze(1).contiguous()


def mel_chunks(flac: bytes, sample_id: str = "<sample>") -> torch.Tensor:
    """FLAC bytes -> float32 [n, 1, N_MELS, CHUNK_FRAMES] normalised log-mel chunks, n >= 1."""
    return cut_chunks(log_mel(decode_flac(flac, sample_id)))
