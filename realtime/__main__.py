"""``python -m realtime``: see ``python -m realtime --help``."""

import sys

try:
    from realtime.cli import program_main
except KeyboardInterrupt:  # Ctrl-C while the libraries load: nothing started yet
    sys.exit(130)

sys.exit(program_main())
