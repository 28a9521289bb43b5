"""EmotionAnalyzer and process_source: the stages together, on real media and on synthetic sources."""

from __future__ import annotations

import os
import threading
import time
import warnings
from pathlib import PurePosixPath

import cv2
import numpy as np
import pytest
from PIL import Image

import realtime
from realtime.annotator import EmotionAnnotator
from realtime.crops import prepare_crops
from realtime.demo import demo_source, sample_photo_bgr
from realtime.errors import SourceError
from realtime.io.images import ImageSource, read_image
from realtime.io.video import H264VideoWriter, VideoFileSource
from realtime.pipeline import EmotionAnalyzer, process_source, sample_frames
from realtime.rows import RESULT_COLUMNS
from realtime.summary import RunSummary
from realtime.types import AnalyzedFrame, Frame, VideoInfo
from tests.conftest import EMOTIONS, cut_short_mp4


@pytest.fixture(scope="module")
def analyzer(tiny_model):
    with EmotionAnalyzer(tiny_model, detector_range="full", smoothing=0.6) as analyzer:
        yield analyzer


class FramesSource:
    """A video file's frames from a list (not live: its shots are told apart)."""

    live, audio_path = False, None

    def __init__(self, frames: list[Frame], fps: float = 30.0):
        height, width = frames[0].image.shape[:2]
        self.frames, self.info = frames, VideoInfo(width, height, fps, len(frames), "frames")

    def __iter__(self):
        return iter(self.frames)

    def close(self) -> None:
        pass

    def __enter__(self) -> FramesSource:
        return self

    def __exit__(self, *exc) -> None:
        pass


class StillSource:
    """A synthetic source: the same image ``n`` times."""

    live = False
    audio_path = None

    def __init__(self, image: np.ndarray, n: int, name: str = "still.mp4"):
        self.image = image
        self.n = n
        self.info = VideoInfo(image.shape[1], image.shape[0], 25.0, n, name)

    def __iter__(self):
        for index in range(self.n):
            yield Frame(index, index / 25.0, self.image)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RecordingSink:
    """A sink that records the analysed frames it was given and can ask the loop to stop."""

    def __init__(self, stop_after: int | None = None):
        self.frames: list[AnalyzedFrame] = []
        self.stop_after = stop_after

    def write_frame(self, analyzed: AnalyzedFrame) -> bool:
        self.frames.append(analyzed)
        return self.stop_after is None or len(self.frames) < self.stop_after


def test_analyzer_exposes_the_model_classes_and_metadata(analyzer):
    assert analyzer.classes == EMOTIONS
    assert analyzer.metadata.input_size == (48, 48)


def test_analyze_finds_and_classifies_every_face_of_a_photo(media, analyzer):
    result = analyzer.analyze(media / "multi_face.jpg")
    assert result.source == str(media / "multi_face.jpg")
    assert [face.face_id for face in result.faces] == [1, 2, 3, 4, 5]
    scores = [face.detection_score for face in result.faces]
    assert scores == sorted(scores, reverse=True)
    for face in result.faces:
        assert face.probabilities.shape == (len(EMOTIONS),)
        assert face.probabilities.sum() == pytest.approx(1.0, abs=1e-4)
        assert face.label == EMOTIONS[int(np.argmax(face.probabilities))]
        assert face.confidence == pytest.approx(face.probabilities.max())
        assert list(face.emotions) == EMOTIONS
        assert face.emotions[face.label] == pytest.approx(face.confidence)
        assert face.box.width > 0 and face.box.height > 0
    assert set(result.speed) == {"detect", "classify"} and all(ms >= 0 for ms in result.speed.values())


