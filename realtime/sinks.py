"""What a sink is: anything the frame loop hands each analysed frame to.

Sinks: ``realtime.io.video.H264VideoWriter`` (annotated video), ``realtime.io.results_file.ResultsWriter``
(CSV/JSONL rows), ``realtime.io.window.DisplayWindow`` (on screen) and ``realtime.summary.RunSummary``.
File sinks are context managers that finish their file whatever ends the ``with`` block, keeping
what was written (README: What happens when something goes wrong).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from realtime.types import AnalyzedFrame


@runtime_checkable
class Sink(Protocol):
    """Receives every analysed frame in order; returning False asks the frame loop to stop."""

    def write_frame(self, analyzed: AnalyzedFrame) -> bool | None: ...
