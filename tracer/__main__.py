"""``python -m tracer`` is ``temporal-tracer``."""

from .cli import main

raise SystemExit(main())
