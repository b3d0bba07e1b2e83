"""Speech for synthetic utterances: espeak-ng when installed, else a small formant synthesizer.

Both engines render the per-utterance `Style` (pitch, speaking rate, energy), so the emotion class
is audible whichever engine runs. `speak` always returns exactly the number of samples asked for:
the annotated interval is the truth, and the speech is fitted into it (trimmed silences, a short
lead-in, faster speech or a faded cut when too long, silence when too short).

Everything is deterministic: espeak-ng is, and all randomness comes from the caller's Generator.
"""
from __future__ import annotations

import io
import re
import shutil
import subprocess

import numpy as np
import soundfile as sf
from scipy.signal import lfilter, resample_poly

from mer_data.synth.emotions import Style
from mer_data.synth.options import VOICES
from mer_data.synth.text import NOISE_TAGS

SAMPLE_RATE = 16000
BASE_F0 = {"F": 210.0, "M": 115.0}
# Speech is scaled to this RMS (times the style's energy) before mixing.
SPEECH_RMS = 0.07
# Silence kept before the speech inside its interval, and the fade of a cut that had to be made.
LEAD_S = 0.06
FADE_S = 0.02
# Loudness of the non-speech vocalisations relative to speech.
NOISE_LEVELS = {"[LAUGHTER]": 0.8, "[BREATHING]": 0.25, "[GARBAGE]": 0.5}

# Vowel formants (F1, F2, F3) in Hz for an adult male voice; female voices scale them up.
VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410),
          (660, 1720, 2410))
FORMANT_BANDWIDTHS = (90.0, 110.0, 170.0)
FEMALE_FORMANT_SCALE = 1.15


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def resolve_voice(voice: str) -> str:
    """The engine to use: "espeak" or "synth". "auto" picks espeak-ng when it is on PATH."""
    if voice not in VOICES:
        raise ValueError(f"voice must be one of {', '.join(VOICES)}, got {voice!r}")
    if voice == "auto":
        return "espeak" if espeak_available() else "synth"
    if voice == "espeak" and not espeak_available():
        raise RuntimeError("voice='espeak' asked for, but espeak-ng is not on PATH (use voice='synth')")
    return voice


def engine_version(engine: str) -> str | None:
    """The version of what the speech depends on besides the options: espeak-ng's ("1.51"; its
    output changes between versions), None for the synth voice (NumPy and SciPy only)."""
    if engine != "espeak":
        return None
    banner = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"text-to-speech:\s*(\S+)", banner)
    return match[1] if match else None


def speak(text: str, n_samples: int, speaker: str, style: Style, rng: np.random.Generator, engine: str) -> np.ndarray:
    """Speech for `text` fitted into exactly `n_samples` samples at SAMPLE_RATE (float32)."""
    return speak_timed(text, n_samples, speaker, style, rng, engine)[0]


def speak_timed(text: str, n_samples: int, speaker: str, style: Style, rng: np.random.Generator,
                engine: str) -> tuple[np.ndarray, tuple[int, int]]:
    """`speak`'s samples and the span [first, last) of them that the speech fills (its timing)."""
    if text in NOISE_TAGS:
        level = SPEECH_RMS * style.energy * NOISE_LEVELS[text]
        return _fit(_noise_sound(text, n_samples, speaker, style, rng), n_samples, level)
    room = n_samples - 2 * _lead(n_samples)
    if engine == "espeak":
        speech = _trim_silence(_espeak(text, speaker, style, _words_per_minute(style.rate)))
        if len(speech) > room:
            # Too long for the interval: say it faster once, rather than cut words off.
            faster = _words_per_minute(style.rate) * len(speech) / max(room, 1) * 1.05
            speech = _espeak(text, speaker, style, faster)
    else:
        # As many of the text's syllables as fit at the style's rate: the rate is a cue to keep.
        fitting = int(room / SAMPLE_RATE * style.rate)
        speech = formant_speech(max(1, min(_syllable_count(text), fitting)), speaker, style, rng)
    return _fit(speech, n_samples, SPEECH_RMS * style.energy)


