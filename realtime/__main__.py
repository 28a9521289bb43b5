"""``python -m realtime``: see ``python -m realtime --help``."""

import sys

try:
    from realtime.cli import main
except KeyboardInterrupt:  # Ctrl-C while the libraries load: nothing started yet
    sys.exit(130)

sys.exit(main())
