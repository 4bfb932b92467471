"""`digitrec serve`: a drawing page and an HTTP API that read digits with a trained model.

Built on Starlette (the ASGI toolkit under FastAPI) and uvicorn, installed with
`pip install "digitrec[serve]"`. A picture reaches the model exactly as in `digitrec predict`
(`reading.batch.read_source`, then `reading.batch.predict_readings`), so the page, the API
and the command agree on every picture. Pictures are decoded under Pillow's
decompression-bomb limit and at most one per core at a time (bounding memory); the model is
called by one thread at a time. What a client may hold of the server is bounded in
`limits.py`.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from digitrec.errors import DigitrecError
from digitrec.reading.batch import Reading, predict_readings, read_source, reading_record
from digitrec.reading.decode import ImageProblem
from digitrec.serving.limits import (
    BODY_IDLE,
    BODY_TIME,
    DRAIN_TIME,
    MAX_BODY,
    MAX_CONNECTIONS,
    MIN_BODY_RATE,
    BodyLimit,
    BodyStalled,
    BodyTooLarge,
    server_config,
    too_large_message,
)

FIELD = "image"               # the multipart form field that holds the picture
PAGE_POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
               "script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'")


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
            reading = read_source("upload", Path("upload"), io.BytesIO(data))
        if reading.error:
            raise ImageProblem(reading.error)
        if reading.cleaned is not None:
            with self._model_lock:
                predict_readings(self.model, [reading])
        return answer(reading)


def answer(reading: Reading) -> dict[str, Any]:
    """The API's JSON for one reading: what `predict` writes to readings.json for it (text,
    status, confidence, each character with its box and probabilities), the picture's size
    (for drawing the boxes), and for a lone character its class as before.

    `digit` is the 28x28 picture the model saw (grey levels 0-255, white ink on black), so a
    client can show why the model read what it read.
    """
    record = reading_record(reading)
    del record["file"], record["error"]
    if reading.cleaned is None:  # blank: nothing was seen
        return {**record, "width": None, "height": None, "prediction": None,
                "probabilities": None, "digit": None, "inverted": None}
    characters = reading.read.characters
    seen = characters[0].seen if len(characters) == 1 else reading.cleaned.digit
    single = reading.probabilities
    record.update({
        "width": reading.cleaned.size[0], "height": reading.cleaned.size[1],
        "prediction": None if single is None else int(np.argmax(single)),
        "probabilities": None if single is None else [float(p) for p in single],
        "digit": np.rint(seen * 255).astype(np.uint8).tolist(),
        "inverted": bool(reading.cleaned.inverted),
    })
    return record


def web_folder() -> Path:
    """The page's files, shipped inside the package."""
    return Path(str(resources.files("digitrec.serving") / "web"))


def create_app(reader: Reader, max_bytes: int = MAX_BODY, idle_seconds: float = BODY_IDLE,
               body_seconds: float = BODY_TIME, min_rate: float = MIN_BODY_RATE,
               drain_seconds: float = DRAIN_TIME) -> Any:
    """The ASGI application: the page, `POST /api/predict` and `GET /health`."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import ClientDisconnect, Request
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
            path = request.url.path  # echoed cut short: an answer is never a mirror of junk
            path = path if len(path) <= 100 else f"{path[:100]}..."
            message = f"Not Found: nothing at {path}; the API is POST /api/predict"
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            message = (f"Method Not Allowed: {request.method} {request.url.path}; "
                       f"allowed: {allowed}")
        return error(exc.status_code, message, exc.headers)

    async def body_too_large(request: Request, exc: Exception) -> Response:
        return error(413, too_large_message(max_bytes))  # BodyLimit closes the connection

    async def body_stalled(request: Request, exc: Exception) -> Response:
        return error(408, str(exc))

    async def client_gone(request: Request, exc: Exception) -> Response:
        # Not an error of ours, and nothing is logged: one line per cancelled upload would
        # still flood the log. The answer goes nowhere (the connection is closed).
        return error(400, "the client disconnected before the request body ended")

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
                               seconds=body_seconds, min_rate=min_rate,
                               drain_seconds=drain_seconds)],
        exception_handlers={HTTPException: http_error, BodyTooLarge: body_too_large,
                            BodyStalled: body_stalled, ClientDisconnect: client_gone,
                            Exception: server_error},
    )


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free one), or a clear error.

    Its protocol is set to TCP explicitly: asyncio turns Nagle's algorithm off only on
    connections whose socket says so, and with it on, every answer on a kept-alive
    connection waited some 40 ms for the client's delayed ACK.
    """
    if not 0 <= port <= 65535:  # the socket layer would take it modulo 65536
        raise DigitrecError(f"port {port}: not a TCP port (0 to 65535; 0 picks a free one)")
    sock = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)[0]
        sock = socket.socket(family, kind, proto)
        if os.name != "nt":  # restart at once on the same port; Windows means otherwise
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(MAX_CONNECTIONS)  # a burst of connections waits, never refused
        return sock
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise DigitrecError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


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

