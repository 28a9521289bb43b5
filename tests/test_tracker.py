"""FaceTracker: stable ids for moving faces, new, vanishing and returning faces, one-frame false
detections, smoothing and hysteresis of the labels."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.scene_cuts import INTERRUPTION_SECONDS
from realtime.tracker import FaceTracker, box_iou
from realtime.types import FaceDetection

CLASSES = ["happy", "sad", "neutral"]
HAPPY = [0.8, 0.1, 0.1]
SAD = [0.1, 0.8, 0.1]


def faces(*boxes):
    return [FaceDetection(box=box, score=0.9) for box in boxes]


def probs(*rows):
    return np.array(rows, dtype=np.float32).reshape(len(rows), len(CLASSES))


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (10, 10, 20, 20)) == 0.0


def test_ids_follow_moving_faces_even_when_the_order_changes():
    tracker = FaceTracker(CLASSES, smoothing=0.0)
    left, right = (100, 100, 200, 200), (400, 100, 500, 200)
    first = tracker.update(faces(left, right), probs(HAPPY, SAD))
    ids = {result.box: result.face_id for result in first}
    assert sorted(ids.values()) == [1, 2]
    for step in range(1, 10):  # both move 8 px a frame; detections come in swapped order
        moved_left = (100 + 8 * step, 100, 200 + 8 * step, 200)
        moved_right = (400 - 8 * step, 100 + 4 * step, 500 - 8 * step, 200 + 4 * step)
        results = tracker.update(faces(moved_right, moved_left), probs(SAD, HAPPY))
        assert [r.face_id for r in results] == [ids[right], ids[left]]
        assert [r.box for r in results] == [moved_right, moved_left]


def test_new_face_gets_a_new_id_and_a_vanished_face_is_forgotten():
    tracker = FaceTracker(CLASSES, smoothing=0.0, max_missed=2, min_hits=1)
    a, b = (0, 0, 100, 100), (300, 0, 400, 100)
    assert [r.face_id for r in tracker.update(faces(a), probs(HAPPY))] == [1]
    assert [r.face_id for r in tracker.update(faces(a, b), probs(HAPPY, SAD))] == [1, 2]
    # b disappears for two frames (within max_missed) and comes back with its id.
    tracker.update(faces(a), probs(HAPPY))
    tracker.update(faces(a), probs(HAPPY))
    assert [r.face_id for r in tracker.update(faces(a, b), probs(HAPPY, SAD))] == [1, 2]
    # Gone for three frames: forgotten, so it comes back as a new face.
    for _ in range(3):
        tracker.update(faces(a), probs(HAPPY))
    assert [r.face_id for r in tracker.update(faces(a, b), probs(HAPPY, SAD))] == [1, 3]


def test_a_face_that_jumps_away_is_a_new_face():
    tracker = FaceTracker(CLASSES, smoothing=0.0, min_hits=1)
    tracker.update(faces((0, 0, 100, 100)), probs(HAPPY))
    assert tracker.update(faces((500, 300, 600, 400)), probs(HAPPY))[0].face_id == 2
    # Even once the first face is lost: the jump is too far to be the same face.
    assert tracker.update(faces((500, 300, 600, 400)), probs(HAPPY))[0].face_id == 2


def test_a_face_that_moves_less_than_a_box_side_in_one_frame_keeps_its_id():
    """Frames dropped by a slow camera or decoder: the face is found 70 px on (IoU 0.18) in the next frame."""
    tracker = FaceTracker(CLASSES, smoothing=0.0)  # min_hits=3
    for _ in range(5):
        assert [r.face_id for r in tracker.update(faces((100, 100, 200, 200)), probs(HAPPY))] == [1]
    for step in range(1, 6):
        moved = (100 + 70 * step, 100, 200 + 70 * step, 200)
        assert [r.face_id for r in tracker.update(faces(moved), probs(HAPPY))] == [1]  # no gap, no new id


def test_a_new_face_earns_its_id_in_three_frames_and_one_frame_false_faces_never_show():
    tracker = FaceTracker(CLASSES, smoothing=0.0)  # min_hits=3
    a, false_face, b = (0, 0, 100, 100), (300, 0, 400, 100), (300, 200, 400, 300)
    assert [r.face_id for r in tracker.update(faces(a), probs(HAPPY))] == [1]  # the first frame: at once
    assert [r.face_id for r in tracker.update(faces(a, false_face), probs(HAPPY, SAD))] == [1]
    assert [r.face_id for r in tracker.update(faces(a, b), probs(HAPPY, SAD))] == [1]
    assert [r.face_id for r in tracker.update(faces(a, b), probs(HAPPY, SAD))] == [1]
    # b's third frame: it gets id 2, as the false face consumed none.
    assert [r.face_id for r in tracker.update(faces(a, b), probs(HAPPY, SAD))] == [1, 2]


def test_a_face_hidden_for_a_second_and_a_half_keeps_its_id_also_when_it_comes_back_moved():
    tracker = FaceTracker(CLASSES, smoothing=0.0)  # max_missed=45: 1.5 s at 30 fps
    face_box, other = (200, 100, 300, 200), (500, 100, 600, 200)
    for _ in range(5):
        tracker.update(faces(face_box, other), probs(HAPPY, SAD))
    for _ in range(45):  # a hand covers the first face
        assert [r.face_id for r in tracker.update(faces(other), probs(SAD))] == [2]
    moved = (250, 130, 350, 230)  # IoU with where it was: 0.27, below iou_threshold
    assert box_iou(face_box, moved) < tracker.iou_threshold
    assert [r.face_id for r in tracker.update(faces(moved, other), probs(HAPPY, SAD))] == [1, 2]


def test_a_face_gone_longer_than_max_missed_comes_back_as_a_new_face_after_the_delay():
    tracker = FaceTracker(CLASSES, smoothing=0.0, max_missed=10)
    box = (200, 100, 300, 200)
    tracker.update(faces(box), probs(HAPPY))
    for _ in range(11):
        tracker.update([], probs())
    assert [tracker.update(faces(box), probs(HAPPY)) for _ in range(3)][-1][0].face_id == 2


def test_rescale_keeps_ids_of_moving_faces_when_the_frames_halve():
    tracker = FaceTracker(CLASSES, smoothing=0.0)
    for step in range(5):  # both move right 10 px a frame
        tracker.update(faces((100 + 10 * step, 100, 200 + 10 * step, 200), (400 + 10 * step, 100, 500 + 10 * step, 200)),
                       probs(HAPPY, SAD), timestamp=step / 30)
    tracker.rescale(0.5, 0.5)
    later = tracker.update(faces((228, 50, 278, 100), (78, 50, 128, 100)), probs(SAD, HAPPY), timestamp=5 / 30)
    assert [(result.box, result.face_id) for result in later] == [((228, 50, 278, 100), 2), ((78, 50, 128, 100), 1)]
    unscaled = FaceTracker(CLASSES, smoothing=0.0)  # the same, without rescale: new faces
    for step in range(5):
        unscaled.update(faces((100 + 10 * step, 100, 200 + 10 * step, 200), (400 + 10 * step, 100, 500 + 10 * step, 200)),
                        probs(HAPPY, SAD), timestamp=step / 30)
    assert unscaled.update(faces((228, 50, 278, 100), (78, 50, 128, 100)), probs(SAD, HAPPY), timestamp=5 / 30) == []


def test_no_faces_gives_no_results():
    tracker = FaceTracker(CLASSES)
    assert tracker.update([], np.zeros((0, 3), np.float32)) == []


def test_smoothing_stops_a_single_frame_flicker():
    box = (0, 0, 100, 100)
    sequence = [HAPPY] * 5 + [SAD] + [HAPPY] * 5  # one odd frame
    smooth, raw = FaceTracker(CLASSES, smoothing=0.6), FaceTracker(CLASSES, smoothing=0.0)
    smooth_labels = [smooth.update(faces(box), probs(p))[0].label for p in sequence]
    raw_results = [raw.update(faces(box), probs(p))[0] for p in sequence]
    assert smooth_labels == ["happy"] * len(sequence)
    assert [r.label for r in raw_results] == ["happy"] * 5 + ["sad"] + ["happy"] * 5
    # Smoothing 0 passes each frame's probabilities through unchanged.
    for result, p in zip(raw_results, sequence):
        np.testing.assert_allclose(result.probabilities, p, rtol=1e-6)
        assert result.confidence == pytest.approx(max(p))


def test_hysteresis_keeps_the_label_through_a_near_tie_but_follows_a_clear_change():
    box = (0, 0, 100, 100)
    near_tie = [[0.45, 0.1, 0.45]] * 2 + [[0.40, 0.1, 0.50], [0.50, 0.1, 0.40]] * 6  # happy ~ neutral
    plain = FaceTracker(CLASSES, smoothing=0.0, label_margin=0.0)
    steady = FaceTracker(CLASSES, smoothing=0.0, label_margin=0.15)
    plain_labels = [plain.update(faces(box), probs(p))[0].label for p in near_tie]
    steady_results = [steady.update(faces(box), probs(p))[0] for p in near_tie]
    assert sum(a != b for a, b in zip(plain_labels, plain_labels[1:])) == 12
    assert {r.label for r in steady_results} == {"happy"}
    # The confidence shown is the displayed label's probability.
    assert [r.confidence for r in steady_results[2:4]] == pytest.approx([0.40, 0.50])
    assert steady.update(faces(box), probs(SAD))[0].label == "sad"  # a clear lead switches at once


def test_a_smaller_lead_that_lasts_ten_frames_switches_the_label():
    """The first frame said neutral by a hair; every frame after says happy by 0.12, under the margin."""
    box = (0, 0, 100, 100)
    tracker = FaceTracker(CLASSES, smoothing=0.0, label_margin=0.15)
    assert tracker.update(faces(box), probs([0.38, 0.22, 0.40]))[0].label == "neutral"
    labels = [tracker.update(faces(box), probs([0.45, 0.22, 0.33]))[0].label for _ in range(12)]
    assert labels == ["neutral"] * 9 + ["happy"] * 3
    # a lead under half the margin never switches it, however long it lasts
    assert {tracker.update(faces(box), probs([0.40, 0.14, 0.46]))[0].label for _ in range(30)} == {"happy"}


def test_smoothing_is_an_exponential_moving_average_and_follows_a_lasting_change():
    tracker = FaceTracker(CLASSES, smoothing=0.5)
    box = (0, 0, 100, 100)
    first = tracker.update(faces(box), probs(HAPPY))[0]
    np.testing.assert_allclose(first.probabilities, HAPPY, rtol=1e-6)  # a new face starts from its own
    second = tracker.update(faces(box), probs(SAD))[0]
    np.testing.assert_allclose(second.probabilities, 0.5 * np.array(HAPPY) + 0.5 * np.array(SAD), rtol=1e-6)
    labels = [tracker.update(faces(box), probs(SAD))[0].label for _ in range(3)]
    assert labels[-1] == "sad"


def test_each_face_is_smoothed_on_its_own():
    tracker = FaceTracker(CLASSES, smoothing=0.9)
    a, b = (0, 0, 100, 100), (300, 0, 400, 100)
    tracker.update(faces(a, b), probs(HAPPY, SAD))
    results = tracker.update(faces(a, b), probs(HAPPY, SAD))
    assert [r.label for r in results] == ["happy", "sad"]


def test_reset_starts_ids_again():
    tracker = FaceTracker(CLASSES)
    tracker.update(faces((0, 0, 10, 10), (50, 50, 60, 60)), probs(HAPPY, SAD))
    tracker.reset()
    assert tracker.update(faces((0, 0, 10, 10)), probs(SAD))[0].face_id == 1
    assert tracker.update(faces((0, 0, 10, 10)), probs(SAD))[0].label == "sad"


def test_bad_arguments():
    with pytest.raises(ValueError):
        FaceTracker(CLASSES, smoothing=1.0)
    with pytest.raises(ValueError):
        FaceTracker(CLASSES, min_hits=0)
    with pytest.raises(ValueError):
        FaceTracker(CLASSES, label_margin=1.0)
    with pytest.raises(ValueError):
        FaceTracker(CLASSES).update(faces((0, 0, 10, 10)), np.zeros((2, 3), np.float32))


@pytest.mark.parametrize("order", [1, -1])
def test_two_faces_that_cross_keep_their_ids(order):
    """Two faces walk towards each other 20 px a frame, meet in one box and walk on: each keeps its id,
    whichever order the detector lists them in (the tracker follows their motion)."""
    tracker = FaceTracker(CLASSES, smoothing=0.0, min_hits=1)
    ids_of = {}  # direction -> id
    for step in range(12):
        walking_right = (20 * step, 100, 20 * step + 100, 200)
        walking_left = (220 - 20 * step, 100, 320 - 20 * step, 200)
        boxes = [walking_right, walking_left][::order]
        results = tracker.update(faces(*boxes), probs(HAPPY, SAD))
        seen = {"right" if r.box == walking_right else "left": r.face_id for r in results}
        if walking_right == walking_left:  # the one frame where they coincide says nothing
            continue
        for direction, face_id in seen.items():
            assert ids_of.setdefault(direction, face_id) == face_id, f"ids swapped at step {step}"
    assert sorted(ids_of.values()) == [1, 2]


def test_a_face_hidden_where_two_faces_cross_comes_back_with_its_id():
    """The face in front hides the other for two frames (the detector finds one face), then both walk on."""
    tracker = FaceTracker(CLASSES, smoothing=0.0, min_hits=1)
    for step in range(12):
        walking_right = (20 * step, 100, 20 * step + 100, 200)
        walking_left = (220 - 20 * step, 100, 320 - 20 * step, 200)
        boxes = [walking_right] if step in (5, 6) else [walking_right, walking_left]
        ids = {r.box: r.face_id for r in tracker.update(faces(*boxes), probs(*[HAPPY] * len(boxes)))}
        assert ids[walking_right] == 1
        if len(boxes) == 2:
            assert ids[walking_left] == 2


def timed(tracker, boxes, rows, timestamp):
    return tracker.update(faces(*boxes), probs(*rows), timestamp=timestamp)


def test_smoothing_lasts_as_long_in_seconds_at_any_frame_rate():
    """smoothing=0.6 is per 1/30 s: at 10 frames/s a frame's weight of the past is 0.6 ** 3."""
    box = (0, 0, 100, 100)
    at_10, at_30 = FaceTracker(CLASSES, smoothing=0.6), FaceTracker(CLASSES, smoothing=0.6)
    timed(at_10, [box], [HAPPY], 0.0)
    timed(at_30, [box], [HAPPY], 0.0)
    after_10 = timed(at_10, [box], [SAD], 0.1)[0]
    for index in range(1, 4):
        after_30 = timed(at_30, [box], [SAD], index / 30)[0]
    expected = 0.6 ** 3 * np.array(HAPPY) + (1 - 0.6 ** 3) * np.array(SAD)
    np.testing.assert_allclose(after_10.probabilities, expected, rtol=1e-5)
    np.testing.assert_allclose(after_30.probabilities, expected, rtol=1e-5)


