"""The web app's logic, apart from its page (``streamlit_app.py``): checking uploads, analysing photos
and clips through the shared pipeline, and shaping the results into tables and chart data.

Nothing here imports Streamlit, so all of it can be tested without a server or a browser. Every
upload is written to a private temporary folder that is deleted as soon as its analysis ends; the
annotated video and the CSV are read into memory first. Bad input raises ``UploadError`` with a
one-line message naming the file as the user called it.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import tempfile
import threading
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
from PIL import Image, features

from realtime.annotator import EmotionAnnotator, emotion_color
from realtime.classifier import default_model_path
from realtime.detector import DEFAULT_MIN_CONFIDENCE, LOWEST_MIN_CONFIDENCE  # noqa: F401 (the page's slider starts there)
from realtime.errors import ModelError, OutputError, SourceError
from realtime.io.files import heif_brand
from realtime.io.images import (
    IMAGE_SUFFIXES,
    MAX_PHOTO_PIXELS,
    WEBP_MAX_SIDE,
    PhotoFile,
    annotated_photo_suffix,
    frames_held,
    image_size,
    looks_like_a_video,
    quiet_pillow,
    read_photo_file,
)
from realtime.io.results_file import ResultsWriter
from realtime.io.video import VIDEO_SUFFIXES, H264VideoWriter, VideoFileSource
from realtime.model_metadata import ModelMetadata
from realtime.pipeline import EmotionAnalyzer, process_source
from realtime.rows import face_rows, results_rows
from realtime.summary import RunSummary
from realtime.types import FaceResult, Frame, FrameResult

LOG = logging.getLogger("emotion_tracer.webapp")
MODEL_ENV = "EMOTION_TRACER_MODEL"  # overrides the default model path
# Other names Streamlit's uploader accepts for a type it is given (streamlit's file_uploader_utils.TYPE_PAIRS):
# the uploads check takes them too, so that what the uploader lets through is analysed.
UPLOAD_TYPE_ALIASES = (("jpg", "jpeg"), ("mpg", "mpeg"), ("mp4", "mpeg4"), ("tif", "tiff"))


def _upload_types(suffixes, first: tuple[str, ...]) -> tuple[str, ...]:
    """The upload types (no dot, lower case) for the command line's ``suffixes`` and their aliases,
    the common ones (``first``) first."""
    types = {suffix.lstrip(".").lower() for suffix in suffixes}
    for pair in UPLOAD_TYPE_ALIASES:
        if types & set(pair):
            types |= set(pair)
    return tuple(sorted(types, key=lambda kind: (first.index(kind) if kind in first else len(first), kind)))


# What the command line reads (realtime/io/images.py, realtime/io/video.py); AVIF only where Pillow decodes it.
# GIF is a video for the command line (animated), so it goes to the Video clip tab.
PHOTO_TYPES = _upload_types((suffix for suffix in IMAGE_SUFFIXES if suffix != ".avif" or features.check("avif")),
                            ("jpg", "jpeg", "png", "webp"))
CLIP_TYPES = _upload_types(VIDEO_SUFFIXES, ("mp4", "mov", "avi", "webm"))
MAX_PHOTO_MB = 50
MAX_CLIP_MB = 200  # also server.maxUploadSize in .streamlit/config.toml, the server's hard limit
MAX_PHOTO_MEGAPIXELS = 50  # larger photos are refused before they are decoded
MAX_CLIP_SIZE = (3840, 2160)  # 4K: larger frames are refused (either orientation)
MAX_CLIP_SECONDS = 60  # clips analysed frame by frame are analysed up to here
MAX_CLIP_FRAMES = 1800  # ... and up to this many frames (high frame rates); also the most analysed when sampling
MAX_SAMPLED_CLIP_SECONDS = 600  # a clip analysed at fewer frames a second: as long as MAX_CLIP_FRAMES last, up to here
CLIP_SAMPLE_RATES = (None, 10, 5, 2, 1)  # the page's choices: every frame (None), or at most this many a second
DISPLAY_MAX_SIDE = 1600  # annotated photos are shown at most this large
DISPLAY_MAX_ASPECT = 50  # thinner photos are shown padded to this ratio (a 2000x1 banner: no zero-height image)
CLIP_ANALYZERS = 2  # clips analysed at the same time with the same options
PHOTO_ANALYZERS = 1  # photos analysed at the same time with the same options, besides the clips
WAIT_POLL_SECONDS = 0.5  # how often a clip waiting for a free analyzer asks whether it is still wanted
PHOTOS_KEPT = 16  # analysed photos a session keeps for reruns, besides those uploaded now (all kept)
MEGABYTE = 1024 * 1024  # Streamlit's upload limits count in these

MODEL_HELP = (
    "The app reads the model shipped at `realtime/model/emotion_cnn_int8.onnx`, or the `.onnx` file the "
    f"`{MODEL_ENV}` environment variable names when the app starts. Either restart the app with an exported "
    "model:\n\n"
    "```\n"
    f"{MODEL_ENV}=path/to/model.onnx streamlit run streamlit_app.py\n"
    "```\n\n"
    "or train and export a model to the shipped path, then reload this page:\n\n"
    "```\n"
    "python -m models.train --data ../shared/datasets/fer2013 --output-dir runs/emotion_cnn\n"
    "python -m export --model runs/emotion_cnn/best.keras --output models/emotion_cnn.onnx "
    "--data ../shared/datasets/fer2013 --int8 --int8-output realtime/model/emotion_cnn_int8.onnx\n"
    "```"
)


class UploadError(Exception):
    """An upload cannot be analysed; the message is one line for the page and names the file."""


class ClipCancelled(Exception):
    """A background clip analysis was cancelled (another clip or other options were chosen)."""


def run_safely(name: str, analysis, *args, **kwargs) -> tuple[object | None, str | None]:
    """(``analysis(*args, **kwargs)``, None), or (None, a one-line message for the page): never a traceback."""
    try:
        return analysis(*args, **kwargs), None
    except (UploadError, ModelError) as error:
        return None, str(error)
    except ClipCancelled:
        raise
    except Exception as error:  # a bug or an environment problem: logged in full, one line on the page
        LOG.exception("analysing %s failed", name)
        return None, f"{name}: the analysis failed ({type(error).__name__}: {' '.join(str(error).split())})"


@dataclass(frozen=True)
class AnalysisOptions:
    """The page's analysis settings (each combination gets its own analyzers)."""

    detector_range: str = "auto"
    min_confidence: float = DEFAULT_MIN_CONFIDENCE  # the command line's: no false faces in no_face.mp4
    smoothing: float = 0.6


