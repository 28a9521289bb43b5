"""A bounded hand-off between the analysis thread and a background decoder or encoder thread."""

from __future__ import annotations

import queue
from collections.abc import Callable

POLL_SECONDS = 0.1


class Handoff:
    """A bounded queue whose ``put`` gives up when ``stopped()`` turns true (no thread blocks forever)."""

    def __init__(self, size: int):
        self._queue: queue.Queue = queue.Queue(maxsize=size)

    def put(self, item, stopped: Callable[[], bool]) -> bool:
        """Queue ``item``, waiting while the queue is full; False if ``stopped()`` became true first."""
        while not stopped():
            try:
                self._queue.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def get(self):
        """The next item (waits for one)."""
        return self._queue.get()

    def clear(self) -> None:
        """Drop everything queued."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return