def test_analyze_takes_arrays_and_is_independent_of_streams(media, analyzer):
    image = read_image(media / "couple.jpg")
    from_path = analyzer.analyze(media / "couple.jpg")
    list(process_source(StillSource(image[:, ::-1].copy(), 3), analyzer))  # a stream in between
    from_array = analyzer.analyze(image)
    assert [f.box for f in from_array.faces] == [f.box for f in from_path.faces]
    np.testing.assert_allclose([f.probabilities for f in from_array.faces],
                               [f.probabilities for f in from_path.faces], rtol=1e-6)
    gray = analyzer.analyze(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    assert len(gray.faces) == 2
    with pytest.raises(ValueError, match="uint8"):
        analyzer.analyze(image.astype(np.float32))


def test_photos_analysed_between_a_streams_frames_leave_its_faces_as_they_are(tiny_model):
    """Faces of 45 px in a 4x4 grid of a 1280x720 frame (a video call) are found in the frame's tiles and then
    followed from frame to frame; analyze() between two frames used to make the detector forget them (and the
    tiles' turn): 6 to 15 of the 16 faces in 9 of the 20 frames."""
    photo = sample_photo_bgr()
    with EmotionAnalyzer(tiny_model) as analyzer:
        x1, y1, x2, y2 = analyzer.analyze(photo).faces[0].box
        side, middle_x, middle_y = x2 - x1, (x1 + x2) // 2, (y1 + y2) // 2
        head = photo[max(middle_y - side, 0):middle_y + side, max(middle_x - side, 0):middle_x + side]
        head = cv2.resize(head, None, fx=45 / side, fy=45 / side)
        frames = []
        for index in range(20):
            image = np.full((720, 1280, 3), 90, np.uint8)
            for top in range(20, 720, 180):
                for left in range(60 + index, 1280, 320):
                    image[top:top + head.shape[0], left:left + head.shape[1]] = head
            frames.append(Frame(index, index / 30, image))

        def faces(photo_between: bool) -> list[list[tuple]]:
            found = []
            for analyzed in process_source(FramesSource(frames), analyzer):
                found.append([(face.face_id, face.box) for face in analyzed.result.faces])
                if photo_between:
                    analyzer.analyze(photo)
            return found

        alone = faces(photo_between=False)
        assert [len(faces) for faces in alone] == [16] * 20 and faces(photo_between=True) == alone


def test_results_become_rows_and_a_dataframe(media, analyzer):
    result = analyzer.analyze(media / "couple.jpg")
    rows = result.to_rows()
    assert [row["face_id"] for row in rows] == [1, 2]
    assert list(rows[0]) == [*RESULT_COLUMNS, *EMOTIONS]
    assert rows[0]["label"] == result.faces[0].label
    table = result.to_dataframe()
    assert list(table.columns) == [*RESULT_COLUMNS, *EMOTIONS] and len(table) == 2
    assert table["happy"].tolist() == [row["happy"] for row in rows]


def test_without_smoothing_the_labels_are_the_classifier_output(media, tiny_model):
    image = read_image(media / "couple.jpg")
    with EmotionAnalyzer(tiny_model, smoothing=0.0) as raw:
        (analyzed,) = process_source(StillSource(image, 1), raw)
        result = analyzed.result
        raw.detector.reset()
        detections = raw.detector.detect(image)
        assert [face.box for face in detections] == [face.box for face in result.faces]
        crops = prepare_crops(image, [face.box for face in detections], raw.metadata,
                              rolls=[face.roll for face in detections])
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
    assert {p.result.source for p in processed} == {"single_face.mp4"}


def test_stream_opens_a_file_by_name_and_tracks_ids(media, analyzer):
    results = list(analyzer.stream(str(media / "single_face.mp4"), max_frames=20))
    assert len(results) == 20 and [r.index for r in results] == list(range(20))
    assert {face.face_id for r in results for face in r.faces} == {1}
    assert all(set(r.speed) == {"detect", "classify", "track"} for r in results)


def test_face_appearing_later_gets_found(media, analyzer):
    summary = RunSummary()
    with VideoFileSource(media / "noface_face.mov") as source:
        counts = [len(p.result.faces) for p in process_source(source, analyzer, sinks=[summary])]
    assert counts[0] == 0 and max(counts) == 1
    first_face = counts.index(1)
    assert sum(counts[first_face:]) > 0.8 * len(counts[first_face:])
    assert summary.frames == len(counts) and summary.faces == sum(counts)


def test_process_source_feeds_every_sink(media, analyzer):
    image = read_image(media / "single_face.jpg")
    first, second, summary = RecordingSink(), RecordingSink(), RunSummary()
    processed = list(process_source(StillSource(image, 5), analyzer, sinks=[first, second, summary],
                                    annotator=EmotionAnnotator()))
    assert processed == first.frames == second.frames
    assert [a.result.index for a in processed] == [0, 1, 2, 3, 4]
    assert all(a.result.source == "still.mp4" and not a.live for a in processed)
    assert all(a.annotated.shape == image.shape and not np.array_equal(a.annotated, image) for a in processed)
    assert all(a.fps > 0 and a.seconds > 0 for a in processed)
    assert summary.frames == 5 and summary.faces == 5
    assert list(summary.tracked) == [("still.mp4", 1)]


def test_ids_restart_for_each_source(media, analyzer):
    image = read_image(media / "couple.jpg")
    first = list(process_source(StillSource(image, 2), analyzer))
    second = list(process_source(StillSource(image[:, ::-1].copy(), 2), analyzer))
    assert sorted(f.face_id for f in first[-1].result.faces) == [1, 2]
    assert sorted(f.face_id for f in second[0].result.faces) == [1, 2]


def test_max_frames_and_a_sink_stop_a_run(media, analyzer):
    image = read_image(media / "single_face.jpg")
    assert len(list(process_source(StillSource(image, 10), analyzer, max_frames=3))) == 3
    window = RecordingSink(stop_after=4)  # the user presses q on the 4th frame
    processed = list(process_source(StillSource(image, 10), analyzer, sinks=[window]))
    assert len(processed) == 4


def test_a_photo_is_one_frame(media, analyzer):
    with ImageSource(media / "Image_with_alpha.png") as source:
        (processed,) = process_source(source, analyzer, annotator=EmotionAnnotator())
    assert len(processed.result.faces) == 1
    assert processed.annotated.shape == (source.info.height, source.info.width, 3)


def test_a_small_photo_without_a_face_is_one_face_but_a_thumbnail_video_gets_none(analyzer, tmp_path):
    texture = np.random.default_rng(3).integers(0, 255, (90, 160, 3), dtype=np.uint8)  # no face in it
    cv2.imwrite(str(tmp_path / "crop.png"), texture)
    with ImageSource(tmp_path / "crop.png") as photo:
        (processed,) = process_source(photo, analyzer)
    assert [face.detection_score for face in processed.result.faces] == [None]  # taken whole: it may be a face crop
    assert [face.detection_score for face in analyzer.analyze(texture).faces] == [None]
    # the same picture as a video's frames: no face is made up in every frame of a thumbnail-size clip
    assert all(not processed.result.faces for processed in process_source(StillSource(texture, 5), analyzer))


def test_drawing_sinks_need_an_annotator(analyzer, tmp_path):
    source = StillSource(np.zeros((10, 10, 3), np.uint8), 1)
    with pytest.raises(ValueError, match="annotator"):
        with H264VideoWriter(tmp_path / "out.mp4", source.info) as writer:
            list(process_source(source, analyzer, sinks=[writer]))
    assert list(tmp_path.iterdir()) == []


def test_summary_reports_the_dominant_emotion_of_each_face():
    from realtime.types import FaceResult, FrameResult

    def result(index, *labels):
        return FrameResult(index, 0.0, [FaceResult(i + 1, (0, 0, 1, 1), 0.9, np.zeros(2), label, 0.5, ("a", "b"))
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
    summary.add(result(5, "sad"), "two\nlines.mp4", seconds=0.5)  # a file name with a newline in it
    assert summary.format().splitlines()[-1].split() == ["two\\nlines.mp4", "1", "1", "sad", "100%"]


def test_a_summary_of_many_photos_gives_the_shares_and_the_photos_without_faces_and_a_short_table():
    from realtime.summary import FACE_ROWS_SHOWN
    from realtime.types import FaceResult, FrameResult

    summary = RunSummary()
    labels = ["happy"] * 150 + ["sad"] * 49 + ["fear"]
    for index, label in enumerate(labels):
        face = FaceResult(1, (0, 0, 1, 1), 0.9, np.zeros(2), label, 0.5, ("a", "b"))
        summary.add(FrameResult(0, 0.0, [face]), f"face{index:03}.jpg")
    for name in ("empty1.jpg", "empty2.jpg"):  # photos in which no face was found
        summary.add(FrameResult(0, 0.0, []), name)
    lines = summary.format().splitlines()
    assert lines[1] == "no face found in 2 of 202 files: empty1.jpg, empty2.jpg"
    assert lines[2] == "dominant emotion of the 200 faces: happy 75%, sad 24%, fear <1%"
    assert lines[3].split() == ["source", "face", "frames", "dominant", "emotion", "share"]
    assert lines[4].split()[0] == "face000.jpg" and len(lines) == 4 + FACE_ROWS_SHOWN + 1
    assert lines[-1] == f"... and {200 - FACE_ROWS_SHOWN} more faces (every face's rows: --results)"


def test_the_summary_table_lines_up_names_in_wide_characters_and_as_macos_writes_them():
    """Japanese, emoji and accents as macOS writes them (a letter, then its accent) shifted the columns after the
    name by 4 to 6 cells."""
    import unicodedata

    from realtime.summary import display_width
    from realtime.types import FaceResult, FrameResult

    summary = RunSummary()
    names = ["家族写真_東京.jpg", "😀party.jpg", unicodedata.normalize("NFD", "Café_Zoë.jpg"), "plain.jpg",
             "สวัสดีปีใหม่.jpg", "नमस्ते_दुनिया.jpg", unicodedata.normalize("NFD", "한국어_사진.jpg")]
    for name in names:
        summary.add(FrameResult(0, 0.0, [FaceResult(1, (0, 0, 1, 1), 0.9, np.zeros(2), "happy", 0.5, ("a", "b"))]),
                    name)
    rows = summary.format().splitlines()[-len(names):]
    columns = {display_width(row[:row.index(" 1 ")]) for row in rows}  # where the face column starts, on screen
    assert len(columns) == 1
    # as a terminal draws them (glibc's wcswidth): Thai and Indic vowel signs, Korean as macOS writes it
    assert [display_width(name) for name in names[:1] + names[4:]] == [17, 12, 14, 15]


def test_analyze_takes_a_pil_image_and_gray_with_a_channel_axis_and_says_what_else_it_takes(analyzer):
    photo = sample_photo_bgr()
    from_array = analyzer.analyze(photo)
    assert len(from_array.faces) == 1
    assert analyzer.analyze(Image.fromarray(cv2.cvtColor(photo, cv2.COLOR_BGR2RGB))) == from_array
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    assert analyzer.analyze(gray[:, :, None]) == analyzer.analyze(gray)
    for wrong in (None, photo.tolist(), b"\xff\xd8"):
        with pytest.raises(TypeError, match="expected an image"):
            analyzer.analyze(wrong)


def test_results_compare_by_value_and_know_their_classes_without_faces(analyzer):
    photo = sample_photo_bgr()
    first, second = analyzer.analyze(photo), analyzer.analyze(photo)
    assert first == second and first.speed is not second.speed  # timings are not part of the result
    empty = analyzer.analyze(np.zeros((300, 300, 3), np.uint8))
    assert empty.faces == [] and empty.classes == tuple(analyzer.classes)
    assert list(empty.to_dataframe().columns) == [*RESULT_COLUMNS, *analyzer.classes]
    # frames without faces among others keep the numbers' types (every column was "object": describe() gave text
    # statistics), as a batch's Parquet files read back; no detection score (a photo taken whole) is NaN, not None
    pd = pytest.importorskip("pandas")
    table = pd.concat([empty.to_dataframe(), first.to_dataframe()])
    assert table.dtypes.to_dict() == {**dict.fromkeys(RESULT_COLUMNS, np.dtype("float64")), "source": object,
                                      "label": object, **dict.fromkeys(analyzer.classes, np.dtype("float64")),
                                      **dict.fromkeys(("frame", "face_id", "x1", "y1", "x2", "y2"), np.dtype("int64"))}
    with EmotionAnalyzer(analyzer.classifier.model_path, whole_image=True) as whole:
        assert whole.analyze(photo).to_dataframe()["detection_score"].isna().all()
    rows = [{**row, "title": "a clip"} for row in first.to_rows()]  # a column of the user's own stays as it is
    assert realtime.rows_dataframe(rows)["title"].tolist() == ["a clip"]


def test_track_takes_plain_images_and_paths_numbered_and_timed_from_the_first(analyzer, tmp_path):
    photo = sample_photo_bgr()
    cv2.imwrite(str(tmp_path / "frame.png"), photo)
    analyzer.reset()
    results = [analyzer.track(photo), analyzer.track(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)),
               analyzer.track(tmp_path / "frame.png"), analyzer.track(str(tmp_path / "frame.png"))]
    assert [result.index for result in results] == [0, 1, 2, 3]
    assert results[0].timestamp == 0.0 < results[1].timestamp <= results[2].timestamp
    assert [[face.face_id for face in result.faces] for result in results] == [[1], [1], [1], [1]]
    analyzer.reset()
    assert analyzer.track(photo).index == 0


def test_an_analyzer_goes_through_one_stream_at_a_time(analyzer):
    first, second = analyzer.stream(demo_source(), max_frames=5), analyzer.stream(demo_source(), max_frames=5)
    assert next(first).index == 0
    with pytest.raises(RuntimeError, match="already going through a stream"):
        next(second)
    with pytest.raises(RuntimeError, match="already going through a stream"):
        next(process_source(demo_source(), analyzer))
    refused = []  # track() from this thread or another: the stream's tracker is not to be shared
    other = threading.Thread(target=lambda: refused.append(pytest.raises(RuntimeError, analyzer.track,
                                                                         sample_photo_bgr())))
    other.start()
    other.join(timeout=60)
    with pytest.raises(RuntimeError, match="going through a stream .* whose faces its tracker follows"):
        analyzer.track(sample_photo_bgr())
    assert len(refused) == 1 and "going through a stream" in str(refused[0].value)
    assert [result.index for result in first] == [1, 2, 3, 4]
    assert len(list(analyzer.stream(demo_source(), max_frames=3))) == 3  # the first one has ended
    assert analyzer.track(sample_photo_bgr()).index == 0  # and so has the second



def test_track_is_refused_when_a_stream_starts_while_it_reads_its_photo(analyzer, tmp_path):
    """track() of a photo file in one thread while another starts a stream as the photo is still being read: it is
    refused (it was checked before the photo was read, so it ran among the stream's frames, on its tracker)."""
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), cv2.resize(sample_photo_bgr(), (3000, 3000)))  # about 0.3 s to decode
    outcome = []

    def track_big() -> None:
        try:
            outcome.append(analyzer.track(big))
        except RuntimeError as error:
            outcome.append(error)

    other = threading.Thread(target=track_big)
    other.start()
    time.sleep(0.05)  # track() has begun reading the photo
    stream = analyzer.stream(demo_source())  # 120 frames: it goes on while the photo is read
    for _ in stream:
        if not other.is_alive():
            break
    other.join(timeout=60)
    stream.close()
    [result] = outcome
    assert isinstance(result, RuntimeError) and "going through a stream" in str(result)

