"""A WebDAV server for the tests: WsgiDAV on cheroot, storing uploads atomically.

    python tests/webdav_server.py ROOT PORT [--die-after BYTES]

Apache's mod_dav and nginx write an upload to a temporary file and rename it when it is
complete; WsgiDAV's own file provider writes in place, so a dropped connection would leave
a truncated file that looks like a finished upload. This provider behaves like the former.

With --die-after, the server process kills itself (SIGKILL, no clean-up) once that many
bytes of file content have gone in or out: a server that dies mid-transfer.
"""

import argparse
import os
import signal

from cheroot import wsgi
from wsgidav import util
from wsgidav.fs_dav_provider import FileResource, FilesystemProvider, FolderResource
from wsgidav.wsgidav_app import WsgiDAVApp


class AtomicFileResource(FileResource):
    """A file written to `NAME.upload` and renamed to NAME only once the upload is whole."""

    def begin_write(self, *, content_type=None):
        self._partial = f"{self._file_path}.upload"
        return open(self._partial, "wb")

    def end_write(self, *, with_errors):
        expected = self.environ.get("CONTENT_LENGTH")
        complete = not with_errors and (
            not expected or os.path.getsize(self._partial) == int(expected))
        if complete:
            os.replace(self._partial, self._file_path)
        else:
            os.remove(self._partial)


class AtomicFolderResource(FolderResource):
    def create_empty_resource(self, name):
        """A new file, without WsgiDAV's empty placeholder under the final name (which a
        killed upload would leave behind, looking like a finished one)."""
        path = util.join_uri(self.path, name)
        file_path = self.provider._loc_to_file_path(path, self.environ)
        partial = f"{file_path}.upload"
        open(partial, "wb").close()
        resource = AtomicFileResource(path, self.environ, partial)
        resource._file_path = file_path
        return resource


class AtomicProvider(FilesystemProvider):
    def get_resource_inst(self, path, environ):
        resource = super().get_resource_inst(path, environ)
        if type(resource) is FileResource:
            resource.__class__ = AtomicFileResource
        elif type(resource) is FolderResource:
            resource.__class__ = AtomicFolderResource
        return resource


class DieAfter:
    """WSGI middleware: SIGKILL this process once `limit` body bytes have moved."""

    def __init__(self, app, limit: int):
        self.app, self.limit, self.moved = app, limit, 0

    def count(self, size: int) -> None:
        self.moved += size
        if self.moved > self.limit:
            os.kill(os.getpid(), signal.SIGKILL)

    def __call__(self, environ, start_response):
        body, middleware = environ["wsgi.input"], self

        class CountingInput:
            def read(self, *args):
                data = body.read(*args)
                middleware.count(len(data))
                return data

            def __getattr__(self, name):
                return getattr(body, name)

        environ["wsgi.input"] = CountingInput()
        response = self.app(environ, start_response)
        try:
            for chunk in response:
                self.count(len(chunk))
                yield chunk
        finally:
            if hasattr(response, "close"):
                response.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("port", type=int)
    parser.add_argument("--die-after", type=int)
    args = parser.parse_args()
    app = WsgiDAVApp({
        "provider_mapping": {"/": AtomicProvider(args.root)},
        "simple_dc": {"user_mapping": {"*": True}},
        "http_authenticator": {"domain_controller": None},
        "verbose": 0,
        "logging": {"enable": False},
    })
    if args.die_after is not None:
        app = DieAfter(app, args.die_after)
    server = wsgi.Server(("127.0.0.1", args.port), app)
    server.start()


if __name__ == "__main__":
    main()