def resolve_model_path() -> Path:
    """The model the app uses: ``$EMOTION_TRACER_MODEL`` when set, else the runtime's default.

    Raises ModelError when there is none.
    """
    override = os.environ.get(MODEL_ENV, "").strip()
    if not override:
        try:
            return default_model_path()
        except ModelError as error:  # its message names the command line's --model, which the app has not
            raise ModelError(f"the shipped model {error.path} is missing", error.path) from None
    path = Path(override).expanduser()
    if not path.is_file():
        raise ModelError(f"{MODEL_ENV}={override}: no such model file")
    return path


class AnalyzerPool:
    """EmotionAnalyzers with the same options, each used by one thread at a time: up to ``clips`` lent for
    clips and up to ``photos`` more for photos, so that a photo never waits behind clips.

    An analyzer runs one call at a time and its tracker follows one clip, so a session borrows an
    analyzer for a whole photo or clip and sessions analyse in parallel; more wait their turn. Analyzers
    are made when first needed and kept for the next borrower; the first is made at once, so a bad
    model fails here.
    """

    def __init__(self, model_path: Path | str, options: AnalysisOptions, clips: int = CLIP_ANALYZERS,
                 photos: int = PHOTO_ANALYZERS):
        if clips < 1 or photos < 1:
            raise ValueError(f"clips and photos must be at least 1, got {clips} and {photos}")
        self.model_path = Path(model_path)
        self.options = options
        self._limits = {True: clips, False: photos}  # for clips, for photos
        self._lent = {True: 0, False: 0}
        self._condition = threading.Condition()
        self._closed = False
        first = self._create()
        self._idle: list[EmotionAnalyzer] = [first]
        self.classes: list[str] = first.classes
        self.metadata: ModelMetadata = first.metadata

    def _create(self) -> EmotionAnalyzer:
        return EmotionAnalyzer(self.model_path, detector_range=self.options.detector_range,
                               min_confidence=self.options.min_confidence, smoothing=self.options.smoothing)

    @contextmanager
    def borrow(self, for_clip: bool = False,
               on_wait: Callable[[bool], None] | None = None) -> Iterator[EmotionAnalyzer]:
        """An analyzer for this thread alone until the ``with`` block ends (a photo's, or a clip's).

        While all are lent, ``on_wait(True)`` is called before waiting and then every WAIT_POLL_SECONDS (it
        may raise to stop waiting: a cancelled clip), and ``on_wait(False)`` once one is got."""
        with self._condition:
            waited = False
            while self._lent[for_clip] >= self._limits[for_clip]:
                if on_wait is not None:
                    on_wait(True)
                waited = True
                self._condition.wait(WAIT_POLL_SECONDS if on_wait is not None else None)
            if on_wait is not None and waited:
                on_wait(False)
            self._lent[for_clip] += 1
            analyzer = self._idle.pop() if self._idle else None
        try:
            if analyzer is None:
                analyzer = self._create()
            yield analyzer
        finally:
            with self._condition:
                self._lent[for_clip] -= 1
                if analyzer is not None and self._closed:
                    analyzer.close()
                elif analyzer is not None:
                    self._idle.append(analyzer)
                self._condition.notify_all()

    def close(self) -> None:
        """Close the idle analyzers now and the borrowed ones when they come back."""
        with self._condition:
            self._closed = True
            idle, self._idle = self._idle, []
            self._condition.notify_all()
        for analyzer in idle:
            analyzer.close()


