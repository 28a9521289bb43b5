"""Results files: one row per face per frame, as CSV or JSON Lines (chosen by suffix)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
from pathlib import Path

from realtime.errors import OutputError, one_line
from realtime.io.files import KeptOutput, check_output_path, detach_hard_link
from realtime.rows import RESULT_COLUMNS, face_rows, faceless_frame_row
from realtime.types import AnalyzedFrame, FrameResult

RESULTS_SUFFIXES = (".csv", ".jsonl")
FLUSH_SECONDS = 1.0  # rows reach the file (and the disk) at least this often


class ResultsWriter(KeptOutput):
    """Streams the rows of ``realtime.rows`` to CSV or JSONL, straight into ``path``.

    Rows are flushed and fsynced when a row is written a second or more after the last flush, so a run
    that is killed (even with kill -9) or a power cut loses at most the rows of the last second of frames
    written (before a stalled stream's stall, too); they are also put in the file (not synced) whenever the frames'
    time has moved on a second, as the annotated video's fragments are, so that a kill -9 leaves as many seconds of
    rows as of video however fast the frames are analysed; whatever ends the ``with``
    block, the rows written so far are kept, every one whole: a write that fails (a full disk) is
    cut back to the last whole row, and the error says how many rows the file keeps. CSV columns:
    RESULT_COLUMNS and one probability column per class. JSONL rows carry the same fields with
    ``probabilities`` as a {class: p} object instead. Frames without faces add no rows, or with
    ``faceless_frame_rows`` one row each whose face columns are empty (JSONL: null).
    """

    def __init__(self, path: Path | str, classes: list[str], faceless_frame_rows: bool = False):
        self.path = check_output_path(path, RESULTS_SUFFIXES)
        self.classes = list(classes)
        self.faceless_frame_rows = faceless_frame_rows
        clashes = set(self.classes) & set(RESULT_COLUMNS)
        if clashes:
            raise ValueError(f"class names clash with result columns: {sorted(clashes)}")
        self.rows_written = 0  # rows in the file, whole
        self._jsonl = self.path.suffix.lower() == ".jsonl"
        self._pending: list[bytes] = []  # encoded rows not yet in the file
        self._whole_bytes = 0  # the file's length up to its last whole row
        self._failed = False
        detach_hard_link(self.path)  # a new file: the file's other names keep the rows they had
        try:
            self._file = open(self.path, "wb", buffering=0)
        except OSError as error:
            raise OutputError(f"{self.path}: cannot create it ({one_line(error)})", self.path) from error
        self._line = io.StringIO()
        self._csv = None if self._jsonl else csv.writer(self._line)
        self._flushed = time.monotonic()
        self._frame_time: float | None = None  # the time of the last frame written
        self._flushed_frame_time: float | None = None  # the time of the last frame put in the file
        if self._csv is not None:
            self._pending.append(self._csv_line([*RESULT_COLUMNS, *self.classes]))
            self.flush()

    def _csv_line(self, values: list) -> bytes:
        """One CSV line (quoted as the csv module quotes), encoded."""
        self._line.seek(0)
        self._line.truncate()
        self._csv.writerow(values)
        return self._line.getvalue().encode("utf-8")

    def write(self, result: FrameResult) -> None:
        """Append one row per face in ``result``; flush when a second has passed since the last flush."""
        rows = face_rows(result)
        if not rows and self.faceless_frame_rows:
            rows = [faceless_frame_row(result, self.classes)]
        for row in rows:
            probabilities = [row.pop(name) for name in self.classes]
            if self._csv is not None:
                self._pending.append(self._csv_line([*row.values(), *probabilities]))
            else:
                row["probabilities"] = dict(zip(self.classes, probabilities)) if row["face_id"] is not None else None
                self._pending.append((json.dumps(row) + "\n").encode("utf-8"))
        self._frame_time = result.timestamp
        if self._flushed_frame_time is None or result.timestamp < self._flushed_frame_time:  # (a folder's next file)
            self._flushed_frame_time = result.timestamp
        if time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self.flush()
        elif result.timestamp - self._flushed_frame_time >= FLUSH_SECONDS:
            self.flush(sync=False)

    def write_frame(self, analyzed: AnalyzedFrame) -> None:
        """Sink: the rows of one analysed frame."""
        self.write(analyzed.result)

    def flush(self, sync: bool = True) -> None:
        """Put the rows written so far in the file and (``sync``) on the disk; OutputError (the file cut back to its
        last whole row) when that fails."""
        if self._failed:
            return
        rows = len(self._pending) - (self._whole_bytes == 0 and self._csv is not None)  # not the header
        data = memoryview(b"".join(self._pending))
        self._pending.clear()
        try:
            while data:
                data = data[self._file.write(data):]
            if sync:
                os.fsync(self._file.fileno())
        except OSError as error:
            self._failed = True
            with contextlib.suppress(OSError):  # cutting back frees space: it works on a full disk
                os.ftruncate(self._file.fileno(), self._whole_bytes)
            kept = (f"the {self.rows_written:,} row{'s' * (self.rows_written != 1)} before that are kept"
                    if self.rows_written else "no row had been written yet")
            raise OutputError(f"{self.path}: cannot write to it ({one_line(error)}); {kept}", self.path) from error
        self._whole_bytes = self._file.tell()
        self.rows_written += rows
        self._flushed_frame_time = self._frame_time
        if sync:
            self._flushed = time.monotonic()

    def close(self) -> None:
        """Flush and close the file (only the CSV header when no face was seen)."""
        if self._file.closed:
            return
        try:
            self.flush()
            if os.fstat(self._file.fileno()).st_nlink == 0:
                raise OutputError(f"{self.path}: deleted while the run was writing it; its rows are lost", self.path)
        finally:
            self._file.close()
