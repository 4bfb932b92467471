"""One attempt at one file from one mirror: the bounds it is held to and how it fails.

`Watchdog` holds an attempt to its deadline and minimum speed, also inside a blocked read;
`watched_opener` is urllib's opener with every connection it makes watched. A mirror that
breaks a bound, or cannot supply the file, raises `MirrorError` (`TransientError` when the
same mirror is worth another try), and `download` moves on to the next mirror.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from contextlib import suppress

from digitrec.errors import redact
from digitrec.params import DownloadParams


class MirrorError(Exception):
    """One mirror could not supply one file; the message says why."""


class TransientError(MirrorError):
    """A failure worth retrying on the same mirror (timeout, reset, 5xx, cut transfer)."""


class UnreachableError(TransientError):
    """No answer at all from the mirror's host (DNS, refused, timeout): skip it for later files."""



class Watchdog:
    """Holds one attempt to the deadline and the minimum speed, even inside a blocked read.

    The reading thread checks both after every read. A read can block for long, though: a
    mirror that trickles its headers or a chunk-size line never lets a read return. So a
    thread checks too, a few times a second, and when a bound is broken it shuts the
    connection's socket down, which makes the blocked read return at once. It holds its own
    duplicate of each socket, taken as soon as the TCP connection stands: that one is
    never closed under it (so its descriptor is never another file's), and it reaches the
    connection also while a TLS handshake, which a mirror can trickle too, is under way.
    """

    def __init__(self, deadline_at: float, bounds: DownloadParams):
        self.reason: str | None = None
        self._deadline_at = deadline_at
        self._deadline = bounds.deadline
        self._min_speed = bounds.min_speed
        self._window = bounds.stall_window
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []  # our duplicates, closed on exit
        self._window_start: float | None = None  # None until the body starts
        self._window_bytes = 0
        self._received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="download-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self._sockets:
            sock.close()

    def remaining(self) -> float:
        return self._deadline_at - time.monotonic()

    def watch(self, sock: socket.socket) -> socket.socket:
        """Keep a duplicate of a freshly connected socket, to cut it if a bound is broken."""
        with self._lock:
            self._sockets.append(sock.dup())
        if self.reason:
            self._cut()
        return sock

    def body_started(self, received: int) -> None:
        with self._lock:
            self._window_start = time.monotonic()
            self._window_bytes = self._received = received

    def progress(self, received: int) -> None:
        """Record the bytes received so far and raise MirrorError if a bound is broken."""
        with self._lock:
            self._received = received
        self.raise_if_tripped()

    def raise_if_tripped(self) -> None:
        reason = self._check()
        if reason:
            raise MirrorError(reason)

    def _check(self) -> str | None:
        with self._lock:
            if self.reason is None:
                self.reason = self._verdict(time.monotonic())
            return self.reason

    def _verdict(self, now: float) -> str | None:
        if now >= self._deadline_at:
            return f"took longer than the deadline of {self._deadline:g} s (download.deadline)"
        if self._min_speed <= 0 or self._window_start is None:
            return None
        elapsed = now - self._window_start
        if elapsed < self._window:
            return None
        got = self._received - self._window_bytes
        if got < self._min_speed * self._window:
            return (f"stalled: {got} byte{'' if got == 1 else 's'} in {elapsed:.1f} s, slower than "
                    f"{self._min_speed:g} bytes/s (download.min_speed)")
        self._window_start, self._window_bytes = now, self._received
        return None

    def _run(self) -> None:
        tick = min(0.25, self._window / 4)
        while not self._stop.wait(tick):
            if self._check():
                self._cut()
                return

    def _cut(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with suppress(OSError):  # not connected any more
                sock.shutdown(socket.SHUT_RDWR)  # for every descriptor of the connection


def watched_opener(watchdog: Watchdog) -> urllib.request.OpenerDirector:
    """A urllib opener whose connections hand their sockets to `watchdog` as soon as the TCP
    connection stands (before any TLS handshake or header can trickle), and which refuses
    redirects to FTP, whose sockets it could not watch."""

    def watched(connection_class: type) -> type:
        class Watched(connection_class):
            def __init__(self, *args: object, **kwargs: object):
                super().__init__(*args, **kwargs)
                create = self._create_connection
                self._create_connection = lambda *a, **k: watchdog.watch(create(*a, **k))

        return Watched

    class Http(urllib.request.HTTPHandler):
        def do_open(self, http_class, req, **kwargs):
            return super().do_open(watched(http_class), req, **kwargs)

    class Https(urllib.request.HTTPSHandler):
        def do_open(self, http_class, req, **kwargs):
            return super().do_open(watched(http_class), req, **kwargs)

    class NoFtp(urllib.request.FTPHandler):
        def ftp_open(self, req):
            raise MirrorError(f"redirected to {redact(req.full_url)}: FTP is not allowed for "
                              f"mirrors")

    return urllib.request.build_opener(Http, Https, NoFtp)
