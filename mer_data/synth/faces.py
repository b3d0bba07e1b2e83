"""Drawn talking heads for synthetic videos: simple, but shaped so that a Haar face detector finds them.

A frontal-face Haar cascade keys on a few light/dark contrasts: a dark band of eyes and brows
under a lighter forehead, a light nose bridge between the eyes, lighter cheeks, and a darker mouth.
The drawing below exaggerates exactly those, on a skin-toned oval framed by hair, over a plain
background that contrasts with skin. A slight blur afterwards softens the hard cv2 edges, which
the cascade (trained on camera images) otherwise dislikes.

Everything is in units of the face height, so the same drawing works at 720x480 and at 64x48.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Background (BGR) per side of the frame, and a constant colour patch in the top-left corner of
# each half: a crop of either half tells by these which side it came from.
SIDE_BACKGROUND = {"left": (150, 70, 30), "right": (40, 110, 40)}
SIDE_PATCH = {"left": (0, 0, 230), "right": (0, 220, 230)}
# The corner patch is a square of this fraction of the half-frame height.
PATCH_FRACTION = 0.08

# Face geometry, as fractions of the frame height.
FACE_HEIGHT_FRACTION = 0.55
FACE_CENTRE_Y_FRACTION = 0.47
# Mouth centre below the face centre and mouth half-width, in face heights.
MOUTH_Y = 0.26
MOUTH_HALF_WIDTH = 0.11
MOUTH_MAX_OPEN = 0.10
# Points along the mouth, and how far each is from the corners (0 at the corners, 1 in the middle).
_MOUTH_XS = np.linspace(-MOUTH_HALF_WIDTH, MOUTH_HALF_WIDTH, 9)
_MOUTH_BEND = 1 - (_MOUTH_XS / MOUTH_HALF_WIDTH) ** 2

MOUTH_INSIDE = (25, 15, 45)


@dataclass(frozen=True)
class Look:
    """What makes one actor look like themself: colours in BGR."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    clothes: tuple[int, int, int]
    lips: tuple[int, int, int]


LOOKS = {
    "F": Look(skin=(150, 180, 225), hair=(30, 40, 70), clothes=(120, 60, 150), lips=(90, 80, 190)),
    "M": Look(skin=(135, 165, 205), hair=(25, 25, 35), clothes=(90, 90, 90), lips=(100, 110, 170)),
}


@dataclass(frozen=True)
class Expression:
    """The state of a face in one frame.

    mouth_open: 0 (closed) .. 1 (wide open); mouth_curve: -1 (frown) .. +1 (smile);
    brow_angle: degrees, positive lowers the inner ends (anger), negative raises them (sadness).
    """

    mouth_open: float = 0.0
    mouth_curve: float = 0.0
    brow_angle: float = 0.0


def face_geometry(half_size: tuple[int, int]) -> tuple[tuple[float, float], float]:
    """Resting centre (x, y) and height of the face in a half frame of (width, height) pixels."""
    width, height = half_size
    return (width / 2.0, height * FACE_CENTRE_Y_FRACTION), height * FACE_HEIGHT_FRACTION


def mouth_box(half_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """[x, y, w, h] of a box in a half frame that holds the mouth whatever the expression and head
    motion, and nothing else that is dark (the nostrils end above it)."""
    (cx, cy), face_h = face_geometry(half_size)
    half_w = (MOUTH_HALF_WIDTH + 0.04) * face_h
    top = cy + (MOUTH_Y - 0.08) * face_h
    bottom = cy + (MOUTH_Y + 0.10) * face_h
    return int(cx - half_w), int(top), int(2 * half_w), int(bottom - top)


def draw_background_patch(half: np.ndarray, side: str) -> None:
    """The side's constant colour patch in the top-left corner of its half frame."""
    patch = patch_size(half.shape[0])
    half[:patch, :patch] = SIDE_PATCH[side]


def patch_size(half_height: int) -> int:
    return max(2, int(round(PATCH_FRACTION * half_height)))


class TalkingHead:
    """Renders one actor's half frame, fast enough for thousands of frames.

    The still parts (background, head, eyes, nose) are drawn and softened once; each frame moves
    that picture by the head motion and draws only what changes on top: brows and mouth.
    """

    # Below this height a blur would wipe out the drawing; above, it softens cv2's hard edges.
    BLUR_MIN_HEIGHT = 120

    def __init__(self, half_size: tuple[int, int], side: str, look: Look):
        self.side, self.look = side, look
        self.width, self.height = half_size
        (self.cx, self.cy), self.face_h = face_geometry(half_size)
        still = np.empty((self.height, self.width, 3), dtype=np.uint8)
        still[:] = SIDE_BACKGROUND[side]
        pen = _Pen(still, self.cx, self.cy, self.face_h)
        _draw_head(pen, look)
        _draw_eyes(pen, look)
        _draw_nose(pen, look)
        if self.height >= self.BLUR_MIN_HEIGHT:
            still = cv2.GaussianBlur(still, (0, 0), 0.0025 * self.height)
        self.still = still

    def render(self, expression: Expression, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """The half frame with the head moved by `shift` pixels and showing `expression`."""
        move = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
        # Replicated borders continue the plain background and the shoulders at the bottom edge.
        half = cv2.warpAffine(self.still, move, (self.width, self.height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        pen = _Pen(half, self.cx + shift[0], self.cy + shift[1], self.face_h)
        _draw_brows(pen, self.look, expression.brow_angle)
        _draw_mouth(pen, self.look, expression)
        draw_background_patch(half, self.side)
        return half


class _Pen:
    """Draws with coordinates in face heights relative to the face centre (x right, y down)."""

    # Sub-pixel precision for cv2 drawing calls: coordinates are scaled by 2**SHIFT.
    SHIFT = 4

    def __init__(self, image: np.ndarray, cx: float, cy: float, face_h: float):
        self.image, self.cx, self.cy, self.unit = image, cx, cy, face_h

    def _point(self, x: float, y: float) -> tuple[int, int]:
        scale = 1 << self.SHIFT
        return int(round((self.cx + x * self.unit) * scale)), int(round((self.cy + y * self.unit) * scale))

    def _length(self, v: float) -> int:
        return max(1, int(round(v * self.unit * (1 << self.SHIFT))))

    def ellipse(self, x, y, rx, ry, colour):
        """A filled ellipse centred at (x, y) with semi-axes rx, ry."""
        cv2.ellipse(self.image, self._point(x, y), (self._length(rx), self._length(ry)), 0, 0, 360,
                    colour, -1, cv2.LINE_AA, self.SHIFT)

    def polygon(self, points, colour):
        """A filled polygon through points [(x, y), ...] (or an (n, 2) array)."""
        xy = np.asarray(points, dtype=np.float64) * self.unit + (self.cx, self.cy)
        pts = np.round(xy * (1 << self.SHIFT)).astype(np.int32)
        cv2.fillPoly(self.image, [pts], colour, cv2.LINE_AA, self.SHIFT)

    def line(self, x0, y0, x1, y1, colour, thickness):
        width = max(1, int(round(thickness * self.unit)))
        cv2.line(self.image, self._point(x0, y0), self._point(x1, y1), colour, width, cv2.LINE_AA, self.SHIFT)


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, c * factor))) for c in colour)


