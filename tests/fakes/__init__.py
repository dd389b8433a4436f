"""Stand-ins for the outside world, used by the tests: a fake `claude` executable, a loopback mock of
the Anthropic Messages API (for the real Claude Code CLI), and a fake Telegram Bot API server."""
