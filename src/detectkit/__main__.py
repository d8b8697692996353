"""``python -m detectkit``: the same command line as ``detectkit``."""

from detectkit.cli import main

raise SystemExit(main())
