"""EmotionAnnotator: boxes and labels drawn inside the frame at any size, colors per emotion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from realtime.annotator import EMOTION_COLORS, FONT, MIN_FONT_SCALE, EmotionAnnotator, draw_fps, emotion_color
from realtime.types import FaceResult, FrameResult
from tests.conftest import EMOTIONS


def face(face_id, box, label="happy", confidence=0.87):
    return FaceResult(face_id=face_id, box=box, detection_score=0.9, probabilities=np.zeros(7, np.float32),
                      label=label, confidence=confidence, classes=EMOTIONS)


def label_geometry(annotator, image_shape, result):
    layout = annotator.layout_label(result, image_shape)
    return layout.text_size, layout.rectangle


@pytest.mark.parametrize("height, width", [(360, 640), (1080, 1920)])
def test_labels_of_faces_at_every_edge_stay_inside_the_frame(height, width):
    annotator = EmotionAnnotator()
    s = height // 6  # face size
    boxes = [(0, 0, s, s), (width - s, 0, width, s), (0, height - s, s, height),
             (width - s, height - s, width, height), (width // 2, height // 2, width // 2 + s, height // 2 + s)]
    results = [face(i + 1, box, label) for i, (box, label)
               in enumerate(zip(boxes, ["happy", "sad", "angry", "surprise", "neutral"]))]
    image = np.zeros((height, width, 3), np.uint8)
    annotated = annotator.annotate(image, FrameResult(0, 0.0, results))
    assert annotated.shape == image.shape and not image.any()  # drawn on a copy
    for result in results:
        (text_w, text_h), (left, top, right, bottom) = label_geometry(annotator, image.shape, result)
        assert 0 <= left < right <= width and 0 <= top < bottom <= height
        assert right - left > text_w and bottom - top > text_h  # the whole text fits on its background
        # The label background really is drawn there, in the emotion's color.
        region = annotated[top:bottom, left:right].reshape(-1, 3)
        share = np.mean(np.all(region == emotion_color(result.label), axis=1))
        assert share > 0.4
    # The box outline is drawn along the face's edges.
    x1, y1, x2, y2 = boxes[4]
    assert np.all(annotated[y2 - 1, x1 + 5:x2 - 5] == emotion_color("neutral"))


def test_label_goes_above_the_box_when_there_is_room_and_inside_at_the_top():
    annotator = EmotionAnnotator()
    shape = (360, 640, 3)
    size, (_, top, _, bottom) = label_geometry(annotator, shape, face(1, (100, 200, 200, 300)))
    assert bottom == 200  # just above the box
    size, (_, top, _, bottom) = label_geometry(annotator, shape, face(1, (100, 0, 200, 100)))
    assert top == 0  # inside the box, at the top edge of the frame


def test_text_and_lines_grow_with_the_frame():
    small_font, small_line = EmotionAnnotator.style((360, 640, 3))
    big_font, big_line = EmotionAnnotator.style((1080, 1920, 3))
    assert big_font == pytest.approx(3 * small_font) and big_line == 3 * small_line
    text_h_360 = cv2.getTextSize("id 1 happy 87%", FONT, small_font, small_line)[0][1]
    assert text_h_360 >= 8  # legible at 360p
    assert EmotionAnnotator.style((120, 160, 3))[0] >= 0.4


def test_labels_of_small_faces_shrink_but_stay_legible():
    annotator = EmotionAnnotator()
    shape = (1080, 1920, 3)
    big = annotator.layout_label(face(1, (100, 300, 500, 700)), shape)
    small = annotator.layout_label(face(2, (100, 300, 140, 340)), shape)
    assert big.font_scale == annotator.style(shape)[0]
    assert MIN_FONT_SCALE <= small.font_scale < big.font_scale


def test_label_text():
    result = face(3, (0, 0, 10, 10), "happy", 0.87)
    assert EmotionAnnotator().label_text(result) == "id 3 happy 87%"
    assert EmotionAnnotator(show_ids=False).label_text(result) == "happy 87%"


def test_every_emotion_has_its_own_color_and_unknown_labels_get_a_stable_one():
    assert len(set(EMOTION_COLORS.values())) == len(EMOTION_COLORS)
    assert emotion_color("contempt") == emotion_color("contempt")


def test_no_faces_leaves_the_frame_unchanged_and_fps_is_drawn_top_right():
    annotator = EmotionAnnotator()
    image = np.full((360, 640, 3), 128, np.uint8)
    np.testing.assert_array_equal(annotator.annotate(image, FrameResult(0, 0.0, [])), image)
    with_fps = draw_fps(image, 23.4)
    changed = np.argwhere(np.any(with_fps != image, axis=2))
    assert len(changed) > 0 and changed[:, 0].max() < 60 and changed[:, 1].min() > 500
    assert np.array_equal(annotator.annotate(image, FrameResult(0, 0.0, []), fps=23.4), with_fps)


def labels_clash(layouts, faces) -> tuple[int, int]:
    """(label pairs that overlap, labels that cover another face's box)."""
    def overlaps(a, b):
        return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])
    rectangles = [layout.rectangle for layout in layouts]
    pairs = sum(overlaps(a, b) for i, a in enumerate(rectangles) for b in rectangles[i + 1:])
    covering = sum(overlaps(rectangle, other.box) for rectangle, own in zip(rectangles, faces)
                   for other in faces if other is not own)
    return pairs, covering


