"""``python -m lipsync_core.train``."""

import sys

from .cli import main

sys.exit(main())