def test_a_face_survives_one_and_a_half_seconds_at_any_frame_rate():
    for fps in (10, 30, 60):
        tracker = FaceTracker(CLASSES, smoothing=0.0)
        box, other = (0, 0, 100, 100), (300, 0, 400, 100)
        timed(tracker, [box, other], [HAPPY, SAD], 0.0)
        frame = 1
        while frame / fps < 1.4:  # the face is hidden 1.4 s
            assert [r.face_id for r in timed(tracker, [other], [SAD], frame / fps)] == [2]
            frame += 1
        assert [r.face_id for r in timed(tracker, [box, other], [HAPPY, SAD], frame / fps)] == [1, 2], fps
        frame += 1
        while frame / fps < 3.2:  # hidden 2 s: forgotten, at 10 frames/s as at 60
            timed(tracker, [other], [SAD], frame / fps)
            frame += 1
        returns = [timed(tracker, [box, other], [HAPPY, SAD], (frame + i) / fps) for i in range(3)]
        assert [r.face_id for r in returns[-1]] == [3, 2], fps


def test_a_gap_in_the_timestamps_forgets_the_faces():
    """A video whose timestamps jump 5 s (a pause in a recording): the face after it is a new face, shown at
    once as after a scene cut, with nothing smoothed across the gap."""
    tracker = FaceTracker(CLASSES, smoothing=0.6)
    box = (0, 0, 100, 100)
    for index in range(10):
        timed(tracker, [box], [HAPPY], index / 30)
    after_gap = [timed(tracker, [box], [SAD], 5.0 + index / 30) for index in range(3)]
    assert [[r.face_id for r in results] for results in after_gap] == [[2], [2], [2]]
    assert after_gap[0][0].label == "sad"
    np.testing.assert_allclose(after_gap[0][0].probabilities, SAD, rtol=1e-5)


