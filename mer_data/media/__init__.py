"""Media work: probe sources, cut utterances to 16 kHz FLAC + H.264 MP4, detect faces.

`cut_recording` is the per-recording entry point of the conversion pipeline. The names below are
loaded on first use: importing a light module of this package (encoding.py, the clips' settings,
which the CLI's options read) must not load OpenCV and numpy.
"""
from importlib import import_module

_EXPORTS = {"cut_recording": ".cut", "MediaError": ".probe", "MediaNotFoundError": ".probe", "probe_media": ".probe"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)