def model_facts(metadata: ModelMetadata, model_path: Path) -> list[tuple[str, str]]:
    """(name, value) rows describing the model, from its file name and metadata."""
    facts = metadata.facts
    rows = [("file", model_path.name), ("emotions", ", ".join(metadata.classes)),
            ("input", f"{metadata.input_size[1]}x{metadata.input_size[0]} {metadata.color} face crop")]
    if "publictest_accuracy" in facts:
        faces = f" of {facts['publictest_samples']:,} faces" if "publictest_samples" in facts else ""
        rows.append(("FER2013 PublicTest accuracy", f"{facts['publictest_accuracy']:.1%}{faces}"))
    own_validation = f"validation_accuracy_{facts.get('precision')}"  # this file's, not the model's before export
    formats = (("publictest_accuracy_flip_tta", "PublicTest accuracy, flip averaged", "{:.1%}"),
               ("publictest_macro_f1", "PublicTest macro-F1", "{:.3f}"),
               (own_validation if own_validation in facts else "validation_accuracy", "validation accuracy", "{:.1%}"),
               ("dataset", "trained on", "{}"),
               ("architecture", "architecture", "{}"),
               ("parameters", "parameters", "{:,}"),
               ("precision", "precision", "{}"))
    for key, name, pattern in formats:
        if key in facts:
            try:
                rows.append((name, pattern.format(facts[key])))
            except (ValueError, TypeError):  # a fact of an unexpected type is shown as it is
                rows.append((name, str(facts[key])))
    if metadata.temperature != 1.0:
        rows.append(("confidence", f"calibrated on validation faces (temperature {metadata.temperature:.2f})"))
    return rows


def emotion_hex(label: str) -> str:
    """The annotator's color for an emotion as "#rrggbb", so charts match the boxes."""
    blue, green, red = emotion_color(label)
    return f"#{red:02x}{green:02x}{blue:02x}"


def type_list(types: tuple[str, ...]) -> str:
    """Upload types for people: "JPG, JPEG, PNG or WEBP"."""
    kinds = [kind.upper() for kind in types]
    return ", ".join(kinds[:-1]) + f" or {kinds[-1]}" if len(kinds) > 1 else "".join(kinds)


# PyAV's names of containers whose usual suffix is another (the others go by their own name: "avi", "mov", ...)
CONTAINER_SUFFIXES = {"matroska": "mkv", "mpegts": "ts", "asf": "wmv"}


def content_suffix(data: bytes) -> str:
    """The suffix (".jpg", ".mp4") of the photo or video format ``data`` holds, as the web app names it; "" when
    neither Pillow nor PyAV recognises one of them."""
    known = PHOTO_TYPES + CLIP_TYPES
    try:
        with quiet_pillow(), Image.open(io.BytesIO(data)) as image:
            image_format = image.format
    except Exception:  # no image Pillow reads: perhaps a video
        image_format = None
    if image_format is not None:
        extensions = Image.registered_extensions()
        image_format = "JPEG" if image_format == "MPO" else image_format  # a phone's JPEG with a second picture
        return next((f".{kind}" for kind in known if extensions.get(f".{kind}") == image_format), "")
    if (brand := heif_brand(data)) is not None:  # a still PyAV would read as an MP4
        return ".avif" if brand in (b"avif", b"avis") else ".heic"
    try:
        with av.open(io.BytesIO(data)) as container:
            names = container.format.name.split(",")
    except Exception:  # neither: PyAV raises its own errors, and others for data it misreads
        return ""
    kinds = [CONTAINER_SUFFIXES.get(name, name) for name in names]
    return next((f".{kind}" for kind in known if kind in kinds), "")