@pytest.mark.parametrize("seconds_apart", [0.5, 2.0, 10.0])
def test_a_face_in_every_frame_of_a_time_lapse_keeps_its_id(seconds_apart):
    """Frames seconds apart (a time-lapse, a slideshow) are no gaps: the face keeps id 1 in every frame."""
    tracker = FaceTracker(CLASSES)
    box = (0, 0, 100, 100)
    ids = [[r.face_id for r in timed(tracker, [box], [HAPPY], index * seconds_apart)] for index in range(8)]
    assert ids == [[1]] * 8


def test_a_face_in_a_time_lapse_survives_a_few_frames_without_a_detection():
    tracker = FaceTracker(CLASSES, smoothing=0.0)
    box, other = (0, 0, 100, 100), (300, 0, 400, 100)
    for index in range(3):
        timed(tracker, [box, other], [HAPPY, SAD], 2.0 * index)
    for index in range(3, 6):  # 3 frames (6 s) without it
        timed(tracker, [other], [SAD], 2.0 * index)
    assert [r.face_id for r in timed(tracker, [box, other], [HAPPY, SAD], 12.0)] == [1, 2]
    for index in range(7, 11):  # 4 frames without it: forgotten
        timed(tracker, [other], [SAD], 2.0 * index)
    assert [r.face_id for r in timed(tracker, [box, other], [HAPPY, SAD], 22.0)] == [2]


