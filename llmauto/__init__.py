"""The composition root: the `llmauto` command and `serve`, the only package that knows both
`engine` (chains, with no Telegram in it) and `bot` (the Telegram front end).

  cli           the `llmauto` command line: parses, loads settings, dispatches, turns errors into exit codes
  serve         `llmauto serve`: wires the store, the engine, the scheduler and the bot in one process
  foreground    `chain start NAME`: a run in this terminal with a live view, Ctrl-C stops it
  background    `chain start NAME --bg`: the same run in a detached child process
  pipe          `llmauto pipe`: one claude call, the answer on stdout
  schedule_cli  `llmauto schedule add|list|remove|pause|resume`
  textview      the terminal's text: status lines, the log, the live progress line
"""
