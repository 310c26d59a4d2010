"""``python -m lipsync_core``: the command-line main job."""

from .cli import main

raise SystemExit(main())
