"""A loopback mock of the Anthropic Messages API, for driving the real Claude Code CLI offline.

Start it with ``with MockAnthropic(responder) as api:`` and point the CLI at it with
``ANTHROPIC_BASE_URL=api.base_url`` (see ``tests.fakes.claude_env.offline_env``).

The server runs in a background thread (``ThreadingHTTPServer`` on 127.0.0.1, port 0), so it
serves a CLI subprocess whether the test is sync or async. It answers:

- ``POST /v1/messages`` (the CLI adds ``?beta=true``): server-sent events (``message_start``,
  ``content_block_start``, ``content_block_delta`` with ``text_delta`` / ``input_json_delta``,
  ``content_block_stop``, ``message_delta``, ``message_stop``) when the request says
  ``"stream": true`` (the CLI always does), else one JSON message;
- ``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``;
- anything else: 404 with an Anthropic-shaped ``not_found_error`` body (CLI 2.1.197 sends a
  ``HEAD /`` first and is content with a 404). Unknown paths are recorded like every other request.

Which reply a ``/v1/messages`` request gets is decided by the *script*: a callable
``responder(request: dict) -> Reply`` (the decoded JSON body), or a list of ``Reply`` objects
consumed in order (``Reply.text("done")`` once it is empty). Side requests the CLI makes on its own
(a title / topic request to a small model, recognised by ``is_side_request``) get a short text
answer from ``side_responder`` and never reach the script.

Every request is recorded in ``api.requests`` as a ``Recorded`` (method, path, headers without the
key, decoded JSON body, whether it was a side request, and the status answered).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "MockAnthropic",
    "Recorded",
    "Reply",
    "agent_responder",
    "has_tool_result",
    "is_side_request",
    "last_user_text",
    "tool_results",
]

_SECRET_HEADERS = {"x-api-key", "authorization", "proxy-authorization", "cookie"}

_ERROR_TYPES = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed size."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


@dataclass
class Reply:
    """One answer to a ``/v1/messages`` request.

    ``blocks`` are content blocks as the API returns them (``{"type": "text", "text": ...}`` or
    ``{"type": "tool_use", "id": ..., "name": ..., "input": {...}}``). A ``status`` other than 200
    makes it an error reply with the API's error JSON shape and ``headers`` added.
    ``delay_s`` waits before answering (before any byte of the response).
    """

    blocks: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    status: int = 200
    error_type: str | None = None
    error_message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    input_tokens: int = 12
    output_tokens: int = 5
    delay_s: float = 0.0

    @classmethod
    def text(cls, text: str, **kw: Any) -> Reply:
        return cls(blocks=[{"type": "text", "text": text}], stop_reason="end_turn", **kw)

    @classmethod
    def tool_use(
        cls,
        name: str,
        tool_input: dict[str, Any],
        *,
        text: str | None = None,
        tool_id: str | None = None,
        **kw: Any,
    ) -> Reply:
        blocks: list[dict[str, Any]] = []
        if text:
            blocks.append({"type": "text", "text": text})
        blocks.append(
            {
                "type": "tool_use",
                "id": tool_id or "toolu_" + uuid.uuid4().hex[:24],
                "name": name,
                "input": tool_input,
            }
        )
        return cls(blocks=blocks, stop_reason="tool_use", **kw)

    @classmethod
    def bash(cls, command: str, *, description: str = "Run a command", **kw: Any) -> Reply:
        return cls.tool_use("Bash", {"command": command, "description": description}, **kw)

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> Reply:
        etype, emsg = _ERROR_TYPES.get(status, ("api_error", "Error"))
        return cls(
            status=status,
            error_type=error_type or etype,
            error_message=message or emsg,
            headers=dict(headers or {}),
            **kw,
        )

    @classmethod
    def overloaded(cls, **kw: Any) -> Reply:
        return cls.error(529, **kw)

    @classmethod
    def rate_limited(
        cls, *, resets_at: int | None = None, rejected: bool = True, **kw: Any
    ) -> Reply:
        """429; with ``rejected`` the unified-limit headers of an exhausted account limit."""
        reset = int(resets_at if resets_at is not None else time.time() + 3600)
        headers = {"retry-after": str(max(1, reset - int(time.time())))}
        if rejected:
            headers.update(
                {
                    "anthropic-ratelimit-unified-status": "rejected",
                    "anthropic-ratelimit-unified-reset": str(reset),
                    "anthropic-ratelimit-unified-5h-status": "rejected",
                    "anthropic-ratelimit-unified-5h-reset": str(reset),
                    "anthropic-ratelimit-unified-5h-utilization": "1.0",
                    "anthropic-ratelimit-unified-representative-claim": "five_hour",
                }
            )
        headers.update(kw.pop("headers", {}) or {})
        return cls.error(429, headers=headers, **kw)

    @classmethod
    def not_found_model(cls, model: str, **kw: Any) -> Reply:
        return cls.error(404, f"model: {model}", **kw)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    side: bool = False
    status: int = 0
    time: float = 0.0

    @property
    def route(self) -> str:
        """The path without the query string."""
        return self.path.split("?", 1)[0]


# --- looking into requests ---------------------------------------------------------------------


def _content_list(message: dict[str, Any]) -> list[Any]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content if isinstance(content, list) else []


def tool_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_result blocks of the request's last user message."""
    messages = request.get("messages") or []
    if not messages or messages[-1].get("role") != "user":
        return []
    return [
        b
        for b in _content_list(messages[-1])
        if isinstance(b, dict) and b.get("type") == "tool_result"
    ]


