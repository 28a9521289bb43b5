"""Emotion Tracer in the browser: ``streamlit run streamlit_app.py``.

Page layout only; the analysis is the command line's pipeline, reached through webapp/analysis.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import altair as alt
import streamlit as st
from streamlit import runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

import webapp.analysis as webapp
import webapp.live as live
from realtime.errors import ModelError

# a clip's analyses with other options kept in its session, so that options set back show theirs at once (each holds
# its annotated video, up to tens of MB)
KEPT_CLIP_ANALYSES = 3


@st.cache_resource(max_entries=4, on_release=webapp.AnalyzerPool.close,
                   show_spinner="Loading the face detector and the emotion model...")
def analyzer_pool(model_path: str, detector_range: str, min_confidence: float, smoothing: float) -> webapp.AnalyzerPool:
    """Analyzers shared by every session of this server, one pool per combination of options."""
    return webapp.AnalyzerPool(model_path, webapp.AnalysisOptions(detector_range, min_confidence, smoothing))


def sidebar_options() -> webapp.AnalysisOptions:
    """The analysis options in the sidebar."""
    sidebar = st.sidebar
    sidebar.header("Options")
    detector_range = sidebar.radio(
        "Face detector range", ("auto", "full", "short"), horizontal=True,
        help="auto: both models, also faces cut by the edge and close-ups. full: faces at any distance. "
             "short: faces within about 2 m (webcam), fastest.")
    min_confidence = sidebar.slider(
        "Face detection confidence", webapp.LOWEST_MIN_CONFIDENCE, 0.95, webapp.DEFAULT_MIN_CONFIDENCE, 0.05,
        help="Faces the detector is less sure about are ignored. Lower it if faces are missed.")
    smoothing = sidebar.slider(
        "Smoothing (videos)", 0.0, 0.9, 0.6, 0.1,
        help="How much each face's emotion follows its past (the weight of the past per 1/30 s, at any frame "
             "rate); 0 turns smoothing off.")
    return webapp.AnalysisOptions(detector_range, round(min_confidence, 2), round(smoothing, 2))


def sidebar_model(pool: webapp.AnalyzerPool) -> None:
    """What the model is, from its metadata."""
    st.sidebar.header("Model")
    st.sidebar.markdown("\n".join(f"- **{name}**: {value}"
                                  for name, value in webapp.model_facts(pool.metadata, pool.model_path)))


def photo_key(name: str, data: bytes, pool: webapp.AnalyzerPool) -> tuple:
    """What a photo's analysis depends on (smoothing does not change a photo's result)."""
    return (name, hashlib.sha256(data).hexdigest(), str(pool.model_path), pool.options.detector_range,
            pool.options.min_confidence)


def forget_old_photos(kept: dict, shown: set) -> None:
    """Drop the oldest analyses of photos not ``shown`` now until at most PHOTOS_KEPT of them remain."""
    old = [key for key in kept if key not in shown]
    for key in old[:max(0, len(old) - webapp.PHOTOS_KEPT)]:
        del kept[key]


def show_photo(index: int, name: str, data: bytes, pool: webapp.AnalyzerPool) -> webapp.PhotoAnalysis | None:
    """One photo: annotated image, a table of its faces, each face's probabilities and the downloads. The
    analysis, or None when the photo could not be analysed or shown (said on the page: the other photos and
    tabs go on)."""
    st.subheader(webapp.plain_markdown(name))
    kept: dict = st.session_state.setdefault("photo_analyses", {})
    key = photo_key(name, data, pool)
    if key not in kept:
        kept[key] = webapp.run_safely(name, webapp.analyze_photo, data, name, pool)
    photo, error = kept[key]
    if error is not None:
        st.error(webapp.plain_markdown(error))
        return None
    try:
        show_photo_analysis(index, photo, data)
    except Exception as error:  # a bug or an environment problem: this photo's, one line; the page goes on
        webapp.LOG.exception("showing %s failed", name)
        st.error(webapp.plain_markdown(
            f"{name}: cannot show the result ({type(error).__name__}: {' '.join(str(error).split())})"))
        return None
    return photo


def show_photo_analysis(index: int, photo: webapp.PhotoAnalysis, data: bytes) -> None:
    """The annotated photo, what was lost reading it, its faces and their probabilities, and the downloads."""
    for issue in photo.issues:
        st.warning(webapp.plain_markdown(issue))
    if not photo.faces:
        st.image(photo.image_rgb)
        st.warning(webapp.plain_markdown(no_face_hint(photo.name, "photo")))
        return
    picture, details = st.columns([3, 2])
    picture.image(photo.image_rgb)
    image, table = picture.columns(2)
    image.download_button(
        "Download the annotated photo", lambda: webapp.annotated_photo(data, photo), file_name=photo.image_file_name,
        mime=photo.image_mime_type, on_click="ignore", key=f"photo-image-{index}",
        help="At the photo's full size (the page shows it smaller).")
    table.download_button("Download the per-face CSV", photo.csv, file_name=photo.csv_file_name, mime="text/csv",
                          on_click="ignore", key=f"photo-csv-{index}")
    details.dataframe(photo.table(), hide_index=True, column_config={
        "confidence": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent"),
        "detection score": st.column_config.NumberColumn(format="%.2f")})
    for face in photo.faces:
        details.markdown(f"**Face {face.face_id}: {face.label}** ({face.confidence:.0%} confident)")
        details.altair_chart(probability_chart(photo.probabilities(face)), width="stretch")


def no_face_hint(name: str, kind: str, first_seconds: float | None = None) -> str:
    """Why no face was found in a photo or a clip (of which only the ``first_seconds`` were analysed, if given),
    and what to try."""
    where = name if first_seconds is None else f"the first {first_seconds:.1f} s of {name}, the part analysed"
    return (f"No face found in {where}. Faces that are small, turned away or partly hidden can be "
            f"missed: try another {kind}, or lower the detection confidence in the sidebar.")


def probability_chart(probabilities) -> alt.Chart:
    """Horizontal bars of a face's emotion probabilities, in the annotator's colors, on a 0-100% axis."""
    emotions = list(probabilities["emotion"])
    return alt.Chart(probabilities).mark_bar().encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title=None),
        y=alt.Y("emotion:N", sort=emotions, title=None),
        color=alt.Color("emotion:N", scale=alt.Scale(domain=emotions, range=list(probabilities["color"])),
                        legend=None),
        tooltip=["emotion", alt.Tooltip("probability:Q", format=".1%")],
    ).properties(height=190)


def photo_tab(pool: webapp.AnalyzerPool) -> None:
    """Photos: uploads, a camera snapshot or the example photo."""
    # No type filter in the uploader: it would refuse other files with a tooltip only; the page says why instead
    uploads = st.file_uploader(
        f"Photos ({webapp.type_list(webapp.PHOTO_TYPES)})", accept_multiple_files=True,
        max_upload_size=webapp.MAX_PHOTO_MB, key="photos",
        help=f"The photos the command line reads, up to {webapp.MAX_PHOTO_MB} MB and "
             f"{webapp.MAX_PHOTO_MEGAPIXELS} megapixels each.")
    camera, example = st.columns(2)
    photos = list(dict.fromkeys((upload.name, upload.getvalue()) for upload in uploads))  # one each, if added twice
    if len(photos) < len(uploads):
        st.caption("A photo added more than once is shown once.")
    if camera.toggle("Take a snapshot with the camera"):
        snapshot = st.camera_input("Snapshot")
        if snapshot is not None:
            photos.append(("snapshot.jpg", snapshot.getvalue()))
    if example.toggle("Try the example photo", help="scikit-image's astronaut photo (Eileen Collins)"):
        photos.append(webapp.example_photo())
    if not photos:
        st.info("Upload photos, take a snapshot or try the example photo: every face gets a box and "
                "its emotion.")
    analysed = [photo for index, (name, data) in enumerate(photos)
                if (photo := show_photo(index, name, data, pool)) is not None and photo.faces]
    if len(analysed) > 1:
        st.download_button("Download the faces of all these photos (CSV)",
                           webapp.results_csv([photo.result for photo in analysed], pool.classes),
                           file_name="photos_faces.csv", mime="text/csv", on_click="ignore", key="photos-csv")
    forget_old_photos(st.session_state.setdefault("photo_analyses", {}),
                      {photo_key(name, data, pool) for name, data in photos})


def session_connected() -> Callable[[], bool]:
    """Whether this page's browser session is still connected, asked from other threads: a clip analysed
    for a page that was closed or reloaded stops and frees its analyzer. (Without a server, always.)"""
    session_id = get_script_run_ctx().session_id
    return lambda: not runtime.exists() or runtime.get_instance().is_active_session(session_id)


def clip_tab(pool: webapp.AnalyzerPool, options: webapp.AnalysisOptions) -> None:
    """A short video: progress while it runs, then the annotated video, a timeline and downloads."""
    upload = st.file_uploader(
        "A short video (MP4, MOV, AVI, WEBM, GIF, ...)", max_upload_size=webapp.MAX_CLIP_MB, key="clip",
        help=f"{webapp.type_list(webapp.CLIP_TYPES)}: the videos the command line reads, up to "
             f"{webapp.MAX_CLIP_MB} MB.")
    demo = st.toggle("Try the demo clip", help="a 4 s pan over scikit-image's astronaut photo")
    if demo and upload is not None:
        st.info("Remove the uploaded clip to try the demo clip.")
    sample_fps = st.radio(
        "Frames analysed", webapp.CLIP_SAMPLE_RATES, horizontal=True, key="clip_sample_fps",
        format_func=lambda rate: "every frame" if rate is None else f"{rate} a second",
        help="Fewer frames a second take a longer clip and go faster; the other frames are only decoded, and "
             "faces keep their ids (the command line's --sample-fps).")
    limit = webapp.duration_text(webapp.clip_seconds_limit(sample_fps))
    st.caption(f"Clips are analysed up to their first {limit} (at most {webapp.MAX_CLIP_FRAMES:,} frames"
               + (", one a step, and the last)." if sample_fps else ")."))
    job: webapp.BackgroundClip | None = st.session_state.get("clip_job")
    if upload is None and not demo:
        if job is not None:
            job.cancel()
            del st.session_state["clip_job"]
        st.session_state.pop("clip_analysed", None)
        st.info("Upload a video to follow each face's emotion over time.")
        return
    name = upload.name if upload is not None else "demo clip"
    # The clip is analysed in a thread of its own: reruns (another tab, a photo, a widget) neither restart
    # the analysis nor wait for it; only another clip or other options start a new one.
    key = (upload.file_id if upload is not None else "demo", str(pool.model_path), options, sample_fps)
    # the clip's analyses finished with other options, by key, latest last: options set back show theirs at once
    analysed: dict[tuple, webapp.BackgroundClip] = st.session_state.setdefault("clip_analysed", {})
    # A job cancelled but still here stopped while this session was disconnected: it starts again.
    if job is None or job.key != key or job.cancelled:
        if job is not None and not job.finished:
            job.cancel()
        connected = session_connected()
        if key in analysed:
            job = analysed[key]
        elif upload is not None:
            data = upload.getvalue()
            job = webapp.BackgroundClip(
                key, name,
                lambda progress, waiting: webapp.analyze_clip(data, name, pool, progress, waiting, sample_fps=sample_fps),
                connected)
        else:
            job = webapp.BackgroundClip(
                key, name, lambda progress, waiting: webapp.analyze_demo_clip(pool, progress, waiting,
                                                                            sample_fps=sample_fps),
                connected)
        st.session_state["clip_job"] = job
    if not job.finished:
        clip_progress(job, sample_fps)
        return
    clip, error = job.result
    if error is not None:
        st.error(webapp.plain_markdown(error))
        return
    remember_analysed_clip(analysed, job)
    show_clip(clip)


def remember_analysed_clip(analysed: dict[tuple, webapp.BackgroundClip], job: webapp.BackgroundClip) -> None:
    """Keep ``job`` (finished) among ``analysed``: the last KEPT_CLIP_ANALYSES of its clip (its key's first
    part), those of another clip let go."""
    for key in [key for key in analysed if key[0] != job.key[0] or key == job.key]:
        del analysed[key]
    analysed[job.key] = job
    while len(analysed) > KEPT_CLIP_ANALYSES:
        del analysed[next(iter(analysed))]


@st.fragment(run_every=0.5)
def clip_progress(job: webapp.BackgroundClip, sample_fps: float | None) -> None:
    """The running analysis's progress, polled; the whole page reruns to show the result once it is done. Sampled
    (``sample_fps``), it counts the frames read, most of which are not analysed."""
    if job.finished:
        st.rerun()
    if job.waiting:
        st.progress(0.0, text=webapp.plain_markdown(
            f"Waiting for a free analyzer: other clips are being analysed; {job.name} starts after them..."))
        return
    percent = min(99, 100 * job.done // job.expected) if job.expected else 0
    text = f"Analysing {job.name}: frame {job.done}" + (f" of {job.expected}" if job.expected else "")
    if sample_fps is not None:
        text += f" read, {sample_fps:g} a second analysed"
    st.progress(percent / 100, text=webapp.plain_markdown(text if job.done else f"Analysing {job.name}..."))


def show_clip(clip: webapp.ClipAnalysis) -> None:
    """The annotated video, each face's emotion over time and the downloads."""
    if clip.truncated:
        longest = max(webapp.clip_seconds_limit(rate) for rate in webapp.CLIP_SAMPLE_RATES)
        if webapp.clip_seconds_limit(clip.sample_fps) >= longest:  # fewer frames a second would take no more
            hint = "The command line (python -m realtime) takes any length."
        else:
            hint = (f"Fewer frames analysed a second take up to {webapp.duration_text(longest)} of a clip; the "
                    "command line (python -m realtime) takes any length.")
        st.warning(webapp.plain_markdown(f"{clip.name} is longer than the web app takes: only its first "
                                         f"{clip.seconds:.1f} s were analysed ({clip.frames} frames). {hint}"))
    for issue in clip.issues:
        st.warning(webapp.plain_markdown(f"{issue}. The results cover only the frames that could be read."))
    st.video(clip.video, format="video/mp4")
    summary = clip.summary
    seconds = f"{clip.seconds:.1f}" if clip.seconds >= 1 else f"{clip.seconds:.2f}"
    length = "" if clip.frames_read == 1 else f" ({seconds} s)"  # a one-frame GIF's length is only its delay
    sampled = f" analysed of {clip.frames_read}" if clip.frames_read > clip.frames else ""
    faces_in = (f"faces in {summary.frames_with_faces} of them" if clip.frames != 1
                else "a face in it" if summary.frames_with_faces else "no face in it")
    st.markdown(f"**{clip.frames} frame{'s' * (clip.frames != 1)}**{sampled}{length}, {faces_in}, "
                f"{len(summary.tracked)} face{'s' * (len(summary.tracked) != 1)} tracked.")
    if not clip.faces_found:
        st.warning(webapp.plain_markdown(no_face_hint(clip.name, "clip", clip.seconds if clip.truncated else None)))
    else:
        st.altair_chart(timeline_chart(clip), width="stretch")
        st.dataframe(clip.faces_table(), hide_index=True)
    video, table = st.columns(2)
    video.download_button("Download the annotated video", clip.video, file_name=clip.video_file_name,
                          mime="video/mp4", on_click="ignore")
    if clip.faces_found:  # without faces the CSV would be its header alone
        table.download_button("Download the per-face CSV", clip.csv, file_name=clip.csv_file_name,
                              mime="text/csv", on_click="ignore")