def check_upload(name: str, size: int, allowed_types: tuple[str, ...], max_mb: int, content: bytes = b"") -> str:
    """The upload's lower-case suffix (".jpg") after checking its type and size; UploadError otherwise, which
    points to the other tab for a photo given as a clip or a video (an animated GIF) given as a photo. A name
    without a suffix, or with one not allowed, is typed by its ``content`` where that is a photo or video (as the
    command line reads a file by its content when its suffix is no image's or video's)."""
    suffix = Path(name).suffix.lower()
    if suffix.lstrip(".") not in allowed_types:
        suffix = content_suffix(content) or suffix
    kind = suffix.lstrip(".")
    if kind not in allowed_types:
        if allowed_types == PHOTO_TYPES and kind in CLIP_TYPES:
            what = "a GIF (analysed as a clip, frame by frame)" if kind == "gif" else "a video"
            raise UploadError(f"{name}: {what}: upload it in the Video clip tab")
        if allowed_types == CLIP_TYPES and kind in PHOTO_TYPES:
            raise UploadError(f"{name}: a photo, not a video: upload it in the Photo tab")
        if kind in ("heic", "heif"):
            raise UploadError(f"{name}: HEIC/HEIF photos (an iPhone's usual format) cannot be decoded here: convert "
                              "it to JPEG or PNG (an iPhone saves JPEG with Settings > Camera > Formats > Most "
                              "Compatible)")
        raise UploadError(f"{name}: not a supported file type (use {type_list(allowed_types)})")
    if size > max_mb * MEGABYTE:
        raise UploadError(f"{name}: {size / MEGABYTE:.1f} MB is more than the {max_mb} MB allowed")
    return suffix


def download_stem(name: str, fallback: str) -> str:
    """A safe file-name stem for downloads, derived from an uploaded file's name: its letters, marks and digits (any
    script, composed as NFC: a Mac sends them decomposed), dots, dashes and underscores; each run of other
    characters becomes one underscore."""
    stem = unicodedata.normalize("NFC", Path(name).stem)
    kept = "".join(c if c in "._-" or unicodedata.category(c)[0] in "LMN" else "\0" for c in stem)
    stem = re.sub("\0+", "_", kept).strip("._")
    return stem[:80] or fallback


