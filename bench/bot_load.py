"""The bot under load: 50 chains (3 links each, agents sleeping 0.1-2 s) run at once and report every
link into one group chat, through `serve` against the fake Bot API (with Telegram-like flood limits:
1 message/s per chat, 20/min per group, 30/s overall). Meanwhile eight users ask /status in their
private chats in turn (each about every 1.2 s). Measured: /status reply latency (user message in → reply accepted by the API),
notification delivery latency (link end → message accepted), notes coalesced, 429s received."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import time
from datetime import datetime
from typing import Any

from bench.common import summary_ms, temp_home, write_chain
from bot.pacer import Pacer
from llmauto.serve import run_serve
from tests.conftest import make_settings
from tests.fakes.botapi import FakeBotApi

TOKEN = "123456:BENCH-token-not-real-abcdefghijklmnopq"
USER = 111
USERS = tuple(range(111, 119))  # eight people asking in turn: replies are paced per chat, not overall
GROUP = -100200


async def measure(chains: int = 50, links: int = 3, seed: int = 11) -> dict[str, Any]:
    rng = random.Random(seed)
    home = temp_home()
    sleep = shutil.which("sleep") or "/bin/sleep"
    for i in range(chains):
        write_chain(home, f"c{i:02d}", {"max_rounds": 1, "links": [
            {"name": f"l{j}", "command": [sleep, f"{rng.uniform(0.1, 2.0):.2f}"], "telegram_update": True}
            for j in range(links)]})
    wall_offset = time.time() - time.monotonic()
    async with FakeBotApi(TOKEN, per_chat_interval_s=1.0, group_per_minute=20, global_per_second=30) as api:
        for user in USERS:
            api.add_chat(user)
        api.add_chat(GROUP, "supergroup")
        settings = make_settings(home, telegram_token=TOKEN, allowed_user_ids=frozenset(USERS), chat_id=GROUP,
                                 api_base_url=api.base_url, max_parallel_links=64)
        stop, ready = asyncio.Event(), asyncio.Event()
        parts: dict[str, Any] = {}

        def keep(p: dict[str, Any]) -> None:
            parts.update(p)

        serve = asyncio.create_task(run_serve(settings, stop, ready=ready, poll_timeout_s=5, pacer=Pacer(), on_ready=keep))
        await asyncio.wait_for(ready.wait(), 30)
        engine = parts["engine"]
        for i in range(chains):
            await engine.start_chain(f"c{i:02d}", origin="bench")
        latencies: list[float] = []
        runs = asyncio.gather(*(engine.wait(f"c{i:02d}") for i in range(chains)))
        turn = 0
        while not runs.done():
            user = USERS[turn % len(USERS)]
            turn += 1
            sent = api.user_message(user_id=user, text="/status")
            asked = time.monotonic()
            await api.wait_for(lambda a, mid=sent["message_id"], u=user: any(
                m.message_id > mid and "Chains" in m.plain for m in a.messages(u)), timeout=10)
            latencies.append(time.monotonic() - asked)
            await asyncio.sleep(0.15)  # each person asks about every 1.2 s
        await runs
        finished = {(e.chain, e.data["link"]): datetime.fromisoformat(e.ts).timestamp()
                    for e in await engine.store.events_after(0, 100_000) if e.kind == "link_finished"}

        def delivered(a: FakeBotApi) -> bool:
            text = "\n".join(m.plain for m in a.messages(GROUP))
            return text.count(" · round 1 · l") >= chains * links

        await api.wait_for(delivered, timeout=600)
        arrivals: dict[tuple[str, str], float] = {}
        for rec in api.requests("sendMessage"):
            if str(rec.params.get("chat_id")) != str(GROUP) or rec.status != 200:
                continue
            for chain, link in re.findall(r"✅ <b>(c\d+)</b> · round 1 · (l\d)", str(rec.params.get("text", ""))):
                arrivals.setdefault((chain, link), rec.at + wall_offset)
        delays = [arrivals[k] - finished[k] for k in finished if k in arrivals]
        coalesced = parts["sender"].coalesced
        rejected = len([r for r in api.rejected if r[1] == 429])
        stop.set()
        await asyncio.wait_for(serve, 60)
    shutil.rmtree(home, ignore_errors=True)
    return {"status": summary_ms(latencies), "delivery": summary_ms(delays), "coalesced": coalesced,
            "rejected_429": rejected, "notes": len(delays)}


if __name__ == "__main__":
    print(asyncio.run(measure()))
