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

Two front ends (AUDIO_FRONTENDS; TrainConfig.audio_frontend, stored with the run):
- "logmel64": the log-mel above, the compact networks' input (the default, and what every run made
  before front ends could be chosen used).
- "dai2021": the official code's input (Dai et al. 2021, src/datasets.py), what the published
  networks (`--arch dai2021`) expect: torchaudio.transforms.MelSpectrogram(sample_rate=16000,
  win_length=400) with every other argument at its default, i.e. n_fft 400, hop 200 (12.5 ms; the
  default hop is win_length // 2), a periodic Hann window of 400 samples, centred frames with
  reflect padding (1 + L // 200 frames), the power spectrum (power 2), 128 HTK mel bands from 0 Hz
  to 8 kHz, filters not area-normalised (norm None); no log and no normalisation. Cut into chunks of
  32 frames (400 ms), the last right-padded with zeros, as [n, 1, 128, 32]. torchaudio is not a
  dependency: the same computation in torch, the filters built as torchaudio.functional.melscale_fbanks
  builds them (triangles between HTK-mel-spaced corner frequencies, on the linear FFT bin frequencies).
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

LOGMEL64 = "logmel64"
DAI2021 = "dai2021"
AUDIO_FRONTENDS = (LOGMEL64, DAI2021)
DAI2021_N_FFT = 400          # = win_length: the official MelSpectrogram(win_length=400) leaves n_fft at 400
DAI2021_HOP_SAMPLES = 200    # torchaudio's default hop: win_length // 2
DAI2021_N_MELS = 128


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


def htk_mel(hz):
    """Frequency in Hz -> HTK mel (2595 log10(1 + f / 700)), the scale torchaudio's MelSpectrogram uses by default."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def htk_hz(mel):
    """HTK mel -> Hz (the inverse of htk_mel)."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=4)
def htk_mel_filterbank(n_mels: int = DAI2021_N_MELS, n_fft: int = DAI2021_N_FFT,
                       sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """[n_mels, n_fft // 2 + 1] triangular HTK mel filters from 0 Hz to sample_rate / 2, peak 1, no area norm.

    Filter m rises from corner m to m + 1 and falls to m + 2, the n_mels + 2 corners evenly spaced
    in HTK mel; each bin's weight is the smaller of the rising and falling slopes, floored at 0."""
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    corners = htk_hz(np.linspace(htk_mel(0.0), htk_mel(sample_rate / 2), n_mels + 2))
    widths = np.diff(corners)
    offsets = bins[None, :] - corners[:, None]                   # [n_mels + 2, bins]
    rising = offsets[:-2] / widths[:-1, None]
    falling = -offsets[2:] / widths[1:, None]
    return torch.from_numpy(np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32))


@lru_cache(maxsize=1)
def _dai2021_window() -> torch.Tensor:
    return torch.hann_window(DAI2021_N_FFT, periodic=True)


def dai2021_mel(waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
    """float32 [128, 1 + samples // 200] power mel spectrogram of a 16 kHz waveform, as the official code's
    torchaudio MelSpectrogram(sample_rate=16000, win_length=400) computes it (module doc)."""
    signal = torch.as_tensor(waveform, dtype=torch.float32)
    if signal.shape[-1] <= DAI2021_N_FFT // 2:
        # Reflect padding needs more samples than it pads (torch, and so the official code, refuse an
        # utterance of 12.5 ms or less): such a clip is zero-extended to the shortest length that works.
        signal = torch.nn.functional.pad(signal, (0, DAI2021_N_FFT // 2 + 1 - signal.shape[-1]))
    spectrum = torch.stft(signal, n_fft=DAI2021_N_FFT, hop_length=DAI2021_HOP_SAMPLES, win_length=DAI2021_N_FFT,
                          window=_dai2021_window(), center=True, pad_mode="reflect", return_complex=True)
    power = spectrum.real.square() + spectrum.imag.square()
    return htk_mel_filterbank() @ power


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


def check_frontend(frontend: str) -> str:
    if frontend not in AUDIO_FRONTENDS:
        raise ValueError(f"unknown audio front end {frontend!r}; choose one of {', '.join(AUDIO_FRONTENDS)}")
    return frontend


def mel_chunks(flac: bytes, sample_id: str = "<sample>", frontend: str = LOGMEL64) -> torch.Tensor:
    """FLAC bytes -> float32 chunks, n >= 1: [n, 1, 64, 32] normalised log-mel (logmel64) or
    [n, 1, 128, 32] power mel (dai2021); see the module doc."""
    waveform = decode_flac(flac, sample_id)
    features = dai2021_mel(waveform) if check_frontend(frontend) == DAI2021 else log_mel(waveform)
    return cut_chunks(features)
