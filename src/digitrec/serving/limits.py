"""What one HTTP client may hold of the server, and for how long: the transport bounds of
`digitrec serve`, under the app.

A connection must deliver each request head within `HEAD_TIME` seconds and `MAX_HEAD` bytes
(`HeadDeadline`, as uvicorn bounds neither); a body is counted while it arrives and refused
with 413 past its limit, or 408 when it stalls or trickles (`BodyLimit`); every refusal is
JSON `{"error": "..."}` with its 4xx status.
"""

from __future__ import annotations

import asyncio
import http
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

MAX_BODY = 10 * 1024 * 1024   # bytes of one request body: ample for a phone photo
BODY_IDLE = 30.0              # seconds a request body may stall before it is given up
BODY_TIME = 60.0              # seconds a body may take, and 1 s more per MIN_BODY_RATE bytes:
MIN_BODY_RATE = 16 * 1024     # bytes/s that a phone on a slow link keeps up and a trickle does not
HEAD_TIME = 10.0              # seconds to deliver a request head, from connecting or an answer
MAX_HEAD = 16 * 1024          # bytes of one request head (line and headers): h11's own default
KEEP_ALIVE = 5                # seconds an idle kept-alive connection stays open
MAX_CONNECTIONS = 1024        # beyond this many at once, a new one is answered 503 (JSON);
#                               an idle socket costs little: the model is what is scarce
#                               (`app.Reader` lets one request at a time use it)
DRAIN_BYTES = 4 * MAX_BODY    # after an early answer, the rest of a body read and dropped...
DRAIN_TIME = 10.0             # ...for at most this long, so the client can read the answer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyTooLarge(Exception):
    """The request body passed the limit while it was being read."""


class BodyStalled(Exception):
    """The request body stopped arriving, or arrives too slowly, before its end; the
    message says which."""


class BodyLimit:
    """ASGI middleware: refuse a body over `max_bytes` before or while it is read, and one
    that stalls or trickles.

    A declared Content-Length over the limit is answered 413 at once, without reading; a
    body without one (chunked) is counted as it arrives, and the handler reading it gets
    `BodyTooLarge` at the first chunk past the limit, so it is never held in memory. A
    client that stops sending mid-body for `idle_seconds`, or sends so slowly that the body
    takes longer than `seconds` plus one second per `min_rate` bytes, gets `BodyStalled`
    (408) instead of holding a connection for ever. An answer given before the body was
    read (a 404, a 413) closes the connection, so the rest of the body is not waited for.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]],
                 max_bytes: int, idle_seconds: float = BODY_IDLE, seconds: float = BODY_TIME,
                 min_rate: float = MIN_BODY_RATE, drain_seconds: float = DRAIN_TIME) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.idle_seconds = idle_seconds
        self.seconds = seconds
        self.min_rate = min_rate
        self.drain_seconds = drain_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            problem = self._check_declared(declared)
            if problem:
                await LimitedBody(self, receive, expected=True).drain()
                await _send_json_error(send, *problem)
                return
        body = LimitedBody(self, receive, expected=declared not in (None, b"0")
                           or b"transfer-encoding" in headers)

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not body.complete:
                await body.drain()  # nginx's lingering close: the client reads the answer
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"connection", b"close")]}
            await send(message)

        await self.app(scope, body.receive, closing_send)

    def _check_declared(self, declared: bytes) -> tuple[int, str] | None:
        if not declared.isdigit():
            return 400, "invalid Content-Length header"
        if int(declared) > self.max_bytes:
            return 413, too_large_message(self.max_bytes)
        return None


class LimitedBody:
    """One request's body as the app reads it, within its `BodyLimit`."""

    def __init__(self, limit: BodyLimit, receive: Receive, expected: bool) -> None:
        self.limit = limit
        self._receive = receive
        self.received = 0
        self.complete = not expected
        self._started = time.monotonic()

    async def receive(self) -> Message:
        if self.complete:  # only waiting for a disconnect now: no time limit
            return await self._receive()
        message = await self._next_message()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit.max_bytes:
                raise BodyTooLarge
            self.complete = not message.get("more_body", False)
        return message

    async def drain(self, max_bytes: int = DRAIN_BYTES) -> None:
        """Read and drop what is left of the body, up to `max_bytes` and `seconds`: a client
        that sends its whole body before reading (urllib, requests) then reads an early
        answer instead of a reset connection; one that sends more, or slower, is cut."""
        deadline = time.monotonic() + self.limit.drain_seconds
        dropped = 0
        while not self.complete and dropped <= max_bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                message = await asyncio.wait_for(self._receive(), left)
            except asyncio.TimeoutError:
                return
            if message["type"] != "http.request":  # the client is gone
                self.complete = True
                return
            dropped += len(message.get("body", b""))
            self.complete = not message.get("more_body", False)

    async def _next_message(self) -> Message:
        """The next message, within the stall limit and the trickle limit, whichever is first."""
        limit = self.limit
        trickle_left = (self._started + limit.seconds + self.received / limit.min_rate
                        - time.monotonic())
        wait = min(limit.idle_seconds, trickle_left)
        try:
            return await asyncio.wait_for(self._receive(), max(wait, 0))
        except asyncio.TimeoutError:
            if wait < limit.idle_seconds:
                raise BodyStalled(f"the request body arrives too slowly (it may take "
                                  f"{limit.seconds:g} s plus 1 s per "
                                  f"{size_text(limit.min_rate)})") from None
            raise BodyStalled(f"the request body stopped arriving (nothing for "
                              f"{limit.idle_seconds:g} s)") from None


