"""`digitrec serve`: the API agrees with `digitrec predict`, refuses bad requests with JSON
4xx answers, serves concurrent requests, and the page reads a digit drawn in a real browser."""

import base64
import contextlib
import io
import itertools
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_damaged_pictures import dds_of_unknown_pixel_format, seed_files

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
pytest.importorskip("multipart")

from digitrec.examples import STROKES, draw_digit, draw_number, make_examples  # noqa: E402
from digitrec.modelfile import load_model  # noqa: E402
from digitrec.reading import batch as predict  # noqa: E402
from digitrec.serving import app as serve  # noqa: E402
from digitrec.serving import limits  # noqa: E402

CHROMIUM = os.environ.get("DIGITREC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def model_file(tiny_model_file):
    """The session's tiny model (conftest.py), trained once for every test that reads."""
    return tiny_model_file


class RunningServer:
    """The app on a real uvicorn server on a free loopback port, in a thread, configured as
    `digitrec serve` configures it; `head_seconds` and `protocol` go to `limits.server_config`,
    the other bounds to `serve.create_app` (the drain after an early answer: a second, not
    ten, so tests do not wait for it)."""

    def __init__(self, model_file: Path, head_seconds: float = limits.HEAD_TIME,
                 protocol: type | None = None, max_connections: int = limits.MAX_CONNECTIONS,
                 **bounds):
        reader = serve.Reader(load_model(model_file), name=model_file.name)
        self.socket = serve.listen("127.0.0.1", 0)
        self.url = serve.url_of(self.socket)
        app = serve.create_app(reader, **{"drain_seconds": 1.0, **bounds})
        self.server = uvicorn.Server(limits.server_config(app, head_seconds, protocol,
                                                          max_connections))
        self.thread = threading.Thread(target=self.server.run, args=([self.socket],),
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        self.address = self.socket.getsockname()[:2]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()


@pytest.fixture(scope="module")
def server(model_file):
    running = RunningServer(model_file)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_api_agrees_with_predict_on_every_example_picture(tmp_path, model_file, client):
    folder = tmp_path / "pictures"
    labels = dict(make_examples(folder))
    readings = {r.name: r for r in predict.predict_paths(model_file, [folder])}
    assert set(readings) == set(labels)
    answers = {}
    for name in labels:
        kind = "jpeg" if name.endswith(".jpg") else "png"
        response = client.post("/api/predict", content=(folder / name).read_bytes(),
                               headers={"Content-Type": f"image/{kind}"})
        assert response.status_code == 200, response.text
        answer = answers[name] = response.json()
        reading = readings[name]
        assert answer["prediction"] == reading.prediction, name
        np.testing.assert_allclose(answer["probabilities"], reading.probabilities, atol=1e-6)
        assert answer["confidence"] == pytest.approx(reading.confidence, abs=1e-6)
        assert answer["inverted"] == reading.cleaned.inverted
        seen = np.rint(reading.cleaned.digit * 255).astype(np.uint8)
        np.testing.assert_array_equal(np.array(answer["digit"], dtype=np.uint8), seen)
    # The model really reads them (so agreeing is not agreeing on a constant answer).
    correct = sum(answers[name]["prediction"] == label for name, label in labels.items())
    assert correct >= 10, answers


def test_api_reads_a_number_as_predict_does(tmp_path, model_file, client):
    folder = tmp_path / "pictures"
    folder.mkdir()
    draw_number("4071", 120, pen=0.05, ink=20, paper=235, seed=2, gap=0.3).save(
        folder / "number.png")
    reading = predict.predict_paths(model_file, [folder])[0]
    response = client.post("/api/predict", content=(folder / "number.png").read_bytes())
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["text"], answer["status"]) == (reading.text, reading.status)
    assert len(answer["characters"]) == len(reading.read.characters) == 4
    for given, character in zip(answer["characters"], reading.read.characters, strict=True):
        assert tuple(given["box"]) == character.box
        np.testing.assert_allclose(given["probabilities"], character.probabilities, atol=1e-5)
    assert (answer["width"], answer["height"]) == Image.open(folder / "number.png").size
    assert answer["prediction"] is None  # the single-digit fields: for one character only


@pytest.mark.parametrize("blank", [Image.new("L", (300, 200), 245),
                                   Image.new("RGBA", (64, 64), (0, 0, 0, 0))])
def test_a_blank_picture_holds_no_digit(client, blank):
    response = client.post("/api/predict", content=png_bytes(blank),
                           headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["text"]) == ("not_digits", "")


def test_multipart_upload_reads_like_a_raw_body(tmp_path, client):
    picture = png_bytes(draw_digit(4, 200, pen=0.06, ink=20, paper=235, seed=3))
    raw = client.post("/api/predict", content=picture, headers={"Content-Type": "image/png"})
    form = client.post("/api/predict", files={"image": ("four.png", picture, "image/png")},
                       data={"note": "from a form"})
    assert raw.status_code == form.status_code == 200
    assert form.json() == raw.json()
    assert len(raw.json()["probabilities"]) == 10


def test_health_answers_when_the_model_is_loaded(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model": "model.keras"}


def test_page_and_its_files_are_served_by_us_alone(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    assert {"/static/app.js", "/static/style.css"} <= set(assets)
    texts = [page.text]
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        texts.append(response.text)
    for text in texts:  # offline: nothing fetched from another host
        assert not re.search(r"https?://", text)
    assert 'capture="environment"' in page.text


def _multipart(fields: dict[str, tuple[str | None, bytes]]) -> tuple[bytes, str]:
    boundary = "digitrec-test-boundary"
    body = b""
    for name, (filename, data) in fields.items():
        disposition = f'form-data; name="{name}"'
        if filename:
            disposition += f'; filename="{filename}"'
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n").encode()
        body += data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _truncated_png() -> bytes:
    return png_bytes(draw_digit(7, 200, pen=0.05, ink=20, paper=235, seed=1))[:200]


NO_IMAGE_FIELD = _multipart({"picture": ("seven.png", b"\x89PNG...")})
DAMAGED_DDS = dds_of_unknown_pixel_format(seed_files())  # Pillow: NotImplementedError

BAD_REQUESTS = [
    # (method, path, body, content type, status, words in the error)
    ("POST", "/api/predict", b"hello, not a picture", "image/png", 422, "not an image"),
    ("POST", "/api/predict", b"", "image/png", 400, "empty request"),
    ("POST", "/api/predict", _truncated_png(), "image/png", 422, "corrupt or truncated"),
    ("POST", "/api/predict", DAMAGED_DDS, "image/x-dds", 422, "corrupt or unsupported"),
    ("POST", "/api/predict", b'{"image": "seven"}', "application/json", 422, "not an image"),
    ("POST", "/api/predict", NO_IMAGE_FIELD[0], NO_IMAGE_FIELD[1], 400, "no file field 'image'"),
    ("POST", "/api/predict", b"--x\r\ngarbage", "multipart/form-data", 400, "boundary"),
    ("GET", "/api/predict", b"", None, 405, "Method Not Allowed"),
    ("PUT", "/api/predict", b"x", "image/png", 405, "Method Not Allowed"),
    ("POST", "/health", b"", None, 405, "Method Not Allowed"),
    ("POST", "/", b"", None, 405, "Method Not Allowed"),
    ("GET", "/nowhere", b"", None, 404, "Not Found"),
    ("GET", "/static/nothing.js", b"", None, 404, "Not Found"),
    ("GET", "/static/../serve.py", b"", None, 404, "Not Found"),
]


@pytest.mark.parametrize(("method", "path", "body", "content_type", "status", "words"),
                         BAD_REQUESTS,
                         ids=[f"{m} {p} {s} {w}" for m, p, _, _, s, w in BAD_REQUESTS])
def test_bad_requests_get_a_json_error(client, method, path, body, content_type, status, words):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.request(method, path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert words in response.json()["error"]
    assert client.get("/health").status_code == 200  # and the server goes on


def test_decompression_bomb_is_refused(client, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # the server runs in-process
    bomb = png_bytes(Image.new("L", (3000, 3000), 255))
    response = client.post("/api/predict", content=bomb, headers={"Content-Type": "image/png"})
    assert response.status_code == 422
    assert "too large to decode safely" in response.json()["error"]


def raw_exchange(address, head: bytes, body: bytes = b"", timeout: float = 30) -> tuple[int, dict]:
    """Send a request by hand (a lying Content-Length, a body cut short) and read the answer."""
    with socket.create_connection(address, timeout=timeout) as conn:
        conn.sendall(head + body)
        status, _, payload = parse_answer(read_answer(conn))
    return status, json.loads(payload)


def read_answer(conn: socket.socket) -> bytes:
    """One whole answer (by its Content-Length), or what came before the connection closed."""
    received = b""
    while not _complete(received):
        chunk = conn.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def read_to_end(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket's timeout
    fails the test if it never does)."""
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := conn.recv(65536):
            received += chunk
    return received


def parse_answer(received: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (names in lower case) and body of one answer."""
    head, _, payload = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, payload


def _complete(received: bytes) -> bool:
    head, _, payload = received.partition(b"\r\n\r\n")
    match = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
    return bool(match) and len(payload) >= int(match.group(1))


def test_declared_body_over_the_limit_is_refused_before_it_is_sent(server):
    head = (f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            f"Content-Length: {limits.MAX_BODY + 1}\r\n\r\n").encode()
    status, answer = raw_exchange(server.address, head)  # not one byte of the body sent
    assert status == 413
    assert "10 MB" in answer["error"]


@pytest.mark.parametrize("as_form", [False, True], ids=["raw body", "multipart"])
def test_streamed_body_over_the_limit_is_refused_while_it_arrives(model_file, as_form):
    limit = 64 * 1024
    small = RunningServer(model_file, max_bytes=limit)
    try:
        payload = os.urandom(limit + 1)
        if as_form:
            body, content_type = _multipart({"image": ("big.png", payload)})
            body = body[: limit + 300]  # the form's end never comes
        else:
            body, content_type = payload, "image/png"
        chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n"  # no final chunk: still open
        head = (f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                f"Transfer-Encoding: chunked\r\n\r\n").encode()
        status, answer = raw_exchange(small.address, head, chunked)
        assert status == 413
        assert answer["error"] == "request body too large: the limit is 64 KB"
    finally:
        small.stop()


def test_a_body_that_stops_arriving_is_given_up(model_file):
    impatient = RunningServer(model_file, idle_seconds=0.5)
    try:
        head = (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                b"Content-Length: 1000\r\n\r\n")
        status, answer = raw_exchange(impatient.address, head, b"\x89PNG" * 10)  # then silence
        assert status == 408
        assert "stopped arriving" in answer["error"]
    finally:
        impatient.stop()


# Slow clients: each connection is bounded in time and bytes ---------------------------------

PATIENCE = 0.5   # seconds the impatient server gives a request head, and a body before its rate
MIN_RATE = 100   # bytes/s it asks of a body after that
GAP = 0.05       # seconds between a trickling client's pieces: well inside PATIENCE
HANG = 20        # seconds after which a test takes the server to have hung


def uvicorn_protocol(name: str) -> type:
    """One of uvicorn's HTTP parsers, by its name in uvicorn's settings."""
    if name == "httptools":
        pytest.importorskip("httptools")
    from uvicorn.config import HTTP_PROTOCOLS
    from uvicorn.importer import import_from_string

    return import_from_string(HTTP_PROTOCOLS[name])


@pytest.fixture(scope="module", params=["h11", "httptools"])
def impatient(request, model_file):
    """A server with small bounds on slow clients, on each parser uvicorn may pick."""
    running = RunningServer(model_file, head_seconds=PATIENCE,
                            protocol=uvicorn_protocol(request.param),
                            body_seconds=PATIENCE, min_rate=MIN_RATE)
    running.parser = request.param
    yield running
    running.stop()


def trickle(conn: socket.socket, pieces) -> bytes:
    """Send one piece every GAP seconds until the server answers or closes; what it sent."""
    deadline = time.monotonic() + HANG
    while not select.select([conn], [], [], GAP)[0]:
        assert time.monotonic() < deadline, "the server waits for ever for a slow client"
        try:
            conn.sendall(next(pieces))
        except (BrokenPipeError, ConnectionResetError):
            break
    return read_to_end(conn)


def answered_normally(server: RunningServer) -> bool:
    return httpx.get(server.url + "health", timeout=HANG).status_code == 200


@pytest.mark.parametrize("after_an_answer", [False, True], ids=["first head", "next head"])
def test_a_request_head_that_trickles_in_is_cut_off(impatient, after_an_answer):
    with socket.create_connection(impatient.address, timeout=HANG) as conn:
        if after_an_answer:  # a kept-alive connection: uvicorn's own timer stops at any byte
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert parse_answer(read_answer(conn))[0] == 200
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        assert answered_normally(impatient)  # the others are served meanwhile
        received = trickle(conn, (b"X-Slow-%d: %d\r\n" % (i, i) for i in itertools.count()))
    status, headers, payload = parse_answer(received)
    assert status == 408
    assert headers["connection"] == "close"
    assert json.loads(payload)["error"] == ("the request head did not arrive in time (the "
                                            f"limit is {PATIENCE:g} s)")


def test_connections_that_send_nothing_are_closed(impatient):
    idle = [socket.create_connection(impatient.address, timeout=HANG) for _ in range(3)]
    try:
        assert answered_normally(impatient)
        for conn in idle:
            assert read_to_end(conn) == b""  # closed without a word, like an idle keep-alive
    finally:
        for conn in idle:
            conn.close()


@pytest.mark.parametrize("complete", [False, True], ids=["unfinished", "whole, at once"])
def test_a_request_head_over_the_limit_is_refused(impatient, complete):
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: "
    head += b"a" * (limits.MAX_HEAD + 1 - len(head))  # 1 byte past the limit
    if complete:  # arriving in one read, which a parser would take whole
        head += b"\r\n\r\n"
    with socket.create_connection(impatient.address, timeout=HANG) as conn:
        conn.sendall(head)
        status, headers, payload = parse_answer(read_to_end(conn))
    assert status == 431
    assert json.loads(payload)["error"] == "request head too large: the limit is 16 KB"
    assert answered_normally(impatient)


def test_a_head_under_the_limit_with_a_large_body_in_the_same_read_is_served(server):
    picture = png_bytes(draw_digit(7, 200, pen=0.05, ink=20, paper=235, seed=1))
    padding = b"X-Pad: " + b"p" * (limits.MAX_HEAD - 200) + b"\r\n"
    head = (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n" + padding
            + f"Content-Length: {len(picture)}\r\n\r\n".encode())
    status, answer = raw_exchange(server.address, head, picture)
    assert status == 200, answer


def test_a_404_echoes_a_long_path_cut_short(client):
    response = client.get("/" + "x" * 5000)
    assert response.status_code == 404 and len(response.text) < 300


def test_a_body_that_trickles_in_is_given_up(impatient):
    with socket.create_connection(impatient.address, timeout=HANG) as conn:
        conn.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 100000\r\n\r\n\x89PNG")
        assert answered_normally(impatient)
        received = trickle(conn, itertools.repeat(b"x"))  # 20 bytes/s, under MIN_RATE
    status, headers, payload = parse_answer(received)
    assert status == 408
    assert headers["connection"] == "close"
    assert json.loads(payload)["error"] == (f"the request body arrives too slowly (it may take "
                                            f"{PATIENCE:g} s plus 1 s per {MIN_RATE} bytes)")


def test_an_answer_before_the_body_is_read_closes_the_connection(server):
    with socket.create_connection(server.address, timeout=HANG) as conn:
        conn.sendall(b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                     b"the start of a body the server will not read")
        received = read_to_end(conn)  # without waiting for the rest of the body
    status, headers, _ = parse_answer(received)
    assert status == 404
    assert headers["connection"] == "close"
    assert received.count(b"HTTP/1.1 ") == 1  # nothing after the answer


def test_concurrent_requests_each_get_their_own_answer(client):
    pictures = [png_bytes(draw_digit(d, 160, pen=0.05 + 0.01 * (d % 3), ink=15, paper=240,
                                     seed=500 + d)) for d in range(10)]
    alone = [client.post("/api/predict", content=p).json() for p in pictures]

    def ask(index: int) -> tuple[int, dict]:
        response = client.post("/api/predict", content=pictures[index % 10])
        assert response.status_code == 200
        return index % 10, response.json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(ask, range(30)))
    for index, answer in results:
        assert answer["prediction"] == alone[index]["prediction"]
        np.testing.assert_allclose(answer["probabilities"], alone[index]["probabilities"],
                                   atol=1e-6)


def test_serve_without_a_model_is_a_clear_error(tmp_path, capsys):
    from digitrec import cli

    with pytest.raises(SystemExit) as stopped:
        cli.main(["serve", "--model", str(tmp_path / "missing.keras"), "--port", "0"])
    assert stopped.value.code == 1
    assert "missing.keras: no model" in capsys.readouterr().err


def test_serve_on_a_port_in_use_is_a_clear_error(model_file, capsys):
    from digitrec import cli

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as stopped:
            cli.main(["serve", "--model", str(model_file), "--port", str(port)])
    assert stopped.value.code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_command_prints_its_url_and_stops_cleanly_on_ctrl_c(model_file):
    process = subprocess.Popen(
        [sys.executable, "-m", "digitrec.cli", "serve", "--model", str(model_file),
         "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()  # printed once the server accepts connections
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert match, (line, process.stderr.read() if process.poll() is not None else "")
        assert httpx.get(match.group(1) + "health", timeout=30).status_code == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "stopped" in out


# The page, in a real browser -----------------------------------------------------------------

def touch_on_canvas(page, digit: int) -> None:
    """Draw `digit` with one finger, through Chromium's touch input (DevTools protocol)."""
    box = page.locator("#pad").bounding_box()
    margin, span = 0.2 * box["width"], 0.6 * box["width"]
    session = page.context.new_cdp_session(page)
    for stroke in STROKES[digit]:
        points = [(box["x"] + margin + x * span, box["y"] + margin + y * span)
                  for x, y in stroke]
        path = [points[0]]
        for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
            path += [(x0 + (x1 - x0) * t / 8, y0 + (y1 - y0) * t / 8) for t in range(1, 9)]
        for index, (x, y) in enumerate(path):
            kind = "touchStart" if index == 0 else "touchMove"
            session.send("Input.dispatchTouchEvent",
                         {"type": kind, "touchPoints": [{"x": x, "y": y}]})
        session.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    session.detach()


def _browser_missing() -> str | None:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return (f"no Chromium at {CHROMIUM} (apt-get install chromium, or set "
                f"DIGITREC_CHROMIUM); .ci/run installs it")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return 'playwright is not installed (pip install "digitrec[test]")'
    return None


def draw_on_canvas(page, digits: int | str) -> None:
    """Draw a digit, or a number's digits side by side, with the mouse as
    `digitrec.examples` strokes them: real pointer events."""
    box = page.locator("#pad").bounding_box()
    text = str(digits)
    margin, span = 0.2 * box["width"], 0.6 * box["width"] / len(text)
    side = span * (0.85 if len(text) > 1 else 1)  # each digit in a square of its own
    top = box["y"] + (box["height"] - side) / 2
    for slot, digit in enumerate(text):
        left = box["x"] + margin + slot * span
        for stroke in STROKES[int(digit)]:
            _mouse_stroke(page, [(left + x * side, top + y * side) for x, y in stroke])


def _mouse_stroke(page, points) -> None:
    if points:
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y, steps=8)
        page.mouse.up()


def test_page_reads_a_digit_drawn_in_a_real_browser(server, tmp_path):
    missing = _browser_missing()
    if missing and os.environ.get("DIGITREC_REQUIRE_BROWSER"):
        pytest.fail(f"DIGITREC_REQUIRE_BROWSER is set, but {missing}")
    if missing:
        pytest.skip(missing)
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        # Playwright gives the browser a fresh, empty profile of its own.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844},  # a phone
                                    has_touch=True)
            failed = []
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.goto(server.url)
            expect(page.locator("#status")).to_have_text("Draw a digit to start.")
            draw_on_canvas(page, 7)
            expect(page.locator("#reading")).to_have_attribute("aria-busy", "false",
                                                               timeout=30_000)
            expect(page.locator("#prediction")).to_have_text("7")
            expect(page.locator("#confidence")).to_contain_text("% sure")
            # The page shows what the API answers for the picture on the canvas.
            picture = page.evaluate("document.getElementById('pad').toDataURL('image/png')")
            data = base64.b64decode(picture.split(",", 1)[1])
            answer = httpx.post(server.url + "api/predict", content=data, timeout=60).json()
            assert answer["prediction"] == 7
            shown = page.locator("#bars li.top span").first.text_content()
            assert shown == "7"
            seen = page.evaluate("Array.from(document.getElementById('seen').getContext('2d')"
                                 ".getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 == 0))")
            np.testing.assert_array_equal(np.array(seen).reshape(28, 28), answer["digit"])
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            # Clear by keyboard: the controls are reachable with Tab.
            page.locator("#clear").focus()
            page.keyboard.press("Enter")
            expect(page.locator("#prediction")).to_have_text("")
            # A picture given with the upload button is read as the API reads its file.
            photo = tmp_path / "photo.png"
            draw_digit(4, 300, pen=0.04, ink=30, paper=220, seed=8).save(photo)
            expected = httpx.post(server.url + "api/predict", content=photo.read_bytes(),
                                  timeout=60).json()["prediction"]
            page.locator("#upload").set_input_files(str(photo))
            expect(page.locator("#prediction")).to_have_text(str(expected), timeout=30_000)
            # Dropped on the pad, a picture is read too.
            page.locator("#clear").click()
            chalk = tmp_path / "chalk.png"
            draw_digit(2, 200, pen=0.07, ink=235, paper=30, seed=12).save(chalk)
            expected = httpx.post(server.url + "api/predict", content=chalk.read_bytes(),
                                  timeout=60).json()["prediction"]
            dropped = page.evaluate_handle(
                """(b64) => {
                    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                    const data = new DataTransfer();
                    data.items.add(new File([bytes], "chalk.png", {type: "image/png"}));
                    return data;
                }""", base64.b64encode(chalk.read_bytes()).decode())
            page.dispatch_event("#dropzone", "drop", {"dataTransfer": dropped})
            expect(page.locator("#prediction")).to_have_text(str(expected), timeout=30_000)
            # A finger draws as the mouse does (touch events become pointer events).
            page.locator("#clear").click()
            touch_on_canvas(page, 1)
            expect(page.locator("#reading")).to_have_attribute("aria-busy", "false",
                                                               timeout=30_000)
            expect(page.locator("#prediction")).to_have_text("1")
            # A number: read whole, each digit boxed on the pad, as the API answers it.
            page.locator("#clear").click()
            draw_on_canvas(page, "47")
            expect(page.locator("#reading")).to_have_attribute("aria-busy", "false",
                                                               timeout=30_000)
            picture = page.evaluate("document.getElementById('pad').toDataURL('image/png')")
            data = base64.b64decode(picture.split(",", 1)[1])
            answer = httpx.post(server.url + "api/predict", content=data, timeout=60).json()
            assert len(answer["characters"]) == 2, answer["text"]
            expect(page.locator("#prediction")).to_have_text(answer["text"])
            expect(page.locator("#characters")).to_contain_text(", ")
            green = page.evaluate("""Array.from(document.getElementById('boxes')
                .getContext('2d').getImageData(0, 0, 280, 280).data)
                .filter((v, i) => i % 4 == 1 && v > 100).length""")
            assert green > 50  # the boxes' outlines were drawn
            page.screenshot(path=str(tmp_path / "number.png"), full_page=True)
            assert failed == []
        finally:
            browser.close()


def test_connections_on_the_listening_socket_send_without_nagle_delay():
    """asyncio turns Nagle's algorithm off only for sockets that say they are TCP; with it
    on, each answer on a kept-alive connection waited for the client's delayed ACK."""
    import asyncio

    async def nodelay_of_an_accepted_connection() -> int:
        seen = asyncio.get_running_loop().create_future()

        async def handle(reader, writer):
            sock = writer.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        listening = serve.listen("127.0.0.1", 0)
        server = await asyncio.start_server(handle, sock=listening)
        _, writer = await asyncio.open_connection(*listening.getsockname()[:2])
        result = await asyncio.wait_for(seen, 30)
        writer.close()
        server.close()
        return result

    assert asyncio.run(nodelay_of_an_accepted_connection()) != 0


# Many misbehaving clients at once: the others are still served (issue 24, items 5-7) -------

def slow_sockets(address, count: int) -> list[socket.socket]:
    """Half of them stop in the middle of a request head, half in the middle of a body."""
    held = []
    for index in range(count):
        conn = socket.create_connection(address, timeout=HANG)
        if index % 2:
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        else:
            conn.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                         b"Content-Length: 100000\r\n\r\n\x89PNG")
        held.append(conn)
    return held


def test_hundreds_of_slow_sockets_leave_a_burst_of_requests_answered(server):
    held = slow_sockets(server.address, 240)
    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            statuses = list(pool.map(
                lambda _: httpx.get(server.url + "health", timeout=HANG).status_code,
                range(100)))
        assert statuses == [200] * 100
    finally:
        for conn in held:
            conn.close()


def test_past_the_connection_limit_the_refusal_is_json(model_file):
    crowded = RunningServer(model_file, max_connections=8)
    held = slow_sockets(crowded.address, 8)
    try:
        with socket.create_connection(crowded.address, timeout=HANG) as conn:
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, payload = parse_answer(read_to_end(conn))
        assert status == 503 and headers["content-type"] == "application/json"
        assert "holding 8 connections" in json.loads(payload)["error"]
    finally:
        for conn in held:
            conn.close()
    assert answered_normally(crowded)
    crowded.stop()


def test_a_body_over_the_limit_gets_a_413_that_urllib_can_read(model_file):
    import urllib.error
    import urllib.request

    small = RunningServer(model_file, max_bytes=64 * 1024)
    try:
        for body in (b"\x89PNG" * 1_000_000, iter([b"\x89PNG" * 250_000] * 4)):  # 4 MB each
            request = urllib.request.Request(small.url + "api/predict", data=body,
                                             headers={"Content-Type": "image/png"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=HANG)
            assert refused.value.code == 413
            assert json.loads(refused.value.read())["error"] == ("request body too large: "
                                                                 "the limit is 64 KB")
    finally:
        small.stop()


def test_clients_that_hang_up_mid_body_log_no_traceback(server, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    form, content_type = _multipart({"image": ("seven.png", b"\x89PNG" * 1000)})
    for head, part in [
        (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", b"\x89PNG"),
        (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
         b"10\r\n0123456789abcdef\r\n"),
        (f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
         f"Content-Length: {len(form)}\r\n\r\n".encode(), form[:len(form) // 2]),
    ] * 5:
        with socket.create_connection(server.address, timeout=HANG) as conn:
            conn.sendall(head + part)
            time.sleep(0.05)
    assert answered_normally(server)
    time.sleep(0.2)
    assert "Traceback" not in caplog.text and "ClientDisconnect" not in caplog.text
    assert len(caplog.records) <= 15


@pytest.mark.parametrize("port", [99999, -1])
def test_a_port_out_of_range_is_refused(port):
    with pytest.raises(serve.DigitrecError, match=f"port {port}: not a TCP port"):
        serve.listen("127.0.0.1", port)
