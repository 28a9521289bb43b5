"""The one place results become flat rows: results files, web tables, timelines and DataFrames use it.

A row is one face in one frame: ``RESULT_COLUMNS`` and then one probability column per class.
"""

from __future__ import annotations

from collections.abc import Iterable

from realtime.types import FrameResult

# each result column's type (a class's probability column is a "float"), as DataFrames and Parquet files hold it
RESULT_COLUMN_TYPES = {"source": "str", "frame": "int", "time": "float", "face_id": "int", "x1": "int", "y1": "int",
                       "x2": "int", "y2": "int", "detection_score": "float", "label": "str", "confidence": "float"}
RESULT_COLUMNS = tuple(RESULT_COLUMN_TYPES)
PROBABILITY_DECIMALS = 4


def utf8_safe(text: str) -> str:
    """``text`` with what UTF-8 cannot hold (the bytes of a file name that is not UTF-8, which Python keeps as
    lone surrogates) written as backslash escapes: ``caf\\udce9.jpg``, as the summary prints it."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def face_rows(result: FrameResult) -> list[dict]:
    """One dict per face of ``result``: the RESULT_COLUMNS, then each class's probability (rounded)."""
    rows = []
    for face in result.faces:
        clashes = set(face.classes) & set(RESULT_COLUMNS)
        if clashes:
            raise ValueError(f"class names clash with result columns: {sorted(clashes)}")
        score = None if face.detection_score is None else round(float(face.detection_score), PROBABILITY_DECIMALS)
        row = {
            "source": utf8_safe(result.source),  # any file name, in any results file (CSV, JSON, Parquet)
            "frame": int(result.index),
            "time": round(float(result.timestamp), 3),
            "face_id": int(face.face_id),
            "x1": face.box.x1, "y1": face.box.y1, "x2": face.box.x2, "y2": face.box.y2,
            "detection_score": score,
            "label": face.label,
            "confidence": round(float(face.confidence), PROBABILITY_DECIMALS),
        }
        row.update((name, round(p, PROBABILITY_DECIMALS)) for name, p in face.emotions.items())
        rows.append(row)
    return rows


def faceless_frame_row(result: FrameResult, classes: Iterable[str]) -> dict:
    """The row that stands for an analysed frame without faces: its source, frame and time, every other column
    None (empty in a CSV), so that such a frame can be told from one not analysed."""
    row = dict.fromkeys([*RESULT_COLUMNS, *classes])
    row.update(source=utf8_safe(result.source), frame=int(result.index), time=round(float(result.timestamp), 3))
    return row


def results_rows(results: Iterable[FrameResult]) -> list[dict]:
    """The rows of many frames, in order."""
    return [row for result in results for row in face_rows(result)]


def rows_dataframe(rows: list[dict], classes: Iterable[str] = ()):
    """A pandas DataFrame of rows (columns RESULT_COLUMNS + classes even when there are no rows). Without rows its
    columns have their types (int64, float64, object for text), and a detection score is float64 (NaN for none),
    as a batch's Parquet files read back: frames without faces concatenated with others keep the numbers' types."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("to_dataframe() needs pandas: pip install pandas") from None
    if not rows:
        pandas_types = {"int": "int64", "float": "float64", "str": "object"}
        return pd.DataFrame({column: pd.Series(dtype=pandas_types[RESULT_COLUMN_TYPES.get(column, "float")])
                             for column in [*RESULT_COLUMNS, *classes]})
    table = pd.DataFrame(rows, columns=list(rows[0]))
    if "detection_score" in table:  # all None (a photo taken whole): object otherwise
        table["detection_score"] = pd.to_numeric(table["detection_score"], errors="coerce")
    return table