def test_a_face_back_after_a_second_shows_what_it_shows_now():
    """Smoothing is per 1/30 s since the face was last seen: after 1.4 s hidden, the past weighs nothing."""
    tracker = FaceTracker(CLASSES, smoothing=0.6)
    box, other = (0, 0, 100, 100), (300, 0, 400, 100)
    for index in range(5):
        timed(tracker, [box, other], [HAPPY, SAD], index / 30)
    for index in range(5, 47):
        timed(tracker, [other], [SAD], index / 30)
    (back, _) = timed(tracker, [box, other], [SAD, SAD], 47 / 30)
    assert back.face_id == 1 and back.label == "sad"
    np.testing.assert_allclose(back.probabilities, SAD, atol=1e-4)


@pytest.mark.parametrize("fps", [30, 60, 120])
def test_two_faces_that_cross_keep_their_ids_at_any_frame_rate(fps):
    """As above, the face behind hidden while they overlap, at 20 px per 1/30 s whatever the frame rate."""
    tracker = FaceTracker(CLASSES, smoothing=0.0, min_hits=1)
    speed = 20 * 30 / fps
    for step in range(int(12 * fps / 30)):
        walking_right = (round(speed * step), 100, round(speed * step) + 100, 200)
        walking_left = (220 - round(speed * step), 100, 320 - round(speed * step), 200)
        overlapping = abs(walking_right[0] - walking_left[0]) <= 20
        boxes = [walking_right] if overlapping else [walking_right, walking_left]
        ids = {r.box: r.face_id for r in tracker.update(faces(*boxes), probs(*[HAPPY] * len(boxes)), step / fps)}
        assert ids[walking_right] == 1, step
        if not overlapping:
            assert ids[walking_left] == 2, step


