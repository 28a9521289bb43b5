"""Faces over time on real media: ids through an occlusion, one-frame false faces, label flicker and
reaction time with the shipped model; pre-cropped FER2013 faces through the command line."""

from __future__ import annotations

import csv
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from benchmarks.faces import (
    FRAMINGS,
    TRACKER_BEFORE,
    change_sequences,
    clip_frames,
    crossing_frames,
    crossing_outcome,
    label_changes,
    raw_results,
    reaction_frames,
    replay,
)
from realtime import scene_cuts
from realtime.classifier import EmotionClassifier
from realtime.cli import main
from realtime.detector import FaceDetector
from realtime.io.images import read_image
from realtime.io.video import VideoFileSource
from realtime.pipeline import EmotionAnalyzer
from realtime.scene_cuts import INTERRUPTION_SECONDS, SceneCutDetector, ShotChange
from realtime.tracker import FaceTracker
from realtime.types import FaceDetection, Frame


def clip(media, name: str) -> list[np.ndarray]:
    with VideoFileSource(media / name) as source:
        return [frame.image for frame in source]


@pytest.fixture(scope="module")
def shipped_classifier():
    return EmotionClassifier(threads=1, flip_tta=True)


def test_a_face_blanked_for_30_frames_of_a_real_clip_keeps_its_id(media, tiny_model):
    frames = clip(media, "single_face.mp4")
    with FaceDetector("auto") as detector:
        (face,) = detector.detect(frames[20])
    x1, y1, x2, y2 = face.box
    for image in frames[20:50]:  # a hand in front of the face for 30 frames (1 s)
        image[max(0, y1 - 20):y2 + 20, max(0, x1 - 20):x2 + 20] = 0
    with EmotionAnalyzer(tiny_model) as analyzer:
        analyzer.reset()
        ids = [[face.face_id for face in analyzer.track(Frame(i, i / 30, image)).faces]
               for i, image in enumerate(frames)]
    assert all(frame_ids == [] for frame_ids in ids[20:50])
    assert {i for frame_ids in ids[:20] + ids[50:] for i in frame_ids} == {1}
    assert all(frame_ids == [1] for frame_ids in ids[52:])


def test_a_one_frame_false_detection_on_a_real_clip_never_reaches_the_output(media, tiny_model):
    frames = clip(media, "single_face.mp4")
    with FaceDetector("auto") as detector:
        detections = [detector.detect(image) for image in frames]
    detections[30] = detections[30] + [FaceDetection((20, 20, 80, 80), 0.75)]  # a false face for one frame
    tracker = FaceTracker(["x"])
    outputs = [tracker.update(d, np.ones((len(d), 1), np.float32)) for d in detections]
    assert all([face.box for face in faces] == [d.box for d in frame_detections[:1]]
               for faces, frame_detections in zip(outputs, detections))
    assert {face.face_id for faces in outputs for face in faces} == {1}


def test_labels_on_a_real_clip_of_small_faces_flicker_less_than_before(media, shipped_classifier):
    """test.mp4 at half size (faces ~50 px): the label only follows the one real change, sad -> happy,
    with perhaps one short detour, where the settings before issue 12 flip back and forth (cycle-5 model:
    3 changes against 7; cycle 11's model: 1 against 5)."""
    full_size, fps = clip_frames(media / "test.mp4")
    frames = [cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA) for image in full_size]
    with FaceDetector("auto") as detector:
        recorded = raw_results(frames, detector, shipped_classifier)
    now = replay(FaceTracker(shipped_classifier.classes), recorded, fps)
    before = replay(FaceTracker(shipped_classifier.classes, **TRACKER_BEFORE), recorded, fps)
    assert list(now) == [1] and now[1][-1] == "happy"
    assert label_changes(now) <= 3 and label_changes(before) >= label_changes(now) + 3


