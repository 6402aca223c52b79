"""Shared test helpers."""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

LOCALHOST = "127.0.0.1"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.owner._handle(self)

    def log_message(self, format: str, *args: Any) -> None:  # silence request logging
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LocalHTTPServer


class LocalHTTPServer:
    """Serve ``{path: bytes}`` over HTTP on 127.0.0.1 (random port) in a daemon thread.

    Everything can be changed while running:

    * ``files[path] = data`` serves ``data`` at ``path`` (other paths give 404);
    * ``errors[path] = status`` answers ``path`` with that HTTP error status;
    * ``truncate.add(path)`` sends the full ``Content-Length`` but only half of
      the body, then closes the connection;
    * ``delay[path] = seconds`` sleeps after the headers, before the body.

    ``requests[path]`` counts the GET requests received per path.

    Use as a context manager; ``url(path)`` gives the full URL.
    """

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files: dict[str, bytes] = dict(files or {})
        self.errors: dict[str, int] = {}
        self.truncate: set[str] = set()
        self.delay: dict[str, float] = {}
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalHTTPServer:
        if self._server is not None:
            raise RuntimeError("server already running")
        server = _Server((LOCALHOST, 0), _Handler)
        server.owner = self
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; the port is closed (later connections are refused)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LocalHTTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- access ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server was never started")
        return self._port

    def url(self, path: str) -> str:
        if not path.startswith("/"):
            path = "/" + path
        return f"http://{LOCALHOST}:{self.port}{path}"

    def count(self, path: str | None = None) -> int:
        """Requests received for ``path`` (all paths when None)."""
        with self._lock:
            return sum(self.requests.values()) if path is None else self.requests[path]

    # -- request handling --------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlsplit(handler.path).path
        with self._lock:
            self.requests[path] += 1
            status = self.errors.get(path)
            data = self.files.get(path)
            truncate = path in self.truncate
            delay = self.delay.get(path, 0.0)
        if status is not None:
            handler.send_error(status)
            return
        if data is None:
            handler.send_error(404)
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.flush()
        if delay:
            time.sleep(delay)
        try:
            handler.wfile.write(data[: len(data) // 2] if truncate else data)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # client gave up (e.g. timeout)
            pass
        handler.close_connection = True


def closed_port_url(path: str = "/file.bin") -> str:
    """A URL on 127.0.0.1 whose port was just closed, so connecting is refused."""
    server = LocalHTTPServer().start()
    url = server.url(path)
    server.stop()
    return url


def save_name_based_checkpoint(prefix: Any, tensors: dict[str, Any]) -> str:
    """Write ``{variable name: numpy array}`` as a TF name-based checkpoint at ``prefix``.

    Like the official TF1 checkpoints (``<prefix>.index`` + ``<prefix>.data-*``), written with
    ``tf.raw_ops.SaveV2``; returns the prefix as a string.
    """
    import tensorflow as tf

    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names,
                      shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[name]) for name in names])
    return str(prefix)