def timeline_chart(clip: webapp.ClipAnalysis) -> alt.Chart:
    """One strip per face along the clip, each frame colored by the face's emotion (as in the video)."""
    return emotion_strips(clip.timeline(), clip.classes, (0, clip.seconds), "Each face's emotion over time")


def emotion_strips(timeline, classes: list[str], span: tuple[float, float], title: str) -> alt.Chart:
    """One strip per face over ``span`` (seconds), each frame colored by the face's emotion."""
    colors = alt.Scale(domain=classes, range=[webapp.emotion_hex(label) for label in classes])
    return alt.Chart(timeline, title=title).mark_rect().encode(
        x=alt.X("time:Q", title="time (s)", scale=alt.Scale(domain=list(span), nice=False)),
        x2="until:Q",
        y=alt.Y("face:N", title=None, sort=sorted(set(timeline["face"]), key=lambda face: int(face.split()[1]))),
        color=alt.Color("emotion:N", scale=colors, title=None,
                        legend=alt.Legend(orient="bottom", direction="horizontal")),
        tooltip=["face", alt.Tooltip("time:Q", title="time (s)", format=".2f"), "frame", "emotion",
                 alt.Tooltip("confidence:Q", format=".0%")],
    ).properties(height=alt.Step(36))


def live_tab(model_path: str, options: webapp.AnalysisOptions, classes: list[str]) -> None:
    """The browser's camera, annotated live, with a live chart; the session's CSV once it stops."""
    # Imported only when the tab opens: aiortc's SRTP library crashes the process when it is loaded
    # after TensorFlow (as in the test suite), and the other tabs do not need it.
    from streamlit_webrtc import WebRtcMode, webrtc_streamer

    try:
        rtc = live.rtc_configuration()
    except ValueError as error:
        st.error(str(error))
        return
    st.caption("Press START and allow the camera: each frame goes to this server, comes back annotated, and "
               "your faces' emotions are charted as they change (short-range detector: faces within about 2 m). "
               "Nothing is stored once you leave: download the results when you stop.")
    live_options = webapp.AnalysisOptions("short", options.min_confidence, options.smoothing)
    context = webrtc_streamer(
        key="live-camera", mode=WebRtcMode.SENDRECV, rtc_configuration=rtc,
        video_processor_factory=lambda: live.LiveSession(model_path, live_options),
        media_stream_constraints={"video": True, "audio": False}, async_processing=True)
    if context.video_processor is not None:
        context.video_processor.update_options(live_options)  # the sidebar's settings, changed while it streams
        st.session_state["live_session"] = context.video_processor
    session: live.LiveSession | None = st.session_state.get("live_session")
    if session is None:
        return
    if context.state.playing or (context.state.signalling and context.video_processor is not None):
        live_panel(session, classes)  # while connecting too: one that never connects says why (NO_FRAME_HINT_S)
    elif not context.state.signalling:  # stopped (not still connecting): finish the session's results
        session.on_ended()
        show_live(session.snapshot(), classes)