def plain_markdown(text: str) -> str:
    """``text`` as Markdown that shows it as it is: every ASCII punctuation character backslash-escaped,
    so that a file name such as ``*draft* $5 :red[x].jpg`` is neither emphasis, LaTeX nor a color."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", text)


@contextmanager
def private_folder() -> Iterator[Path]:
    """A temporary folder only this process can read, deleted with everything in it afterwards."""
    with tempfile.TemporaryDirectory(prefix="emotion-tracer-") as folder:
        yield Path(folder)


def _save(folder: Path, data: bytes, suffix: str) -> Path:
    path = folder / f"upload{suffix}"
    path.write_bytes(data)
    return path


def _renamed(error: Exception, path: Path, name: str) -> UploadError:
    """The error's one-line message with the temporary ``path`` replaced by the upload's ``name``."""
    message = str(error).replace(str(path) + os.sep, name).replace(str(path), name)
    return UploadError(" ".join(message.split()))


def _check_photo_pixels(path: Path, name: str) -> None:
    """Refuse photos over MAX_PHOTO_MEGAPIXELS from their header, before anything is decoded."""
    size = image_size(path)
    if size is None:  # not an image Pillow recognises (read_photo_file says so), or over twice what the reader takes
        try:
            with Image.open(path):
                pass
        except Image.DecompressionBombError:
            raise UploadError(f"photo {name}: over {2 * MAX_PHOTO_PIXELS / 1e6:g} megapixels; photos up to "
                              f"{MAX_PHOTO_MEGAPIXELS} megapixels are accepted") from None
        except (OSError, SyntaxError, ValueError):
            pass
        return
    width, height = size
    if width * height > MAX_PHOTO_MEGAPIXELS * 1_000_000:
        raise UploadError(f"photo {name}: {width}x{height} is {width * height / 1e6:.1f} megapixels; "
                          f"photos up to {MAX_PHOTO_MEGAPIXELS} megapixels are accepted")


@dataclass
class PhotoAnalysis:
    """One analysed photo: the annotated image to show (RGB, at most DISPLAY_MAX_SIDE), its faces and the
    per-face CSV (the command line's results file). The full-size annotated photo is made when it is
    downloaded (``annotated_photo``), not kept."""

    name: str
    image_rgb: np.ndarray
    result: FrameResult
    classes: list[str]
    csv: bytes = b""
    size: tuple[int, int] = (0, 0)  # the photo's (height, width), before it was shrunk to be shown
    issues: list[str] = field(default_factory=list)  # what was lost reading it (damage), a line each

    @property
    def image_file_name(self) -> str:
        """The annotated photo's download name: ``<stem>_emotions`` and the upload's suffix where the command
        line writes that format, else .png (as the command line names a folder's outputs)."""
        return f"{download_stem(self.name, 'photo')}_emotions{photo_output_suffix(self.name, self.size)}"

    @property
    def image_mime_type(self) -> str:
        return IMAGE_MIME_TYPES[photo_output_suffix(self.name, self.size)]

    @property
    def csv_file_name(self) -> str:
        return f"{download_stem(self.name, 'photo')}_faces.csv"

    @property
    def faces(self) -> list[FaceResult]:
        """The faces found, best detection first."""
        return self.result.faces

    def table(self) -> pd.DataFrame:
        """One row per face: id, emotion, confidence and detection score (from the results rows); the
        confidence to the whole percent, as the annotated photo and the headline show it."""
        rows = pd.DataFrame(face_rows(self.result), columns=["face_id", "label", "confidence", "detection_score"])
        return pd.DataFrame({
            "face": rows["face_id"].astype(int),
            "emotion": rows["label"].astype(str),
            "confidence": rows["confidence"].astype(float).round(2),
            "detection score": rows["detection_score"].astype(float).round(3),
        })

    def probabilities(self, face: FaceResult) -> pd.DataFrame:
        """The face's probability of every emotion, in the model's class order, with chart colors."""
        return pd.DataFrame({
            "emotion": self.classes,
            "probability": [round(float(p), 4) for p in face.probabilities],
            "color": [emotion_hex(label) for label in self.classes],
        })


def display_rgb(image_bgr: np.ndarray, max_side: int = DISPLAY_MAX_SIDE,
                max_aspect: int = DISPLAY_MAX_ASPECT) -> np.ndarray:
    """An RGB copy of a BGR image, shrunk so its longer side is at most ``max_side``, and padded (light grey,
    centered) where it is thinner than ``max_aspect``:1, so that no side shrinks to nothing when the page
    scales it down (a 2000x1 banner)."""
    height, width = image_bgr.shape[:2]
    scale = max_side / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image_bgr = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
        height, width = image_bgr.shape[:2]
    least = math.ceil(max(height, width) / max_aspect)
    if min(height, width) < least:
        across = least - min(height, width)
        before, after = across // 2, across - across // 2
        pad = (before, after, 0, 0) if height < width else (0, 0, before, after)
        image_bgr = cv2.copyMakeBorder(image_bgr, *pad, cv2.BORDER_CONSTANT, value=(224, 224, 224))
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)


def _read_photo(data: bytes, name: str) -> PhotoFile:
    """An uploaded photo, decoded (BGR, upright), with what was lost reading it (its ``issues`` name the
    upload); UploadError for bad input."""
    suffix = check_upload(name, len(data), PHOTO_TYPES, MAX_PHOTO_MB, data)
    with private_folder() as folder:
        path = _save(folder, data, suffix)
        if looks_like_a_video(path):
            raise UploadError(f"{name}: a video, not a photo: upload it in the Video clip tab")
        _check_photo_pixels(path, name)
        try:
            return read_photo_file(path, name)
        except SourceError as error:
            raise _renamed(error, path, name) from None


def results_csv(results: list[FrameResult], classes: list[str]) -> bytes:
    """The command line's CSV results file of ``results`` (ResultsWriter), as bytes."""
    with private_folder() as folder:
        path = folder / "faces.csv"
        with ResultsWriter(path, classes) as writer:
            for result in results:
                writer.write(result)
        return path.read_bytes()


def analyze_photo(data: bytes, name: str, pool: AnalyzerPool) -> PhotoAnalysis:
    """Detect, classify and annotate the faces of an uploaded photo; UploadError for bad input."""
    photo = _read_photo(data, name)
    with pool.borrow() as analyzer:
        result = analyzer.analyze(photo.image)
    result.source = name
    annotated = EmotionAnnotator().annotate_photo(photo.image, result)
    issues = list(photo.issues)
    if photo.frames_in_file > 1:  # an animated WebP or a multi-page TIFF (an animated GIF goes to the clip tab)
        issues.append(f"{name} holds {frames_held(photo.frames_in_file)}; only the first is analysed")
    return PhotoAnalysis(name, display_rgb(annotated), result, pool.classes, results_csv([result], pool.classes),
                         photo.image.shape[:2], issues)


def photo_output_suffix(name: str, size: tuple[int, int] | None = None) -> str:
    """The annotated photo's format: the upload's where the command line writes it (and WebP holds a photo
    of ``size``, (height, width)), else .png."""
    suffix = annotated_photo_suffix(name)
    return ".png" if suffix == ".webp" and size and max(size) > WEBP_MAX_SIDE else suffix


IMAGE_MIME_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".bmp": "image/bmp",
                    ".webp": "image/webp"}