def test_stream_and_process_source_refuse_what_is_not_a_source(analyzer):
    with pytest.raises(TypeError, match="stream\\(\\) takes"):
        analyzer.stream(sample_photo_bgr())
    with pytest.raises(TypeError, match="open Source"):
        next(process_source("clip.mp4", analyzer))


def test_threads_sharing_an_analyzer_take_turns(tiny_model):
    photo = sample_photo_bgr()
    with EmotionAnalyzer(tiny_model) as shared:
        expected = shared.analyze(photo)
        results, errors = [], []

        def analyse_four_times():
            try:
                results.extend(shared.analyze(photo) for _ in range(4))
            except Exception as error:  # reported by the assertion below
                errors.append(error)

        threads = [threading.Thread(target=analyse_four_times) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == [] and len(results) == 12
        assert all(result == expected for result in results)


def test_a_closed_analyzer_says_so_and_an_empty_whole_image_has_no_face(tiny_model):
    with EmotionAnalyzer(tiny_model, whole_image=True) as whole:
        assert whole.analyze(np.zeros((0, 0, 3), np.uint8)).faces == []
        for empty in (Image.new("RGB", (0, 0)), Image.new("L", (10, 0))):  # OpenCV's traceback: "!_src.empty()"
            assert whole.analyze(empty).faces == [] and whole.track(empty).faces == []
        # after an empty frame (division by zero), a face in the frames that follow earns its id as any new face
        assert [len(whole.track(Frame(index, index / 10, sample_photo_bgr())).faces) for index in range(5)][-1] == 1
        assert len(whole.analyze(sample_photo_bgr()).faces) == 1
    with pytest.raises(RuntimeError, match="EmotionAnalyzer is closed"):
        whole.analyze(sample_photo_bgr())


@pytest.mark.parametrize("call", ["analyze", "track"])
def test_a_photo_given_as_an_address_or_an_empty_path_says_what_it_was(analyzer, call):
    with pytest.raises(SourceError, match=r"^image http://127\.0\.0\.1:9/x\.jpg: a network address; analyze\(\) "
                                          r"and track\(\) read image files \(stream\(\) reads cameras"):
        getattr(analyzer, call)("http://127.0.0.1:9/x.jpg")  # it said "image http:/127.0.0.1:9/x.jpg: no such file"
    with pytest.raises(SourceError, match="^image path is empty$"):  # it said "image .: not a file"
        getattr(analyzer, call)("")
    with pytest.raises(SourceError, match=r"^image rtsp://admin:\*\*\*@127\.0\.0\.1:9/live: a network address"):
        getattr(analyzer, call)("rtsp://admin:hunter2@127.0.0.1:9/live")  # the password was shown


def test_numpy_numbers_path_like_objects_and_premultiplied_pil_images_are_taken(tiny_model, tmp_path):
    photo = sample_photo_bgr()
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), photo)

    class PhotoPath:  # any os.PathLike: it was refused as not an image, though open_source() took it
        def __fspath__(self) -> str:
            return str(path)

    with EmotionAnalyzer(tiny_model, min_confidence=np.float32(0.7), smoothing=np.float64(0.5),
                         threads=np.int64(1)) as analyzer:  # each said "must be a number, not 0.7" (or 1)
        from_path = analyzer.analyze(path)
        assert analyzer.analyze(PhotoPath()) == analyzer.analyze(PurePosixPath(path)) == from_path
        assert len(list(analyzer.stream(PhotoPath(), max_frames=np.int64(1), sample_fps=np.float32(5)))) == 1
        with pytest.raises(SourceError, match=r"^camera 99: cannot open it"):  # "stream() takes ..., not int64"
            list(analyzer.stream(np.int64(99)))
        premultiplied = Image.fromarray(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)).convert("LA").convert("La")
        assert len(analyzer.analyze(premultiplied).faces) == 1  # "conversion from La to L not supported"