def test_a_real_change_shows_within_a_few_frames_and_a_steady_face_does_not_flicker(fer2013, shipped_classifier):
    """Neutral FER2013 faces followed by surprised ones, 30 frames each with jittered boxes: surprise shows
    within 5 frames, and the neutral parts flip far less than with the settings before issue 12 (cycle-5
    model: 4 flips against 17, at most 4 frames; cycle 11's model: 0 against 8, at most 5 frames)."""
    sequences = change_sequences(shipped_classifier, pairs=20)
    assert len(sequences) == 20

    def measure(settings):
        reactions = [reaction_frames(FaceTracker(shipped_classifier.classes, **settings), sequence, 30)
                     for sequence in sequences]
        flips = sum(label_changes(replay(FaceTracker(shipped_classifier.classes, **settings),
                                         [([FaceDetection((24, 30, 120, 126), 0.9)], p[None]) for p in sequence[:30]]))
                    for sequence in sequences)
        return reactions, flips

    reactions, flips = measure({})
    settled = [frames for frames in reactions if frames is not None]
    assert len(settled) >= 19 and max(settled) <= 5 and np.mean(settled) <= 3
    _, flips_before = measure(TRACKER_BEFORE)
    assert flips <= 6 and flips_before >= 2 * flips + 6


@pytest.mark.parametrize("speed", [6, 10, 16, 24])
def test_two_real_faces_crossing_keep_their_ids(media, speed):
    """justin.jpg's face walks over single_face.jpg's (benchmarks.faces crossing): before the tracker followed
    motion, the ids swapped at 16 and 24 px a frame; before it followed the free edge of a face's box as it went
    behind the other, the face behind came back with a new id at 6 and 10."""
    with FaceDetector("auto") as detector:
        frames, centres = crossing_frames(detector, "single_face.jpg", "justin.jpg", speed, 0)
        detector.reset()
        detections = [detector.detect(image) for image in frames]
    assert crossing_outcome(FaceTracker(["x"]), detections, centres) == "kept"


def test_scene_cuts_are_found_where_the_real_clips_cut_and_nowhere_else(media):
    found = {}
    for name in ("single_face.mp4", "test.mp4", "no_face.mp4", "noface_face.mov"):
        detector = SceneCutDetector()
        found[name] = [index for index, image in enumerate(clip(media, name))
                       if detector.shot_change(image) is ShotChange.NEW]
    # noface_face.mov cuts from clouds to a man at frame 96, and to black at its last frame
    assert found == {"single_face.mp4": [], "test.mp4": [], "no_face.mp4": [], "noface_face.mov": [96, 168]}


def write_clip(path, frames, fps=30):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())


def write_edited_clip(media: Path, path: Path) -> None:
    """An edited clip of 60 frames: one second of single_face.mp4, then a cut to test.mp4's man moved and scaled so
    that his face lies where the first one was."""
    first, second = clip(media, "single_face.mp4")[:30], clip(media, "test.mp4")[:30]
    with FaceDetector("auto") as detector:
        (face_first,), (face_second,) = detector.detect(first[0]), detector.detect(second[0])
    scale = face_first.box.width / face_second.box.width
    shift = (face_first.box.x1 - scale * face_second.box.x1, face_first.box.y1 - scale * face_second.box.y1)
    warp = np.float32([[scale, 0, shift[0]], [0, scale, shift[1]]])
    height, width = first[0].shape[:2]
    moved = [cv2.warpAffine(image, warp, (width, height), borderMode=cv2.BORDER_REPLICATE) for image in second]
    write_clip(path, first + moved)


def test_a_cut_to_another_person_in_the_same_place_gives_a_new_id(media, tiny_model, tmp_path):
    """Before scene cuts were seen, the man after the cut took over the first face's id."""
    path = tmp_path / "edited.mp4"
    write_edited_clip(media, path)
    with EmotionAnalyzer(tiny_model) as analyzer:
        results = list(analyzer.stream(path))
    ids = [{face.face_id for face in result.faces} for result in results]
    assert len(ids) == 60 and set().union(*ids[:30]) == {1}
    assert ids[30] == {2} and set().union(*ids[30:]) == {2}  # the new shot's face shows at once, as itself


def flashed(image: np.ndarray) -> np.ndarray:
    """``image`` as a camera's flash lights it: most of the way to white."""
    return cv2.addWeighted(image, 0.3, np.full_like(image, 255), 0.7, 0)


def burnt(image: np.ndarray) -> np.ndarray:
    """``image`` as a strong flash lights it, its highlights burnt out: brighter by half, and 60 levels more."""
    return cv2.convertScaleAbs(image, alpha=1.5, beta=60)


