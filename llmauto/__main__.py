"""`python -m llmauto` is the `llmauto` command."""

from llmauto.cli import main

raise SystemExit(main())
