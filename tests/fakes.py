"""Fakes for the outside world: ``FakeReceiver`` is a local HTTP(S) server standing in for
Slack, PagerDuty or a remote webhook. It records every request (method, path, headers, body)
and answers from a script (status, headers, body, optional delay); with no script it answers
200. Tests that deliver to it must allow loopback targets (``LGMON_ALERTS_ALLOW_PRIVATE_TARGETS``).
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: FakeReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out and hung up is expected in these tests: stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        receiver.requests.append(Recorded(self.command, self.path, headers, body))
        reply = receiver.replies.pop(0) if receiver.replies else Reply()
        if reply.delay:
            receiver.stopping.wait(reply.delay)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeReceiver:
    """A local HTTP(S) server standing in for Slack, PagerDuty or a remote webhook."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Recorded] = []
        self.replies: list[Reply] = []
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.receiver = self
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def reply(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def close(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
