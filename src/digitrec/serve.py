"""`digitrec serve`: a drawing page and an HTTP API that read digits with a trained model.

Built on Starlette (the ASGI toolkit under FastAPI) and uvicorn, installed with
`pip install "digitrec[serve]"`. A picture reaches the model exactly as in `digitrec predict`:
`images.prepare_file`, then `predict.read_prepared` (one-pixel shifts, a doubtful EXIF turn
read both ways), so the page, the API and the command agree on every picture.

Everything a client sends is hostile: a connection must deliver each request head within
`HEAD_TIME` seconds and `MAX_HEAD` bytes (`HeadDeadline`, as uvicorn bounds neither), the
body is counted while it arrives and refused with 413 past `MAX_BODY` bytes, pictures are
decoded under Pillow's decompression-bomb limit and at most one per core at a time
(bounding memory), and every refusal is JSON `{"error": "..."}` with its 4xx status. The
model is called by one thread at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import io
import json
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from digitrec.errors import DigitrecError
from digitrec.images import ImageProblem, prepare_file
from digitrec.predict import read_prepared

MAX_BODY = 10 * 1024 * 1024   # bytes of one request body: ample for a phone photo
BODY_IDLE = 30.0              # seconds a request body may stall before it is given up
BODY_TIME = 60.0              # seconds a body may take, and 1 s more per MIN_BODY_RATE bytes:
MIN_BODY_RATE = 16 * 1024     # bytes/s that a phone on a slow link keeps up and a trickle does not
HEAD_TIME = 10.0              # seconds to deliver a request head, from connecting or an answer
MAX_HEAD = 16 * 1024          # bytes of one request head (line and headers): h11's own default
KEEP_ALIVE = 5                # seconds an idle kept-alive connection stays open
MAX_CONNECTIONS = 64          # beyond this many at once, uvicorn answers 503
FIELD = "image"               # the multipart form field that holds the picture
PAGE_POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
               "script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyTooLarge(Exception):
    """The request body passed the limit while it was being read."""


class BodyStalled(Exception):
    """The request body stopped arriving, or arrives too slowly, before its end; the
    message says which."""


class Reader:
    """The loaded model and the way a picture reaches it, shared by every request.

    Decoding and preprocessing run in parallel, at most one per core (a picture may decode
    to hundreds of megabytes before it is shrunk); the model itself is called by one thread
    at a time, as a Keras model is not documented to be thread-safe.
    """

    def __init__(self, model: Any, name: str = "model") -> None:
        self.model = model
        self.name = name
        self._model_lock = threading.Lock()
        self._decoders = threading.BoundedSemaphore(os.cpu_count() or 1)

    def read(self, data: bytes) -> dict[str, Any]:
        """The answer for one picture's bytes; `ImageProblem` if it is not a readable digit."""
        with self._decoders:
            prepared = prepare_file(io.BytesIO(data))
        with self._model_lock:
            probabilities, digits = read_prepared(self.model, [prepared])
        return answer(probabilities[0], digits[0], prepared.inverted)


def answer(probabilities: np.ndarray, digit: np.ndarray, inverted: bool) -> dict[str, Any]:
    """The API's JSON for one reading.

    `digit` is the 28x28 picture the model saw (grey levels 0-255, white ink on black), so a
    client can show why the model read what it read.
    """
    return {
        "prediction": int(np.argmax(probabilities)),
        "confidence": float(np.max(probabilities)),
        "probabilities": [float(p) for p in probabilities],
        "digit": np.rint(digit * 255).astype(np.uint8).tolist(),
        "inverted": bool(inverted),
    }


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
                 min_rate: float = MIN_BODY_RATE) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.idle_seconds = idle_seconds
        self.seconds = seconds
        self.min_rate = min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            problem = self._check_declared(declared)
            if problem:
                await _send_json_error(send, *problem)
                return
        body = LimitedBody(self, receive, expected=declared not in (None, b"0")
                           or b"transfer-encoding" in headers)

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not body.complete:
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
    _head_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0  # received since the connection stopped being served

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        if not self._serving():
            self._head_bytes += len(data)
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


def head_bounded(base: type[asyncio.Protocol], seconds: float = HEAD_TIME
                 ) -> type[asyncio.Protocol]:
    """uvicorn's protocol class `base` with `HeadDeadline`'s bounds."""
    return type(f"HeadBounded{base.__name__}", (HeadDeadline, base), {"head_seconds": seconds})


def web_folder() -> Path:
    """The page's files, shipped inside the package."""
    return Path(str(resources.files("digitrec") / "web"))