@pytest.mark.parametrize("light", [flashed, burnt])
@pytest.mark.parametrize("flash_frames", [1, 2])
def test_a_flash_in_a_real_clip_is_not_a_new_shot(media, tiny_model, tmp_path, flash_frames, light):
    """single_face.mp4 with one or two frames lit by a flash: the same picture lit otherwise, so the same shot,
    and the face keeps id 1 through it (before: the flash was taken for a new shot, and the face in it got a
    new id of its own, shown in the results and the summary as another face)."""
    frames = clip(media, "single_face.mp4")[:30]
    frames[15:15 + flash_frames] = [light(image) for image in frames[15:15 + flash_frames]]
    detector = SceneCutDetector()
    assert {detector.shot_change(image) for image in frames} == {ShotChange.SAME}
    path = tmp_path / "flash.mp4"
    write_clip(path, frames)
    with EmotionAnalyzer(tiny_model) as analyzer:
        results = list(analyzer.stream(path))
    ids = [{face.face_id for face in result.faces} for result in results]
    assert len(ids) == 30 and set().union(*ids) == {1} and ids[:15] == [{1}] * 15 and ids[18:] == [{1}] * 12


@pytest.mark.parametrize("framing", ["letterboxed 2.39:1", "letterboxed 1.85:1", "pillarboxed 4:3", "vignetted"])
def test_frames_framed_alike_are_not_taken_for_one_picture_relit(media, framing):
    """Frames of shared clips of different scenes, with the same black bars or vignette, that differ as cuts do:
    cuts (the bars and vignette in common made most of them pass for a flash, which kept the face ids across)."""
    framed = FRAMINGS[framing]
    thumbnails = {name: [scene_cuts.hsv_thumbnail(framed(cv2.resize(image, (640, 360))))
                         for image in clip(media, name)[::12]]
                  for name in ("single_face.mp4", "test.mp4", "no_face.mp4")}
    for one in ("single_face.mp4", "test.mp4"):
        pairs = [(a, b) for a in thumbnails[one] for b in thumbnails["no_face.mp4"]
                 if scene_cuts.frame_difference(a, b) > scene_cuts.CUT_THRESHOLD]
        assert len(pairs) >= 40
        assert max(scene_cuts.detail_correlation(a, b) for a, b in pairs) < scene_cuts.RELIT_CORRELATION


def test_a_light_switched_on_for_good_is_no_new_shot(media):
    frames = clip(media, "single_face.mp4")[:30]
    frames[15:] = [burnt(image) for image in frames[15:]]  # it was a cut: new ids
    detector = SceneCutDetector()
    assert {detector.shot_change(image) for image in frames} == {ShotChange.SAME}


def test_a_shaking_camera_is_no_new_shot_and_its_face_keeps_its_id(media, tiny_model, tmp_path):
    """single_face.mp4 with each frame moved up to 45 px (a handheld camera's jolts): shifts of 30 px or more were
    taken for cuts, and the one face came out as 7 (24 at 45 px), most of them a frame long. A cut is still one."""
    rng = np.random.default_rng(0)
    frames = []
    for image in clip(media, "single_face.mp4")[:45]:
        shift = np.float32([[1, 0, rng.integers(-45, 46)], [0, 1, rng.integers(0, 31)]])
        frames.append(cv2.warpAffine(image, shift, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT))
    detector = SceneCutDetector()
    assert {detector.shot_change(image) for image in frames} == {ShotChange.SAME}
    height, width = frames[0].shape[:2]
    other_shot = [cv2.resize(image, (width, height)) for image in clip(media, "test.mp4")[:15]]
    path = tmp_path / "shaken.mp4"
    write_clip(path, frames + other_shot)
    with EmotionAnalyzer(tiny_model) as analyzer:
        ids = [{face.face_id for face in result.faces} for result in analyzer.stream(path)]
    assert set().union(*ids[:45]) == {1} and ids[45] == {2} and set().union(*ids[45:]) == {2}


def test_a_flash_of_two_unlike_frames_or_half_caught_by_a_rolling_shutter_is_not_a_new_shot(media):
    """White then black; or a flash lighting the top half of one frame (too little for a cut) and the bottom
    half of the next: the frame after either goes back to the shot before."""
    frames = clip(media, "single_face.mp4")[:10]
    white, black = np.full_like(frames[0], 255), np.zeros_like(frames[0])
    half = frames[0].shape[0] // 2
    top_lit, bottom_lit = frames[4].copy(), frames[5].copy()
    top_lit[:half], bottom_lit[half:] = flashed(top_lit[:half]), flashed(bottom_lit[half:])
    for flash in ([white, black], [top_lit, bottom_lit]):
        detector = SceneCutDetector()
        changes = [detector.shot_change(image) for image in frames[:4] + flash + frames[6:]]
        assert changes[7:] == [ShotChange.SAME] * 3, changes
        assert ShotChange.NEW not in changes or ShotChange.BACK in changes[4:7], changes  # (white, black: a new shot)