def test_track_refuses_a_frame_it_cannot_time_or_name_and_goes_on_with_the_next(tiny_model):
    photo = sample_photo_bgr()
    with EmotionAnalyzer(tiny_model) as analyzer:
        with pytest.raises(TypeError, match=r"^a Frame's timestamp must be a number of seconds, not "):
            analyzer.track(Frame(0, np.datetime64("2026-01-01T00:00:01"), photo))
        for not_finite in (float("nan"), float("inf")):  # a NaN went on to the JSON Lines results: invalid JSON
            with pytest.raises(ValueError, match=r"^a Frame's timestamp must be a finite number of seconds, not "):
                analyzer.track(Frame(0, not_finite, photo))
        with pytest.raises(TypeError, match="^source_name must be a str, not int$"):  # to_rows() failed later
            analyzer.track(photo, source_name=5)
        result = analyzer.track(Frame(1, 0.1, photo))  # it failed too: the bad time had been kept
        assert result.timestamp == 0.1 and [face.face_id for face in result.faces] == [1]


def test_bad_options_are_refused_under_their_own_names(tiny_model):
    with pytest.raises(ValueError, match="detector_range must be one of"):
        EmotionAnalyzer(tiny_model, detector_range="long")
    with pytest.raises(ValueError, match="is a detector range, not a model file: detector_range='short'"):
        EmotionAnalyzer("short")
    with pytest.raises(TypeError):  # only the model may be given by position
        EmotionAnalyzer(tiny_model, "short")
    with pytest.raises(ValueError, match="more than this machine's"):
        EmotionAnalyzer(tiny_model, threads=(os.cpu_count() or 1) + 1)
    for option in ({"smoothing": "0.5"}, {"smoothing": None}, {"min_confidence": None}):
        with pytest.raises(TypeError, match=f"{next(iter(option))} must be a number, not "):
            EmotionAnalyzer(tiny_model, **option)
    for option in ({"whole_image": "no"}, {"flip_tta": 0}, {"roll_correction": None}, {"small_images_whole": "off"}):
        with pytest.raises(TypeError, match=f"{next(iter(option))} must be True or False, not "):
            EmotionAnalyzer(tiny_model, **option)
    with EmotionAnalyzer(tiny_model, detector_range="short", smoothing=0.3) as analyzer:
        assert repr(analyzer) == (f"EmotionAnalyzer({str(tiny_model)!r}, detector_range='short', min_confidence=0.7, "
                                  "smoothing=0.3, flip_tta=True, whole_image=False, small_images_whole=True, "
                                  "roll_correction=True)")
        with pytest.raises(ValueError, match="max_frames must be None or a whole number"):
            analyzer.stream(demo_source(), max_frames=0)  # at once, not at the first frame


