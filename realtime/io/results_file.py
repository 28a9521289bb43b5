"""Results files: one row per face per frame, as CSV or JSON Lines (chosen by suffix)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from realtime.errors import OutputError, one_line
from realtime.io.files import check_output_path, partial_path, remove_quietly
from realtime.rows import RESULT_COLUMNS, face_rows
from realtime.types import AnalyzedFrame, FrameResult

RESULTS_SUFFIXES = (".csv", ".jsonl")


class ResultsWriter:
    """Streams the rows of ``realtime.rows`` to CSV or JSONL, atomically like the video writer.

    CSV columns: RESULT_COLUMNS and one probability column per class. JSONL rows carry the same
    fields with ``probabilities`` as a {class: p} object instead. Frames without faces add no rows.
    """

    def __init__(self, path: Path | str, classes: list[str]):
        self.path = check_output_path(path, RESULTS_SUFFIXES)
        self.classes = list(classes)
        clashes = set(self.classes) & set(RESULT_COLUMNS)
        if clashes:
            raise ValueError(f"class names clash with result columns: {sorted(clashes)}")
        self.rows_written = 0
        self._jsonl = self.path.suffix.lower() == ".jsonl"
        self._temp = partial_path(self.path)
        try:
            self._file = open(self._temp, "x", newline="", encoding="utf-8")
        except OSError as error:
            raise OutputError(f"{self.path}: cannot create it ({one_line(error)})", self.path) from error
        self._csv = None if self._jsonl else csv.writer(self._file)
        if self._csv is not None:
            self._csv.writerow([*RESULT_COLUMNS, *self.classes])

    def write(self, result: FrameResult) -> None:
        """Append one row per face in ``result``."""
        for row in face_rows(result):
            probabilities = [row.pop(name) for name in self.classes]
            try:
                if self._csv is not None:
                    self._csv.writerow([*row.values(), *probabilities])
                else:
                    row["probabilities"] = dict(zip(self.classes, probabilities))
                    self._file.write(json.dumps(row) + "\n")
            except OSError as error:
                raise OutputError(f"{self.path}: cannot write to it ({one_line(error)})", self.path) from error
            self.rows_written += 1

    def write_frame(self, analyzed: AnalyzedFrame) -> None:
        """Sink: the rows of one analysed frame."""
        self.write(analyzed.result)

    def close(self) -> None:
        """Finish the file and move it into place (a file with only the header when no face was seen)."""
        try:
            self._file.close()
            os.replace(self._temp, self.path)
        except BaseException as error:
            remove_quietly(self._temp)
            if isinstance(error, OSError):
                raise OutputError(f"{self.path}: cannot finish it ({one_line(error)})", self.path) from error
            raise

    def discard(self) -> None:
        """Delete the partial output."""
        self._file.close()
        remove_quietly(self._temp)

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.close()
        else:
            self.discard()
