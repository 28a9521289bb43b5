"""Drawing of the results onto frames: a box and an "id 3 happy 87%" label per face, optional FPS."""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from realtime.io.images import bgr_image, read_photo_file
from realtime.types import FrameResult

# BGR colors for the FER2013 emotions; other class names get one from PALETTE.
EMOTION_COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (40, 40, 230),      # red
    "disgust": (40, 140, 40),    # dark green
    "fear": (170, 60, 150),      # purple
    "happy": (0, 210, 255),      # yellow
    "neutral": (128, 128, 128),  # grey: its box stands out from white walls and dark rooms alike
    "sad": (210, 120, 30),       # blue
    "surprise": (0, 140, 255),   # orange
}
PALETTE = [(200, 130, 0), (60, 180, 75), (180, 30, 145), (0, 130, 200), (75, 25, 230), (240, 240, 70)]
FONT = cv2.FONT_HERSHEY_SIMPLEX
REFERENCE_SIDE = 600  # frame short side at which the font scale is 1
MIN_FONT_SCALE = 0.4  # smallest legible font scale
LABEL_MAX_BOX_WIDTHS = 1.6  # labels wider than this many face widths are drawn smaller
LABEL_OVER_LABEL_COST = 4  # a label placed over another label costs this many times the area over a face
# A photo smaller than this on its shorter side (a 48x48 face crop) is annotated scaled up, by the smallest whole
# factor that reaches it, so that its label can be read; but never past MAX_ENLARGED_PHOTO_SIDE on its longer side
# (a thin strip stays as it is).
MIN_ANNOTATED_PHOTO_SIDE = 240
MAX_ENLARGED_PHOTO_SIDE = 4096


@dataclass(frozen=True)
class LabelLayout:
    """How one face's label is drawn: its text, font, and the filled rectangle behind it."""

    text: str
    font_scale: float
    thickness: int
    padding: int
    baseline: int
    text_size: tuple[int, int]
    rectangle: tuple[int, int, int, int]  # (x1, y1, x2, y2), always inside the frame


def _areas_covered(places: np.ndarray, rectangles: np.ndarray) -> np.ndarray:
    """For each of ``places`` (P, 4), the area it shares with ``rectangles`` (N, 4), summed: (P,); (x1, y1, x2, y2)."""
    widths = np.minimum(places[:, None, 2], rectangles[None, :, 2]) - np.maximum(places[:, None, 0], rectangles[None, :, 0])
    heights = np.minimum(places[:, None, 3], rectangles[None, :, 3]) - np.maximum(places[:, None, 1], rectangles[None, :, 1])
    return (np.clip(widths, 0, None) * np.clip(heights, 0, None)).sum(axis=1)


def emotion_color(label: str) -> tuple[int, int, int]:
    """The BGR color of an emotion; unknown names get a fixed color derived from the name."""
    if label in EMOTION_COLORS:
        return EMOTION_COLORS[label]
    return PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]


