"""Results files: one row per face per frame, as CSV or JSON Lines (chosen by suffix)."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

from realtime.errors import OutputError, one_line
from realtime.io.files import KeptOutput, check_output_path
from realtime.rows import RESULT_COLUMNS, face_rows
from realtime.types import AnalyzedFrame, FrameResult

RESULTS_SUFFIXES = (".csv", ".jsonl")
FLUSH_SECONDS = 1.0  # rows reach the file (and the disk) at least this often


class ResultsWriter(KeptOutput):
    """Streams the rows of ``realtime.rows`` to CSV or JSONL, straight into ``path``.

    Rows are flushed and fsynced at least once a second, so a run that is killed (even with
    kill -9) or a power cut loses at most the last second of rows; whatever ends the ``with``
    block, the rows written so far are kept. CSV columns: RESULT_COLUMNS and one probability
    column per class. JSONL rows carry the same fields with ``probabilities`` as a {class: p}
    object instead. Frames without faces add no rows.
    """

    def __init__(self, path: Path | str, classes: list[str]):
        self.path = check_output_path(path, RESULTS_SUFFIXES)
        self.classes = list(classes)
        clashes = set(self.classes) & set(RESULT_COLUMNS)
        if clashes:
            raise ValueError(f"class names clash with result columns: {sorted(clashes)}")
        self.rows_written = 0
        self._jsonl = self.path.suffix.lower() == ".jsonl"
        try:
            self._file = open(self.path, "w", newline="", encoding="utf-8")
        except OSError as error:
            raise OutputError(f"{self.path}: cannot create it ({one_line(error)})", self.path) from error
        self._csv = None if self._jsonl else csv.writer(self._file)
        self._flushed = time.monotonic()
        if self._csv is not None:
            self._guarded(self._csv.writerow, [*RESULT_COLUMNS, *self.classes])
            self.flush()

    def _guarded(self, write, *args) -> None:
        """Run a write, turning an OSError (e.g. a full disk) into an OutputError."""
        try:
            write(*args)
        except OSError as error:
            kept = (f"the {self.rows_written:,} row{'s' * (self.rows_written != 1)} before that are kept"
                    if self.rows_written else "no row had been written yet")
            raise OutputError(f"{self.path}: cannot write to it ({one_line(error)}); {kept}", self.path) from error

    def write(self, result: FrameResult) -> None:
        """Append one row per face in ``result``; flush when a second has passed since the last flush."""
        for row in face_rows(result):
            probabilities = [row.pop(name) for name in self.classes]
            if self._csv is not None:
                self._guarded(self._csv.writerow, [*row.values(), *probabilities])
            else:
                row["probabilities"] = dict(zip(self.classes, probabilities))
                self._guarded(self._file.write, json.dumps(row) + "\n")
            self.rows_written += 1
        if time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self.flush()

    def write_frame(self, analyzed: AnalyzedFrame) -> None:
        """Sink: the rows of one analysed frame."""
        self.write(analyzed.result)

    def flush(self) -> None:
        """Put the rows written so far in the file and on the disk."""
        self._guarded(self._file.flush)
        self._guarded(os.fsync, self._file.fileno())
        self._flushed = time.monotonic()

    def close(self) -> None:
        """Flush and close the file (only the CSV header when no face was seen)."""
        if self._file.closed:
            return
        try:
            self.flush()
        finally:
            try:
                self._file.close()
            except OSError:  # the flush above already reported what could not be written
                pass
