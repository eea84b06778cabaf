"""``python -m softgrad``: the command line."""

from softgrad.interfaces.cli import main

raise SystemExit(main())