def text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``background`` (BGR)."""
    blue, green, red = background
    return (0, 0, 0) if 0.114 * blue + 0.587 * green + 0.299 * red > 140 else (255, 255, 255)


class EmotionAnnotator:
    """Draws FrameResults; line width and font size follow the frame size (readable from 360p to 4K)."""

    def __init__(self, show_ids: bool = True):
        self.show_ids = show_ids

    @staticmethod
    def style(image_shape: tuple[int, ...]) -> tuple[float, int]:
        """(font scale, text line thickness) for a frame of this shape; boxes are one pixel thicker."""
        short_side = min(image_shape[:2])
        font_scale = max(MIN_FONT_SCALE, short_side / REFERENCE_SIDE)
        thickness = max(1, int(round(short_side / 360)))
        return font_scale, thickness

    def label_text(self, face) -> str:
        """"id 3 happy 87%" (or "happy 87%" without ids)."""
        text = f"{face.label} {face.confidence * 100:.0f}%"
        return f"id {face.face_id} {text}" if self.show_ids else text

    def layout_label(self, face, image_shape: tuple[int, ...], labels: list[tuple[int, int, int, int]] = (),
                     faces: list[tuple[int, int, int, int]] = ()) -> LabelLayout:
        """Text, size and place of a face's label.

        The font follows the frame size, but shrinks (down to MIN_FONT_SCALE) when the label would be
        more than LABEL_MAX_BOX_WIDTHS times as wide as the face, so small faces side by side in a
        photo do not get labels covering each other. ``labels`` and ``faces``: rectangles of other labels and of
        other faces' boxes, which the label should not cover; the first place of ``label_rectangles`` that covers
        least of them wins, a label covered counting LABEL_OVER_LABEL_COST times its area (it hides that text).
        """
        label_array, face_array = np.array(labels, float).reshape(-1, 4), np.array(faces, float).reshape(-1, 4)

        def costs(places: list[tuple[int, int, int, int]]) -> np.ndarray:
            places = np.array(places, float)
            return LABEL_OVER_LABEL_COST * _areas_covered(places, label_array) + _areas_covered(places, face_array)

        text = self.label_text(face)
        sizes = {}  # widest (in face widths): font scale, thickness, padding, text size, baseline
        best, best_cost = None, math.inf
        # over or in its own box, then no wider than the face (where it covers something), then moved sideways
        for widest_boxes, shifts in ((LABEL_MAX_BOX_WIDTHS, False), (1.0, False), (LABEL_MAX_BOX_WIDTHS, True),
                                     (1.0, True)):
            if widest_boxes not in sizes:
                sizes[widest_boxes] = self._label_size(text, widest_boxes * (face.box[2] - face.box[0]), image_shape)
            font_scale, thickness, padding, text_size, baseline = sizes[widest_boxes]
            places = self.label_rectangles(face.box, text_size, baseline, padding, image_shape, shifts)
            place_costs = costs(places)
            least = int(np.argmin(place_costs))  # (the first of the least costly: the places come best first)
            if place_costs[least] < best_cost:
                best = LabelLayout(text, font_scale, thickness, padding, baseline, text_size, places[least])
                best_cost = place_costs[least]
            if best_cost == 0:
                break
        return best

    def _label_size(self, text: str, widest: float,
                    image_shape: tuple[int, ...]) -> tuple[float, int, int, tuple[int, int], int]:
        """(font scale, thickness, padding, text size, baseline) of ``text`` drawn no wider than ``widest`` pixels
        where the frame's font allows (down to MIN_FONT_SCALE)."""
        font_scale, thickness = self.style(image_shape)
        text_width = cv2.getTextSize(text, FONT, font_scale, thickness)[0][0]
        if text_width > widest:
            shrink = max(MIN_FONT_SCALE / font_scale, widest / text_width)
            font_scale, thickness = font_scale * shrink, max(1, int(round(thickness * shrink)))
        text_size, baseline = cv2.getTextSize(text, FONT, font_scale, thickness)
        return font_scale, thickness, max(2, thickness * 2), text_size, baseline

    def layout_labels(self, faces, image_shape: tuple[int, ...]) -> list[LabelLayout]:
        """Labels of all faces of a frame, placed one after another so that none covers an earlier label
        or another face where a free place exists (above, inside the top, below or inside the bottom
        of its box, moved sideways by up to the label's width)."""
        layouts = []
        for index, face in enumerate(faces):
            others = [other.box for position, other in enumerate(faces) if position != index]
            layouts.append(self.layout_label(face, image_shape, [layout.rectangle for layout in layouts], others))
        return layouts

    @staticmethod
    def label_rectangles(box: tuple[int, int, int, int], text_size: tuple[int, int], baseline: int,
                         padding: int, image_shape: tuple[int, ...],
                         sideways: bool = True) -> list[tuple[int, int, int, int]]:
        """Places for a label, best first, all inside the frame: above the box, just inside its top, below it,
        inside its bottom (a place outside the frame is moved in), then (``sideways``) the same moved left and
        right."""
        height, width = image_shape[:2]
        label_w = min(text_size[0] + 2 * padding, width)
        label_h = min(text_size[1] + baseline + 2 * padding, height)
        x1, y1, _, y2 = box
        places = []
        for shift in (0, -label_w // 2, label_w // 2, -label_w, label_w) if sideways else (0,):
            for top in (y1 - label_h, y1, y2, y2 - label_h):
                top = min(max(top, 0), height - label_h)
                left = min(max(x1 + shift, 0), width - label_w)
                place = (left, top, left + label_w, top + label_h)
                if place not in places:
                    places.append(place)
        return places

    def annotate(self, image: np.ndarray | Image.Image | str | Path, frame_result: FrameResult,
                 fps: float | None = None) -> np.ndarray:
        """A BGR copy of ``image`` (what ``analyze()`` takes: a BGR, gray or BGRA uint8 array, a PIL image or an
        image file's path) with every face's box and label (and the FPS when given); labels are drawn after all
        boxes and kept off each other (``layout_labels``)."""
        canvas = as_picture(image)
        canvas = canvas.copy() if canvas is image else canvas
        box_thickness = self.style(canvas.shape)[1] + 1
        for face in frame_result.faces:
            x1, y1, x2, y2 = face.box
            cv2.rectangle(canvas, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), emotion_color(face.label),
                          box_thickness)
        for face, label in zip(frame_result.faces, self.layout_labels(frame_result.faces, canvas.shape)):
            color = emotion_color(face.label)
            left, top, right, bottom = label.rectangle
            cv2.rectangle(canvas, (left, top), (right - 1, bottom - 1), color, cv2.FILLED)
            cv2.putText(canvas, label.text, (left + label.padding, bottom - label.padding - label.baseline), FONT,
                        label.font_scale, text_color(color), label.thickness, cv2.LINE_AA)
        if fps is not None:
            _draw_fps_in_place(canvas, fps)
        return canvas

    def annotate_photo(self, image: np.ndarray | Image.Image | str | Path, frame_result: FrameResult) -> np.ndarray:
        """``annotate()`` for a photo: one smaller than MIN_ANNOTATED_PHOTO_SIDE on its shorter side is first scaled
        up by a whole factor (each pixel a square: nothing blurred), its faces' boxes with it."""
        image = as_picture(image)
        factor = photo_enlargement(image.shape)
        if factor > 1:
            image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
            frame_result = replace(frame_result, faces=[replace(face, box=tuple(factor * v for v in face.box))
                                                        for face in frame_result.faces])
        return self.annotate(image, frame_result)