def has_tool_result(request: dict[str, Any]) -> bool:
    return bool(tool_results(request))


def last_user_text(request: dict[str, Any]) -> str:
    """All text blocks of the last user message, joined (system reminders included)."""
    for message in reversed(request.get("messages") or []):
        if message.get("role") == "user":
            return "\n".join(
                b.get("text", "")
                for b in _content_list(message)
                if isinstance(b, dict) and b.get("type") == "text"
            )
    return ""


def _system_text(request: dict[str, Any]) -> str:
    system = request.get("system")
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(b.get("text", "") for b in system if isinstance(b, dict))
    return ""


_MAIN_LOOP_MARKERS = ("You are an interactive agent", "Claude Agent SDK")


def is_side_request(request: dict[str, Any]) -> bool:
    """A request the CLI makes on its own, not a turn of the agent's conversation.

    The agent's turns offer tools and carry the main system prompt (2.1.x: "You are a Claude agent,
    built on Anthropic's Claude Agent SDK." + "You are an interactive agent that helps users ...",
    also with ``--tools ""``, which sends an empty tool list). Anything else (session titles,
    topic detection, quota probes: none were seen from 2.1.197 in print mode) is a side request.
    """
    if request.get("tools"):
        return False
    system = _system_text(request)
    return not any(marker in system for marker in _MAIN_LOOP_MARKERS)


def default_side_responder(request: dict[str, Any]) -> Reply:
    system = _system_text(request).lower()
    if "json" in system:
        return Reply.text('{"title": "Test session", "isNewTopic": false}')
    return Reply.text("Test session")


# --- ready responders --------------------------------------------------------------------------


def agent_responder(
    command: str,
    final_text: str = "done",
    *,
    tool: str = "Bash",
    tool_input: dict[str, Any] | None = None,
) -> Callable[[dict[str, Any]], Reply]:
    """The common agent pattern: the first turn of a conversation runs one tool (by default Bash
    with ``command``); once the last user message carries a tool_result, answer ``final_text``."""

    def respond(request: dict[str, Any]) -> Reply:
        if has_tool_result(request):
            return Reply.text(final_text)
        if tool == "Bash":
            return Reply.bash(command)
        return Reply.tool_use(tool, tool_input or {})

    return respond


# --- the server --------------------------------------------------------------------------------


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class MockAnthropic:
    """A scripted loopback Anthropic API. Use as a context manager (sync or in async tests)."""

    def __init__(
        self,
        script: Callable[[dict[str, Any]], Reply] | Iterable[Reply] | None = None,
        *,
        side_responder: Callable[[dict[str, Any]], Reply] | None = None,
        model_override: str | None = None,
    ) -> None:
        self._lock = threading.RLock()
        if script is None:
            self._responder: Callable[[dict[str, Any]], Reply] = lambda _r: Reply.text("ok")
            self._queue: list[Reply] | None = None
        elif callable(script):
            self._responder = script
            self._queue = None
        else:
            self._queue = list(script)
            self._responder = self._from_queue
        self.side_responder = side_responder or default_side_responder
        self.model_override = model_override
        self.requests: list[Recorded] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # script plumbing
    def _from_queue(self, _request: dict[str, Any]) -> Reply:
        assert self._queue is not None
        if self._queue:
            return self._queue.pop(0)
        return Reply.text("done")

    def push(self, *replies: Reply) -> None:
        """Append replies to a queue script."""
        with self._lock:
            if self._queue is None:
                raise TypeError("push() needs a queue script, not a responder")
            self._queue.extend(replies)

    # lifecycle
    def start(self) -> MockAnthropic:
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="mock-anthropic", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> MockAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> MockAnthropic:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # queries for assertions
    def recorded(self) -> list[Recorded]:
        with self._lock:
            return list(self.requests)

    def message_requests(self, *, include_side: bool = False) -> list[Recorded]:
        return [
            r
            for r in self.recorded()
            if r.method == "POST" and r.route == "/v1/messages" and (include_side or not r.side)
        ]

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.recorded()]

    # answering
    def _decide(self, body: dict[str, Any]) -> tuple[Reply, bool]:
        side = is_side_request(body)
        if side:
            return self.side_responder(body), True
        with self._lock:
            return self._responder(body), False

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)