@pytest.mark.parametrize(("inserted", "fps"), [(3, None), (30, None), (31, None), (60, 60), (61, 60), (10, 10),
                                               (11, 10)])
def test_frames_of_another_shot_are_an_interruption_up_to_a_second_and_a_shot_of_their_own_after(media, inserted, fps):
    """A cutaway of up to INTERRUPTION_SECONDS (frames without times: 1/30 s each), then the shot before: back to it
    (its faces keep their ids); longer, the shot that follows is a new one. At 60 fps the second was 30 frames."""
    assert INTERRUPTION_SECONDS == 1.0
    shot = clip(media, "single_face.mp4")[:30]
    height, width = shot[0].shape[:2]
    frames = shot[:15] + [cv2.resize(image, (width, height)) for image in clip(media, "test.mp4")[:inserted]] + shot[15:]
    detector = SceneCutDetector()
    changes = [detector.shot_change(image, None if fps is None else index / fps) for index, image in enumerate(frames)]
    assert [index for index, change in enumerate(changes) if change is not ShotChange.SAME] == [15, 15 + inserted]
    assert changes[15 + inserted] is (ShotChange.BACK if inserted <= (fps or 30) else ShotChange.NEW)


@pytest.mark.parametrize(("cover", "frames_covered", "shade", "fps"),
                         [(0.6, 30, 30, 30), (0.8, 15, 30, 30), (1.0, 8, 0, 30), (0.8, 40, 30, 60)])
def test_a_face_keeps_its_id_through_something_passing_close_in_front_of_the_camera(media, tiny_model, tmp_path,
                                                                                   cover, frames_covered, shade, fps):
    """Most of single_face.mp4's frame covered for up to a second (a person walking by close to the camera, a hand
    over the lens, a black frame or eight; at 60 fps, 40 frames): each change was a cut, and the face came back with
    a new id."""
    frames = clip(media, "single_face.mp4")
    for image in frames[20:20 + frames_covered]:
        image[:, :round(image.shape[1] * cover)] = shade
    path = tmp_path / "passing.mp4"
    write_clip(path, frames, fps=fps)
    with EmotionAnalyzer(tiny_model) as analyzer:
        ids = [{face.face_id for face in result.faces} for result in analyzer.stream(path)]
    after = ids[20 + frames_covered + 2:]  # (the face found again within two frames)
    assert set().union(*ids) == {1} and ids[:20] == [{1}] * 20 and after == [{1}] * len(after) and len(after) >= 10


def read_rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_fer2013_faces_through_the_command_line_get_exactly_the_models_labels(fer2013, tmp_path, capsys):
    """--whole-image classifies each 48x48 face as it is: the same probabilities as the model on the
    raw pixels (so PublicTest accuracy is reproduced); without it, small images are taken whole
    where no face is detected, with an empty detection score."""
    classes = sorted(folder.name for folder in (fer2013 / "test").iterdir())
    classifier = EmotionClassifier(threads=1)  # no flip: compared with --no-flip-tta
    correct_cli = correct_model = 0
    for name in classes:
        folder = tmp_path / name
        folder.mkdir()
        for path in sorted((fer2013 / "test" / name).glob("*.jpg"))[:8]:
            folder.joinpath(path.name).write_bytes(path.read_bytes())
        results = tmp_path / f"{name}.csv"
        assert main([str(folder), "--whole-image", "--no-flip-tta", "-r", str(results)]) == 0
        rows = read_rows(results)
        assert len(rows) == 8
        for row in rows:
            gray = read_image(folder / row["source"])[..., 0]
            expected = classifier.predict(gray[None, ..., None].astype(np.float32) * classifier.metadata.scale)[0]
            assert [float(row[c]) for c in classifier.classes] == pytest.approx(expected.tolist(), abs=1e-4)
            assert (row["x1"], row["y1"], row["x2"], row["y2"], row["detection_score"]) == ("0", "0", "48", "48", "")
            correct_cli += row["label"] == name
            correct_model += classifier.classes[int(np.argmax(expected))] == name
        automatic = tmp_path / f"{name}_auto.csv"
        assert main([str(folder), "-r", str(automatic)]) == 0
        assert len(read_rows(automatic)) == 8  # every face found or taken whole
    assert correct_cli == correct_model
    capsys.readouterr()