def as_picture(image: np.ndarray | Image.Image | str | Path) -> np.ndarray:
    """The BGR uint8 picture of an array, a PIL image or an image file (read upright, as ``analyze()`` reads it)."""
    if isinstance(image, (str, os.PathLike)):
        return read_photo_file(Path(os.fsdecode(image))).image
    return bgr_image(image)


def photo_enlargement(image_shape: tuple[int, ...]) -> int:
    """The whole factor by which ``annotate_photo`` scales a photo of this shape up (1: not at all)."""
    short_side, long_side = min(image_shape[:2]), max(image_shape[:2])
    if not short_side:
        return 1
    return max(1, min(math.ceil(MIN_ANNOTATED_PHOTO_SIDE / short_side), MAX_ENLARGED_PHOTO_SIDE // long_side))


def draw_fps(image: np.ndarray, fps: float) -> np.ndarray:
    """A copy of the image with "12.3 fps" in its top-right corner."""
    canvas = image.copy()
    _draw_fps_in_place(canvas, fps)
    return canvas


def _draw_fps_in_place(canvas: np.ndarray, fps: float) -> None:
    font_scale, thickness = EmotionAnnotator.style(canvas.shape)
    padding = max(2, thickness * 2)
    text = f"{fps:.1f} fps"
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, font_scale, thickness)
    right = canvas.shape[1]
    left = max(0, right - text_w - 2 * padding)
    bottom = min(canvas.shape[0], text_h + baseline + 2 * padding)
    cv2.rectangle(canvas, (left, 0), (right - 1, bottom - 1), (0, 0, 0), cv2.FILLED)
    cv2.putText(canvas, text, (left + padding, bottom - padding - baseline), FONT, font_scale,
                (255, 255, 255), thickness, cv2.LINE_AA)