def frames_at(*timestamps: float) -> list[Frame]:
    """Blank frames at ``timestamps`` (seconds), indexed in order."""
    return [Frame(index, timestamp, np.zeros((4, 4, 3), np.uint8)) for index, timestamp in enumerate(timestamps)]


def test_sampled_frames_keep_the_rate_asked_for_on_average_and_reach_the_end():
    thirty = frames_at(*(i / 30 for i in range(120)))
    skipped = []
    sampled = list(sample_frames(thirty, 5, skipped.append))
    assert [frame.index for frame, _ in sampled] == [*range(0, 120, 6), 119]  # the last too: the source's end
    assert [read for _, read in sampled] == [1] + [6] * 19 + [5] and sum(read for _, read in sampled) == 120
    assert [frame.index for frame in skipped] == [i for i in range(119) if i % 6]  # every other one, once
    seven = [frame.timestamp for frame, _ in sample_frames(thirty, 7)][:-1]
    assert len(seven) == 28 and all(1 / 7 - 1 / 30 < b - a < 1 / 7 + 1 / 30 for a, b in zip(seven, seven[1:]))
    assert [frame.index for frame, _ in sample_frames(thirty[:10], 60)] == list(range(10))  # faster: all
    assert [read for _, read in sample_frames(thirty[:10], None)] == [1] * 10
    restarted = frames_at(0.0, 0.1, 0.2, 0.3, 0.05, 0.1, 0.25, 0.3)  # a source restarting its clock
    assert [frame.index for frame, _ in sample_frames(restarted, 5)] == [0, 2, 4, 6, 7]
    odd = frames_at(0.0, 0.05, float("nan"), 0.1, float("inf"), 1e308, 1e308 + 1.0)  # times no grid can take
    assert [frame.index for frame, _ in sample_frames(odd, 1000)] == [0, 1, 2, 3, 4, 5, 6]


def test_a_stream_sampled_analyses_frames_at_the_rate_asked_for(tiny_model):
    with EmotionAnalyzer(tiny_model) as analyzer:
        results = list(analyzer.stream(demo_source(), sample_fps=10))
        assert [result.index for result in results] == [*range(0, 120, 3), 119]
        assert [face.face_id for result in results for face in result.faces] == [1] * 41  # one face, tracked
        assert [result.index for result in analyzer.stream(demo_source(), max_frames=2, sample_fps=1)] == [0, 30]
        # the demo pans: frames a second apart differ as a scene cut's do, but every frame read is compared with the
        # one before, so the face keeps its id (it got a new one at every frame analysed)
        results = list(analyzer.stream(demo_source(), sample_fps=1))
        assert [result.index for result in results] == [0, 30, 60, 90, 119]
        assert [[face.face_id for face in result.faces] for result in results] == [[1]] * 5
        cut = [frame if frame.index < 45 else Frame(frame.index, frame.timestamp, frame.image[:, ::-1, ::-1].copy())
               for frame in demo_source()]  # a cut at frame 45, among the frames skipped: another shot, a new id
        ids = [[face.face_id for face in result.faces] for result in analyzer.stream(FramesSource(cut), sample_fps=1)]
        assert ids[:2] == [[1], [1]] and ids[2] == [2]
        flash = [Frame(frame.index, frame.timestamp, np.full_like(frame.image, 255)) if frame.index == 50 else frame
                 for frame in cut]  # and a flash after the cut, also skipped: the cut still counts
        ids = [[face.face_id for face in result.faces] for result in analyzer.stream(FramesSource(flash), sample_fps=1)]
        assert ids[:2] == [[1], [1]] and ids[2] == [2]
        flash_only = [Frame(frame.index, frame.timestamp, np.full_like(frame.image, 255)) if frame.index == 50
                      else frame for frame in demo_source()]  # a flash alone, skipped: no new shot
        ids = [[face.face_id for face in result.faces] for result in analyzer.stream(FramesSource(flash_only),
                                                                                       sample_fps=1)]
        assert ids == [[1]] * 5
        for wrong in (0, -1.0, 1001, float("inf"), float("nan"), True, "5"):
            with pytest.raises(ValueError, match="sample_fps must be None or a number of frames a second above 0"):
                analyzer.stream(demo_source(), sample_fps=wrong)


