"""Face crops in the form the emotion model was trained on.

FER2013 faces are tight, roughly square crops from the forehead to the chin with a little
background at the sides. MediaPipe's box is a tight square-ish box from the eyebrows to the chin,
so the crop is a square around the box centre, its side ``1 + CROP_MARGIN`` times the box's longer
side, shifted up by ``CROP_SHIFT_UP`` of the box height to take in the forehead.
A head tilted by more than ROLL_TOLERANCE degrees (the eye line from MediaPipe's eye keypoints,
``FaceDetection.roll``) is turned by the excess towards upright.
Check, ``python -m benchmarks.crops`` on the 2,872 faces training holds out for validation (upscaled to
160x160, detected, cropped; cycle 5's model, shipped then, no flip averaging): margins 0 to 0.4 score 68.7%, 68.9%,
69.2%, 68.7%, 67.7% on the faces found; faces turned by 30 degrees score 58.3% as cut and 68.0% with
roll correction, upright faces 69.6% and 69.2%.

Parts of the square outside the frame (faces at the edges) are filled by replicating the border
pixels rather than shrinking the square, so a face keeps its scale in its crop whether or not it
touches the edge of the frame. The square is centred on the box clamped to the frame, so a face cut
by the edge sits off-centre: centred on the detector's box past the edge instead, validation faces
cut by 15-45% of their width scored no better.

A box that is the whole image (``detector.whole_image_face``: the picture already is a face, as
FER2013's are) is taken as it is, without margin: a square image is the crop itself.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from realtime.model_metadata import ModelMetadata

CROP_MARGIN = 0.2  # extra side length, as a fraction of the box's longer side
CROP_SHIFT_UP = 0.05  # centre moved up by this fraction of the box height
# Roll correction: a head tilted by more than this (degrees) is turned by the excess, so its crop is tilted
# no more than this; training faces tilt this much too (FER2013's faces are not levelled, and training
# rotates by up to 10 degrees), and turning by the excess only keeps the crop continuous as a head tilts.
ROLL_TOLERANCE = 10.0


def square_box(box: tuple[int, int, int, int], margin: float = CROP_MARGIN,
               shift_up: float = CROP_SHIFT_UP) -> tuple[int, int, int, int]:
    """The square crop (x1, y1, x2, y2) around a face box; it may reach outside the frame."""
    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    side = max(1, int(round(max(width, height) * (1.0 + margin))))
    centre_x = (x1 + x2) / 2.0
    centre_y = (y1 + y2) / 2.0 - shift_up * height
    left = int(round(centre_x - side / 2.0))
    top = int(round(centre_y - side / 2.0))
    return left, top, left + side, top + side


def crop_square(image: np.ndarray, box: tuple[int, int, int, int], margin: float = CROP_MARGIN,
                shift_up: float = CROP_SHIFT_UP, roll: float = 0.0, roll_tolerance: float = ROLL_TOLERANCE) -> np.ndarray:
    """The square crop around a face box; where it leaves the frame the border pixels are replicated.

    ``roll`` (degrees, ``FaceDetection.roll``): a head tilted by more than ``roll_tolerance`` is turned
    about the square's centre by the excess, towards upright.
    A box covering the whole image gets no margin (the image is a face crop already)."""
    height, width = image.shape[:2]
    if tuple(box) == (0, 0, width, height):  # the whole image is the face
        margin, shift_up = 0.0, 0.0
    left, top, right, bottom = square_box(box, margin, shift_up)
    excess = abs(roll) - roll_tolerance
    if excess > 0:
        side = right - left
        centre = ((left + right - 1) / 2.0, (top + bottom - 1) / 2.0)
        # positive angles turn counter-clockwise on screen, lifting the lower left eye of a positive roll
        turn = cv2.getRotationMatrix2D(centre, math.copysign(excess, roll), 1.0)
        turn[:, 2] += ((side - 1) / 2.0 - centre[0], (side - 1) / 2.0 - centre[1])
        return cv2.warpAffine(image, turn, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = image[max(top, 0):min(bottom, height), max(left, 0):min(right, width)]
    if inside.size == 0:  # the square misses the frame entirely (cannot happen for clamped boxes)
        raise ValueError(f"face box {box} lies outside the {width}x{height} frame")
    pad_top, pad_bottom = max(0, -top), max(0, bottom - height)
    pad_left, pad_right = max(0, -left), max(0, right - width)
    if pad_top or pad_bottom or pad_left or pad_right:
        inside = cv2.copyMakeBorder(inside, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_REPLICATE)
    return inside


def _to_model_color(crop_bgr: np.ndarray, color: str) -> np.ndarray:
    if color == "gray":
        return cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY)
    return crop_bgr  # "bgr": already in the model's color order


def prepare_crops(image_bgr: np.ndarray, boxes: list[tuple[int, int, int, int]], metadata: ModelMetadata,
                  margin: float = CROP_MARGIN, rolls: list[float] | None = None,
                  roll_tolerance: float = ROLL_TOLERANCE) -> np.ndarray:
    """Model inputs for the faces in a BGR frame: float32 (n, H, W, C), normalised as the metadata says.

    ``rolls``: each face's head tilt in degrees (``FaceDetection.roll``), turned towards upright in its
    crop beyond ``roll_tolerance`` (see ``crop_square``); None crops every face as it is.
    Each crop is converted to the model's color, resized to ``metadata.input_size`` (height, width) and
    normalised by ``normalize_faces``. No boxes give shape (0, H, W, C).
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"prepare_crops needs a BGR image, got shape {image_bgr.shape}")
    input_height, input_width = metadata.input_size
    channels = 1 if metadata.color == "gray" else 3
    faces = np.empty((len(boxes), input_height, input_width, channels), dtype=np.uint8)
    rolls = [0.0] * len(boxes) if rolls is None else rolls
    if len(rolls) != len(boxes):
        raise ValueError(f"{len(rolls)} rolls for {len(boxes)} face boxes")
    for row, (box, roll) in enumerate(zip(boxes, rolls)):
        crop = crop_square(image_bgr, box, margin, roll=roll, roll_tolerance=roll_tolerance)
        crop = _to_model_color(crop, metadata.color)
        shrinking = crop.shape[0] > input_height
        crop = cv2.resize(crop, (input_width, input_height),
                          interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        faces[row] = crop.reshape(input_height, input_width, channels)
    return normalize_faces(faces, metadata)


def normalize_faces(faces: np.ndarray, metadata: ModelMetadata) -> np.ndarray:
    """Model inputs float32 (n, H, W, C) from uint8 faces (n, H, W) or (n, H, W, C) of the model's color
    and size: ``(pixel * scale - mean) / std`` as the metadata says."""
    input_height, input_width = metadata.input_size
    channels = 1 if metadata.color == "gray" else 3
    if faces.ndim == 3:
        faces = faces[..., None]
    if faces.shape[1:] != (input_height, input_width, channels):
        raise ValueError(f"faces of shape {faces.shape[1:]} do not fit the model's input "
                         f"({input_height}, {input_width}, {channels})")
    batch = faces.astype(np.float32)
    batch *= np.float32(metadata.scale)
    batch -= np.float32(metadata.mean)
    batch /= np.float32(metadata.std)
    return batch
