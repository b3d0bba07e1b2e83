"""Face detection with OpenCV's bundled Haar cascade: CPU-only, no download, deterministic.

The detector is used on frames sampled every --frame-interval-ms; the boxes go into the sample
metadata so that training crops faces without running a detector in every step.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

DETECTOR_NAME = "opencv-haar-frontalface-default"

# Faces smaller than this fraction of the image height are ignored: in a speaker's view the face
# is large (IEMOCAP: ~30% of the half frame), and tiny hits are texture false positives. The bound
# also sets the cost: 0.2 instead of 0.15 skips the smallest, most numerous scales (~1.5x faster).
MIN_FACE_FRACTION = 0.2
# Detection runs on a copy at most this many pixels high: Haar cost grows with area.
DETECTION_HEIGHT = 160


@lru_cache(maxsize=1)
def _cascade() -> "cv2.CascadeClassifier":
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"cannot load the Haar cascade {path} (opencv-python-headless<5 ships it)")
    return cascade


def detect_face(image: np.ndarray) -> list[int] | None:
    """The largest face in `image` (BGR or gray, uint8) as [x, y, w, h] in its pixels, or None.

    Detection runs on a copy at most DETECTION_HEIGHT pixels high, and the box is scaled back.
    """
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    scale = min(1.0, DETECTION_HEIGHT / gray.shape[0])
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    small = cv2.equalizeHist(small)
    min_side = max(20, int(MIN_FACE_FRACTION * small.shape[0]))
    found = _cascade().detectMultiScale(small, scaleFactor=1.1, minNeighbors=4, minSize=(min_side, min_side))
    if len(found) == 0:
        return None
    x, y, w, h = max(found, key=lambda b: (int(b[2]) * int(b[3]), -int(b[0]), -int(b[1])))
    return [int(round(v / scale)) for v in (x, y, w, h)]