def size_text(count: float) -> str:
    if count >= 2**20:
        return f"{count / 2**20:g} MB"
    return f"{count / 2**10:g} KB" if count >= 2**10 else f"{count:g} bytes"


def too_large_message(max_bytes: int, what: str = "request body") -> str:
    return f"{what} too large: the limit is {size_text(max_bytes)}"


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


async def _send_json_error(send: Send, status: int, message: str) -> None:
    """Answer with a JSON error directly at the ASGI level, closing the connection."""
    body = error_body(message)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class HeadDeadline:
    """Mixin for uvicorn's HTTP protocols (h11's or httptools'): a connection that is not
    being served must deliver a complete request head within `head_seconds` and
    `max_head` bytes.

    uvicorn times only an idle kept-alive connection, and any byte stops that timer, so a
    client trickling its headers (or connecting and sending nothing) would hold one of the
    `MAX_CONNECTIONS` for ever; and httptools buffers a head of any size. The clock starts
    when the connection opens or its last request is answered, and is not reset by bytes
    arriving. A client that sent part of a head gets 408 (or 431 past the bytes), one that
    sent nothing is closed silently, as uvicorn closes an idle kept-alive connection.
    """

    transport: asyncio.Transport  # these three are the protocol's own
    loop: asyncio.AbstractEventLoop
    cycle: Any  # the request being served or last served, None before the first
    head_seconds = HEAD_TIME
    max_head = MAX_HEAD
    max_connections = MAX_CONNECTIONS
    connections: set[Any]  # every open connection of the server (uvicorn's own set)
    _head_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0  # received since the connection stopped being served
    _head_tail = b""  # its last 3 bytes, to find a head's end split between two reads

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:  # JSON, as every other refusal
            self._refuse(503, f"the server is holding {self.max_connections} connections; "
                              f"try again in a few seconds")
            return
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        if not self._serving():
            # The head's own bytes, also when it ends in this read (a body may follow):
            # a parser given a whole head at once would take any size.
            seen = self._head_tail + data
            end = seen.find(b"\r\n\r\n")
            head = len(data) if end < 0 else end + 4 - len(self._head_tail)
            if self._head_bytes + head > self.max_head:
                self._refuse(431, too_large_message(self.max_head, "request head"))
                return
            self._head_bytes += len(data)
            self._head_tail = seen[-3:]
        super().data_received(data)
        self._watch_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _serving(self) -> bool:
        """A request's head has arrived and its answer is not complete yet."""
        return self.cycle is not None and not self.cycle.response_complete

    def _watch_head(self) -> None:
        if self.transport.is_closing() or self._serving():
            self._stop_head_timer()
            self._head_bytes = 0
            self._head_tail = b""
        elif self._head_bytes > self.max_head:
            self._refuse(431, too_large_message(self.max_head, "request head"))
        elif self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_seconds, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes:
            self._refuse(408, f"the request head did not arrive in time (the limit is "
                              f"{self.head_seconds:g} s)")
        else:
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        """Answer outside the parser (no request was parsed to answer), then close."""
        self._stop_head_timer()
        self.transport.write(raw_response(status, error_body(message)))
        self.transport.close()


def raw_response(status: int, body: bytes) -> bytes:
    """A complete HTTP/1.1 JSON response that closes the connection."""
    head = (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"connection: close\r\n\r\n")
    return head.encode("ascii") + body


def head_bounded(base: type[asyncio.Protocol], seconds: float = HEAD_TIME,
                 max_connections: int = MAX_CONNECTIONS) -> type[asyncio.Protocol]:
    """uvicorn's protocol class `base` with `HeadDeadline`'s bounds."""
    return type(f"HeadBounded{base.__name__}", (HeadDeadline, base),
                {"head_seconds": seconds, "max_connections": max_connections})


def server_config(app: Any, head_seconds: float = HEAD_TIME,
                  protocol: type[asyncio.Protocol] | None = None,
                  max_connections: int = MAX_CONNECTIONS) -> Any:
    """uvicorn's settings for `app`, with this module's bounds on connections.

    `protocol` is uvicorn's parser to bound (by default the one uvicorn picks: httptools
    when installed, else h11). WebSockets are off: the app has none, and an upgraded
    connection would leave `HeadDeadline` timing a protocol it no longer speaks.
    """
    import uvicorn
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    return uvicorn.Config(app, log_level="warning", lifespan="off", ws="none",
                          http=head_bounded(protocol or AutoHTTPProtocol, head_seconds,
                                            max_connections),
                          h11_max_incomplete_event_size=MAX_HEAD, backlog=MAX_CONNECTIONS,
                          timeout_keep_alive=KEEP_ALIVE)

