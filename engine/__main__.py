"""`python -m engine` is the `llmauto` command."""

from engine.cli import main

raise SystemExit(main())
