"""``python -m realtime``: see ``python -m realtime --help``."""

import sys

from realtime.cli import main

sys.exit(main())
