"""The SDK's sender under failure: retries, backoff, splitting, overflow, refusals, exit.

A real lgmon cannot be told to answer 503, 429 or 413 on cue, so these tests put a scripted
stand-in on a local port (``ScriptedIngest``, a stdlib HTTP server in a thread): it plays the
role of the remote side of the network, answering each request with the next scripted
response and recording what it received. The happy path against the real server is covered
in ``test_langgraph.py``.
"""

from __future__ import annotations

import gzip
import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from lgmon_client import Sender


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    hold: threading.Event | None = None
    """Answer only once this is set (a slow server)."""


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def run_ids(self) -> list[str]:
        return [run["run_id"] for run in self.body.get("graph_runs", [])]


class ScriptedIngest:
    """Answers ``POST /api/v1/ingest/`` with scripted replies, then with 200s like lgmon."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.received: list[Received] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                body = json.loads(raw)
                outer.received.append(Received(time.monotonic(), dict(self.headers), body))
                reply = outer.script.pop(0) if outer.script else Reply()
                if reply.hold is not None:
                    reply.hold.wait(10)
                answer = reply.body
                if answer is None and reply.status == 200:
                    items = len(body.get("graph_runs", [])) + len(body.get("metric_points", []))
                    answer = {"summary": {"created": items, "duplicate": 0, "rejected": 0}}
                data = json.dumps(answer or {"detail": "scripted"}).encode()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sent_run_ids(self) -> list[str]:
        return [run_id for request in self.received for run_id in request.run_ids]


@pytest.fixture
def remote() -> Iterator[ScriptedIngest]:
    remote = ScriptedIngest()
    yield remote
    remote.server.shutdown()
    remote.server.server_close()


def run(**extra: Any) -> dict[str, Any]:
    return {
        "run_id": str(uuid.uuid4()),
        "graph": "g",
        "status": "success",
        "started_at": time.time(),
        "duration_ms": 1.0,
        "node_runs": [],
        **extra,
    }


def fast_sender(url: str, **options: Any) -> Sender:
    settings: dict[str, Any] = {"flush_interval": 0.02, "backoff": 0.01, "max_retries": 3}
    return Sender(url, "lgm_abc_secret", **(settings | options))


def test_retries_5xx_and_network_errors_with_the_same_body(remote: ScriptedIngest) -> None:
    remote.script = [Reply(503), Reply(502)]
    sender = fast_sender(remote.url)
    runs = [run() for _ in range(3)]
    for item in runs:
        sender.submit("graph_runs", item)

    assert sender.flush(5)
    stats = sender.stats()
    assert (stats.sent, stats.retries, stats.failed) == (3, 2, 0)
    assert len(remote.received) == 3
    assert all(r.run_ids == [x["run_id"] for x in runs] for r in remote.received)
    assert remote.received[0].headers["Authorization"] == "Bearer lgm_abc_secret"
    sender.close()


def wait_for(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_sends_every_flush_interval_without_being_asked(remote: ScriptedIngest) -> None:
    sender = fast_sender(remote.url, flush_interval=0.1)
    for expected in (1, 2, 3):
        sender.submit("graph_runs", run())  # each time the queue was empty before
        assert wait_for(lambda n=expected: len(remote.received) == n, timeout=2)
    assert wait_for(lambda: sender.stats().sent == 3)  # counted once the answer is read
    sender.close()


def test_429_waits_for_retry_after(remote: ScriptedIngest) -> None:
    remote.script = [Reply(429, headers={"Retry-After": "0.3"})]
    sender = fast_sender(remote.url)
    sender.submit("graph_runs", run())

    assert sender.flush(5)
    first, second = remote.received
    assert second.at - first.at >= 0.29
    assert sender.stats().sent == 1
    sender.close()


def test_gives_up_after_max_retries_and_counts_the_loss(remote: ScriptedIngest) -> None:
    remote.script = [Reply(500)] * 10
    sender = fast_sender(remote.url, max_retries=2)
    sender.submit("graph_runs", run())
    sender.submit("graph_runs", run())

    assert sender.flush(5)
    stats = sender.stats()
    assert (stats.sent, stats.failed, stats.retries) == (0, 2, 2)
    assert len(remote.received) == 3


def test_413_splits_the_batch_until_it_fits(remote: ScriptedIngest) -> None:
    remote.script = [Reply(413), Reply(413)]
    sender = fast_sender(remote.url, flush_interval=5)
    runs = [run() for _ in range(4)]
    for item in runs:
        sender.submit("graph_runs", item)

    assert sender.flush(5)
    sizes = [len(request.run_ids) for request in remote.received]
    assert sizes == [4, 2, 1, 1, 2]  # 4 refused, its first half refused and halved again
    assert sorted(remote.sent_run_ids()[6:]) == sorted(x["run_id"] for x in runs)
    assert sender.stats().sent == 4


def test_refused_key_is_not_retried_and_not_logged(
    remote: ScriptedIngest, caplog: pytest.LogCaptureFixture
) -> None:
    remote.script = [Reply(401)]
    sender = fast_sender(remote.url)
    with caplog.at_level(logging.DEBUG, logger="lgmon_client"):
        sender.submit("graph_runs", run())
        assert sender.flush(5)

    assert len(remote.received) == 1
    assert sender.stats().failed == 1
    assert "refused the API key" in caplog.text
    assert "secret" not in caplog.text


def test_partial_and_total_rejections_are_counted_not_retried(remote: ScriptedIngest) -> None:
    errors = {"graph_runs": [{"index": 1, "result": "rejected", "errors": {"status": ["bad"]}}]}
    remote.script = [
        Reply(207, body={"summary": {"created": 1, "duplicate": 0, "rejected": 1}, **errors}),
        Reply(400, body={"summary": {"created": 0, "duplicate": 0, "rejected": 1}, **errors}),
        Reply(400, body={"detail": "Body is not valid JSON"}),
    ]
    sender = fast_sender(remote.url)
    sender.submit("graph_runs", run())
    sender.submit("graph_runs", run(status="bogus"))
    assert sender.flush(5)
    sender.submit("graph_runs", run(status="bogus"))
    assert sender.flush(5)
    sender.submit("graph_runs", run())
    assert sender.flush(5)

    stats = sender.stats()
    assert (stats.sent, stats.rejected, stats.failed, stats.retries) == (1, 3, 0, 0)
    assert len(remote.received) == 3


def test_full_queue_drops_oldest_and_counts_it(remote: ScriptedIngest) -> None:
    release = threading.Event()
    remote.script = [Reply(hold=release)]
    sender = fast_sender(remote.url, max_queue=3, batch_size=1)
    first = run()
    sender.submit("graph_runs", first)
    deadline = time.monotonic() + 5
    while not remote.received and time.monotonic() < deadline:
        time.sleep(0.01)  # the first batch is now in flight, held by the server
    later = [run() for _ in range(10)]
    started = time.monotonic()
    for item in later:
        sender.submit("graph_runs", item)
    assert time.monotonic() - started < 0.5  # submitting never waits for the server
    release.set()

    assert sender.flush(5)
    assert sender.stats().dropped == 7
    assert remote.sent_run_ids() == [first["run_id"]] + [x["run_id"] for x in later[-3:]]


def test_large_batches_are_gzipped(remote: ScriptedIngest) -> None:
    sender = fast_sender(remote.url, flush_interval=5)
    for _ in range(200):
        sender.submit("graph_runs", run(error="x" * 200))
    assert sender.flush(5)

    [request] = remote.received
    assert request.headers["Content-Encoding"] == "gzip"
    assert len(request.run_ids) == 200


def test_close_gives_up_at_its_deadline_and_later_submits_count_as_failed(
    unused_tcp_port: int,
) -> None:
    sender = fast_sender(f"http://127.0.0.1:{unused_tcp_port}", max_retries=100, backoff=0.2)
    sender.submit("graph_runs", run())
    started = time.monotonic()

    sender.close(timeout=0.5)
    assert time.monotonic() - started < 3
    sender.submit("graph_runs", run())
    stats = sender.stats()
    assert (stats.sent, stats.failed) == (0, 2)


def test_flushes_at_interpreter_exit(remote: ScriptedIngest) -> None:
    script = textwrap.dedent(
        f"""
        import time, uuid
        from lgmon_client import Sender
        sender = Sender({remote.url!r}, "k", flush_interval=60)
        for _ in range(5):
            sender.submit("graph_runs", {{"run_id": str(uuid.uuid4()), "graph": "exit",
                "status": "success", "started_at": time.time(), "duration_ms": 1}})
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)

    assert len(remote.sent_run_ids()) == 5


def test_configured_from_the_environment(
    remote: ScriptedIngest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LGMON_URL", remote.url + "/")
    monkeypatch.setenv("LGMON_API_KEY", "lgm_env_key")
    sender = Sender(flush_interval=0.01)
    sender.submit("metric_points", {"name": "queue.depth", "value": 3, "timestamp": time.time()})
    assert sender.flush(5)

    [request] = remote.received
    assert request.headers["Authorization"] == "Bearer lgm_env_key"
    assert request.body["metric_points"][0]["name"] == "queue.depth"
    sender.close()
