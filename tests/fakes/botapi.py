"""A fake Telegram Bot API server on 127.0.0.1, strict where Telegram is strict.

The bot under test runs unmodified against it over real HTTP (python-telegram-bot's `base_url`).
The test plays the user through the control side (`user_message`, `press_button`) and reads what
the bot sent (`messages`, `wait_for`). Strictness that catches real bugs: the token (401), unknown
methods (404), HTML entity parsing, the 4096/1024 length limits after parsing, "message is not
modified", callback data over 64 bytes, replies to missing messages, unknown chats, flood limits
(429 with retry_after), outages (connection drops, 5xx), and two pollers at once (409).

It speaks HTTP/1.1 with keep-alive over asyncio streams and parses form-urlencoded (what PTB
sends, JSON values as strings), multipart (uploads) and JSON bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import html.parser
import itertools
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qs, unquote

ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code",
                "pre", "blockquote", "tg-emoji"}
CONFLICT = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after


def bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


class _HtmlChecker(html.parser.HTMLParser):
    """Validates Telegram's HTML subset and measures the text length after parsing."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.length = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            raise bad(f"can't parse entities: Unsupported start tag \"{tag}\" at byte offset {self.getpos()[1]}")
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            raise bad(f"can't parse entities: Can't find end tag corresponding to start tag \"{tag}\"")
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if "<" in data or ">" in data:
            raise bad("can't parse entities: Unexpected end tag")
        self.length += len(data)

    def handle_entityref(self, name: str) -> None:
        if name not in ("lt", "gt", "amp", "quot"):
            raise bad(f"can't parse entities: Unsupported entity \"{name}\"")
        self.length += 1

    def handle_charref(self, name: str) -> None:
        self.length += 1


def parsed_length(text: str, parse_mode: str | None) -> int:
    if parse_mode is None:
        return len(text)
    if parse_mode.upper() != "HTML":
        raise bad(f"unsupported parse_mode {parse_mode!r} in this fake")
    # A bare '&' that starts no entity is an error in Telegram.
    for match in re.finditer(r"&", text):
        if not _ENTITY.match(text, match.start()):
            raise bad(f"can't parse entities: Character '&' at byte offset {match.start()} is not an entity")
    checker = _HtmlChecker()
    checker.feed(text)
    checker.close()
    if checker.stack:
        raise bad(f"can't parse entities: Can't find end tag corresponding to start tag \"{checker.stack[-1]}\"")
    return checker.length


@dataclass
class SentMessage:
    message_id: int
    chat_id: int
    text: str
    parse_mode: str | None = None
    reply_markup: dict[str, Any] | None = None
    reply_to_message_id: int | None = None
    document: tuple[str, bytes] | None = None
    edits: list[str] = field(default_factory=list)
    deleted: bool = False
    force_reply: bool = False

    @property
    def buttons(self) -> list[tuple[str, str]]:
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [(b.get("text", ""), b.get("callback_data", "")) for row in rows for b in row]

    def data_of(self, text: str) -> str:
        """The callback data of the button labelled `text` (AssertionError if there is none)."""
        for label, data in self.buttons:
            if label == text:
                return data
        raise AssertionError(f"no button {text!r} on message {self.message_id}: {self.buttons}")

    @property
    def plain(self) -> str:
        """The text as a person sees it (tags stripped, entities decoded)."""
        import html as _html

        return _html.unescape(re.sub(r"<[^>]+>", "", self.text))


@dataclass
class Recorded:
    method: str
    params: dict[str, Any]
    status: int
    at: float