def _fit(speech: np.ndarray, n_samples: int, rms: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Put speech at a short lead-in into n_samples, scaled to the given RMS; also its span."""
    speech = _normalise(_trim_silence(speech), rms)
    lead = _lead(n_samples)
    room = n_samples - 2 * lead
    if len(speech) > room:
        speech = speech[:room].copy()
        fade = min(int(FADE_S * SAMPLE_RATE), len(speech))
        speech[len(speech) - fade :] *= np.linspace(1, 0, fade, dtype=np.float32)
    out = np.zeros(n_samples, dtype=np.float32)
    out[lead : lead + len(speech)] = speech
    return out, (lead, lead + len(speech))


def _lead(n_samples: int) -> int:
    return min(int(LEAD_S * SAMPLE_RATE), n_samples // 10)


def _normalise(speech: np.ndarray, target_rms: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(speech.astype(np.float64) ** 2))) if len(speech) else 0.0
    return (speech * (target_rms / rms)).astype(np.float32) if rms > 1e-9 else speech.astype(np.float32)


def _trim_silence(speech: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """Speech without the leading and trailing near-silence that TTS engines add."""
    loud = np.flatnonzero(np.abs(speech) > threshold * (np.max(np.abs(speech)) if len(speech) else 0))
    return speech[loud[0] : loud[-1] + 1] if len(loud) else speech


def _words_per_minute(syllables_per_second: float) -> float:
    # English averages about 1.4 syllables per word.
    return syllables_per_second * 60 / 1.4


def _syllable_count(text: str) -> int:
    vowels = "aeiouyé"
    count, previous = 0, False
    for char in text.lower():
        current = char in vowels
        count += current and not previous
        previous = current
    return max(1, count)


# --------------------------------------------------------------------------------------------
# espeak-ng


def _espeak(text: str, speaker: str, style: Style, words_per_minute: float) -> np.ndarray:
    voice = "en-us+f3" if speaker == "F" else "en-us+m3"
    pitch = int(np.clip(50 + 80 * (style.pitch - 1.0), 5, 99))
    speed = int(np.clip(words_per_minute, 80, 450))
    command = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-z", "-b", "1", "--stdout", text]
    wav = subprocess.run(command, capture_output=True, check=True).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return _resample(samples, rate)


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    if rate == SAMPLE_RATE:
        return samples
    divisor = np.gcd(int(rate), SAMPLE_RATE)
    return resample_poly(samples, SAMPLE_RATE // divisor, int(rate) // divisor).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Formant synthesizer: a glottal pulse train through vowel formant filters, one syllable at a time


def formant_speech(n_syllables: int, speaker: str, style: Style, rng: np.random.Generator) -> np.ndarray:
    """`n_syllables` syllables at the style's rate, pitch contour and a per-syllable vowel."""
    durations = rng.uniform(0.7, 1.3, size=n_syllables) / style.rate
    f0 = _pitch_contour(durations, speaker, style, rng)
    source = _glottal_source(f0)
    out = np.zeros_like(source)
    position = 0
    for duration in durations:
        n = len(source[position : position + int(duration * SAMPLE_RATE)])
        vowel = VOWELS[int(rng.integers(len(VOWELS)))]
        syllable = _formant_filter(source[position : position + n], vowel, speaker)
        if rng.random() < 0.6:
            syllable = _with_consonant_onset(syllable, rng)
        out[position : position + n] = syllable * _syllable_envelope(n)
        position += n
    return out


def _pitch_contour(durations: np.ndarray, speaker: str, style: Style, rng: np.random.Generator) -> np.ndarray:
    """F0 per sample: declination across the phrase plus a random accent per syllable."""
    total = int(sum(int(d * SAMPLE_RATE) for d in durations))
    centres = np.cumsum(durations) - durations / 2
    accents = rng.uniform(-0.5, 0.5, size=len(durations)) * style.pitch_range
    declination = np.linspace(style.pitch_range / 2, -style.pitch_range / 2, len(durations))
    times = np.arange(total) / SAMPLE_RATE
    semitones = np.interp(times, centres, accents + declination)
    return BASE_F0[speaker] * style.pitch * 2 ** (semitones / 12)


def _glottal_source(f0: np.ndarray) -> np.ndarray:
    """A band-limited-enough sawtooth at the given F0, tilted down like a glottal spectrum."""
    phase = np.cumsum(f0 / SAMPLE_RATE)
    saw = 2 * (phase % 1.0) - 1
    return lfilter([1.0], [1.0, -0.9], saw).astype(np.float32) * 0.1


def _formant_filter(segment: np.ndarray, vowel: tuple[int, int, int], speaker: str) -> np.ndarray:
    scale = FEMALE_FORMANT_SCALE if speaker == "F" else 1.0
    out = segment.astype(np.float64)
    for frequency, bandwidth in zip(vowel, FORMANT_BANDWIDTHS):
        radius = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
        theta = 2 * np.pi * frequency * scale / SAMPLE_RATE
        out = lfilter([1 - radius], [1, -2 * radius * np.cos(theta), radius**2], out)
    return out.astype(np.float32)


def _with_consonant_onset(syllable: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A short high-passed noise burst (a fricative or plosive release) at the syllable start."""
    n = min(len(syllable) // 3, int(rng.uniform(0.02, 0.05) * SAMPLE_RATE))
    if n < 2:
        return syllable
    burst = np.diff(rng.normal(0, 1, n + 1)).astype(np.float32)
    scale = 0.3 * float(np.max(np.abs(syllable))) / float(np.max(np.abs(burst)) + 1e-9)
    out = syllable.copy()
    out[:n] = out[:n] * np.linspace(0, 1, n, dtype=np.float32) + burst * scale
    return out


def _syllable_envelope(n: int) -> np.ndarray:
    """Rise over the first 20 %, fall over the last 35 %: syllable-rate amplitude modulation."""
    t = np.linspace(0, 1, n, endpoint=False)
    rise = np.clip(t / 0.2, 0, 1)
    fall = np.clip((1 - t) / 0.35, 0, 1)
    return (np.sin(np.pi / 2 * rise) * np.sin(np.pi / 2 * fall)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Non-speech vocalisations of the noise-tag utterances


def _noise_sound(tag: str, n_samples: int, speaker: str, style: Style, rng: np.random.Generator) -> np.ndarray:
    seconds = n_samples / SAMPLE_RATE
    if tag == "[LAUGHTER]":
        return _laughter(seconds, speaker, style, rng)
    if tag == "[BREATHING]":
        return _breathing(seconds, rng)
    return formant_speech(max(1, int(seconds * 3)), speaker, style, rng)  # [GARBAGE]: mumbling


def _laughter(seconds: float, speaker: str, style: Style, rng: np.random.Generator) -> np.ndarray:
    """Breathy "ha" bursts at about 5 per second, high-pitched."""
    laugh_style = Style(style.pitch * 1.3, 3.0, style.energy, 5.0, style.mouth_curve, style.brow_angle)
    n_bursts = max(1, int(seconds * 5 * 0.8))
    voiced = formant_speech(n_bursts, speaker, laugh_style, rng)
    breath = rng.normal(0, 1, len(voiced)).astype(np.float32) * 0.3 * float(np.std(voiced))
    return voiced + breath * (np.abs(voiced) > 0.1 * np.max(np.abs(voiced)))


def _breathing(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Low-passed noise under one or two slow breath envelopes."""
    n = max(2, int(seconds * 0.8 * SAMPLE_RATE))
    noise = lfilter([1.0], [1.0, -0.95], rng.normal(0, 1, n)).astype(np.float32)
    breaths = 1 if seconds < 1.5 else 2
    envelope = np.sin(np.linspace(0, np.pi * breaths, n)) ** 2
    return noise * envelope.astype(np.float32)