def test_labels_of_a_crowded_row_of_faces_do_not_cover_each_other_or_other_faces():
    annotator = EmotionAnnotator()
    shape = (360, 640, 3)
    # A row of eight faces 50 px wide, 10 px apart: each label is about twice as wide as its face.
    results = [face(i + 1, (20 + 60 * i, 100, 70 + 60 * i, 150), "surprise", 0.99) for i in range(8)]
    plain = [annotator.layout_label(result, shape) for result in results]
    assert labels_clash(plain, results) != (0, 0)  # each on its own, labels would collide
    layouts = annotator.layout_labels(results, shape)
    assert labels_clash(layouts, results) == (0, 0)
    for layout in layouts:
        left, top, right, bottom = layout.rectangle
        assert 0 <= left < right <= 640 and 0 <= top < bottom <= 360


def test_labels_of_a_packed_grid_of_faces_stay_apart_each_over_its_own_face():
    """A class photo (15 faces 100 px wide, 5 px apart, rows touching): labels hid each other (6 overlaps) and some
    sat a label's width away, under another face."""
    annotator = EmotionAnnotator()
    shape = (420, 700, 3)
    boxes = [(10 + 140 * column, 10 + 140 * row, 110 + 140 * column, 110 + 140 * row) if column % 2 == 0 else
             (10 + 140 * column, 25 + 140 * row, 110 + 140 * column, 125 + 140 * row)
             for row in range(3) for column in range(5)]
    boxes = [(x1 - 35 * (x1 // 140), y1, x2 - 35 * (x1 // 140), y2) for x1, y1, x2, y2 in boxes]  # 5 px apart
    results = [face(i + 1, box, "happy", 0.93) for i, box in enumerate(boxes)]
    layouts = annotator.layout_labels(results, shape)
    assert labels_clash(layouts, results)[0] == 0
    for layout, result in zip(layouts, results):
        left, _, right, _ = layout.rectangle
        assert result.box[0] <= (left + right) / 2 <= result.box[2]  # above, below or in its own face's box


def test_labels_on_a_real_group_photo_stay_apart(media):
    from realtime.detector import FaceDetector
    from realtime.io.images import read_image

    image = cv2.resize(read_image(media / "multi_face.jpg"), (640, 427), interpolation=cv2.INTER_AREA)
    with FaceDetector("auto") as detector:
        results = [face(i + 1, detection.box, "surprise", 0.99) for i, detection in enumerate(detector.detect(image))]
    assert len(results) == 5
    annotator = EmotionAnnotator()
    assert labels_clash([annotator.layout_label(result, image.shape) for result in results], results) != (0, 0)
    assert labels_clash(annotator.layout_labels(results, image.shape), results) == (0, 0)


def test_small_photos_are_enlarged_for_their_labels_but_thin_ones_are_not():
    from realtime.annotator import photo_enlargement

    assert photo_enlargement((48, 48, 3)) == 5 and photo_enlargement((148, 199)) == 2  # to 240 px on the short side
    assert photo_enlargement((240, 320, 3)) == photo_enlargement((0, 10, 3)) == 1
    assert photo_enlargement((3, 6000, 3)) == photo_enlargement((1, 8000)) == 1  # a strip: not to 480,000 px
    assert photo_enlargement((200, 2000, 3)) == 2  # at most 4096 px on the long side


def test_annotate_takes_what_analyze_takes_a_path_a_pil_image_or_a_gray_array(tmp_path):
    from PIL import Image

    picture = np.full((120, 160, 3), (30, 60, 90), np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), picture)
    result = FrameResult(0, 0.0, [face(1, (40, 30, 100, 90))])
    annotator = EmotionAnnotator()
    drawn = annotator.annotate(picture, result)
    assert np.array_equal(annotator.annotate(tmp_path / "photo.png", result), drawn)
    assert np.array_equal(annotator.annotate(str(tmp_path / "photo.png"), result), drawn)
    assert np.array_equal(annotator.annotate(Image.fromarray(picture[:, :, ::-1]), result), drawn)
    assert np.array_equal(annotator.annotate_photo(tmp_path / "photo.png", result),
                          annotator.annotate_photo(picture, result))
    gray = annotator.annotate(picture[:, :, 0], result)
    assert gray.shape == (120, 160, 3) and np.array_equal(gray[30, 70], drawn[30, 70]) and len(set(gray[30, 70])) > 1
    assert np.array_equal(picture[0, 0], (30, 60, 90))  # the given picture is left as it was
    with pytest.raises(ValueError, match=r"got float32 \(for values from 0 to 1: \(image \* 255\)"):
        annotator.annotate(picture.astype(np.float32) / 255, result)
