"""Background delivery of runs and metric points to the lgmon ingest API.

The application thread only appends to a bounded in-memory queue; a daemon thread batches the
queue into ``POST /api/v1/ingest/`` requests. Nothing here raises into the application: a slow,
failing or absent server costs the app at most a lock acquisition per item, and what cannot be
delivered is counted in :class:`SenderStats`.
"""

from __future__ import annotations

import atexit
import collections
import gzip
import json
import logging
import os
import random
import threading
import time
import weakref
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import requests

try:  # a dependency of langsmith, hence nearly always there with langchain-core; 15x faster
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]

log = logging.getLogger("lgmon_client")

DEFAULT_URL = "http://127.0.0.1:8000"
INGEST_PATH = "/api/v1/ingest/"
# Below the server's default limits (1,000 graph runs and 10,000 node runs per batch).
MAX_NODE_RUNS_PER_BATCH = 5_000
GZIP_ABOVE_BYTES = 16 * 1024

Kind = Literal["graph_runs", "metric_points"]
Outcome = Literal["done", "split"]


class Deferred(Protocol):
    """An item whose JSON the sender thread builds, off the application's thread."""

    weight: int
    """Node runs it holds (a batch holds at most ``MAX_NODE_RUNS_PER_BATCH``)."""

    def payload(self) -> dict[str, Any]: ...


Item = dict[str, Any] | Deferred


@dataclass
class SenderStats:
    """Counters since the sender was created; read them with :meth:`Sender.stats`."""

    enqueued: int = 0
    sent: int = 0
    """Items the server accepted (created, or already stored)."""
    rejected: int = 0
    """Items the server refused as invalid; they are logged, not retried."""
    dropped: int = 0
    """Oldest items dropped because the queue was full."""
    failed: int = 0
    """Items given up on: retries exhausted, API key refused, or still unsent at close."""
    retries: int = 0
    batches: int = 0

    @property
    def undelivered(self) -> int:
        return self.rejected + self.dropped + self.failed


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        log.warning("lgmon: ignoring %s, not a number", name)
        return default


