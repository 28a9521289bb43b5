"""What a run saw: frames, faces, processing speed and each tracked face's dominant emotion."""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from realtime.types import AnalyzedFrame, FrameResult

# A run with more tracked faces than this (a folder of photos) shows this many rows of its face table, after a line
# on the share of each dominant emotion: every face is in the results file (--results).
FACE_ROWS_SHOWN = 20
NAMES_SHOWN = 5  # of the sources in which no face was found


@dataclass
class FaceSummary:
    """One tracked face (an id within one source) over a run."""

    source: str
    face_id: int
    labels: Counter = field(default_factory=Counter)

    @property
    def frames(self) -> int:
        """Frames in which the face was seen."""
        return sum(self.labels.values())

    @property
    def dominant(self) -> tuple[str, float]:
        """The most frequent label and the share of the face's frames it had (ties: first seen)."""
        label, count = self.labels.most_common(1)[0]
        return label, count / self.frames


@dataclass
class RunSummary:
    """Accumulates FrameResults; ``format()`` gives the table printed at the end of a run."""

    frames: int = 0
    faces: int = 0  # face detections summed over all frames
    frames_with_faces: int = 0
    seconds: float = 0.0  # time spent reading and processing frames
    outages: int = 0  # live sources' outages that the run waited through
    silent_seconds: float = 0.0  # of ``seconds``, the waits through those outages (left out of frames/s)
    sources: list[str] = field(default_factory=list)
    tracked: dict[tuple[str, int], FaceSummary] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # what was lost, skipped or cut short, a line each
    failed_outputs: int = 0  # of the problems: outputs that could not be written whole
    whole_image: bool = False  # every frame is classified whole on request (--whole-image): none counts below
    taken_whole: int = 0  # small photos without a detected face classified whole, as face crops (no score)

    def note(self, problem: str, output_failed: bool = False) -> None:
        """Record one thing the run could not analyse (a damaged stretch, a skipped file, an outage) or, with
        ``output_failed``, a file whose output could not be written whole (the line says what it keeps)."""
        self.problems.append(printable(" ".join(problem.split())))
        self.failed_outputs += output_failed

    def add(self, result: FrameResult, source: str = "", seconds: float = 0.0) -> None:
        """Count one processed frame of ``source`` that took ``seconds``."""
        if source not in self.sources:
            self.sources.append(source)
        self.frames += 1
        self.faces += len(result.faces)
        self.frames_with_faces += bool(result.faces)
        self.taken_whole += not self.whole_image and any(face.detection_score is None for face in result.faces)
        self.seconds += seconds
        for face in result.faces:
            key = (source, face.face_id)
            if key not in self.tracked:
                self.tracked[key] = FaceSummary(source, face.face_id)
            self.tracked[key].labels[face.label] += 1

    def add_outages(self, outages: int, seconds: float) -> None:
        """Count ``outages`` of a live source, during which the run waited ``seconds`` for a frame: frames/s
        leaves them out (it is the rate while frames came) and the first line reports them."""
        self.outages += outages
        self.silent_seconds += seconds

    def write_frame(self, analyzed: AnalyzedFrame) -> None:
        """Sink: count one analysed frame."""
        self.add(analyzed.result, analyzed.result.source, analyzed.seconds)

    @property
    def fps(self) -> float:
        """Frames processed per second, outages left out (0 before any timed frame)."""
        busy = self.seconds - self.silent_seconds
        return self.frames / busy if busy > 0 else 0.0

    def format(self) -> str:
        """A short plain-text report: totals, one row per tracked face, the small images taken whole, then the
        problems, if any."""
        # faces not all found by the detector (images taken whole) are faces, not face detections
        counted = "face" if self.whole_image or self.taken_whole else "face detection"
        lines = [f"{self.frames} frame{'s' * (self.frames != 1)}, {self.faces} {counted}{'s' * (self.faces != 1)}"
                 + f" (whole image{'s' * (self.faces != 1)})" * self.whole_image
                 + f" in {self.frames_with_faces} frame{'s' * (self.frames_with_faces != 1)}"
                 + (f", {self.fps:.1f} frames/s" if self.fps > 0 else "") + self._outages()]
        if not self.tracked:
            lines.append("no faces found")
        else:
            lines.extend(self._faceless_sources())
            if len(self.tracked) > FACE_ROWS_SHOWN:
                lines.append(self._emotion_shares())
            lines.extend(self._face_table())
        if self.taken_whole:
            several = self.taken_whole != 1
            lines.append(f"{self.taken_whole} small image{'s' * several} without a detected face "
                         f"{'were' if several else 'was'} taken whole as {'face crops' if several else 'a face crop'}"
                         " (--no-small-images-whole turns this off)")
        if self.problems:
            kept = "everything analysed is kept in the outputs"
            if self.failed_outputs:
                kept = (f"{self.failed_outputs} output{'s' * (self.failed_outputs != 1)} could not be written whole, "
                        "each line says what is kept; everything else analysed is kept")
            lines.append(f"incomplete ({len(self.problems)} problem{'s' * (len(self.problems) != 1)}; {kept}):")
            lines.extend(f"  {problem}" for problem in self.problems)
        return "\n".join(lines)

    def _outages(self) -> str:
        """What the first line says of outages: nothing when there were none."""
        if not self.outages:
            return ""
        return (f"{' while frames came' * (self.fps > 0)} (none came for {self.silent_seconds:.1f} s "
                f"in {self.outages} outage{'s' * (self.outages != 1)})")

    def _faceless_sources(self) -> list[str]:
        """Of several sources, a line naming those in which no face was found (a few, then how many more)."""
        with_faces = {face.source for face in self.tracked.values()}
        faceless = [source for source in self.sources if source not in with_faces]
        if len(self.sources) < 2 or not faceless:
            return []
        names = ", ".join(printable(source) for source in faceless[:NAMES_SHOWN])
        more = f" and {len(faceless) - NAMES_SHOWN} more" if len(faceless) > NAMES_SHOWN else ""
        return [f"no face found in {len(faceless)} of {len(self.sources)} files: {names}{more}"]

    def _emotion_shares(self) -> str:
        """The share of the tracked faces that had each dominant emotion, most common first."""
        counts = Counter(face.dominant[0] for face in self.tracked.values())
        percents = [(label, f"{count / len(self.tracked):.0%}") for label, count in counts.most_common()]
        shares = ", ".join(f"{label} {'<1%' if percent == '0%' else percent}" for label, percent in percents)
        return f"dominant emotion of the {len(self.tracked)} faces: {shares}"

    def _face_table(self) -> list[str]:
        """One line per tracked face under a header, columns aligned (the first FACE_ROWS_SHOWN, then how many
        more)."""
        several_sources = len(self.sources) > 1
        header = (["source"] if several_sources else []) + ["face", "frames", "dominant emotion", "share"]
        rows = []
        for face in list(self.tracked.values())[:FACE_ROWS_SHOWN]:
            label, share = face.dominant
            rows.append(([printable(face.source)] if several_sources else [])
                        + [str(face.face_id), str(face.frames), label, f"{share * 100:.0f}%"])
        widths = [max(display_width(row[column]) for row in [header, *rows]) for column in range(len(header))]
        lines = ["  ".join(cell + " " * (width - display_width(cell)) for cell, width in zip(row, widths)).rstrip()
                 for row in [header, *rows]]
        if len(self.tracked) > FACE_ROWS_SHOWN:
            more = len(self.tracked) - FACE_ROWS_SHOWN
            lines.append(f"... and {more} more face{'s' * (more != 1)} (every face's rows: --results)")
        return lines


def printable(text: str) -> str:
    """``text`` with control characters (a newline in a file name) written as escapes, so tables stay one row a line."""
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in text)


def display_width(text: str) -> int:
    """The columns ``text`` takes on a terminal (as wcswidth counts them): two for East Asian wide characters and
    emoji, none for marks drawn on the character before (accents as macOS writes them apart, Thai and Indic vowel
    signs), format characters, and the vowels and finals of Korean written apart (macOS again)."""
    return sum(0 if unicodedata.category(character) in ("Mn", "Me", "Cf") or "\u1160" <= character <= "\u11ff"
               else 2 if unicodedata.east_asian_width(character) in "WF" else 1 for character in text)


def shortened(text: str, columns: int) -> str:
    """``text`` in at most ``columns`` terminal columns: its middle left out ("…") when it is longer."""
    if display_width(text) <= columns:
        return text
    head, tail = [], []
    room = columns - 1
    for index in range(len(text)):  # from both ends in turn, the end's last characters (a take number) kept
        end = text[-1 - index // 2] if index % 2 == 0 else text[index // 2]
        if display_width(end) > room:
            break
        room -= display_width(end)
        (tail if index % 2 == 0 else head).append(end)
    return "".join(head) + "…" + "".join(reversed(tail))