def test_track_names_a_frame_given_as_a_path_by_it(tiny_model, tmp_path):
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), sample_photo_bgr())
    with EmotionAnalyzer(tiny_model) as analyzer:
        assert analyzer.track(path).source == analyzer.analyze(path).source == str(path)
        assert analyzer.track(str(path), source_name="door").source == "door"
        assert analyzer.track(sample_photo_bgr()).source == ""


def test_track_after_a_stream_starts_afresh(tiny_model):
    photo = sample_photo_bgr()
    with EmotionAnalyzer(tiny_model) as analyzer:
        assert [result.index for result in analyzer.stream(demo_source(), max_frames=3)] == [0, 1, 2]
        first = analyzer.track(photo)
        assert first.index == 0 and [face.face_id for face in first.faces] == [1]


def test_track_keeps_ids_when_the_frames_change_size(tiny_model):
    """A camera or a WebRTC stream may switch resolution: the face stays the same face, its box at the new size."""
    photo = cv2.resize(sample_photo_bgr(), (640, 480))
    sizes = [1.0] * 3 + [0.5] * 4 + [1.0] * 3  # as WebRTC's sender drops and restores resolution
    with EmotionAnalyzer(tiny_model) as analyzer:
        results = [analyzer.track(Frame(index, index / 30, cv2.resize(photo, None, fx=scale, fy=scale)))
                   for index, scale in enumerate(sizes)]
        alone = analyzer.analyze(cv2.resize(photo, None, fx=0.5, fy=0.5)).faces[0].box
    assert [[face.face_id for face in result.faces] for result in results] == [[1]] * len(sizes)
    assert max(abs(a - b) for a, b in zip(results[5].faces[0].box, alone)) <= 3


def test_configure_changes_the_confidence_and_smoothing_from_the_next_frame_keeping_the_ids(tiny_model):
    photo = cv2.resize(sample_photo_bgr(), (640, 480))
    with EmotionAnalyzer(tiny_model, detector_range="short") as analyzer:
        score = analyzer.analyze(photo).faces[0].detection_score
        frames = (Frame(index, index / 30, photo) for index in range(9))
        before = [analyzer.track(next(frames)) for _ in range(3)]
        analyzer.configure(min_confidence=min(1.0, score + 0.01))  # the face now scores too low
        hidden = [analyzer.track(next(frames)) for _ in range(3)]
        analyzer.configure(min_confidence=0.5, smoothing=0.0)
        after = [analyzer.track(next(frames)) for _ in range(3)]
        with pytest.raises(ValueError, match="smoothing must be in"):
            analyzer.configure(smoothing=1.0)
        with pytest.raises(TypeError, match="min_confidence must be a number"):
            analyzer.configure(min_confidence="high")
        with pytest.raises(ValueError, match="smoothing must be in"):
            analyzer.configure(min_confidence=0.9, smoothing=1.5)  # refused whole: the confidence stays
        assert (analyzer.detector.min_confidence, analyzer.tracker.smoothing, analyzer.tracker.label_margin) == \
            (0.5, 0.0, 0.0)
    assert [[face.face_id for face in result.faces] for result in before + hidden + after] == \
        [[1]] * 3 + [[]] * 3 + [[1]] * 3
    alone = after[-1].faces[0]  # unsmoothed: the frame's own probabilities
    assert np.allclose(alone.probabilities, analyzer_probabilities(tiny_model, photo), atol=1e-4)
    with pytest.raises(RuntimeError):
        analyzer.configure(smoothing=0.5)  # closed


def analyzer_probabilities(model, image) -> np.ndarray:
    """The probabilities of the one face of ``image``, from a fresh analyzer."""
    with EmotionAnalyzer(model, detector_range="short") as fresh:
        return fresh.analyze(image).faces[0].probabilities


def test_a_bgra_array_is_taken_as_its_png_file_is_transparency_onto_white(analyzer, tmp_path):
    photo = cv2.resize(sample_photo_bgr(), (320, 240))
    bgra = cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA)
    bgra[:, :100, 3] = 0  # transparent left part, its colour channels black
    bgra[:, 100:110, 3] = 128
    cv2.imwrite(str(tmp_path / "cut_out.png"), bgra)
    from_array, from_file = analyzer.analyze(bgra), analyzer.analyze(tmp_path / "cut_out.png")
    assert [face.box for face in from_array.faces] == [face.box for face in from_file.faces] != []
    assert np.allclose([face.probabilities for face in from_array.faces],
                       [face.probabilities for face in from_file.faces], atol=1e-6)
    padded = np.dstack([photo, np.zeros(photo.shape[:2], np.uint8)])  # BGRX: a fourth byte of padding (screen grabs)
    assert [face.box for face in analyzer.analyze(padded).faces] == [face.box for face in analyzer.analyze(photo).faces]


