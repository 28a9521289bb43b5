"""Face crops: square geometry, faces at the frame edges, color, size and normalisation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from realtime.crops import CROP_MARGIN, CROP_SHIFT_UP, ROLL_TOLERANCE, crop_square, prepare_crops, square_box
from realtime.model_metadata import ModelMetadata
from realtime.types import FaceDetection

GRAY_48 = ModelMetadata(classes=["a", "b"], input_size=(48, 48), color="gray", scale=1 / 255, mean=0.0, std=1.0)


def gradient_image(height=360, width=640) -> np.ndarray:
    """Every pixel different enough to tell where a crop came from."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.dstack([xs % 256, ys % 256, (xs + ys) % 256]).astype(np.uint8)


def test_square_box_is_square_centred_and_enlarged_by_the_margin():
    left, top, right, bottom = square_box((100, 50, 200, 170), margin=0.2, shift_up=0.0)
    assert right - left == bottom - top == 144  # longer side 120 * 1.2
    assert (left + right) / 2 == 150 and (top + bottom) / 2 == 110


def test_square_box_shifts_up_towards_the_forehead():
    plain = square_box((100, 100, 200, 200), margin=0.2, shift_up=0.0)
    shifted = square_box((100, 100, 200, 200), margin=0.2, shift_up=0.1)
    assert shifted[1] == plain[1] - 10 and shifted[0] == plain[0]


def test_crop_inside_the_frame_is_the_exact_region():
    image = gradient_image()
    box = (200, 100, 300, 200)
    left, top, right, bottom = square_box(box)
    np.testing.assert_array_equal(crop_square(image, box), image[top:bottom, left:right])


@pytest.mark.parametrize("box", [
    (0, 0, 80, 90),            # top-left corner
    (560, 0, 640, 90),         # top-right corner
    (0, 280, 70, 360),         # bottom-left corner
    (570, 270, 640, 360),      # bottom-right corner
    (300, 0, 380, 40),         # cut by the top edge
    (0, 0, 640, 350),          # face bigger than the frame but for a few rows
])
def test_crop_at_the_edges_keeps_its_size_and_replicates_the_border(box):
    image = gradient_image()
    left, top, right, bottom = square_box(box, CROP_MARGIN, CROP_SHIFT_UP)
    crop = crop_square(image, box)
    side = right - left
    assert crop.shape == (side, side, 3)
    # Pixels inside the frame are copied as they are, at the same place relative to the face.
    inner_top, inner_left = max(top, 0), max(left, 0)
    inner_bottom, inner_right = min(bottom, 360), min(right, 640)
    np.testing.assert_array_equal(crop[inner_top - top:inner_bottom - top, inner_left - left:inner_right - left],
                                  image[inner_top:inner_bottom, inner_left:inner_right])
    # Outside the frame: a copy of the nearest border pixel.
    assert left < 0 or top < 0 or right > 640 or bottom > 360
    expected = image[np.clip(np.arange(top, bottom), 0, 359)][:, np.clip(np.arange(left, right), 0, 639)]
    np.testing.assert_array_equal(crop, expected)


def test_a_box_that_is_the_whole_image_is_taken_without_margin():
    square = gradient_image(48, 48)
    np.testing.assert_array_equal(crop_square(square, (0, 0, 48, 48)), square)
    wide = gradient_image(40, 60)  # squared by replicating the top and bottom rows, the face not shrunk
    crop = crop_square(wide, (0, 0, 60, 40))
    assert crop.shape == (60, 60, 3)
    np.testing.assert_array_equal(crop[10:50], wide)
    # A 48x48 gray face goes to the model exactly as it is.
    batch = prepare_crops(cv2.cvtColor(square[..., 0], cv2.COLOR_GRAY2BGR), [(0, 0, 48, 48)], GRAY_48)
    np.testing.assert_allclose(batch[0, :, :, 0], square[..., 0] / 255, rtol=1e-6)


def test_prepare_crops_converts_resizes_and_normalises_like_the_metadata():
    image = gradient_image()
    metadata = ModelMetadata(classes=["a", "b"], input_size=(48, 40), color="gray", scale=1 / 255,
                             mean=0.5, std=0.25)
    box = (200, 100, 300, 200)
    batch = prepare_crops(image, [box, (10, 10, 60, 60)], metadata)
    assert batch.shape == (2, 48, 40, 1) and batch.dtype == np.float32
    gray = cv2.cvtColor(crop_square(image, box), cv2.COLOR_BGR2GRAY)
    resized = cv2.resize(gray, (40, 48), interpolation=cv2.INTER_AREA).astype(np.float32)
    np.testing.assert_allclose(batch[0, :, :, 0], (resized / 255 - 0.5) / 0.25, rtol=1e-6, atol=1e-6)


