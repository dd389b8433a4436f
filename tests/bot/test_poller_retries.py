"""Poller retries (issue #16: paths no test ran): a deleteWebhook that fails at start and
getUpdates calls that fail with 5xx are retried with a doubling pause, and polling goes on; the
bot keeps answering. Real `serve` in-process against the fake Bot API."""

from __future__ import annotations

import itertools
from pathlib import Path

from tests.bot.conftest import CHAT, OPERATOR, TOKEN, serving
from tests.conftest import make_settings
from tests.fakes.botapi import FakeBotApi


async def test_failed_polls_are_retried_with_a_doubling_pause(home: Path, fake_api: FakeBotApi) -> None:
    """Checked: with `delay` in Poller.run's TelegramError branch set to 0 (no backoff), this fails
    (the retries come at once); with `_retrying` returning after a failed try, it fails at the
    deleteWebhook check."""
    settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset({OPERATOR}), chat_id=CHAT,
                             api_base_url=fake_api.base_url)
    fake_api.fail_next("deleteWebhook", 500)
    async with serving(fake_api, settings) as served:
        await fake_api.wait_for(lambda api: "getUpdates" in api.arrived)
        assert [r.status for r in fake_api.requests("deleteWebhook")] == [500, 200]
        fake_api.fail_next("getUpdates", 502, times=3)
        await fake_api.wait_for(lambda api: [r.status for r in api.requests("getUpdates")][-4:] == [502, 502, 502, 200]
                                or None, timeout=30)
        tail = fake_api.requests("getUpdates")[-4:]
        gaps = [b.at - a.at for a, b in itertools.pairwise(tail)]
        # 0.5 * 2**failures: 1 s, 2 s, 4 s (a little slack for the time a request takes)
        assert gaps[0] >= 0.9 and gaps[1] >= 1.9 and gaps[2] >= 3.9, gaps
        await served.answer("/help", "marble runs")  # polling goes on after the failures
