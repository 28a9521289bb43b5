"""``python -m realtime.batch``: analyse a corpus of videos on Ray (see realtime/batch/corpus.py)."""

import sys

try:
    from realtime.batch.corpus import program_main
except ModuleNotFoundError as missing:  # the runtime installs without the [batch] extra
    if missing.name not in ("ray", "pyarrow"):
        raise
    sys.exit(f"error: batch analysis needs Ray and pyarrow ({missing.name} is not installed): "
             "pip install \".[batch]\" in the project's folder, or pip install -r requirements-batch.txt there")

sys.exit(program_main())
