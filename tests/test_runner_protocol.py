"""The runner's side of claude's stdio permission protocol, against a stand-in agent that writes
its control request with the keys in another order than the CLI does today (the protocol does
not promise an order). Checked: with `take_line` matching the line's first bytes
('{"type":"control_request"') again, the request goes unanswered and the agent fails closed (red)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from engine.runner import Invocation, SubprocessRunner
from engine.stream import ErrorClass

AGENT = r'''
import json, sys
prompt = json.loads(sys.stdin.readline())
print(json.dumps({"request": {"subtype": "can_use_tool", "tool_name": "Bash", "input": {"command": "ls"}},
                  "request_id": "r1", "type": "control_request"}), flush=True)
answer = json.loads(sys.stdin.readline())
behavior = answer["response"]["response"]["behavior"]
print(json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": behavior,
                  "session_id": "s", "total_cost_usd": 0, "num_turns": 1}), flush=True)
sys.stdin.read()  # as claude: exit once stdin closes
'''


async def test_a_control_request_is_answered_whatever_its_key_order(tmp_path: Path) -> None:
    asked: list[str] = []

    async def handler(request: object) -> dict[str, object]:
        assert isinstance(request, dict)
        asked.append(str(request.get("tool_name")))
        return {"behavior": "allow", "updatedInput": request.get("input")}

    inv = Invocation(argv=(sys.executable, "-c", AGENT), stdin="go", cwd=tmp_path, env={}, timeout_s=30,
                     stall_s=None, kind="claude", on_permission=handler)
    result = await asyncio.wait_for(SubprocessRunner().run(
        inv, on_progress=lambda p: None, on_spawn=lambda pid: None, kill=asyncio.Event()), 30)
    assert asked == ["Bash"]
    assert (result.error_class, result.text) == (ErrorClass.OK, "allow")
