"""llmauto's engine: chains of claude agents run as marble runs, with no Telegram in it.

Nothing here imports `bot` or `telegram` (tests/test_layering.py checks it); the command line and
`serve`, which know both, are the composition root `llmauto/`.

Layout (one concept a module; the left column is every module of the package):
 settings and values
  settings       the frozen settings object read from the environment and `.env`
  errors         the exception tree (stop and pause are control flow, not errors)
  clock          the injectable clock and sleeper
  zones          time zone names, found in any case, and the machine's own
  redact         secrets out of everything kept or sent: one Redactor
  records        eq, hash and repr of the frozen value types, written once (cheaper to import)
 chain definitions
  chains         chain definitions: frozen types, load, apply defaults, validate
  describe       how validation messages name a value a person wrote
  routing        verdict routing: where the marble goes after a link that passes judgement
  approvals      approval rules, pure: which tool calls run, are refused, or wait for a person
  tasks          task lists, pure: pool definitions, the task model, parsing a pool's text
  taskpool       task pools on disk: read, claim, mark done
  chaintasks     a chain's task pool from outside its run (`/task`, `chain task`)
 the run
  marble         the run loop: rounds and links, stop conditions, pause, BLOCKED waits
  hops           verdict routing and task pools inside a run: pure glue for marble
  run_tasks      the round's task of a run: taken from the pool at a round's start, settled after
  evaluate       a finished link evaluated, pure: handoff kept, BLOCKED, refusals judged, route, round's end
  policy         pure decisions: stop conditions, skip-if-not-assigned, wind-down
  handoff        pure parsing of the agents' handoff protocol (ASSIGNED, BLOCKED, headline)
  notes          operator notes: a person's answer written into the handoff, in the home's zone
  prompts        prompt rendering: placeholders, until_full, wind-down
  limits         usage-limit reset times from claude's messages, pure
  link           one attempt of one link: its argv, env, session, store records, process
  approval_desk  a run's approval desk: answers claude's permission questions, asks a person
  permissions    what a tool refusal looks like and how refusals are told
 agent processes
  claude_cli     the claude CLI contract: argv, stream-json input, budget flag, agent env
  runner         one link = one subprocess in its own process group, watched until it ends
  stream         parsing claude's stream-json into progress and a final result
  processes      process groups (signal, reap) and process identity (pid + start time)
  slots          the home-wide cap on agent processes, across llmauto processes
 state and events
  store          the one database of a home: runs, links, events, leases, ... (SQL written once)
  db             the database connection the store talks to, whichever backend; picks one
  db_sqlite      the default backend: the home's SQLite file (aiosqlite, or blocking sqlite3; WAL, BEGIN IMMEDIATE)
  loopless       a coroutine that never waits, run without an event loop (one-shot commands)
  db_postgres    the PostgreSQL backend (LLMAUTO_DATABASE_URL; psycopg, imported only then)
  pg_sql         the store's SQL translated to PostgreSQL's dialect, pure
  dburl          LLMAUTO_DATABASE_URL checked, and told without its password
  migrations     the database schema as numbered migrations
  statefiles     the plain files in state/<chain>/ that agents read and write, atomically
  events         event kinds and the in-process publisher
  event_types    each stored event kind as a frozen dataclass, to and from its stored JSON
  states         the chain and run states (StrEnum) and their icons
  viewmodel      facts the chat and the terminal views both show, computed once
 the facade and the scheduler
  engine         the facade the command line, the bot and the timer call
  leases         one chain in one process at a time: take, check, release, recover
  schedule_book  persisted schedules: the only code that sees their table
  cron           schedule expressions and fire times, pure
  cron_trigger   those fire times as an APScheduler 3 trigger (apart, so reading them skips APScheduler)
  timer          fires the persisted schedules inside `serve` (APScheduler 3)
  exposure       start-up check: is the bot token within the agents' reach?
 the distributed mode (#15: links run by workers on several hosts, through procrastinate)
  dist_settings  its settings: the queue's URL, heartbeat and lost-worker times
  linkjob        a link sent to a worker and its outcome, as JSON values
  queue_db       our tables beside procrastinate's: results (once per attempt), workers, claims
  account_slots  the account-wide cap on agents: PostgreSQL advisory locks
  remote         serve's side: the executor that enqueues a link and awaits its committed outcome
  relay          a remote link's permission questions answered by serve's desk; its live progress
  worker         `llmauto worker`: runs the links of its queues on this host
"""

__version__ = "0.1.0"
