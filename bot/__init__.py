"""llmauto's Telegram front end (python-telegram-bot v22, async, long polling).

It translates chat commands and button presses into engine calls and engine events into messages;
it holds no chain logic. Modules: `serve` (the one process: engine, scheduler, bot), `app` (the PTB
Application), `handlers` (commands, buttons, replies), `commands` (argument parsing, pure),
`callbacks` (button data, pure), `auth` (who may do what), `replies` (answers, and replies mapped
back to their chain), `render` (HTML text, escaped and split), `notify` (events to outbox rows),
`outbox` (the sender: pacing, coalescing, retries, progress cards), `pacer` (flood limits),
`report` (the run report), `summary` (the morning summary), `logsafe` (redaction).
"""
