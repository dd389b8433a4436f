"""llmauto's engine: chains of claude agents run as marble runs, with no Telegram in it.

Layout (one concept a module):
  settings   the frozen settings object read from the environment and `.env`
  errors     the exception tree
  clock      the injectable clock
  chains     chain definitions: load, apply defaults, validate
  prompts    prompt rendering: placeholders, until_full, wind-down
  handoff    reading the agents' state files safely (bounded), parsing ASSIGNED/BLOCKED
  statefiles the plain files in state/<chain>/, written atomically
  stream     parsing claude's stream-json into progress and a final result
  limits     usage-limit reset times from claude's messages
  runner     one link = one subprocess in its own process group
  policy     pure decisions: stop conditions, skip-if-not-assigned, wind-down
  marble     the run loop: rounds and links
  store      the one SQLite database (aiosqlite, WAL)
  events     event kinds and the in-process publisher
  engine     the facade the CLI, the bot and the scheduler call
  cron       schedule expressions and fire times (pure)
  scheduler  APScheduler wiring over persisted schedules
  cli        the `llmauto` command line
"""

__version__ = "0.1.0"