def annotated_photo(data: bytes, photo: PhotoAnalysis) -> bytes:
    """The photo ``data`` annotated with ``photo``'s faces at its full size, encoded as
    ``photo.image_file_name`` says (made again from the upload when it is downloaded, not kept)."""
    image = EmotionAnnotator().annotate_photo(_read_photo(data, photo.name).image, photo.result)
    suffix = photo_output_suffix(photo.name, photo.size)
    ok, encoded = cv2.imencode(suffix, image)
    if not ok:
        raise RuntimeError(f"cannot encode {photo.name} as {suffix}")
    return encoded.tobytes()


def example_photo() -> tuple[str, bytes]:
    """A sample face photo that an installed package ships: scikit-image's astronaut, as PNG bytes."""
    from realtime.demo import sample_photo_bgr  # scikit-image is imported only when asked

    ok, data = cv2.imencode(".png", sample_photo_bgr())
    if not ok:
        raise RuntimeError("cannot encode the example photo")
    return "astronaut.png", data.tobytes()


@dataclass
class ClipAnalysis:
    """One analysed clip: the annotated H.264 video and per-face CSV (bytes), and what was seen."""

    name: str
    video: bytes
    csv: bytes
    video_file_name: str
    csv_file_name: str
    rows: list[dict]  # the results rows (realtime.rows), one per face per frame
    frames: int  # frames analysed
    seconds: float  # length of the analysed part
    fps: float
    truncated: bool  # the clip was longer than the limits; only its start was analysed
    issues: list[str]  # damaged or missing stretches of the file, one line each (their frames were not analysed)
    summary: RunSummary
    classes: list[str]  # the model's emotions, in its order
    frames_read: int  # frames of the clip read, analysed or not (``frames`` are those analysed)
    sample_fps: float | None  # analysed at most this many frames a second; None: every frame
    frame_ends: dict[int, float]  # each frame analysed (its index): when the next one analysed begins, or the clip ends

    @property
    def faces_found(self) -> bool:
        """Whether any frame had a face."""
        return self.summary.faces > 0

    def faces_table(self) -> pd.DataFrame:
        """One row per tracked face: id, frames seen, dominant emotion and its share of those frames."""
        rows = []
        for face in self.summary.tracked.values():
            label, share = face.dominant
            rows.append({"face": face.face_id, "frames seen": face.frames, "dominant emotion": label,
                         "share of its frames": f"{share:.0%}"})
        return pd.DataFrame(rows, columns=["face", "frames seen", "dominant emotion", "share of its frames"])

    def timeline(self) -> pd.DataFrame:
        """Each face's emotion over time, one row per face per frame (from the CSV, so they agree); a frame
        lasts until the next one analysed (the last one until the clip's end), as the annotated video shows it."""
        timeline = face_timeline(self.rows, 1.0 / self.fps)
        timeline["until"] = timeline["frame"].map(self.frame_ends).astype(float).round(3)  # as the rows' times
        return timeline


def face_timeline(rows: list[dict], frame_seconds: float) -> pd.DataFrame:
    """From results rows, one row per face per frame: time and until (the frame's start and end, s),
    frame, face ("face 3"), emotion, confidence."""
    table = pd.DataFrame(rows, columns=["time", "frame", "face_id", "label", "confidence"])
    time = table["time"].astype(float)
    return pd.DataFrame({
        "time": time,
        "until": time + frame_seconds,
        "frame": table["frame"].astype(int),
        "face": "face " + table["face_id"].astype(int).astype(str),
        "emotion": table["label"].astype(str),
        "confidence": table["confidence"].astype(float),
    })


def clip_seconds_limit(sample_fps: float | None = None) -> float:
    """How much of a clip is analysed at most: MAX_CLIP_SECONDS frame by frame; at ``sample_fps`` frames a second,
    as long as MAX_CLIP_FRAMES frames last at that rate, and at most MAX_SAMPLED_CLIP_SECONDS."""
    return MAX_CLIP_SECONDS if sample_fps is None else min(MAX_SAMPLED_CLIP_SECONDS, MAX_CLIP_FRAMES / sample_fps)


def clip_frame_limit(fps: float, sample_fps: float | None = None) -> int:
    """Frames of a clip of ``fps`` read at most: ``clip_seconds_limit()`` of it, and, frame by frame, never more than
    MAX_CLIP_FRAMES (sampled, the analysis also stops at MAX_CLIP_FRAMES analysed)."""
    frames = math.ceil(clip_seconds_limit(sample_fps) * fps)
    return max(1, frames if sample_fps is not None else min(MAX_CLIP_FRAMES, frames))


def duration_text(seconds: float) -> str:
    """A clip limit as the page says it: "60 s", "6 min", "2.5 min"."""
    return f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:.3g} min"


ProgressCallback = Callable[[int, "int | None"], None]  # (frames done, frames expected or None)
WaitCallback = Callable[[bool], None]  # (whether waiting for a free analyzer)