def test_a_pil_image_is_taken_upright_as_its_exif_orientation_says(tiny_model, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    Image.new("RGB", (60, 40), (120, 60, 30)).save(tmp_path / "turned.jpg", exif=exif)
    with EmotionAnalyzer(tiny_model, whole_image=True) as whole, Image.open(tmp_path / "turned.jpg") as photo:
        assert photo.size == (60, 40)
        from_pil, from_path = whole.analyze(photo), whole.analyze(tmp_path / "turned.jpg")
    assert from_pil.faces[0].box == from_path.faces[0].box == (0, 0, 40, 60)


def _cut_short_copy(media, tmp_path) -> tuple:
    """single_face.mp4 rewritten as the command line's --output does (its index first), then cut at half: a
    download broken off; with the frames and the issue lines that a VideoFileSource reads from it."""
    import warnings

    cut = cut_short_mp4(media / "single_face.mp4", tmp_path)
    with warnings.catch_warnings(), VideoFileSource(cut) as source:
        warnings.simplefilter("error")  # a Source itself only records its issues
        frames = len(list(source))
    return cut, frames, source.issues, source.frames_lost


def test_stream_warns_of_what_a_damaged_or_cut_short_file_lost_and_keeps_the_lines(media, analyzer, tmp_path):
    import warnings

    from realtime import SourceWarning
    from realtime.sources import open_source

    cut, frames, issues, lost = _cut_short_copy(media, tmp_path)
    assert issues and lost > 0 and frames + lost == 72  # what the command line prints: "warning: <issue>"
    with pytest.warns(SourceWarning) as caught:
        results = list(analyzer.stream(cut))
    assert len(results) == frames
    # named by the path given, as the results are (the source on its own names the file alone)
    issues = [issue.replace("video cut.mp4: ", f"video {cut}: ") for issue in issues]
    assert [str(warning.message) for warning in caught if warning.category is SourceWarning] == issues
    assert {warning.filename for warning in caught} == {__file__}  # said at the caller's loop
    assert "frames lost" in issues[-1] and "cut short" in issues[-1]
    assert analyzer.last_source_issues == tuple(issues) and analyzer.last_source_frames_lost == lost
    with pytest.warns(SourceWarning), open_source(cut) as source:  # an open Source given: the same
        assert len(list(analyzer.stream(source))) == frames
    # a whole file: no warning, and the last stream's lines are gone
    with warnings.catch_warnings():
        warnings.simplefilter("error", SourceWarning)
        assert len(list(analyzer.stream(media / "single_face.mp4", max_frames=5))) == 5
    assert analyzer.last_source_issues == () and analyzer.last_source_frames_lost == 0


def test_stream_names_a_file_by_its_path_as_given_or_by_source_name(media, analyzer, tmp_path):
    import shutil

    from realtime.sources import open_source

    for camera in ("cam_a", "cam_b"):
        (tmp_path / camera).mkdir()
        shutil.copy(media / "single_face.mp4", tmp_path / camera / "clip.mp4")
    first, second = tmp_path / "cam_a" / "clip.mp4", str(tmp_path / "cam_b" / "clip.mp4")
    results = [*analyzer.stream(first, max_frames=2), *analyzer.stream(second, max_frames=2)]
    assert [result.source for result in results] == [str(first)] * 2 + [second] * 2  # as analyze() names a photo
    assert analyzer.analyze(media / "single_face.jpg").source == str(media / "single_face.jpg")
    with open_source(first) as source:
        assert {result.source for result in analyzer.stream(source, max_frames=2)} == {str(first)}
    named = list(analyzer.stream(first, max_frames=2, source_name="door camera"))
    assert {result.source for result in named} == {"door camera"}
    assert {row["source"] for row in named[0].to_rows()} == {"door camera"}
    with pytest.raises(TypeError, match="source_name"):
        analyzer.stream(first, source_name=3)
    # process_source() keeps naming a file by its name, as the command line's results do
    with open_source(first) as source:
        assert {analyzed.result.source for analyzed in process_source(source, analyzer, max_frames=1)} == {"clip.mp4"}
    assert [result.source for result in analyzer.stream(demo_source(), max_frames=1)] == \
        [demo_source().info.source]


def test_small_photos_without_a_face_are_not_taken_whole_when_turned_off(tiny_model, tmp_path):
    texture = np.random.default_rng(3).integers(0, 255, (90, 160, 3), dtype=np.uint8)  # no face in it
    cv2.imwrite(str(tmp_path / "thumb.png"), texture)
    with EmotionAnalyzer(tiny_model, detector_range="full", small_images_whole=False) as strict:
        assert "small_images_whole=False" in repr(strict)
        assert strict.analyze(texture).faces == [] and strict.analyze(tmp_path / "thumb.png").faces == []
        with ImageSource(tmp_path / "thumb.png") as photo:
            assert [analyzed.result.faces for analyzed in process_source(photo, strict)] == [[]]
    with EmotionAnalyzer(tiny_model, detector_range="full") as default:  # on by default: one face, no score
        assert [face.detection_score for face in default.analyze(texture).faces] == [None]


def test_the_summary_counts_the_small_photos_taken_whole(analyzer, tmp_path):
    texture = np.random.default_rng(3).integers(0, 255, (90, 160, 3), dtype=np.uint8)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), texture)
    summary = RunSummary()
    for name in ("a.png", "b.png"):
        with ImageSource(tmp_path / name) as photo:
            list(process_source(photo, analyzer, sinks=[summary]))
    list(process_source(StillSource(read_image(tmp_path / "a.png"), 3), analyzer, sinks=[summary]))  # video: none
    assert summary.taken_whole == 2
    assert "2 small images without a detected face were taken whole as face crops" in summary.format()
    asked = RunSummary(whole_image=True)  # every frame classified whole on request: nothing to say
    with EmotionAnalyzer(analyzer.classifier.model_path, whole_image=True) as whole:
        list(process_source(StillSource(texture, 2), whole, sinks=[asked]))
    assert asked.faces == 2 and asked.taken_whole == 0 and "taken whole" not in asked.format()


def test_a_phone_photo_over_pillows_default_limit_is_read(tmp_path):
    from PIL import Image

    side = 9500  # 90.25 megapixels: over Pillow's default 89.5, as 108 and 200 MP phone photos are
    assert side * side > Image.MAX_IMAGE_PIXELS
    photo = np.full((side, side, 3), 200, np.uint8)
    photo[100:200, 300:400] = (0, 0, 255)
    cv2.imwrite(str(tmp_path / "phone.jpg"), photo)
    del photo
    limit_before = Image.MAX_IMAGE_PIXELS
    image = read_image(tmp_path / "phone.jpg")
    assert image.shape == (side, side, 3) and tuple(image[150, 350]) == pytest.approx((0, 0, 255), abs=8)
    assert Image.MAX_IMAGE_PIXELS == limit_before  # Pillow's own limit is as it was


