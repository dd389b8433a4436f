"""The database schema, as numbered migrations applied in order on open (PRAGMA user_version)."""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # m001_initial
    """
    CREATE TABLE chain_state (
        chain TEXT PRIMARY KEY,
        status TEXT NOT NULL DEFAULT 'READY',
        round INTEGER NOT NULL DEFAULT 1,          -- the current round number (1-based)
        next_link INTEGER NOT NULL DEFAULT 0,      -- index of the next link to run in that round
        rounds_counted INTEGER NOT NULL DEFAULT 0, -- rounds that count toward max_rounds
        consecutive_blocks INTEGER NOT NULL DEFAULT 0,
        failed_rounds INTEGER NOT NULL DEFAULT 0,
        round_ran INTEGER NOT NULL DEFAULT 0,      -- links run (not skipped) in the current round
        round_failed INTEGER NOT NULL DEFAULT 0,   -- of those, failed
        round_blocked INTEGER NOT NULL DEFAULT 0,  -- a link of the current round reported BLOCKED
        last_run_id INTEGER,
        stop_reason TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        chain TEXT NOT NULL,
        status TEXT NOT NULL,            -- RUNNING while it runs, then its final status
        origin TEXT NOT NULL,            -- cli | telegram | schedule | recovery
        chat_id INTEGER,                 -- the chat that started it, if any
        requested_by TEXT,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        stop_reason TEXT,
        cost_usd REAL NOT NULL DEFAULT 0,
        links_run INTEGER NOT NULL DEFAULT 0,
        passes INTEGER NOT NULL DEFAULT 0,
        owner TEXT                       -- the process that runs it (lease owner)
    );
    CREATE INDEX runs_chain ON runs(chain, id);
    CREATE TABLE link_runs (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL,
        chain TEXT NOT NULL,
        round INTEGER NOT NULL,
        link_index INTEGER NOT NULL,
        link TEXT NOT NULL,
        role TEXT NOT NULL,
        model TEXT,
        status TEXT NOT NULL,            -- running | done | skipped | interrupted
        error_class TEXT,
        error_message TEXT,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        duration_s REAL,
        cost_usd REAL NOT NULL DEFAULT 0,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        turns INTEGER NOT NULL DEFAULT 0,
        session_id TEXT,
        exit_code INTEGER,
        pid INTEGER,
        pid_start TEXT,                  -- the process's start time, so a reused pid is not killed
        current_tool TEXT,
        result_excerpt TEXT,
        attempt INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX link_runs_chain ON link_runs(chain, id);
    CREATE INDEX link_runs_run ON link_runs(run_id, id);
    CREATE INDEX link_runs_running ON link_runs(status) WHERE status = 'running';
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        run_id INTEGER,
        chain TEXT,
        kind TEXT NOT NULL,
        ts TEXT NOT NULL,
        data TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_chain ON events(chain, id);
    CREATE TABLE handoffs (
        id INTEGER PRIMARY KEY,
        chain TEXT NOT NULL,
        run_id INTEGER,
        link_run_id INTEGER,
        round INTEGER NOT NULL,
        link TEXT NOT NULL,              -- the link after which it was taken, or '(start)'
        ts TEXT NOT NULL,
        content TEXT NOT NULL
    );
    CREATE INDEX handoffs_chain ON handoffs(chain, id);
    CREATE TABLE sessions (
        chain TEXT NOT NULL,
        link TEXT NOT NULL,
        session_id TEXT NOT NULL,
        cwd TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (chain, link)
    );
    CREATE TABLE leases (
        chain TEXT PRIMARY KEY,
        owner TEXT NOT NULL,             -- host:pid:nonce
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        acquired_at TEXT NOT NULL,
        heartbeat_at TEXT NOT NULL
    );
    CREATE TABLE controls (
        id INTEGER PRIMARY KEY,
        chain TEXT NOT NULL,
        action TEXT NOT NULL,            -- stop | stop_now | pause | resume | answer
        reason TEXT,
        requested_by TEXT,
        ts TEXT NOT NULL,
        handled_at TEXT
    );
    CREATE INDEX controls_pending ON controls(chain) WHERE handled_at IS NULL;
    CREATE TABLE schedules (
        id INTEGER PRIMARY KEY,
        chain TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'cron',   -- cron | after
        expression TEXT,                     -- normalized cron (kind cron)
        original TEXT,
        tz TEXT,
        after_chain TEXT,                    -- kind after: fire when this chain ends
        only_all_done INTEGER NOT NULL DEFAULT 0,
        enabled INTEGER NOT NULL DEFAULT 1,
        overlap TEXT NOT NULL DEFAULT 'skip', -- skip | queue
        created_by TEXT,
        chat_id INTEGER,
        created_at TEXT NOT NULL,
        last_fire TEXT,
        last_outcome TEXT,
        last_run_id INTEGER
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        chat_id INTEGER NOT NULL,
        kind TEXT NOT NULL,                  -- note | alert | card | report | reply
        chain TEXT,
        run_id INTEGER,
        event_id INTEGER,
        text TEXT NOT NULL,                  -- HTML
        buttons TEXT,                        -- JSON [[{text, data}]]
        document_name TEXT,
        document TEXT,
        reply_to INTEGER,
        card_key TEXT,                       -- progress cards: one message edited in place
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,
        sent_at TEXT,
        message_id INTEGER,
        coalesced_into INTEGER,
        error TEXT
    );
    CREATE INDEX outbox_pending ON outbox(chat_id, id) WHERE sent_at IS NULL;
    CREATE TABLE messages (
        chat_id INTEGER NOT NULL,
        message_id INTEGER NOT NULL,
        chain TEXT,
        run_id INTEGER,
        kind TEXT NOT NULL,
        event_id INTEGER,
        card_key TEXT,
        text_hash TEXT,
        PRIMARY KEY (chat_id, message_id)
    );
    CREATE INDEX messages_card ON messages(card_key);
    CREATE TABLE cursors (
        name TEXT PRIMARY KEY,
        event_id INTEGER NOT NULL
    );
    """,
    # m002_schedule_armed_at
    """
    -- When a cron schedule was last added or resumed: firings before it (or while it was paused)
    -- are not "missed" when llmauto starts again.
    ALTER TABLE schedules ADD COLUMN armed_at TEXT;
    """,
    # m003_lease_pid_start
    """
    -- The lease holder's start time (/proc/PID/stat field 22): a live process that merely reuses
    -- a dead holder's pid does not keep the chain's lease.
    ALTER TABLE leases ADD COLUMN pid_start TEXT;
    """,
    # m004_handoff_same_as
    """
    -- A history row whose text equals the chain's latest stored version keeps no copy of it: it
    -- names that version instead (content ''), so rounds and links still map to a handoff.
    ALTER TABLE handoffs ADD COLUMN same_as INTEGER;
    """,
    # m005_schedule_queued_at
    """
    -- A cron firing with overlap `queue` that found its chain running: the slot waiting to start
    -- when that run ends, kept across restarts of serve (NULL: nothing waiting).
    ALTER TABLE schedules ADD COLUMN queued_at TEXT;
    """,
    # m006_outbox_outcome
    """
    -- How a delivered outbox row ended: 'sent' (Telegram answered with the message),
    -- 'possibly_delivered' (the request reached Telegram but its answer timed out: never sent again,
    -- so at most once), or 'refused' (Telegram refused it for good). NULL on rows from before.
    ALTER TABLE outbox ADD COLUMN outcome TEXT;
    CREATE INDEX outbox_card_key ON outbox(card_key) WHERE card_key IS NOT NULL;
    """,
    # m007_link_refusals
    """
    -- The tool calls claude refused in a link, told as `chain log` and /log show them
    -- ("Bash ×3 (mkdir -p …)"), NULL when none was refused.
    ALTER TABLE link_runs ADD COLUMN refusals TEXT;
    """,
    # m008_approvals
    """
    -- Tool calls that wait for a person's answer (approve.ask), and how each was decided.
    CREATE TABLE approvals (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL,
        chain TEXT NOT NULL,
        link_run_id INTEGER,
        round INTEGER NOT NULL,
        link TEXT NOT NULL,
        tool TEXT NOT NULL,
        input TEXT NOT NULL,             -- the call's input, JSON
        description TEXT,                -- the agent's stated reason
        suggestions TEXT,                -- claude's permission_suggestions, JSON
        status TEXT NOT NULL,            -- pending | approved | denied | timed_out | expired
        decided_by TEXT,
        decided_at TEXT,
        message TEXT,                    -- the deny reason given to the agent
        created_at TEXT NOT NULL
    );
    CREATE INDEX approvals_chain ON approvals(chain, status)
    """,
    # m009_route_bounces
    """
    -- Verdict routing and task pools (#13), committed with the chain's position after each link
    -- so a resumed run continues at the routed link and never counts a hop twice: the bounces
    -- of the current round per target link (JSON), the links run in it (the round's path), the
    -- round's task and its outcome not yet written to the pool ('' none, 'done', 'blocked').
    ALTER TABLE chain_state ADD COLUMN round_bounces TEXT NOT NULL DEFAULT '';
    ALTER TABLE chain_state ADD COLUMN round_path TEXT NOT NULL DEFAULT '';
    ALTER TABLE chain_state ADD COLUMN task_id TEXT;
    ALTER TABLE chain_state ADD COLUMN task_outcome TEXT NOT NULL DEFAULT '';
    """,
)