def _draw_head(pen: _Pen, look: Look) -> None:
    pen.ellipse(0, 0.95, 0.62, 0.42, look.clothes)  # shoulders
    pen.polygon([(-0.12, 0.3), (0.12, 0.3), (0.13, 0.62), (-0.13, 0.62)], _shade(look.skin, 0.85))  # neck
    pen.ellipse(0, -0.1, 0.43, 0.48, look.hair)  # hair behind the head
    pen.ellipse(0, 0, 0.36, 0.5, look.skin)  # face
    pen.ellipse(0, -0.43, 0.33, 0.13, look.hair)  # fringe: the hairline frames a light forehead
    pen.ellipse(-0.2, 0.12, 0.09, 0.07, _shade(look.skin, 1.08))  # cheeks, lighter than the eye band
    pen.ellipse(0.2, 0.12, 0.09, 0.07, _shade(look.skin, 1.08))


def _draw_eyes(pen: _Pen, look: Look) -> None:
    for side in (-1, 1):
        x = side * 0.15
        pen.ellipse(x, -0.06, 0.1, 0.055, _shade(look.skin, 0.6))  # socket shadow: the dark eye band
        pen.ellipse(x, -0.06, 0.065, 0.03, (225, 225, 225))  # eye white
        pen.ellipse(x, -0.06, 0.03, 0.03, (40, 30, 20))  # iris and pupil


def _draw_brows(pen: _Pen, look: Look, brow_angle: float) -> None:
    """Thick dark bars; the inner ends (towards the nose) move with the angle."""
    tilt = np.tan(np.radians(brow_angle)) * 0.08
    for side in (-1, 1):
        pen.line(side * 0.06, -0.15 + tilt, side * 0.24, -0.17 - tilt, look.hair, 0.035)


def _draw_nose(pen: _Pen, look: Look) -> None:
    pen.polygon([(-0.025, -0.05), (0.025, -0.05), (0.04, 0.1), (-0.04, 0.1)], _shade(look.skin, 1.12))  # bridge
    pen.ellipse(-0.035, 0.13, 0.022, 0.012, _shade(look.skin, 0.45))  # nostrils
    pen.ellipse(0.035, 0.13, 0.022, 0.012, _shade(look.skin, 0.45))


def _draw_mouth(pen: _Pen, look: Look, expression: Expression) -> None:
    """Lips as a polygon whose corners rise (smile) or fall (frown); the inside opens with speech."""
    corner_y = MOUTH_Y - 0.05 * min(1.0, max(-1.0, expression.mouth_curve))
    opening = MOUTH_MAX_OPEN * min(1.0, max(0.0, expression.mouth_open))
    xs, bend = _MOUTH_XS, _MOUTH_BEND
    centre = corner_y + (MOUTH_Y - corner_y) * bend
    upper = centre - (0.015 + opening / 2) * bend
    lower = centre + (0.02 + opening / 2) * bend
    pen.polygon(_outline(xs, upper, lower), look.lips)
    if opening > 0.004:
        pen.polygon(_outline(xs * 0.85, centre - (opening / 2) * bend, centre + (opening / 2) * bend), MOUTH_INSIDE)


def _outline(xs: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """The closed outline along `upper` left to right, then back along `lower`."""
    return np.concatenate([np.stack([xs, upper], axis=1), np.stack([xs[::-1], lower[::-1]], axis=1)])
