"""Media work: probe sources, cut utterances to 16 kHz FLAC + H.264 MP4, detect faces.

`cut_recording` is the per-recording entry point of the conversion pipeline.
"""
from .cut import cut_recording
from .probe import MediaError, MediaNotFoundError, probe_media

__all__ = ["MediaError", "MediaNotFoundError", "cut_recording", "probe_media"]