def analyze_clip(data: bytes, name: str, pool: AnalyzerPool, on_progress: ProgressCallback | None = None,
                 on_wait: WaitCallback | None = None, sample_fps: float | None = None) -> ClipAnalysis:
    """Annotate an uploaded clip (H.264, audio kept) and tabulate its faces; UploadError for bad input
    (a still photo, but for a GIF, included).

    ``on_progress(done, expected)`` is called after every frame analysed, with the clip's frames read and
    expected; ``on_wait(True)`` while the clip waits for a free analyzer (the pool's are all analysing other
    clips), ``on_wait(False)`` once it has one. ``sample_fps`` analyses at most that many frames a second (as
    ``--sample-fps``), which lets a longer clip in. Clips longer than the limits are analysed up to
    ``clip_seconds_limit()`` (at most MAX_CLIP_FRAMES frames analysed; sampled, and the last frame read) and marked
    ``truncated``.
    """
    suffix = check_upload(name, len(data), CLIP_TYPES, MAX_CLIP_MB, data)
    with private_folder() as folder:
        path = _save(folder, data, suffix)
        if _is_still_photo(path):
            raise UploadError(f"video {name}: looks like a photo: use the Photo tab")
        try:
            with VideoFileSource(path, name=name) as source:  # its issues name the upload
                clip = _analyze_video(source, name, folder, pool, on_progress, audio_source=path,
                                      header_seconds=_header_seconds(path), on_wait=on_wait, sample_fps=sample_fps)
                clip.issues = list(source.issues)
                return clip
        except SourceError as error:
            raise _renamed(error, path, name) from None
        except OutputError as error:  # writing the results in the private folder failed
            detail = _renamed(error, folder, "")
            raise UploadError(f"video {name}: cannot write the annotated results ({detail})") from None


def analyze_demo_clip(pool: AnalyzerPool, on_progress: ProgressCallback | None = None,
                      on_wait: WaitCallback | None = None, sample_fps: float | None = None) -> ClipAnalysis:
    """The built-in demo clip (a pan over scikit-image's astronaut photo), analysed like an upload."""
    from realtime.demo import demo_source  # builds the clip with scikit-image: only when asked

    with private_folder() as folder, demo_source() as source:
        return _analyze_video(source, "demo clip", folder, pool, on_progress, audio_source=None, on_wait=on_wait,
                              sample_fps=sample_fps)


# Pillow's formats that are photos (those of the command line's IMAGE_SUFFIXES, and MPO: a phone's JPEG); not
# GIF (a clip, even of one frame, as on the command line) nor MPEG (Pillow opens a raw MPEG video stream as one
# frame).
PHOTO_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "AVIF", "PPM", "TGA"})


def _is_still_photo(path: Path) -> bool:
    """Whether the file is a single still photo (a photo renamed .mp4), not a video."""
    try:
        with Image.open(path) as image:
            return image.format in PHOTO_FORMATS and getattr(image, "n_frames", 1) == 1
    except Image.DecompressionBombError:
        return True
    except (OSError, SyntaxError, ValueError):
        return False  # not an image Pillow recognises


def _header_seconds(path: Path) -> float | None:
    """The clip's length as its container's header gives it, if it does."""
    try:
        with av.open(str(path)) as container:
            return container.duration / av.time_base if container.duration else None
    except av.FFmpegError:
        return None