class FakeBotApi:
    def __init__(self, token: str, *, per_chat_interval_s: float = 0.0, group_per_minute: int = 0,
                 global_per_second: int = 0, bot_username: str = "llmauto_test_bot") -> None:
        self.token = token
        self.per_chat_interval_s = per_chat_interval_s
        self.group_per_minute = group_per_minute
        self.global_per_second = global_per_second
        self.bot_username = bot_username
        self._server: asyncio.base_events.Server | None = None
        self._ids = itertools.count(1)
        self._update_ids = itertools.count(1)
        self.updates: list[dict[str, Any]] = []
        self.sent: list[SentMessage] = []
        self.by_id: dict[tuple[int, int], SentMessage] = {}
        self.user_messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.chats: dict[int, str] = {}
        self.log: list[Recorded] = []
        self.rejected: list[tuple[str, int, str]] = []
        self.commands: list[dict[str, Any]] = []
        self.answered_callbacks: list[dict[str, Any]] = []
        self.outage: str | None = None
        self.retry_after = 1
        # Seconds to hold the answer to a method (a slow Telegram); `arrived` lists every request
        # as it comes in, before it is answered.
        self.slow: dict[str, float] = {}
        self.arrived: list[str] = []
        # Seconds to hold the answer to a method *after* carrying it out (a Telegram that
        # delivers, then answers late): a client that times out cannot know the message exists.
        self.late: dict[str, float] = {}
        # True: every getUpdates answers 409, as when another process polls the same token.
        self.conflict = False
        # Errors to answer the next calls of a method with, in order (see `fail_next`).
        self._failures: dict[str, list[ApiError]] = {}
        self._changed = asyncio.Condition()
        self._last_send: dict[int, float] = {}
        self._group_sends: dict[int, list[float]] = {}
        self._global_sends: list[float] = []
        self._polling: asyncio.Future[None] | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._connections: set[asyncio.Task[Any]] = set()

    # ---- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> FakeBotApi:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the listening socket and every connection, and wait until they are closed: a
        socket left for the garbage collector would be a ResourceWarning in some later test."""
        assert self._server is not None
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for writer in list(self._writers):
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    # ---- control side ----------------------------------------------------------------------
    def add_chat(self, chat_id: int, chat_type: str = "private") -> None:
        self.chats[chat_id] = chat_type

    def _user(self, user_id: int, first_name: str = "Ann", username: str | None = None) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        return user

    def _chat(self, chat_id: int) -> dict[str, Any]:
        kind = self.chats.get(chat_id, "private")
        chat: dict[str, Any] = {"id": chat_id, "type": kind}
        if kind == "private":
            chat["first_name"] = "Ann"
        else:
            chat["title"] = "Ops"
        return chat

    def _push(self, update: dict[str, Any]) -> None:
        update["update_id"] = next(self._update_ids)
        self.updates.append(update)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def user_message(self, *, user_id: int, text: str, chat_id: int | None = None, chat_type: str = "private",
                     reply_to_message_id: int | None = None, first_name: str = "Ann") -> dict[str, Any]:
        chat_id = user_id if chat_id is None else chat_id
        self.chats.setdefault(chat_id, chat_type)
        message: dict[str, Any] = {
            "message_id": next(self._ids), "date": int(time.time()), "chat": self._chat(chat_id),
            "from": self._user(user_id, first_name), "text": text,
        }
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        if reply_to_message_id is not None:
            replied = self.by_id.get((chat_id, reply_to_message_id))
            if replied is None:
                raise AssertionError(f"no bot message {reply_to_message_id} in chat {chat_id} to reply to")
            message["reply_to_message"] = self._bot_message_dict(replied)
        self.user_messages[(chat_id, message["message_id"])] = message
        self._push({"message": message})
        return message

    def press_button(self, *, user_id: int, message_id: int, chat_id: int, data: str, forged_chat: int | None = None,
                     forged: bool = False) -> None:
        """A press of a button on a bot message. `forged`: data that is not on the message (a
        client can send any); `forged_chat`: the update claims the message sits in that chat."""
        msg = self.by_id.get((chat_id, message_id))
        if msg is None or (not forged and data not in [d for _, d in msg.buttons]):
            raise AssertionError(f"no button {data!r} on message {message_id}: {msg.buttons if msg else None}")
        message = self._bot_message_dict(msg)
        if forged_chat is not None:
            self.chats.setdefault(forged_chat, "private")
            message["chat"] = self._chat(forged_chat)
        self._push({"callback_query": {
            "id": str(next(self._ids)), "from": self._user(user_id), "chat_instance": "ci",
            "message": message, "data": data,
        }})

    def fail_next(self, method: str, code: int = 429, *, retry_after: int | None = 1, times: int = 1) -> None:
        """The next `times` calls of `method` fail (429 with retry_after by default)."""
        description = f"Too Many Requests: retry after {retry_after}" if code == 429 else f"Error {code}"
        self._failures.setdefault(method, []).extend(
            ApiError(code, description, retry_after if code == 429 else None) for _ in range(times))

    def set_outage(self, mode: str | None, *, retry_after: int = 1) -> None:
        self.outage = mode
        self.retry_after = retry_after

    def messages(self, chat_id: int | None = None) -> list[SentMessage]:
        return [m for m in self.sent if (chat_id is None or m.chat_id == chat_id) and not m.deleted]

    def requests(self, method: str | None = None) -> list[Recorded]:
        return [r for r in self.log if method is None or r.method == method]

    async def wait_for(self, predicate: Callable[[FakeBotApi], Any], timeout: float = 15.0) -> Any:
        async def check() -> Any:
            async with self._changed:
                while True:
                    value = predicate(self)
                    if value:
                        return value
                    await self._changed.wait()
        try:
            return await asyncio.wait_for(check(), timeout)
        except TimeoutError:
            recent = "\n".join(f"  [{m.chat_id}#{m.message_id}] {m.plain[:150]!r}" for m in self.sent[-12:])
            raise TimeoutError(f"condition not met within {timeout}s; last messages:\n{recent}") from None

    async def wait_for_message(self, chat_id: int, contains: str, *, timeout: float = 15.0, after: int = 0) -> SentMessage:
        def found(api: FakeBotApi) -> SentMessage | None:
            for m in api.messages(chat_id):
                if m.message_id > after and (contains in m.plain or (m.document and contains in m.document[0])):
                    return m
            return None
        result: SentMessage = await self.wait_for(found, timeout)
        return result

    # ---- HTTP ------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method_line = lines[0].split()
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                if self.outage == "connection":
                    return  # drop the connection without an answer
                status, payload = await self._dispatch(method_line[1] if len(method_line) > 1 else "/", headers, body)
                data = json.dumps(payload).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                    f"Connection: keep-alive\r\n\r\n".encode() + data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._connections.discard(task)  # type: ignore[arg-type]
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()
            self._writers.discard(writer)

    async def _dispatch(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        match = re.fullmatch(r"/bot([^/]+)/(\w+)", path.split("?")[0])
        if not match:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        token, method = unquote(match.group(1)), match.group(2)
        params = _parse_body(headers.get("content-type", ""), body)
        self.arrived.append(method)
        await self._notify()
        if self.slow.get(method):
            await asyncio.sleep(self.slow[method])
        try:
            if token != self.token:
                raise ApiError(401, "Unauthorized")
            if self.outage in ("500", "502"):
                raise ApiError(int(self.outage), "Internal Server Error" if self.outage == "500" else "Bad Gateway")
            if self.outage == "429":
                raise ApiError(429, f"Too Many Requests: retry after {self.retry_after}", self.retry_after)
            handler = getattr(self, f"m_{method}", None)
            if handler is None:
                raise ApiError(404, "Not Found")
            if self._failures.get(method):
                raise self._failures[method].pop(0)
            result = await handler(params)
            status, payload = 200, {"ok": True, "result": result}
            if self.late.get(method):
                await self._notify()  # done: visible to the test before the answer leaves
                await asyncio.sleep(self.late[method])
        except ApiError as exc:
            status = exc.code
            payload = {"ok": False, "error_code": exc.code, "description": exc.description}
            if exc.retry_after is not None:
                payload["parameters"] = {"retry_after": exc.retry_after}
            self.rejected.append((method if match else path, exc.code, exc.description))
        self.log.append(Recorded(method, params, status, time.monotonic()))
        await self._notify()
        return status, payload

    # ---- limits ----------------------------------------------------------------------------
    def _flood_check(self, chat_id: int) -> None:
        now = time.monotonic()
        if self.per_chat_interval_s:
            last = self._last_send.get(chat_id)
            if last is not None and now - last < self.per_chat_interval_s:
                wait = math.ceil(self.per_chat_interval_s - (now - last))
                raise ApiError(429, f"Too Many Requests: retry after {wait}", wait)
        if self.group_per_minute and chat_id < 0:
            recent = [t for t in self._group_sends.get(chat_id, []) if now - t < 60]
            if len(recent) >= self.group_per_minute:
                wait = math.ceil(60 - (now - recent[0]))
                raise ApiError(429, f"Too Many Requests: retry after {wait}", wait)
            self._group_sends[chat_id] = [*recent, now]
        if self.global_per_second:
            self._global_sends = [t for t in self._global_sends if now - t < 1]
            if len(self._global_sends) >= self.global_per_second:
                raise ApiError(429, "Too Many Requests: retry after 1", 1)
            self._global_sends.append(now)
        self._last_send[chat_id] = now

    def _chat_id(self, params: dict[str, Any]) -> int:
        try:
            chat_id = int(params["chat_id"])
        except (KeyError, ValueError):
            raise bad("chat_id is empty") from None
        if chat_id not in self.chats:
            raise bad("chat not found")
        return chat_id

    def _markup(self, params: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
        raw = params.get("reply_markup")
        if raw is None:
            return None, False
        markup = json.loads(raw) if isinstance(raw, str) else raw
        if "inline_keyboard" in markup:
            for row in markup["inline_keyboard"]:
                for button in row:
                    data = button.get("callback_data")
                    if data is not None and not 1 <= len(data.encode()) <= 64:
                        raise bad("BUTTON_DATA_INVALID")
                    if not button.get("text"):
                        raise bad("text buttons are unallowed in the inline keyboard")
            return markup, False
        return markup, bool(markup.get("force_reply"))

    def _reply_to(self, params: dict[str, Any], chat_id: int) -> int | None:
        reply_to = params.get("reply_to_message_id")
        if params.get("reply_parameters"):
            rp = params["reply_parameters"]
            rp = json.loads(rp) if isinstance(rp, str) else rp
            reply_to = rp.get("message_id")
        if reply_to is None:
            return None
        rid = int(reply_to)
        if (chat_id, rid) not in self.by_id and (chat_id, rid) not in self.user_messages:
            raise bad("message to be replied not found")
        return rid

    def _bot_message_dict(self, m: SentMessage) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": m.message_id, "date": int(time.time()), "chat": self._chat(m.chat_id),
            "from": {"id": 1, "is_bot": True, "first_name": "llmauto", "username": self.bot_username},
        }
        if m.document:
            out["document"] = {"file_id": f"f{m.message_id}", "file_unique_id": f"u{m.message_id}", "file_name": m.document[0]}
            if m.text:
                out["caption"] = m.text
        else:
            out["text"] = m.text
        if m.reply_markup and "inline_keyboard" in m.reply_markup:
            out["reply_markup"] = m.reply_markup
        return out

    # ---- methods ---------------------------------------------------------------------------
    async def m_getMe(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"id": 1, "is_bot": True, "first_name": "llmauto", "username": self.bot_username,
                "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}

    async def m_deleteWebhook(self, p: dict[str, Any]) -> bool:
        return True

    async def m_close(self, p: dict[str, Any]) -> bool:
        return True

    async def m_logOut(self, p: dict[str, Any]) -> bool:
        return True

    async def m_setMyCommands(self, p: dict[str, Any]) -> bool:
        commands = json.loads(p["commands"]) if isinstance(p.get("commands"), str) else p.get("commands", [])
        if len(commands) > 100:
            raise bad("too many commands")
        for c in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", c.get("command", "")):
                raise bad("BOT_COMMAND_INVALID")
            if not 1 <= len(c.get("description", "")) <= 256:
                raise bad("BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands = commands
        return True

    async def m_getMyCommands(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        return self.commands

    async def m_sendChatAction(self, p: dict[str, Any]) -> bool:
        self._chat_id(p)
        return True

    async def m_answerCallbackQuery(self, p: dict[str, Any]) -> bool:
        self.answered_callbacks.append(p)
        return True

    async def m_getUpdates(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        if self.conflict:
            raise ApiError(409, CONFLICT)
        if self._polling is not None and not self._polling.done():
            self._polling.set_exception(ApiError(409, CONFLICT))
        me: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._polling = me
        offset = int(p.get("offset", 0) or 0)
        if offset:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        limit = int(p.get("limit", 100) or 100)
        timeout = float(p.get("timeout", 0) or 0)

        async def has_updates() -> None:
            async with self._changed:
                while not self.updates and self.outage is None:
                    await self._changed.wait()

        waiter = asyncio.ensure_future(has_updates())
        try:
            done, _ = await asyncio.wait({waiter, me}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if me in done:
                me.result()  # raises the 409
        finally:
            waiter.cancel()
            if not me.done():
                me.set_result(None)
        if self.outage:
            raise ApiError(502, "Bad Gateway")
        return self.updates[:limit]

    async def m_sendMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(p)
        text = str(p.get("text", ""))
        if not text.strip():
            raise bad("message text is empty")
        if parsed_length(text, p.get("parse_mode")) > 4096:
            raise bad("message is too long")
        markup, force = self._markup(p)
        reply_to = self._reply_to(p, chat_id)
        self._flood_check(chat_id)
        msg = SentMessage(next(self._ids), chat_id, text, p.get("parse_mode"), markup, reply_to, force_reply=force)
        self.sent.append(msg)
        self.by_id[(chat_id, msg.message_id)] = msg
        return self._bot_message_dict(msg)

    async def m_sendDocument(self, p: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(p)
        doc = p.get("document")
        if not isinstance(doc, tuple):
            raise bad("there is no document in the request")
        caption = str(p.get("caption", ""))
        if caption and parsed_length(caption, p.get("parse_mode")) > 1024:
            raise bad("message caption is too long")
        markup, _ = self._markup(p)
        reply_to = self._reply_to(p, chat_id)
        self._flood_check(chat_id)
        msg = SentMessage(next(self._ids), chat_id, caption, p.get("parse_mode"), markup, reply_to, document=doc)
        self.sent.append(msg)
        self.by_id[(chat_id, msg.message_id)] = msg
        return self._bot_message_dict(msg)

    async def m_editMessageText(self, p: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(p)
        msg = self.by_id.get((chat_id, int(p.get("message_id", 0))))
        if msg is None or msg.deleted:
            raise bad("message to edit not found")
        text = str(p.get("text", ""))
        if not text.strip():
            raise bad("message text is empty")
        if parsed_length(text, p.get("parse_mode")) > 4096:
            raise bad("message is too long")
        markup, _ = self._markup(p)
        if text == msg.text and markup == msg.reply_markup:
            raise bad("message is not modified: specified new message content and reply markup are exactly the same "
                      "as a current content and reply markup of the message")
        self._flood_check(chat_id)
        msg.edits.append(msg.text)
        msg.text, msg.reply_markup, msg.parse_mode = text, markup, p.get("parse_mode")
        return self._bot_message_dict(msg)

    async def m_editMessageReplyMarkup(self, p: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(p)
        msg = self.by_id.get((chat_id, int(p.get("message_id", 0))))
        if msg is None:
            raise bad("message to edit not found")
        markup, _ = self._markup(p)
        if markup == msg.reply_markup:
            raise bad("message is not modified")
        msg.reply_markup = markup
        return self._bot_message_dict(msg)

    async def m_deleteMessage(self, p: dict[str, Any]) -> bool:
        chat_id = self._chat_id(p)
        msg = self.by_id.get((chat_id, int(p.get("message_id", 0))))
        if msg is None:
            raise bad("message to delete not found")
        msg.deleted = True
        return True


def _parse_body(content_type: str, body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    if content_type.startswith("application/json"):
        data = json.loads(body)
        return {k: (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in data.items()}
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
        out: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            filename = part.get_filename()
            payload = part.get_payload(decode=True) or b""
            if filename is not None:
                out[str(name)] = (filename, payload)
            else:
                out[str(name)] = payload.decode("utf-8")
        return out
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
