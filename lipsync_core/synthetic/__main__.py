"""``python -m lipsync_core.synthetic --out DIR --speakers N --clips M --seed S``."""

from .cli import main

raise SystemExit(main())
