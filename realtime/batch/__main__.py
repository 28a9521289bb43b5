"""``python -m realtime.batch``: analyse a corpus of videos on Ray (see realtime/batch/__init__.py)."""

import sys

from realtime.batch import main

sys.exit(main())