def _make_handler(mock: MockAnthropic) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "mock-anthropic/1"

        def log_message(self, format: str, *args: Any) -> None:  # silence stderr
            pass

        # helpers
        def _read_body(self) -> Any:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not raw:
                return None
            try:
                return json.loads(raw)
            except ValueError:
                return raw.decode("utf-8", "replace")

        def _headers_dict(self) -> dict[str, str]:
            return {
                k.lower(): v for k, v in self.headers.items() if k.lower() not in _SECRET_HEADERS
            }

        def _send_json(
            self, status: int, payload: Any, headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", "req_" + uuid.uuid4().hex[:24])
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        def _not_found(self) -> None:
            self._send_json(
                404,
                {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}},
            )

        # verbs
        def do_GET(self) -> None:
            self._handle("GET")

        def do_HEAD(self) -> None:
            rec = Recorded(
                "HEAD", self.path, self._headers_dict(), None, status=404, time=time.time()
            )
            mock._record(rec)
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def _handle(self, method: str) -> None:
            body = self._read_body() if method in ("POST", "PUT") else None
            rec = Recorded(method, self.path, self._headers_dict(), body, time=time.time())
            route = rec.route
            try:
                if method == "POST" and route == "/v1/messages" and isinstance(body, dict):
                    reply, side = mock._decide(body)
                    rec.side = side
                    rec.status = reply.status
                    mock._record(rec)
                    self._answer_messages(body, reply)
                elif method == "POST" and route == "/v1/messages/count_tokens":
                    rec.status = 200
                    mock._record(rec)
                    size = len(json.dumps(body or {}))
                    self._send_json(200, {"input_tokens": max(1, size // 4)})
                else:
                    rec.status = 404
                    mock._record(rec)
                    self._not_found()
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _answer_messages(self, body: dict[str, Any], reply: Reply) -> None:
            if reply.delay_s:
                time.sleep(reply.delay_s)
            if reply.status != 200:
                self._send_json(
                    reply.status,
                    {
                        "type": "error",
                        "error": {
                            "type": reply.error_type or "api_error",
                            "message": reply.error_message or "Error",
                        },
                        "request_id": "req_" + uuid.uuid4().hex[:24],
                    },
                    reply.headers,
                )
                return
            model = mock.model_override or str(body.get("model") or "claude-sonnet-4-6")
            msg_id = "msg_" + uuid.uuid4().hex[:24]
            usage = {
                "input_tokens": reply.input_tokens,
                "output_tokens": reply.output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            }
            stop_reason = reply.stop_reason or (
                "tool_use" if any(b.get("type") == "tool_use" for b in reply.blocks) else "end_turn"
            )
            if not body.get("stream"):
                self._send_json(
                    200,
                    {
                        "id": msg_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": reply.blocks,
                        "stop_reason": stop_reason,
                        "stop_sequence": None,
                        "usage": usage,
                    },
                    reply.headers,
                )
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.send_header("connection", "close")
            self.send_header("request-id", "req_" + uuid.uuid4().hex[:24])
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.close_connection = True
            out = [
                _sse(
                    "message_start",
                    {
                        "type": "message_start",
                        "message": {
                            "id": msg_id,
                            "type": "message",
                            "role": "assistant",
                            "model": model,
                            "content": [],
                            "stop_reason": None,
                            "stop_sequence": None,
                            "usage": {**usage, "output_tokens": 1},
                        },
                    },
                ),
                _sse("ping", {"type": "ping"}),
            ]
            for index, block in enumerate(reply.blocks):
                if block.get("type") == "tool_use":
                    start = {**block, "input": {}}
                    out.append(
                        _sse(
                            "content_block_start",
                            {"type": "content_block_start", "index": index, "content_block": start},
                        )
                    )
                    partial = json.dumps(block.get("input") or {})
                    for i in range(0, len(partial), 40):
                        out.append(
                            _sse(
                                "content_block_delta",
                                {
                                    "type": "content_block_delta",
                                    "index": index,
                                    "delta": {
                                        "type": "input_json_delta",
                                        "partial_json": partial[i : i + 40],
                                    },
                                },
                            )
                        )
                else:
                    out.append(
                        _sse(
                            "content_block_start",
                            {
                                "type": "content_block_start",
                                "index": index,
                                "content_block": {"type": "text", "text": ""},
                            },
                        )
                    )
                    text = str(block.get("text", ""))
                    for i in range(0, max(len(text), 1), 20):
                        out.append(
                            _sse(
                                "content_block_delta",
                                {
                                    "type": "content_block_delta",
                                    "index": index,
                                    "delta": {"type": "text_delta", "text": text[i : i + 20]},
                                },
                            )
                        )
                out.append(
                    _sse("content_block_stop", {"type": "content_block_stop", "index": index})
                )
            out.append(
                _sse(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                        "usage": {"output_tokens": reply.output_tokens},
                    },
                )
            )
            out.append(_sse("message_stop", {"type": "message_stop"}))
            self.wfile.write(b"".join(out))
            self.wfile.flush()

    return Handler