class _RateLimitedLog:
    """Logs a warning at most once per ``interval`` seconds per key, so a dead server does not
    flood the application's logs."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self.interval) >= self.interval:
            self._last[key] = now
            log.warning(message, *args)


_live_senders: weakref.WeakSet[Sender] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for sender in list(_live_senders):
        sender._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class Sender:
    """Batches items to ``<url>/api/v1/ingest/`` from a background thread.

    ``url`` and ``api_key`` default to the ``LGMON_URL`` and ``LGMON_API_KEY`` environment
    variables. The queue holds at most ``max_queue`` items; past that the oldest is dropped and
    counted. A batch goes out when ``batch_size`` items are waiting or ``flush_interval`` seconds
    after the previous one. Network errors, 5xx, 408 and 429 are retried ``max_retries`` times
    with exponential backoff and jitter (honouring ``Retry-After``); a 413 splits the batch.
    Pending items are flushed at interpreter exit, waiting at most ``exit_timeout`` seconds.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        max_queue: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        exit_timeout: float | None = None,
    ) -> None:
        base = url or os.environ.get("LGMON_URL") or DEFAULT_URL
        self.endpoint = base.rstrip("/") + INGEST_PATH
        self._api_key = api_key if api_key is not None else os.environ.get("LGMON_API_KEY", "")
        self.max_queue = max(1, max_queue)
        self.batch_size = max(1, min(batch_size, 1000))
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.exit_timeout = (
            exit_timeout if exit_timeout is not None else _env_float("LGMON_EXIT_TIMEOUT", 5.0)
        )
        self._warn = _RateLimitedLog()
        self._init_state()
        _live_senders.add(self)
        atexit.register(self._at_exit)
        if not self._api_key:
            log.warning("lgmon: no API key (set LGMON_API_KEY); the server will refuse runs")

    def __repr__(self) -> str:
        return f"Sender({self.endpoint!r})"

    def _init_state(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[tuple[Kind, Item]] = collections.deque()
        self._stats = SenderStats()
        self._in_flight = 0
        self._flush_requested = False
        self._closed = False
        self._give_up_at: float | None = None
        self._thread: threading.Thread | None = None
        self._session: requests.Session | None = None

    def _reset_after_fork(self) -> None:
        # The child has a copy of the queue but not the thread; start afresh rather than send
        # the parent's items twice.
        self._init_state()

    # Application side -----------------------------------------------------------------------

    def submit(self, kind: Kind, item: Item) -> None:
        """Queue one graph run (with its node runs) or metric point, as the JSON object the
        ingest API takes or as a :class:`Deferred` that builds it. Never blocks or raises."""
        try:
            with self._cond:
                if self._closed:
                    self._stats.failed += 1
                    return
                if len(self._queue) >= self.max_queue:
                    self._queue.popleft()
                    self._stats.dropped += 1
                    self._warn.warning("overflow", "lgmon: queue full, dropping oldest items")
                self._queue.append((kind, item))
                self._stats.enqueued += 1
                if self._thread is None:
                    self._start_thread()
                elif len(self._queue) in (1, self.batch_size):
                    # Wake the thread: to start the flush interval, or to send a full batch.
                    self._cond.notify_all()
        except Exception:  # pragma: no cover - the app must never see our failures
            log.debug("lgmon: submit failed", exc_info=True)

    def stats(self) -> SenderStats:
        """A snapshot of the counters."""
        with self._cond:
            return SenderStats(**asdict(self._stats))

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._in_flight

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Send everything queued now; True when the queue drained within ``timeout``.

        Drained means each item was delivered, refused by the server or given up on after its
        retries: :meth:`stats` tells which.
        """
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            with self._cond:
                if self._thread is None and self._queue:
                    self._start_thread()
                self._flush_requested = True
                self._cond.notify_all()
                while self._queue or self._in_flight:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return True
        except Exception:  # pragma: no cover
            log.debug("lgmon: flush failed", exc_info=True)
            return False

    def close(self, timeout: float | None = 10.0) -> bool:
        """Flush, then stop the thread; later submissions are counted as failed.

        Retries stop at the deadline; whatever is still queued then is counted as failed.
        Returns True when the queue drained before the deadline (see :meth:`flush`).
        """
        try:
            atexit.unregister(self._at_exit)
            deadline = None if timeout is None else time.monotonic() + timeout
            with self._cond:
                self._give_up_at = deadline
            drained = self.flush(timeout)
            with self._cond:
                self._closed = True
                self._give_up_at = time.monotonic()
                self._cond.notify_all()
                thread = self._thread
            if thread is not None:
                thread.join(timeout=max(0.0, (deadline or time.monotonic()) - time.monotonic()))
            with self._cond:
                self._stats.failed += len(self._queue)
                self._queue.clear()
            if self._session is not None:
                self._session.close()
            return drained
        except Exception:  # pragma: no cover
            log.debug("lgmon: close failed", exc_info=True)
            return False

    def _at_exit(self) -> None:
        if not self.close(self.exit_timeout):
            stats = self.stats()
            log.warning(
                "lgmon: exiting with %d runs or points undelivered (%d dropped, %d failed)",
                stats.dropped + stats.failed,
                stats.dropped,
                stats.failed,
            )

    # Sender thread ---------------------------------------------------------------------------

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lgmon-sender", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
                if batch is None:
                    return
                self._in_flight = len(batch)
            try:
                self._deliver(batch)
            except Exception:  # pragma: no cover - a bug here must not kill the thread
                log.exception("lgmon: delivering a batch failed")
                with self._cond:
                    self._stats.failed += len(batch)
            with self._cond:
                self._in_flight = 0
                self._cond.notify_all()

    def _next_batch(self) -> list[tuple[Kind, Item]] | None:
        """Wait (holding the condition) until a batch is due; None when closed and empty."""
        deadline = time.monotonic() + self.flush_interval
        while True:
            if self._closed and not self._queue:
                return None
            due = len(self._queue) >= self.batch_size or self._flush_requested or self._closed
            if self._queue and (due or time.monotonic() >= deadline):
                break
            if not self._queue:
                self._flush_requested = False
                self._cond.notify_all()
                self._cond.wait()
                deadline = time.monotonic() + self.flush_interval
            else:
                self._cond.wait(max(0.0, deadline - time.monotonic()))
        batch: list[tuple[Kind, Item]] = []
        node_runs = 0
        while self._queue and len(batch) < self.batch_size:
            _, item = self._queue[0]
            weight = len(item.get("node_runs", ())) if isinstance(item, dict) else item.weight
            if batch and node_runs + weight > MAX_NODE_RUNS_PER_BATCH:
                break
            node_runs += weight
            batch.append(self._queue.popleft())
        return batch

    def _deliver(self, batch: list[tuple[Kind, Item]]) -> None:
        parts = [batch]
        while parts:
            part = parts.pop()
            if self._post(part) != "split":
                continue
            if len(part) > 1:
                middle = len(part) // 2
                parts += [part[middle:], part[:middle]]
            else:
                self._warn.warning("too-large", "lgmon: a run is larger than the server accepts")
                self._count("rejected", 1)

    def _count(self, field: str, amount: int) -> None:
        with self._cond:
            setattr(self._stats, field, getattr(self._stats, field) + amount)

    def _post(self, part: list[tuple[Kind, Item]]) -> Outcome:
        payload: dict[str, list[dict[str, Any]]] = {"graph_runs": [], "metric_points": []}
        for kind, item in part:
            try:
                payload[kind].append(item if isinstance(item, dict) else item.payload())
            except Exception:  # pragma: no cover - a bug building one item loses only it
                log.exception("lgmon: cannot build the JSON of a queued item")
                self._count("rejected", 1)
        size = len(payload["graph_runs"]) + len(payload["metric_points"])
        if not size:
            return "done"
        body = _dumps(payload)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self._api_key}"}
        if len(body) > GZIP_ABOVE_BYTES:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        if self._session is None:
            self._session = requests.Session()
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                response = self._session.post(
                    self.endpoint, data=body, headers=headers, timeout=self.timeout
                )
            except requests.RequestException as exc:
                self._warn.warning("network", "lgmon: cannot reach %s: %s", self.endpoint, exc)
            else:
                status = response.status_code
                if status in (200, 207) or (status == 400 and _has_summary(response)):
                    self._record_results(response, size)
                    return "done"
                if status == 413:
                    return "split"
                if status in (401, 403):
                    self._warn.warning(
                        "auth", "lgmon: the server refused the API key (HTTP %d)", status
                    )
                    self._count("failed", size)
                    return "done"
                if status not in (408, 429) and status < 500:
                    self._warn.warning(
                        "refused", "lgmon: batch refused (HTTP %d): %s", status, _detail(response)
                    )
                    self._count("rejected", size)
                    return "done"
                self._warn.warning("server", "lgmon: server answered HTTP %d, retrying", status)
                retry_after = _retry_after(response)
            attempt += 1
            delay = self._backoff_delay(attempt, retry_after)
            if attempt > self.max_retries or delay is None:
                self._count("failed", size)
                return "done"
            self._count("retries", 1)
            if not self._sleep(delay):
                self._count("failed", size)
                return "done"

    def _sleep(self, delay: float) -> bool:
        """Wait ``delay`` seconds; False as soon as close() says to give up."""
        wake_at = time.monotonic() + delay
        with self._cond:
            while True:
                now = time.monotonic()
                if self._give_up_at is not None and now >= self._give_up_at:
                    return False
                if now >= wake_at:
                    return True
                self._cond.wait(wake_at - now)

    def _backoff_delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before the next try, or None when the close deadline comes first."""
        delay = random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff))
        with self._cond:
            give_up_at = self._give_up_at
        if give_up_at is not None and time.monotonic() + delay >= give_up_at:
            return None
        return delay

    def _record_results(self, response: requests.Response, size: int) -> None:
        try:
            data = response.json()
            summary = data["summary"]
            accepted = int(summary["created"]) + int(summary["duplicate"])
            rejected = int(summary["rejected"])
        except (ValueError, KeyError, TypeError):
            accepted, rejected, data = size, 0, {}
        with self._cond:
            self._stats.sent += accepted
            self._stats.rejected += rejected
            self._stats.batches += 1
        if rejected:
            first = next(
                (
                    item.get("errors")
                    for key in ("graph_runs", "metric_points")
                    for item in data.get(key, [])
                    if item.get("result") == "rejected"
                ),
                None,
            )
            self._warn.warning(
                "rejected", "lgmon: server rejected %d items, e.g. %s", rejected, first
            )


def _dumps(payload: dict[str, Any]) -> bytes:
    """JSON for a batch; UUIDs become strings, anything else unknown its ``str()``."""
    if orjson is not None:
        return orjson.dumps(payload, default=str)
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


def _has_summary(response: requests.Response) -> bool:
    try:
        return "summary" in response.json()
    except ValueError:
        return False


def _detail(response: requests.Response) -> str:
    try:
        return str(response.json().get("detail", ""))[:300]
    except (ValueError, AttributeError):
        return response.text[:300]


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


_default: Sender | None = None
_default_lock = threading.Lock()


def default_sender() -> Sender:
    """The process-wide sender, configured from ``LGMON_URL`` and ``LGMON_API_KEY``."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Sender()
        return _default
