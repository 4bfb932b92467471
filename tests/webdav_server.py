"""A WebDAV server for the tests: WsgiDAV on cheroot, storing uploads atomically.

    python tests/webdav_server.py ROOT PORT

Apache's mod_dav and nginx write an upload to a temporary file and rename it when it is
complete; WsgiDAV's own file provider writes in place, so a dropped connection would leave
a truncated file that looks like a finished upload. This provider behaves like the former.
"""

import os
import sys

from cheroot import wsgi
from wsgidav.fs_dav_provider import FileResource, FilesystemProvider
from wsgidav.wsgidav_app import WsgiDAVApp


class AtomicFileResource(FileResource):
    def begin_write(self, *, content_type=None):
        self._partial = f"{self._file_path}.upload"
        return open(self._partial, "wb")

    def end_write(self, *, with_errors):
        partial = getattr(self, "_partial", None)
        if partial is None or not os.path.exists(partial):
            return
        expected = self.environ.get("CONTENT_LENGTH")
        complete = not with_errors and (
            not expected or os.path.getsize(partial) == int(expected))
        if complete:
            os.replace(partial, self._file_path)
            return
        os.remove(partial)
        if os.path.exists(self._file_path) and os.path.getsize(self._file_path) == 0:
            os.remove(self._file_path)  # the empty placeholder of a new file


class AtomicProvider(FilesystemProvider):
    def get_resource_inst(self, path, environ):
        resource = super().get_resource_inst(path, environ)
        if type(resource) is FileResource:
            resource.__class__ = AtomicFileResource
        return resource


def main() -> None:
    root, port = sys.argv[1], int(sys.argv[2])
    app = WsgiDAVApp({
        "provider_mapping": {"/": AtomicProvider(root)},
        "simple_dc": {"user_mapping": {"*": True}},
        "http_authenticator": {"domain_controller": None},
        "verbose": 0,
        "logging": {"enable": False},
    })
    server = wsgi.Server(("127.0.0.1", port), app)
    server.start()


if __name__ == "__main__":
    main()