def _png_header(path, width: int, height: int):
    """A PNG file that says it is ``width`` x ``height`` but holds almost no data: what a decompression bomb,
    or a broken-off copy of a huge photo, looks like before it is decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    return path


def test_photos_up_to_250_megapixels_pass_the_size_check_and_larger_ones_get_one_clear_line(tmp_path):
    with pytest.raises(SourceError) as error:  # 200 MP (16320x12240) passes the check: only the missing data fails
        read_image(_png_header(tmp_path / "200mp.png", 16320, 12240))
    assert "cannot decode it" in str(error.value) and "bomb" not in str(error.value)
    messages = []
    for width, height in ((20000, 15000), (40000, 20000)):  # 300 MP; 800 MP, over twice the limit
        with pytest.raises(SourceError) as error:
            read_image(_png_header(tmp_path / "big.png", width, height))
        messages.append(str(error.value))
    for message in messages:
        assert message.startswith(f"image {tmp_path / 'big.png'}: ") and "\n" not in message
        assert "more than the 250,000,000 (250 megapixels) this program reads" in message
        assert "decompression bomb" in message
    assert "20000x15000 pixels" in messages[0] and "over 500,000,000 pixels" in messages[1]


def test_a_video_given_as_a_photo_is_said_to_be_a_video(media, analyzer):
    from realtime.errors import SourceError

    with pytest.raises(SourceError) as error:
        analyzer.analyze(media / "single_face.mp4")
    assert "a video, not a photo" in str(error.value) and "stream()" in str(error.value)


def test_a_pixel_limit_the_program_sets_in_pillow_is_honoured_and_left_as_set(tmp_path, monkeypatch):
    from PIL import Image

    from realtime.errors import SourceError

    big = _png_header(tmp_path / "300mp.png", 20000, 15000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # a program that reads any size
    with pytest.raises(SourceError, match="cannot decode it"):  # past the size check: only the data is missing
        read_image(big)
    assert Image.MAX_IMAGE_PIXELS is None
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000_000)  # a program's own, lower limit
    with pytest.raises(SourceError, match="more than the 100,000,000 "):
        read_image(_png_header(tmp_path / "120mp.png", 12000, 10000))
    assert Image.MAX_IMAGE_PIXELS == 100_000_000


def test_a_large_photo_is_searched_in_tiles_and_a_video_frame_with_the_full_pass(media, tiny_model, tmp_path):
    """multi_face.jpg's five faces in a scene three times as wide (3000x2001): analyze() finds all five; the same
    picture as a video's frames too: tiles on its first frame (with the full pass), then each face followed."""
    from benchmarks.faces import group_photos

    image, expected = group_photos()["multi_face.jpg in a scene 3x as wide"]
    path = tmp_path / "group.jpg"
    cv2.imwrite(str(path), image)
    with EmotionAnalyzer(tiny_model) as analyzer:
        assert len(analyzer.analyze(path).faces) == expected == 5
        assert len(list(analyzer.stream(ImageSource(path)))[0].faces) == 5  # a photo as a stream: still a photo
        assert [len(analyzer.track(image).faces) for _ in range(3)] == [5, 5, 5]


def test_analyze_reads_a_cut_short_photo_as_far_as_it_decodes_with_a_warning(analyzer, tmp_path):
    from PIL import ImageFile

    from realtime import SourceWarning

    whole = cv2.imencode(".jpg", sample_photo_bgr())[1].tobytes()
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) * 8 // 10])
    with pytest.warns(SourceWarning, match=r"^image .*cut\.jpg: damaged or cut short \(image file is truncated") as caught:
        result = analyzer.analyze(tmp_path / "cut.jpg")
    assert len(result.faces) == 1 and caught[0].filename == __file__  # said where analyze() was called
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # Pillow's process-wide setting, back as it was
    (tmp_path / "whole.jpg").write_bytes(whole)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a whole photo: no warning
        assert len(analyzer.analyze(tmp_path / "whole.jpg").faces) == 1


def test_track_reads_a_cut_short_photo_with_a_warning_said_where_it_was_called(analyzer, tmp_path):
    from realtime import SourceWarning

    whole = cv2.imencode(".jpg", sample_photo_bgr())[1].tobytes()
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) * 8 // 10])
    with pytest.warns(SourceWarning, match=r"cut\.jpg: damaged or cut short") as caught:
        analyzer.track(tmp_path / "cut.jpg")
    assert caught[0].filename == __file__


def test_the_reference_cycles_frames_leave_are_collected_as_a_video_goes(tiny_model, tmp_path, monkeypatch):
    """Each frame leaves reference cycles (MediaPipe's class for each detection's outputs, a PyAV frame and its side
    data) that only Python's rare full collections free: a 25-minute video's run grew by 70 MB. The analyzer now
    collects them every FULL_COLLECTION_EVERY frames."""
    import gc

    from realtime import pipeline

    with demo_source() as demo, H264VideoWriter(tmp_path / "clip.mp4", demo.info) as writer:
        for frame in demo:
            writer.write(frame.image, frame.timestamp)

    def left_over() -> int:
        return sum(type(item).__name__ in ("SolutionOutputs", "VideoFrame") for item in gc.get_objects())

    monkeypatch.setattr(pipeline, "FULL_COLLECTION_EVERY", 40)
    gc.disable()  # as if Python's own full collection never came
    try:
        with EmotionAnalyzer(tiny_model) as analyzer:
            indexes = [result.index for result in analyzer.stream(tmp_path / "clip.mp4", max_frames=80)]
            waiting = left_over()
            gc.collect()
            garbage = waiting - left_over()  # what was waiting for a collection
    finally:
        gc.enable()
    # before: 89 waited, about one of each per frame; now those of the frames since the last collection (the last
    # frame's, those the reader decoded ahead)
    assert indexes == list(range(80)) and garbage < 40