def test_a_new_scene_forgets_the_faces_and_shows_the_new_ones_at_once():
    tracker = FaceTracker(CLASSES, smoothing=0.6)
    box = (0, 0, 100, 100)
    for _ in range(5):
        tracker.update(faces(box), probs(HAPPY))
    (result,) = tracker.update(faces(box), probs(SAD), new_scene=True)
    assert result.face_id == 2 and result.label == "sad"
    np.testing.assert_allclose(result.probabilities, SAD, rtol=1e-5)
    assert [r.face_id for r in tracker.update(faces(box), probs(SAD))] == [2]


def test_faces_come_back_with_their_ids_after_a_flash():
    """A new scene that lasts a frame, then the shot before it resumes: its faces keep their ids and their
    smoothed probabilities; the flash's face is gone. A face that was tentative before the flash starts again."""
    tracker = FaceTracker(CLASSES, smoothing=0.5)
    left, right, flash_face = (0, 0, 100, 100), (300, 0, 400, 100), (150, 0, 250, 100)
    for _ in range(5):
        tracker.update(faces(left), probs(HAPPY))
    tracker.update(faces(left, right), probs(HAPPY, HAPPY))  # right: tentative
    assert [r.face_id for r in tracker.update(faces(flash_face), probs(SAD), new_scene=True)] == [2]
    resumed = tracker.update(faces(left, right), probs(HAPPY, HAPPY), scene_resumed=True)
    assert [r.face_id for r in resumed] == [1] and resumed[0].label == "happy"
    # two frames of 1/30 s since the left face was last seen: the past weighs 0.5 ** 2
    np.testing.assert_allclose(resumed[0].probabilities, HAPPY, rtol=1e-5)
    assert [r.face_id for r in tracker.update(faces(left, right), probs(HAPPY, HAPPY))] == [1]
    assert [r.face_id for r in tracker.update(faces(left, right), probs(HAPPY, HAPPY))] == [1, 3]


