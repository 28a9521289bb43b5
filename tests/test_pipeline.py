"""EmotionAnalyzer and process_source: the stages together, on real media and on synthetic sources."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.annotator import EmotionAnnotator
from realtime.crops import prepare_crops
from realtime.pipeline import EmotionAnalyzer, process_source
from realtime.sources import Frame, ImageSource, VideoFileSource, VideoInfo, read_image
from realtime.summary import RunSummary
from tests.conftest import EMOTIONS


@pytest.fixture(scope="module")
def analyzer(tiny_model):
    with EmotionAnalyzer(tiny_model, detector_range="full", smoothing=0.6) as analyzer:
        yield analyzer


class StillSource:
    """A synthetic source: the same image ``n`` times."""

    def __init__(self, image: np.ndarray, n: int, name: str = "still.mp4"):
        self.image = image
        self.n = n
        self.info = VideoInfo(image.shape[1], image.shape[0], 25.0, n, name)

    def __iter__(self):
        for index in range(self.n):
            yield Frame(index, index / 25.0, self.image)


class RecordingSink:
    """Stands in for the video writer, results writer and window; records what it was given."""

    def __init__(self, stop_after: int | None = None):
        self.images: list[np.ndarray] = []
        self.results: list[tuple[str, object]] = []
        self.stop_after = stop_after

    def write(self, *args, **kwargs):
        if len(args) == 2:  # ResultsWriter.write(source_name, frame_result)
            self.results.append(args)
        else:  # H264VideoWriter.write(image, timestamp=...)
            self.images.append(args[0])

    def show(self, image) -> bool:
        self.images.append(image)
        return self.stop_after is None or len(self.images) < self.stop_after


def test_analyzer_exposes_the_model_classes_and_metadata(analyzer):
    assert analyzer.classes == EMOTIONS
    assert analyzer.metadata.input_size == (48, 48)


def test_analyze_finds_and_classifies_every_face(media, analyzer):
    analyzer.reset()
    image = read_image(media / "multi_face.jpg")
    result = analyzer.analyze(Frame(7, 1.5, image))
    assert (result.index, result.timestamp) == (7, 1.5)
    assert sorted(face.face_id for face in result.faces) == [1, 2, 3, 4, 5]
    for face in result.faces:
        assert face.probabilities.shape == (len(EMOTIONS),)
        assert face.probabilities.sum() == pytest.approx(1.0, abs=1e-4)
        assert face.label == EMOTIONS[int(np.argmax(face.probabilities))]
        assert face.confidence == pytest.approx(face.probabilities.max())


def test_without_smoothing_the_labels_are_the_classifier_output(media, tiny_model):
    image = read_image(media / "couple.jpg")
    with EmotionAnalyzer(tiny_model, smoothing=0.0) as raw:
        result = raw.analyze(Frame(0, 0.0, image))
        crops = prepare_crops(image, [face.box for face in result.faces], raw.metadata)
        expected = raw.classifier.predict(crops)
    assert len(result.faces) == 2
    np.testing.assert_allclose(np.stack([face.probabilities for face in result.faces]), expected, rtol=1e-6)


def test_face_keeps_its_id_through_a_real_video(media, analyzer):
    with VideoFileSource(media / "single_face.mp4") as source:
        processed = list(process_source(source, analyzer))
    assert len(processed) == 72
    assert all(len(p.result.faces) == 1 for p in processed)
    assert {p.result.faces[0].face_id for p in processed} == {1}
    assert [p.result.index for p in processed] == list(range(72))
    assert all(p.annotated is None for p in processed)  # no annotator, no drawing


def test_face_appearing_later_gets_found(media, analyzer):
    summary = RunSummary()
    with VideoFileSource(media / "noface_face.mov") as source:
        counts = [len(p.result.faces) for p in process_source(source, analyzer, summary=summary)]
    assert counts[0] == 0 and max(counts) == 1
    first_face = counts.index(1)
    assert sum(counts[first_face:]) > 0.8 * len(counts[first_face:])
    assert summary.frames == len(counts) and summary.faces == sum(counts)


def test_process_source_feeds_every_sink(media, analyzer):
    image = read_image(media / "single_face.jpg")
    video, results, window, summary = RecordingSink(), RecordingSink(), RecordingSink(), RunSummary()
    processed = list(process_source(StillSource(image, 5), analyzer, annotator=EmotionAnnotator(),
                                    video_writer=video, results_writer=results, window=window, summary=summary))
    assert len(processed) == len(video.images) == len(results.results) == len(window.images) == 5
    assert all(name == "still.mp4" for name, _ in results.results)
    assert [r.index for _, r in results.results] == [0, 1, 2, 3, 4]
    assert all(image.shape == frame.shape and not np.array_equal(image, frame) for frame in video.images)
    assert np.array_equal(processed[0].annotated, video.images[0])  # the video gets no FPS readout...
    assert not np.array_equal(window.images[-1], video.images[-1])  # ...the window does
    assert summary.frames == 5 and summary.faces == 5
    assert list(summary.tracked) == [("still.mp4", 1)]


def test_ids_restart_for_each_source(media, analyzer):
    image = read_image(media / "couple.jpg")
    first = list(process_source(StillSource(image, 2), analyzer))
    second = list(process_source(StillSource(image[:, ::-1].copy(), 2), analyzer))
    assert sorted(f.face_id for f in first[-1].result.faces) == [1, 2]
    assert sorted(f.face_id for f in second[0].result.faces) == [1, 2]


def test_max_frames_and_the_window_stop_a_run(media, analyzer):
    image = read_image(media / "single_face.jpg")
    assert len(list(process_source(StillSource(image, 10), analyzer, max_frames=3))) == 3
    window = RecordingSink(stop_after=4)  # the user presses q on the 4th frame
    processed = list(process_source(StillSource(image, 10), analyzer, annotator=EmotionAnnotator(), window=window))
    assert len(processed) == 4


def test_a_photo_is_one_frame(media, analyzer):
    with ImageSource(media / "Image_with_alpha.png") as source:
        (processed,) = process_source(source, analyzer, annotator=EmotionAnnotator())
    assert len(processed.result.faces) == 1
    assert processed.annotated.shape == (source.info.height, source.info.width, 3)


def test_drawing_sinks_need_an_annotator(analyzer):
    with pytest.raises(ValueError):
        list(process_source(StillSource(np.zeros((10, 10, 3), np.uint8), 1), analyzer, video_writer=RecordingSink()))


def test_summary_reports_the_dominant_emotion_of_each_face():
    from realtime.results import FaceResult, FrameResult

    def result(index, *labels):
        return FrameResult(index, 0.0, [FaceResult(i + 1, (0, 0, 1, 1), 0.9, np.zeros(2), label, 0.5)
                                        for i, label in enumerate(labels)])
    summary = RunSummary()
    for index, labels in enumerate([("happy", "sad"), ("happy", "sad"), ("neutral", "sad"), ("happy",)]):
        summary.add(result(index, *labels), "clip.mp4", seconds=0.5)
    summary.add(result(4), "clip.mp4", seconds=0.5)
    assert (summary.frames, summary.faces, summary.frames_with_faces) == (5, 7, 4)
    assert summary.fps == pytest.approx(2.0)
    assert summary.tracked[("clip.mp4", 1)].dominant == ("happy", 0.75)
    assert summary.tracked[("clip.mp4", 2)].dominant == ("sad", 1.0)
    table = summary.format().splitlines()
    assert table[0] == "5 frames, 7 face detections in 4 frames, 2.0 frames/s"
    assert table[2].split() == ["1", "4", "happy", "75%"] and table[3].split() == ["2", "3", "sad", "100%"]
    assert RunSummary().format().splitlines()[-1] == "no faces found"
