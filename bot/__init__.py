"""llmauto's Telegram front end (python-telegram-bot v22, async, long polling).

It translates chat commands and button presses into engine calls and engine events into messages;
it holds no chain logic. Modules: `serve` (the one process: engine, scheduler, bot), `app` (the PTB
Application and its handlers), `handlers` (commands and buttons), `auth` (who may do what),
`render` (HTML text, escaped and split), `notify` (events to outbox rows), `outbox` (the sender:
pacing, coalescing, retries, progress cards), `report` (the run report), `logsafe` (redaction).
"""