def test_faces_come_back_after_a_flash_of_two_unlike_frames():
    """A flash frame, another unlike it (white, then black), then the shot before: the second new scene is part
    of the flash, and the faces before it come back."""
    tracker = FaceTracker(CLASSES, smoothing=0.0)
    box = (0, 0, 100, 100)
    for _ in range(3):
        tracker.update(faces(box), probs(HAPPY))
    assert [r.face_id for r in tracker.update(faces(box), probs(SAD), new_scene=True)] == [2]
    assert [r.face_id for r in tracker.update([], np.zeros((0, 3), np.float32), new_scene=True)] == []
    assert [r.face_id for r in tracker.update(faces(box), probs(HAPPY), scene_resumed=True)] == [1]
    # a new scene later than INTERRUPTION_SECONDS after the last one starts a shot of its own: going back then goes
    # back to the shot just before it, not to the one before that (updates without times: 1/30 s apart)
    [shot] = tracker.update(faces(box), probs(SAD), new_scene=True)
    for _ in range(round(INTERRUPTION_SECONDS * 30)):
        tracker.update(faces(box), probs(SAD))
    [newest] = tracker.update(faces(box), probs(SAD), new_scene=True)
    assert newest.face_id != shot.face_id != 1
    assert [r.face_id for r in tracker.update(faces(box), probs(SAD), scene_resumed=True)] == [shot.face_id]