def create_app(reader: Reader, max_bytes: int = MAX_BODY, idle_seconds: float = BODY_IDLE,
               body_seconds: float = BODY_TIME, min_rate: float = MIN_BODY_RATE) -> Any:
    """The ASGI application: the page, `POST /api/predict` and `GET /health`."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def picture_bytes(request: Request) -> bytes | JSONResponse:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() == "multipart/form-data":
            async with request.form(max_files=4, max_fields=16,
                                    max_part_size=max_bytes) as form:
                upload = form.get(FIELD)
                if not isinstance(upload, UploadFile):
                    return error(400, f"the multipart form has no file field {FIELD!r}")
                data = await upload.read()
        else:  # any other type: the body is the picture, and Pillow tells what it is
            data = await request.body()
        if not data:
            return error(400, f"empty request: send a picture as the body or as the "
                              f"multipart field {FIELD!r}")
        return data

    async def predict_endpoint(request: Request) -> Response:
        data = await picture_bytes(request)
        if isinstance(data, Response):
            return data
        try:
            result = await run_in_threadpool(reader.read, data)
        except ImageProblem as exc:
            return error(422, f"cannot read a digit in this picture: {exc}")
        return JSONResponse(result)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": reader.name})

    async def page(request: Request) -> Response:
        return FileResponse(web_folder() / "index.html", headers={
            "Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-cache"})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"Not Found: nothing at {request.url.path}; the API is POST /api/predict"
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            message = (f"Method Not Allowed: {request.method} {request.url.path}; "
                       f"allowed: {allowed}")
        return error(exc.status_code, message, exc.headers)

    async def body_too_large(request: Request, exc: Exception) -> Response:
        return error(413, too_large_message(max_bytes))  # BodyLimit closes the connection

    async def body_stalled(request: Request, exc: Exception) -> Response:
        return error(408, str(exc))

    async def server_error(request: Request, exc: Exception) -> Response:
        return error(500, "internal error: the server could not answer this request")

    routes = [
        Route("/", page, methods=["GET", "HEAD"]),
        Route("/api/predict", predict_endpoint, methods=["POST"]),
        Route("/health", health, methods=["GET", "HEAD"]),
        Mount("/static", StaticFiles(directory=web_folder()), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(BodyLimit, max_bytes=max_bytes, idle_seconds=idle_seconds,
                               seconds=body_seconds, min_rate=min_rate)],
        exception_handlers={HTTPException: http_error, BodyTooLarge: body_too_large,
                            BodyStalled: body_stalled,
                            Exception: server_error},
    )


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free one), or a clear error.

    Its protocol is set to TCP explicitly: asyncio turns Nagle's algorithm off only on
    connections whose socket says so, and with it on, every answer on a kept-alive
    connection waited some 40 ms for the client's delayed ACK.
    """
    sock = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)[0]
        sock = socket.socket(family, kind, proto)
        if os.name != "nt":  # restart at once on the same port; Windows means otherwise
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        return sock
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise DigitrecError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def server_config(app: Any, head_seconds: float = HEAD_TIME,
                  protocol: type[asyncio.Protocol] | None = None) -> Any:
    """uvicorn's settings for `app`, with this module's bounds on connections.

    `protocol` is uvicorn's parser to bound (by default the one uvicorn picks: httptools
    when installed, else h11). WebSockets are off: the app has none, and an upgraded
    connection would leave `HeadDeadline` timing a protocol it no longer speaks.
    """
    import uvicorn
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    return uvicorn.Config(app, log_level="warning", lifespan="off", ws="none",
                          http=head_bounded(protocol or AutoHTTPProtocol, head_seconds),
                          h11_max_incomplete_event_size=MAX_HEAD,
                          limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=KEEP_ALIVE)


def serve(model_path: Path, host: str = "127.0.0.1", port: int = 8000,
          announce: Callable[[str], None] = print) -> str:
    """Load the model, serve it until Ctrl-C, and say how it ended.

    `announce` gets the one line with the URL once the server accepts connections.
    """
    try:
        import uvicorn
    except ImportError:
        raise DigitrecError('serving needs the serve extra: pip install "digitrec[serve]"'
                            ) from None
    from digitrec.modelfile import load_model

    sock = listen(host, port)  # a busy port is said at once, before the model loads
    try:
        reader = Reader(load_model(model_path), name=Path(model_path).name)
        url = url_of(sock)

        class Server(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets)
                if self.started:
                    announce(f"serving {model_path} at {url} (Ctrl-C to stop)")

        config = server_config(create_app(reader))
        # uvicorn stops gracefully on Ctrl-C, then raises it again: that is the normal end.
        with contextlib.suppress(KeyboardInterrupt):
            Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return "stopped"
