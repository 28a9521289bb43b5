"""Batch analysis of a corpus of videos on Ray (``python -m realtime.batch``; the code is in ``corpus.py``,
which needs the [batch] extra: Ray and pyarrow)."""