@st.fragment(run_every=1.0)
def live_panel(session: live.LiveSession, classes: list[str]) -> None:
    """Redrawn every second while the camera streams."""
    show_live(session.snapshot(), classes)


def show_live(snapshot: live.LiveSnapshot, classes: list[str]) -> None:
    """The live chart, each face's dominant emotion, the latency and, after the stream, the CSV."""
    if not snapshot.frames:
        (st.info if snapshot.error is None else st.error)(webapp.plain_markdown(snapshot.status))
        return
    if snapshot.error is not None:  # after some frames: what they gave is shown below
        st.error(webapp.plain_markdown(f"The analysis stopped: {snapshot.error}"))
    latency = (f"; from arrival to annotated frame: p50 {snapshot.latency_ms[0]:.0f} ms, "
               f"p95 {snapshot.latency_ms[1]:.0f} ms" if snapshot.latency_ms else "")
    st.markdown(f"**{snapshot.frames} frame{'s' * (snapshot.frames != 1)}** analysed{latency}.")
    if snapshot.timeline.empty:
        st.warning("No face found yet: face the camera, in good light.")
    else:
        end = float(snapshot.timeline["until"].max())
        start = max(0.0, end - live.CHART_SECONDS)
        st.altair_chart(emotion_strips(snapshot.timeline, classes, (start, end),
                                       f"Each face's emotion, last {live.CHART_SECONDS} s"), width="stretch")
    st.markdown("\n".join(f"- **Face {face['face']}: mostly {face['dominant emotion']}** "
                           f"({face['share of its frames']} of its {face['frames seen']} frames)"
                           for face in snapshot.faces.to_dict("records")))
    if snapshot.csv is not None:
        st.download_button("Download this session's results (CSV)", snapshot.csv, file_name="live_camera_faces.csv",
                           mime="text/csv", on_click="ignore")


st.set_page_config(page_title="Emotion Tracer", page_icon=":performing_arts:", layout="wide")
st.title("Emotion Tracer")
st.caption("Finds the faces in a photo or a short video (MediaPipe) and tells each one's emotion with a CNN "
           "trained on FER2013.")
analysis_options = sidebar_options()
try:
    model_path = webapp.resolve_model_path()
    analyzers = analyzer_pool(str(model_path), analysis_options.detector_range, analysis_options.min_confidence,
                              analysis_options.smoothing)
except ModelError as model_error:
    st.error(f"No usable emotion model: {model_error}")
    st.markdown(webapp.MODEL_HELP)
    st.stop()
sidebar_model(analyzers)
# Choosing a tab reruns the page, so the camera's component exists only while its tab is open.
photos_tab, video_tab, camera_tab = st.tabs(["Photo", "Video clip", "Live camera"], key="tab", on_change="rerun")
with photos_tab:
    photo_tab(analyzers)
with video_tab:
    clip_tab(analyzers, analysis_options)
if camera_tab.open:
    with camera_tab:
        live_tab(str(model_path), analysis_options, analyzers.classes)
