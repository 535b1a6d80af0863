"""Shared fixtures: named actors (an admin, an app key, a reader key) and a batch builder.

When DATABASE_URL or CELERY_BROKER_URL name a server, the suite must reach it: a server that
is down fails the run at once instead of skipping tests.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from lgmon_client import Sender
from monitoring import ingest, rollups
from monitoring.models import ApiKey
from tests.fakes import FakeReceiver


def pytest_configure(config: pytest.Config) -> None:
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if broker.startswith(("redis://", "amqp://")):
        url = urlparse(broker)
        port = url.port or (6379 if url.scheme == "redis" else 5672)
        try:
            socket.create_connection((url.hostname or "127.0.0.1", port), timeout=3).close()
        except OSError as exc:
            raise pytest.UsageError(f"CELERY_BROKER_URL={broker} is unreachable: {exc}") from exc


@pytest.fixture(autouse=True)
def _forget_cached_graph_ids() -> None:
    """Each test rolls its graphs back; ingest's per-process id cache must not outlive them."""
    ingest._known_graph_ids.clear()


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_key(*scopes: str, name: str = "test") -> tuple[ApiKey, str]:
    key = ApiKey(name=name, scopes=list(scopes))
    raw = key.set_new_secret()
    key.save()
    return key, raw


def key_client(*scopes: str, name: str = "test") -> APIClient:
    """An API client that authenticates with a fresh key holding ``scopes``."""
    _, raw = make_key(*scopes, name=name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def app_client(db: None) -> APIClient:
    """An instrumented app: an API key with the ingest scope only."""
    return key_client("ingest", name="app")


@pytest.fixture
def reader_client(db: None) -> APIClient:
    """A dashboard or script: an API key with the read scope only."""
    return key_client("read", name="reader")


@pytest.fixture
def admin_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("alice", "alice@example.com", "pw")


@pytest.fixture
def admin_client_(admin_user: Any) -> Client:
    """A browser signed in to the admin as the superuser ``alice``."""
    client = Client()
    client.force_login(admin_user)
    return client


def graph_run(
    graph: str = "support-bot",
    *,
    status: str = "success",
    started_at: datetime | Any = None,
    duration_ms: float = 120.0,
    nodes: list[tuple[str, str, float]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One graph run as the SDK sends it; ``nodes`` are (name, status, duration_ms).

    ``started_at`` may be a datetime or any raw value to send as it is.
    """
    raw_start = started_at if started_at is not None else timezone.now() - timedelta(seconds=5)
    started = raw_start.isoformat() if isinstance(raw_start, datetime) else raw_start
    node_started = started if isinstance(raw_start, datetime) else timezone.now().isoformat()
    run: dict[str, Any] = {
        "run_id": str(uuid.uuid4()),
        "graph": graph,
        "status": status,
        "started_at": started,
        "duration_ms": duration_ms,
        "node_runs": [
            {
                "run_id": str(uuid.uuid4()),
                "node": name,
                "status": node_status,
                "started_at": node_started,
                "duration_ms": node_ms,
            }
            for name, node_status, node_ms in (nodes or [])
        ],
    }
    run.update(extra)
    return run


@pytest.fixture
def post_batch(app_client: APIClient) -> Callable[..., Any]:
    """POST a batch to the ingest API as the app; then, unless ``roll_up=False``, fold it
    into the rollups as the beat task would a moment later."""

    def post(
        graph_runs: list[dict[str, Any]] | None = None, *, roll_up: bool = True, **body: Any
    ) -> Any:
        payload = {"graph_runs": graph_runs or [], **body}
        response = app_client.post("/api/v1/ingest/", payload, format="json")
        if roll_up:
            rollups.apply_pending()
        return response

    return post


def run_at_once(target: Callable[[], Any], threads: int) -> list[Any]:
    """Call ``target`` from several threads released together (each with its own database
    connection); returns the results, and raises the first exception any thread raised."""
    barrier = threading.Barrier(threads)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(target())
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return results


@pytest.fixture
def sender(live_server: Any) -> Iterator[Sender]:
    """The SDK's sender, pointed at a live lgmon (Django's live server) with an ingest key."""
    _, key = make_key("ingest", name="sdk")
    sender = Sender(live_server.url, key, flush_interval=0.05, max_retries=3, backoff=0.05)
    yield sender
    sender.close(timeout=5)


@pytest.fixture
def unused_tcp_port() -> int:
    """A port nothing listens on (for a server that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[FakeReceiver]:
    """A local HTTP server playing Slack, PagerDuty or a remote webhook (``tests/fakes.py``)."""
    server = FakeReceiver()
    yield server
    server.close()


@pytest.fixture
def allow_private(settings: Any) -> None:
    """The fake receiver is on loopback, which the SSRF guard refuses unless allowed."""
    settings.LGMON_ALERTS_ALLOW_PRIVATE_TARGETS = True


def uses_postgres() -> bool:
    return bool(settings.DATABASES["default"]["ENGINE"].endswith("postgresql"))