def test_bgr_models_get_three_channels_in_bgr_order():
    image = np.zeros((100, 100, 3), np.uint8)
    image[:, :, 0] = 255  # pure blue
    metadata = ModelMetadata(classes=["a"], input_size=(32, 32), color="bgr", scale=1.0, mean=0.0, std=1.0)
    batch = prepare_crops(image, [(20, 20, 80, 80)], metadata)
    assert batch.shape == (1, 32, 32, 3)
    assert np.all(batch[..., 0] == 255) and np.all(batch[..., 1:] == 0)


def test_crop_values_stay_in_the_normalised_range():
    batch = prepare_crops(gradient_image(), [(0, 0, 100, 100), (500, 250, 640, 360)], GRAY_48)
    assert batch.min() >= 0.0 and batch.max() <= 1.0


def test_no_faces_give_an_empty_batch_of_the_right_shape():
    batch = prepare_crops(gradient_image(), [], GRAY_48)
    assert batch.shape == (0, 48, 48, 1) and batch.dtype == np.float32


def test_non_bgr_frames_are_refused():
    with pytest.raises(ValueError):
        prepare_crops(np.zeros((10, 10), np.uint8), [(0, 0, 5, 5)], GRAY_48)


def two_eyes_image(right_eye, left_eye, size=200) -> np.ndarray:
    """A gray square with two bright dots, as BGR."""
    image = np.full((size, size), 60, np.uint8)
    for x, y in (right_eye, left_eye):
        cv2.circle(image, (int(x), int(y)), 4, 255, -1)
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)


def dot_centres(crop: np.ndarray) -> list[tuple[float, float]]:
    """Centres (x, y) of the bright dots in a crop, left to right."""
    count, _, _, centres = cv2.connectedComponentsWithStats((crop[..., 0] > 160).astype(np.uint8))
    return sorted(tuple(c) for c in centres[1:count])


def test_roll_is_the_angle_of_the_eye_line():
    assert FaceDetection((0, 0, 10, 10), 0.9).roll == 0.0
    tilted = FaceDetection((0, 0, 10, 10), 0.9, eyes=((100.0, 100.0), (140.0, 140.0)))
    assert tilted.roll == pytest.approx(45.0)  # the left eye (image right) lower: positive
    assert FaceDetection((0, 0, 10, 10), 0.9, eyes=((100.0, 120.0), (140.0, 100.0))).roll < 0


def tilted_eyes(degrees: float, half_gap: float = 25.0) -> tuple[np.ndarray, FaceDetection]:
    """A picture of two eyes whose line is tilted by ``degrees``, and its face detection."""
    centre = np.array([100.0, 95.0])
    direction = np.array([np.cos(np.radians(degrees)), np.sin(np.radians(degrees))])
    right_eye, left_eye = centre - half_gap * direction, centre + half_gap * direction
    return two_eyes_image(right_eye, left_eye), FaceDetection((50, 60, 150, 170), 0.9, eyes=(tuple(right_eye), tuple(left_eye)))


def eye_line_angle(crop: np.ndarray) -> float:
    (ax, ay), (bx, by) = dot_centres(crop)
    return float(np.degrees(np.arctan2(by - ay, bx - ax)))


@pytest.mark.parametrize("degrees", [-30, -12, 20, 35])
def test_roll_correction_turns_the_crop_by_the_tilt_beyond_the_tolerance(degrees):
    image, face = tilted_eyes(degrees)
    assert face.roll == pytest.approx(degrees)
    as_cut = crop_square(image, face.box)
    levelled = crop_square(image, face.box, roll=face.roll, roll_tolerance=0.0)
    assert as_cut.shape == levelled.shape
    assert eye_line_angle(as_cut) == pytest.approx(degrees, abs=1.5)
    assert eye_line_angle(levelled) == pytest.approx(0, abs=1.5)
    (ax, _), (bx, _) = dot_centres(levelled)
    assert bx - ax == pytest.approx(50, abs=2)  # turned, not scaled
    # by default a tilt is kept up to ROLL_TOLERANCE degrees, like the training faces' own tilts
    default = crop_square(image, face.box, roll=face.roll)
    assert eye_line_angle(default) == pytest.approx(np.sign(degrees) * ROLL_TOLERANCE, abs=1.5)


def test_tilts_within_the_tolerance_are_cropped_as_they_are():
    image = gradient_image()
    box = (200, 100, 300, 200)
    within = ROLL_TOLERANCE - 0.5
    np.testing.assert_array_equal(crop_square(image, box, roll=-within), crop_square(image, box))
    batch = prepare_crops(image, [box, box], GRAY_48, rolls=[0.0, 25.0])
    assert not np.array_equal(batch[0], batch[1])
    with pytest.raises(ValueError, match="rolls"):
        prepare_crops(image, [box], GRAY_48, rolls=[0.0, 1.0])