def test_scene_resumed_without_a_flash_changes_nothing_and_both_flags_are_refused():
    tracker = FaceTracker(CLASSES, smoothing=0.0)
    box = (0, 0, 100, 100)
    tracker.update(faces(box), probs(HAPPY))
    assert [r.face_id for r in tracker.update(faces(box), probs(HAPPY), scene_resumed=True)] == [1]
    with pytest.raises(ValueError, match="both"):
        tracker.update(faces(box), probs(HAPPY), new_scene=True, scene_resumed=True)


def test_faces_gone_longer_than_they_survive_do_not_come_back_after_a_flash():
    tracker = FaceTracker(CLASSES, max_missed=45)
    box = (0, 0, 100, 100)
    timed(tracker, [box], [HAPPY], 0.0)
    timed(tracker, [], [], 1.0)
    timed(tracker, [box], [SAD], 1.4, )
    tracker.update(faces(box), probs(SAD), timestamp=1.45, new_scene=True)
    assert [r.face_id for r in tracker.update(faces(box), probs(SAD), timestamp=1.5, scene_resumed=True)] == [1]
    tracker.update([], np.zeros((0, 3), np.float32), timestamp=1.6)
    tracker.update(faces(box), probs(SAD), timestamp=2.5, new_scene=True)
    resumed = tracker.update(faces(box), probs(SAD), timestamp=3.1, scene_resumed=True)
    assert resumed == []  # last seen 1.6 s before: forgotten; the face is new again, and tentative


def test_timestamps_that_do_not_go_forward_count_as_one_frame():
    tracker = FaceTracker(CLASSES, smoothing=0.5)
    box = (0, 0, 100, 100)
    timed(tracker, [box], [HAPPY], 2.0)
    second = timed(tracker, [box], [SAD], 2.0)[0]
    third = timed(tracker, [box], [SAD], float("nan"))[0]
    np.testing.assert_allclose(second.probabilities, 0.5 * np.array(HAPPY) + 0.5 * np.array(SAD), rtol=1e-5)
    np.testing.assert_allclose(third.probabilities, 0.25 * np.array(HAPPY) + 0.75 * np.array(SAD), rtol=1e-5)


@pytest.mark.parametrize("fps", [10, 15, 30, 60, 120])
def test_a_face_going_behind_another_comes_back_with_its_id(fps):
    """Walking right, 6 px per 1/30 s, a face goes behind one walking left: its box shrinks to the part still
    visible, it is hidden for 0.2 s and comes out on the other side. The box's centre hardly moves as it
    shrinks, but the face's motion is its left edge's: it comes back with its id, at any frame rate."""
    tracker = FaceTracker(CLASSES, smoothing=0.0, min_hits=1)
    behind_ids, front_ids = set(), set()
    per_frame = 6 * 30 / fps
    for step in range(2 * fps):
        behind_left, front_left = round(per_frame * step), round(400 - per_frame * step)
        front = (front_left, 100, front_left + 100, 200)
        boxes = [front]
        if behind_left + 100 <= front_left or behind_left >= front_left + 100:  # in full view
            boxes.append((behind_left, 100, behind_left + 100, 200))
        elif 40 <= front_left - behind_left:  # going behind: its left part shows
            visible = front_left - behind_left
            boxes.append((behind_left, 150 - visible // 2, front_left, 150 + visible // 2))
        elif 40 <= behind_left - front_left:  # coming out: its right part shows
            visible = behind_left - front_left
            boxes.append((front_left + 100, 150 - visible // 2, behind_left + 100, 150 + visible // 2))
        results = tracker.update(faces(*boxes), probs(*[HAPPY] * len(boxes)), timestamp=step / fps)
        front_ids |= {r.face_id for r in results if r.box == front}
        behind_ids |= {r.face_id for r in results if r.box != front}
    assert front_ids == {1} and behind_ids == {2}