class _FirstFrames:
    """The first ``limit`` frames of a source (a Source itself), and of them those before ``seconds`` when given.
    ``read`` counts the frames handed out; ``whole`` tells whether the last of them was the source's last (each is
    handed out once the next has been read), and ``cut`` whether the limits left frames unread."""

    def __init__(self, source, limit: int, seconds: float | None = None):
        self.source, self.limit, self.seconds = source, limit, seconds
        self.info, self.live, self.audio_path = source.info, source.live, source.audio_path
        self.cut = False
        self.read = 0
        self.whole = True

    def __iter__(self) -> Iterator[Frame]:
        frames = iter(self.source)
        upcoming = next(frames, None)
        while upcoming is not None:
            if self.read == self.limit or (self.seconds is not None and upcoming.timestamp >= self.seconds):
                self.cut, self.whole = True, False
                return
            frame, upcoming = upcoming, next(frames, None)
            self.read += 1
            self.whole = upcoming is None
            yield frame

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> _FirstFrames:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _analyze_video(source, name: str, folder: Path, pool: AnalyzerPool, on_progress: ProgressCallback | None,
                   audio_source: Path | None, header_seconds: float | None = None,
                   on_wait: WaitCallback | None = None, sample_fps: float | None = None) -> ClipAnalysis:
    info = source.info
    longest, shortest = max(info.width, info.height), min(info.width, info.height)
    if longest > max(MAX_CLIP_SIZE) or shortest > min(MAX_CLIP_SIZE):
        raise UploadError(f"video {name}: {info.width}x{info.height} frames are larger than the "
                          f"{MAX_CLIP_SIZE[0]}x{MAX_CLIP_SIZE[1]} allowed")
    limit = clip_frame_limit(info.fps, sample_fps)
    total = info.total_frames or (round(header_seconds * info.fps) if header_seconds else None)  # WebM: no count
    expected = min(total, limit) if total else None
    # sampled: cut at the time the limit allows (a count from the average rate would let a variable-rate clip run
    # longer), and the analysis goes on to the clip's last frame, the one after the MAX_CLIP_FRAMES steps
    first_frames = _FirstFrames(source, limit, None if sample_fps is None else clip_seconds_limit(sample_fps))
    video_path, csv_path = folder / "annotated.mp4", folder / "faces.csv"
    summary = RunSummary()
    frames, seconds = 0, 0.0
    results: list[FrameResult] = []
    frame_ends: dict[int, float] = {}
    with pool.borrow(for_clip=True, on_wait=on_wait) as analyzer, \
            H264VideoWriter(video_path, info, audio_source=audio_source) as video_writer, \
            ResultsWriter(csv_path, analyzer.classes) as results_writer:
        for analyzed in process_source(first_frames, analyzer, sinks=[video_writer, results_writer, summary],
                                       annotator=EmotionAnnotator(), source_name=name, sample_fps=sample_fps,
                                       max_frames=None if sample_fps is None else MAX_CLIP_FRAMES + 1):
            frames += 1
            results.append(analyzed.result)
            if frame_ends:
                frame_ends[next(reversed(frame_ends))] = analyzed.frame.timestamp
            seconds = analyzed.frame.timestamp + (analyzed.frame.duration or 1.0 / info.fps)
            frame_ends[analyzed.frame.index] = seconds
            if on_progress is not None:
                on_progress(first_frames.read, max(expected, first_frames.read) if expected else None)
    stem = download_stem(name, "clip")
    return ClipAnalysis(name=name, video=video_path.read_bytes(), csv=csv_path.read_bytes(),
                        video_file_name=f"{stem}_emotions.mp4", csv_file_name=f"{stem}_faces.csv",
                        rows=results_rows(results),
                        frames=frames, seconds=seconds, fps=info.fps, truncated=not first_frames.whole, issues=[],
                        summary=summary, classes=pool.classes, frames_read=first_frames.read, sample_fps=sample_fps,
                        frame_ends=frame_ends)


class BackgroundClip:
    """A clip analysed in a thread of its own, so that the page's reruns (a tab chosen, a widget moved)
    neither restart it nor wait for it; the page polls ``done`` and ``expected`` and shows ``result`` once
    ``finished``, and says ``waiting`` while the clip waits for a free analyzer. ``analysis(on_progress,
    on_wait)`` is ``analyze_clip`` or ``analyze_demo_clip`` with its other arguments bound; ``key`` says what
    it analyses (file, model, options). ``wanted()`` is asked after every frame and while the clip waits
    for an analyzer: once it says no (the page's session has ended), the analysis stops as if cancelled."""

    def __init__(self, key: object, name: str, analysis: Callable[[ProgressCallback, WaitCallback], ClipAnalysis],
                 wanted: Callable[[], bool] = lambda: True):
        self.key, self.name = key, name
        self.done, self.expected = 0, None
        self.waiting = False  # for a free analyzer: the pool's are all analysing other clips
        self.result: tuple[ClipAnalysis | None, str | None] | None = None
        self._wanted = wanted
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(analysis,), name=f"clip analysis: {name}",
                                        daemon=True)
        self._thread.start()

    def _run(self, analysis: Callable[[ProgressCallback, WaitCallback], ClipAnalysis]) -> None:
        try:
            self.result = run_safely(self.name, analysis, self._progress, self._waiting)
        except ClipCancelled:
            self.result = (None, f"{self.name}: cancelled")
        finally:
            self.waiting = False

    def _waiting(self, waiting: bool) -> None:
        self._check_wanted()
        self.waiting = waiting

    def _check_wanted(self) -> None:
        if not self._wanted():
            self._cancelled.set()
        if self._cancelled.is_set():
            raise ClipCancelled

    def _progress(self, done: int, expected: int | None) -> None:
        self._check_wanted()
        self.done, self.expected = done, expected

    @property
    def finished(self) -> bool:
        return self.result is not None

    @property
    def cancelled(self) -> bool:
        """Whether it was cancelled or stopped as no longer wanted (it may still be ending)."""
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Stop after the frame being analysed; its temporary files are deleted as after any ending."""
        self._cancelled.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the analysis to end (at most ``timeout`` seconds); whether it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()
