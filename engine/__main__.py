"""`python -m engine` is the `llmauto` command (kept: scripts, docs and `chain start --bg` use it).

The command line lives in the composition root `llmauto`; importing it only here, when run as a
program, keeps the engine package itself free of the bot.
"""

from llmauto.cli import main

raise SystemExit(main())
