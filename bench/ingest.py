"""Ingest throughput benchmark: events stored per second through the real HTTP stack,
compared with a raw PostgreSQL ``COPY`` of the same rows (the ceiling).

What it measures, on this machine, end to end:

1. A fresh PostgreSQL database ``lgmon_bench_ingest`` (dropped and recreated), migrated,
   with an API key that has the ``ingest`` scope.
2. The server as production runs it: gunicorn with 2 sync workers on ``127.0.0.1``.
3. ``BENCH_CONNECTIONS`` sender processes (default 4) each POST batches of 100 graph runs
   × 5 node runs = 500 node-run events to ``/api/v1/ingest/`` for ``BENCH_SECONDS`` seconds
   (default 30), over one ``http.client`` connection each (keep-alive is asked for, but
   gunicorn's sync workers close the connection after every response; ``http.client``
   reconnects). Bodies come from pre-built templates where only the run ids (fresh, unique
   UUIDs for every batch) are substituted, so the senders cost little CPU. Every answer must
   be a 200 with all 100 runs created, else it counts as a failure. Events stored are counted
   in ``monitoring_noderun`` before the window opens and after the last in-flight request
   has been answered; rates divide by the time between.
4. The ceiling, after gunicorn is stopped: one process ``COPY``-ing the same kind of node-run
   rows (attached to stored graph runs) into ``monitoring_noderun``, committing every 500
   rows, once from text buffers built from a template and once with ``write_row``; each for
   half of ``BENCH_SECONDS`` (at least 3 s). The faster of the two is the ceiling.

Besides the rates it prints the CPU used per process group (gunicorn, the bench database's
PostgreSQL backends, the bench's own processes, and everything else: when "other processes"
is large the machine was busy with something else and the figures are not reliable), and
what the workers' database connections were doing, sampled from ``pg_stat_activity``. The
last line printed is ``ingest_vs_copy=<ratio>``: stored events/s divided by COPY rows/s.

Run from the repository root (PostgreSQL at 127.0.0.1:5432, user postgres, trust auth)::

    .venv/bin/python bench/ingest.py
    BENCH_SECONDS=5 .venv/bin/python bench/ingest.py

Everything it starts (gunicorn, sender processes) is stopped on exit, also on errors and
Ctrl-C, and the benchmark database is dropped at the end. A run takes about twice
``BENCH_SECONDS`` plus 10-20 s of setup; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import multiprocessing
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import orjson
import psutil
import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from multiprocessing.context import SpawnProcess
    from multiprocessing.queues import Queue

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
PYTHON = str(BIN / "python") if (BIN / "python").exists() else sys.executable
GUNICORN = str(BIN / "gunicorn")

HOST = "127.0.0.1"
DB_NAME = "lgmon_bench_ingest"
ADMIN_DSN = f"host={HOST} port=5432 user=postgres dbname=postgres"
BENCH_DSN = f"host={HOST} port=5432 user=postgres dbname={DB_NAME}"
DATABASE_URL = f"postgres://postgres@{HOST}:5432/{DB_NAME}"
INGEST_PATH = "/api/v1/ingest/"

GRAPH_RUNS_PER_BATCH = 100
NODES_PER_RUN = 5
EVENTS_PER_BATCH = GRAPH_RUNS_PER_BATCH * NODES_PER_RUN
IDS_PER_BATCH = GRAPH_RUNS_PER_BATCH * (1 + NODES_PER_RUN)
TEMPLATES_PER_SENDER = 16
WARMUP_BATCHES_PER_SENDER = 2
HTTP_TIMEOUT_S = 60.0
STARTUP_TIMEOUT_S = 120.0

GRAPHS = (
    "support-bot",
    "rag-qa",
    "code-review",
    "sql-agent",
    "ticket-triage",
    "summarizer",
    "travel-planner",
    "doc-extract",
    "sales-assistant",
    "onboarding",
)
# Node name -> median duration in milliseconds; durations are lognormal around it.
NODES = {
    "router": 12.0,
    "retrieve": 140.0,
    "call_model": 850.0,
    "run_tools": 260.0,
    "respond": 35.0,
}
NODE_NAMES = tuple(NODES)
ERRORS = (
    "TimeoutError: model call exceeded 30s",
    "ToolException: search API answered 502 Bad Gateway",
    "ValueError: could not parse tool arguments",
    "RateLimitError: 429 Too Many Requests",
)
ID_MARK = "@@RUN_ID@@"
COPY_SQL = (
    "COPY monitoring_noderun (graph_run_id, run_id, node, status, started_at, duration_ms,"
    " attempt, error) FROM STDIN"
)


# --- realistic batches --------------------------------------------------------------------


@dataclass(slots=True)
class NodeSpec:
    node: str
    status: str
    started_at: float
    duration_ms: float
    attempt: int
    error: str


@dataclass(slots=True)
class RunSpec:
    graph: str
    status: str
    started_at: float
    duration_ms: float
    user_id: str
    session_id: str
    version: str
    error: str
    metadata: dict[str, str] | None
    nodes: list[NodeSpec] = field(default_factory=list)


def _lognormal_ms(rng: random.Random, median_ms: float) -> float:
    return round(rng.lognormvariate(math.log(median_ms), 0.7), 3)


def make_run(rng: random.Random, now: float) -> RunSpec:
    """One graph run with exactly five node runs, started within the last four minutes.

    Most runs succeed; a failing run retries its failing node until the five are used up.
    """
    roll = rng.random()
    status = "success" if roll < 0.94 else "error" if roll < 0.99 else "cancelled"
    started = now - rng.uniform(5.0, 240.0)
    failing = rng.randrange(1, NODES_PER_RUN) if status == "error" else NODES_PER_RUN
    nodes: list[NodeSpec] = []
    clock = started + rng.uniform(0.0005, 0.003)
    error = ""
    for position in range(NODES_PER_RUN):
        name = NODE_NAMES[min(position, failing)]
        attempt = 1 + max(0, position - failing)
        node_error = ""
        node_status = "success"
        if position >= failing:
            node_status = "error"
            node_error = error = rng.choice(ERRORS)
        elif status == "cancelled" and position == NODES_PER_RUN - 1:
            node_status = "cancelled"
        duration = _lognormal_ms(rng, NODES[name])
        nodes.append(NodeSpec(name, node_status, clock, duration, attempt, node_error))
        clock += duration / 1000 + rng.uniform(0.0002, 0.002)
    user = rng.randrange(2000)
    return RunSpec(
        graph=rng.choice(GRAPHS),
        status=status,
        started_at=started,
        duration_ms=round((clock - started) * 1000, 3),
        user_id=f"user-{user:05d}",
        session_id=f"sess-{user:05d}-{rng.randrange(8)}",
        version=rng.choice(("v1.4.2", "v1.5.0", "v1.5.1")),
        error=error,
        metadata={"env": "prod", "region": rng.choice(("eu", "us"))}
        if rng.random() < 0.3
        else None,
        nodes=nodes,
    )


def _moment(epoch: float, as_iso: bool) -> str | float:
    if as_iso:
        return datetime.fromtimestamp(epoch, UTC).isoformat()
    return round(epoch, 6)


def batch_template(rng: random.Random, now: float) -> str:
    """A JSON body of 100 graph runs whose 600 run ids are ``%s`` placeholders, in order."""
    runs: list[dict[str, Any]] = []
    for _ in range(GRAPH_RUNS_PER_BATCH):
        spec = make_run(rng, now)
        as_iso = rng.random() < 0.6  # the SDK may send ISO strings or epoch seconds
        run: dict[str, Any] = {
            "run_id": ID_MARK,
            "graph": spec.graph,
            "status": spec.status,
            "started_at": _moment(spec.started_at, as_iso),
            "duration_ms": spec.duration_ms,
            "user_id": spec.user_id,
            "session_id": spec.session_id,
            "version": spec.version,
        }
        if spec.error:
            run["error"] = spec.error
        if spec.metadata:
            run["metadata"] = spec.metadata
        run["node_runs"] = [
            {
                "run_id": ID_MARK,
                "node": node.node,
                "status": node.status,
                "started_at": _moment(node.started_at, as_iso),
                "duration_ms": node.duration_ms,
                "attempt": node.attempt,
                **({"error": node.error} if node.error else {}),
            }
            for node in spec.nodes
        ]
        runs.append(run)
    text = orjson.dumps({"graph_runs": runs}).decode()
    template = text.replace("%", "%%").replace(f'"{ID_MARK}"', '"%s"')
    if template.count('"%s"') != IDS_PER_BATCH:
        raise RuntimeError("batch template does not hold one placeholder per run id")
    return template


class UuidSource:
    """Unique, valid version-4-shaped UUID strings: a random per-process prefix + a counter."""

    def __init__(self) -> None:
        r = uuid.uuid4().hex
        self.prefix = f"{r[:8]}-{r[8:12]}-4{r[13:16]}-{'89ab'[int(r[16], 16) & 3]}{r[17:20]}-"
        self.next = 0

    def take(self, count: int) -> tuple[str, ...]:
        start, self.next = self.next, self.next + count
        prefix = self.prefix
        return tuple([f"{prefix}{n:012x}" for n in range(start, start + count)])


# --- the sender processes -----------------------------------------------------------------


@dataclass(slots=True)
class SenderReport:
    index: int
    ok: int = 0
    failed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    completed_at: list[float] = field(default_factory=list)
    finished_at: float = 0.0
    cpu_s: float = 0.0
    first_failure: str = ""


def _post(conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str]) -> str:
    """POST one batch; returns ``"ok"`` or a short description of what went wrong."""
    try:
        conn.request("POST", INGEST_PATH, body=body, headers=headers)
        response = conn.getresponse()
        answer = response.read()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        return f"{type(exc).__name__}: {exc}"
    if response.status != 200:
        return f"HTTP {response.status}: {answer[:200]!r}"
    if f'"created":{GRAPH_RUNS_PER_BATCH},'.encode() not in answer:
        return f"HTTP 200 but not all created: {answer[:200]!r}"
    return "ok"


def sender(
    index: int, port: int, api_key: str, seed: int, inbox: Queue[Any], outbox: Queue[Any]
) -> None:
    """Warm up, say ready, wait for the deadline, then post batches until it passes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    rng = random.Random(seed)
    now = time.time()
    templates = [batch_template(rng, now) for _ in range(TEMPLATES_PER_SENDER)]
    ids = UuidSource()
    headers = {
        "Authorization": f"Bearer {api_key}",
        "Content-Type": "application/json",
        "Connection": "keep-alive",
    }
    conn = http.client.HTTPConnection(HOST, port, timeout=HTTP_TIMEOUT_S)
    report = SenderReport(index)
    for turn in range(WARMUP_BATCHES_PER_SENDER):
        result = _post(conn, (templates[turn] % ids.take(IDS_PER_BATCH)).encode(), headers)
        if result != "ok":
            outbox.put(("error", index, f"warm-up request failed: {result}"))
            return
    outbox.put(("ready", index, None))
    deadline: float = inbox.get(timeout=STARTUP_TIMEOUT_S)
    cpu_at_start = time.process_time()
    turn = 0
    while time.monotonic() < deadline:
        body = (templates[turn % TEMPLATES_PER_SENDER] % ids.take(IDS_PER_BATCH)).encode()
        turn += 1
        began = time.perf_counter()
        result = _post(conn, body, headers)
        report.latencies_s.append(time.perf_counter() - began)
        report.completed_at.append(time.monotonic())
        if result == "ok":
            report.ok += 1
            report.statuses["200"] = report.statuses.get("200", 0) + 1
            continue
        report.failed += 1
        kind = result.split(":", 1)[0]
        report.statuses[kind] = report.statuses.get(kind, 0) + 1
        report.first_failure = report.first_failure or result
        time.sleep(0.05)  # do not spin on a server that refuses
    report.finished_at = time.monotonic()
    report.cpu_s = time.process_time() - cpu_at_start
    conn.close()
    outbox.put(("done", index, report))


# --- CPU accounting -----------------------------------------------------------------------


def process_cpu(processes: Iterable[psutil.Process]) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each process, by pid."""
    used: dict[int, float] = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        used[process.pid] = times.user + times.system
    return used


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def postgres_groups() -> dict[str, list[psutil.Process]]:
    """Backends (and autovacuum workers) of the bench database, and the shared background
    processes (WAL writer, checkpointer, ...). Backends of other databases are left out."""
    ours: list[psutil.Process] = []
    shared: list[psutil.Process] = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] != "postgres":
            continue
        title = " ".join(process.info["cmdline"] or ())
        if f" {DB_NAME} " in f"{title} ":
            ours.append(process)
        elif "(" not in title and "[local]" not in title and "autovacuum worker" not in title:
            shared.append(process)
    return {"postgres (bench db)": ours, "postgres (shared)": shared}


def kernel_threads() -> list[psutil.Process]:
    """Kernel threads (children of kthreadd): block I/O, memory management, ..."""
    return [p for p in psutil.process_iter(["ppid"]) if p.info["ppid"] == 2 or p.pid == 2]


def machine_busy() -> tuple[float, float]:
    """CPU seconds the whole machine spent busy, and stolen by the hypervisor (``steal``).

    Guest time is already counted in user time, so it is left out.
    """
    times = psutil.cpu_times()
    not_busy = ("idle", "iowait", "guest", "guest_nice", "steal")
    steal = float(getattr(times, "steal", 0.0))
    return float(sum(times) - sum(getattr(times, name, 0.0) for name in not_busy)), steal


NOISY_OTHER_CORES = 0.25


def all_processes_cpu() -> dict[int, tuple[str, float]]:
    """Every process's short command line and CPU seconds so far, by pid."""
    found: dict[int, tuple[str, float]] = {}
    for process in psutil.process_iter(["cmdline", "name", "cpu_times"]):
        times = process.info["cpu_times"]
        if times is None:
            continue
        command = " ".join(process.info["cmdline"] or ()) or process.info["name"] or "?"
        found[process.pid] = (command[:70], times.user + times.system)
    return found


@dataclass(slots=True)
class CpuUsage:
    cores: dict[str, float]
    busiest_others: list[tuple[str, float]]

    def format(self) -> str:
        text = ", ".join(f"{name} {value:.2f}" for name, value in self.cores.items())
        if self.cores.get("other processes", 0.0) > NOISY_OTHER_CORES:
            text += "\n  WARNING: other processes were busy; these figures are not reliable"
            for command, cores in self.busiest_others:
                text += f"\n    {cores:.2f} cores: {command}"
        if self.cores.get("steal (hypervisor)", 0.0) > NOISY_OTHER_CORES:
            text += "\n  WARNING: the hypervisor took CPU time away (steal); not reliable"
        return text


@dataclass(slots=True)
class CpuWindow:
    """CPU used by groups of processes over a window, in cores (CPU seconds per second).

    ``groups`` is called at the start and at the end, so processes started in between count.
    Whatever the machine spent beyond these groups is reported as ``other processes``: when
    it is large, something else was running and the figures are not reliable.
    """

    groups: Callable[[], dict[str, list[psutil.Process]]]
    before: dict[str, dict[int, float]] = field(default_factory=dict)
    everyone_before: dict[int, tuple[str, float]] = field(default_factory=dict)
    machine_before: tuple[float, float] = (0.0, 0.0)
    started: float = 0.0

    def _groups(self) -> dict[str, list[psutil.Process]]:
        return {**self.groups(), "kernel threads": kernel_threads()}

    def start(self) -> None:
        self.before = {name: process_cpu(procs) for name, procs in self._groups().items()}
        self.everyone_before = all_processes_cpu()
        self.machine_before = machine_busy()
        self.started = time.monotonic()

    def usage(self, extra_cpu_s: dict[str, float] | None = None) -> CpuUsage:
        """Cores used per group since ``start``; ``extra_cpu_s`` adds CPU seconds measured
        elsewhere (by processes that have exited since) to a group."""
        elapsed = time.monotonic() - self.started
        busy, steal = machine_busy()
        machine = (busy - self.machine_before[0]) / elapsed
        groups = self._groups()
        cores = {
            name: cpu_delta(self.before.get(name, {}), process_cpu(procs)) / elapsed
            for name, procs in groups.items()
        }
        for name, seconds in (extra_cpu_s or {}).items():
            cores[name] = cores.get(name, 0.0) + seconds / elapsed
        cores["other processes"] = machine - sum(cores.values())
        cores["machine total"] = machine
        cores["steal (hypervisor)"] = (steal - self.machine_before[1]) / elapsed
        ours = {process.pid for procs in groups.values() for process in procs}
        others = [
            (command, (seconds - self.everyone_before.get(pid, ("", 0.0))[1]) / elapsed)
            for pid, (command, seconds) in all_processes_cpu().items()
            if pid not in ours
        ]
        others.sort(key=lambda item: -item[1])
        return CpuUsage(cores, [item for item in others[:3] if item[1] >= 0.05])


# --- database, server ---------------------------------------------------------------------


def recreate_database() -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        name = sql.Identifier(DB_NAME)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def drop_database() -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        name = sql.Identifier(DB_NAME)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def count_rows(table: str) -> int:
    with psycopg.connect(BENCH_DSN) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        ).fetchone()
    assert row is not None
    return int(row[0])


def server_settings() -> str:
    names = ("synchronous_commit", "fsync", "shared_buffers")
    with psycopg.connect(BENCH_DSN) as conn:
        version = conn.info.server_version
        values = [
            f"{name}={row[0]}"
            for name in names
            if (row := conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone())
        ]
    return f"PostgreSQL {version // 10000}.{version % 10000}, " + ", ".join(values)


def code_version() -> str:
    """The commit under test, marked when the work tree has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout?)"
    return f"{head} + uncommitted changes" if dirty else head


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_gunicorn(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [GUNICORN, "lgmon_site.wsgi", "-w", "2", "-b", f"{HOST}:{port}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so it and its workers stop together
        )


def wait_until_answering(server: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({server.returncode}):\n{log_path.read_text()}")
        conn = http.client.HTTPConnection(HOST, port, timeout=5)
        try:
            conn.request("GET", INGEST_PATH)
            conn.getresponse().read()  # any HTTP answer (401 here) means a worker is serving
            return
        except OSError:
            time.sleep(0.2)
        finally:
            conn.close()
    raise RuntimeError(f"gunicorn did not answer within {STARTUP_TIMEOUT_S:.0f} s")


def stop_gunicorn(server: subprocess.Popen[bytes] | None) -> None:
    """Stop the gunicorn we started (master and workers: its process group), by its pid."""
    if server is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)  # graceful: the master stops its workers
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)  # whatever is left of the group
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=5)


def stop_senders(senders: list[SpawnProcess]) -> None:
    for process in senders:
        if process.is_alive():
            process.terminate()
    for process in senders:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)


# --- the two measurements -----------------------------------------------------------------


@dataclass(slots=True)
class IngestResult:
    elapsed_s: float
    events: int
    graph_runs: int
    requests_ok: int
    requests_failed: int
    statuses: dict[str, int]
    latencies_s: list[float]
    first_failure: str
    cpu: CpuUsage
    per_slice: list[float]
    slice_s: float
    activity: list[str]


SAMPLE_INTERVAL_S = 0.1


class ActivitySampler:
    """Samples what the bench database's client backends (the gunicorn workers' connections)
    are doing, from ``pg_stat_activity``: a cheap view of time spent in PostgreSQL vs. Python
    and of lock waits between the workers."""

    def __init__(self) -> None:
        self.conn = psycopg.connect(BENCH_DSN, autocommit=True)
        self.states: dict[str, int] = {}
        self.samples = 0

    def __call__(self) -> None:
        rows = self.conn.execute(
            "SELECT state, wait_event_type, wait_event FROM pg_stat_activity"
            " WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            [DB_NAME],
        ).fetchall()
        self.samples += 1
        for state, wait_type, wait_event in rows:
            if state == "active" and wait_type is None:
                label = "in PostgreSQL, running"
            elif state == "active" and wait_event == "ClientRead":
                label = "in Python, sending COPY data"
            elif state == "active":
                label = f"in PostgreSQL, waiting on {wait_type}:{wait_event}"
            elif state == "idle in transaction":
                label = "in Python, inside a transaction"
            elif state == "idle":
                label = "in Python or waiting for a request (no transaction)"
            else:
                label = str(state)
            self.states[label] = self.states.get(label, 0) + 1

    def summary(self) -> list[str]:
        total = sum(self.states.values()) or 1
        ranked = sorted(self.states.items(), key=lambda item: -item[1])
        return [f"{count / total:6.1%}  {label}" for label, count in ranked]

    def close(self) -> None:
        self.conn.close()


def _collect(
    outbox: Queue[Any],
    senders: list[SpawnProcess],
    kind: str,
    timeout_s: float,
    tick: Callable[[], None] | None = None,
) -> list[Any]:
    """Wait for one ``kind`` message from every sender; fail fast if one dies or errs.

    ``tick`` is called about every ``SAMPLE_INTERVAL_S`` while waiting.
    """
    payloads: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(payloads) < len(senders):
        if tick is not None:
            tick()
        try:
            message, index, payload = outbox.get(timeout=SAMPLE_INTERVAL_S if tick else 1.0)
        except queue.Empty:
            dead = [p.name for p in senders if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"sender process(es) died: {', '.join(dead)}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"senders did not report '{kind}' in time") from None
            continue
        if message == "error":
            raise RuntimeError(f"sender {index}: {payload}")
        if message == kind:
            payloads.append(payload)
    return payloads


def run_ingest(
    seconds: float,
    connections: int,
    port: int,
    api_key: str,
    server_pid: int,
    senders: list[SpawnProcess],
) -> IngestResult:
    """Measure stored events/s through gunicorn; started senders are added to ``senders``."""
    ctx = multiprocessing.get_context("spawn")
    inbox: Queue[Any] = ctx.Queue()
    outbox: Queue[Any] = ctx.Queue()
    for index in range(connections):
        process = ctx.Process(
            target=sender,
            args=(index, port, api_key, 1000 + index, inbox, outbox),
            name=f"sender-{index}",
            daemon=True,
        )
        senders.append(process)
        process.start()
    _collect(outbox, senders, "ready", STARTUP_TIMEOUT_S)

    def groups() -> dict[str, list[psutil.Process]]:
        master = psutil.Process(server_pid)
        return {
            "gunicorn": [master, *master.children(recursive=True)],
            **postgres_groups(),
            "bench client": [psutil.Process()],  # the senders report their own CPU time
        }

    cpu = CpuWindow(groups)
    before_events = count_rows("monitoring_noderun")
    before_runs = count_rows("monitoring_graphrun")
    cpu.start()
    started = time.monotonic()
    for _ in senders:
        inbox.put(started + seconds)
    sampler = ActivitySampler()
    try:
        reports: list[SenderReport] = _collect(
            outbox, senders, "done", seconds + HTTP_TIMEOUT_S + 30, tick=sampler
        )
    finally:
        sampler.close()
    elapsed = max(report.finished_at for report in reports) - started
    usage = cpu.usage({"bench client": sum(report.cpu_s for report in reports)})
    events = count_rows("monitoring_noderun") - before_events
    graph_runs = count_rows("monitoring_graphrun") - before_runs
    slice_s = max(1.0, seconds / 6)
    per_slice = [0.0] * math.ceil(elapsed / slice_s)
    for report in reports:
        for moment in report.completed_at:
            per_slice[min(len(per_slice) - 1, int((moment - started) / slice_s))] += 1
    last_slice_s = elapsed - slice_s * (len(per_slice) - 1)  # the last slice may be shorter
    per_slice = [count / slice_s for count in per_slice[:-1]] + [per_slice[-1] / last_slice_s]
    statuses: dict[str, int] = {}
    for report in reports:
        for status, count in report.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    return IngestResult(
        elapsed_s=elapsed,
        events=events,
        graph_runs=graph_runs,
        requests_ok=sum(r.ok for r in reports),
        requests_failed=sum(r.failed for r in reports),
        statuses=statuses,
        latencies_s=sorted(latency for r in reports for latency in r.latencies_s),
        first_failure=next((r.first_failure for r in reports if r.first_failure), ""),
        cpu=usage,
        per_slice=per_slice,
        slice_s=slice_s,
        activity=sampler.summary(),
    )


@dataclass(slots=True)
class CopyResult:
    method: str
    rows: int
    elapsed_s: float
    cpu: CpuUsage

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.elapsed_s


def _copy_specs(rng: random.Random, graph_run_ids: list[int], now: float) -> list[list[Any]]:
    """500 node-run rows (100 graph runs × 5) with ``None`` where the run id goes."""
    rows: list[list[Any]] = []
    for _ in range(GRAPH_RUNS_PER_BATCH):
        graph_run_id = rng.choice(graph_run_ids)
        for node in make_run(rng, now).nodes:
            moment = datetime.fromtimestamp(node.started_at, UTC)
            rows.append(
                [
                    graph_run_id,
                    None,
                    node.node,
                    node.status,
                    moment,
                    node.duration_ms,
                    node.attempt,
                    node.error,
                ]
            )
    return rows


def _text_template(rows: list[list[Any]]) -> str:
    """The rows in COPY text format, with ``%s`` where each run id goes (no escaping needed)."""
    lines = [
        f"{r[0]}\t%s\t{r[2]}\t{r[3]}\t{r[4].isoformat(sep=' ')}\t{r[5]!r}\t{r[6]}\t"
        f"{r[7].replace('%', '%%')}\n"
        for r in rows
    ]
    return "".join(lines)


def run_copy(method: str, seconds: float, rng: random.Random) -> CopyResult:
    """COPY node-run rows from one process, committing every 500 rows, for ``seconds``."""
    with psycopg.connect(BENCH_DSN) as conn:
        graph_run_ids = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM monitoring_graphrun ORDER BY id DESC LIMIT 5000"
            )
        ]
        if not graph_run_ids:
            raise RuntimeError("no graph runs stored: the ingest phase stored nothing")
        conn.commit()
        now = time.time()
        specs = [_copy_specs(rng, graph_run_ids, now) for _ in range(TEMPLATES_PER_SENDER)]
        templates = [_text_template(rows) for rows in specs]
        ids = UuidSource()
        counter = uuid.uuid4().int & ~((1 << 64) - 1)
        before = count_rows("monitoring_noderun")
        cpu = CpuWindow(lambda: {"bench process": [psutil.Process()], **postgres_groups()})
        cpu.start()
        started = time.monotonic()
        deadline = started + seconds
        turn = 0
        with conn.cursor() as cursor:
            while time.monotonic() < deadline:
                if method == "text buffer":
                    buffer = templates[turn % TEMPLATES_PER_SENDER] % ids.take(EVENTS_PER_BATCH)
                    with cursor.copy(COPY_SQL) as copy:
                        copy.write(buffer.encode())
                else:
                    with cursor.copy(COPY_SQL) as copy:
                        for row in specs[turn % TEMPLATES_PER_SENDER]:
                            counter += 1
                            row[1] = uuid.UUID(int=counter)
                            copy.write_row(row)
                conn.commit()
                turn += 1
        elapsed = time.monotonic() - started
        usage = cpu.usage()
    rows = count_rows("monitoring_noderun") - before
    if rows != turn * EVENTS_PER_BATCH:
        raise RuntimeError(f"COPY stored {rows} rows, expected {turn * EVENTS_PER_BATCH}")
    return CopyResult(method, rows, elapsed, usage)


# --- main -----------------------------------------------------------------------------------


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    seconds = float(os.environ.get("BENCH_SECONDS", "30"))
    connections = int(os.environ.get("BENCH_CONNECTIONS", "4"))
    if not 0 < seconds <= 3600 or not 1 <= connections <= 64:
        raise SystemExit("BENCH_SECONDS must be in (0, 3600] and BENCH_CONNECTIONS in [1, 64]")
    copy_seconds = max(3.0, seconds / 2)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)

    data_dir = Path(tempfile.mkdtemp(prefix="lgmon-bench-ingest-"))
    env = {
        **os.environ,
        "DATABASE_URL": DATABASE_URL,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "LGMON_DATA_DIR": str(data_dir),
        "DEBUG": "false",
    }
    server: subprocess.Popen[bytes] | None = None
    senders: list[SpawnProcess] = []
    database_created = False
    try:
        version = code_version()
        print(f"Preparing database {DB_NAME} ...", flush=True)
        recreate_database()
        database_created = True
        manage(env, "migrate", "--no-input", "-v", "0")
        api_key = manage(env, "apikey", "create", "bench", "--scopes", "ingest", "--quiet").strip()
        port = free_port()
        log_path = data_dir / "gunicorn.log"
        server = start_gunicorn(env, port, log_path)
        wait_until_answering(server, port, log_path)
        print(
            f"gunicorn (2 sync workers) on {HOST}:{port}; {connections} sender processes, "
            f"{EVENTS_PER_BATCH} node runs per batch, {seconds:g} s ...",
            flush=True,
        )
        ingest = run_ingest(seconds, connections, port, api_key, server.pid, senders)
        stop_senders(senders)
        stop_gunicorn(server)
        server = None

        print(f"COPY ceiling, {copy_seconds:g} s per method ...", flush=True)
        rng = random.Random(7)
        copies = [run_copy(method, copy_seconds, rng) for method in ("text buffer", "write_row")]
        best = max(copies, key=lambda c: c.rows_per_s)
        pg = server_settings()

        elapsed = ingest.elapsed_s
        events_per_s = ingest.events / elapsed
        requests = ingest.requests_ok + ingest.requests_failed
        lat = ingest.latencies_s
        print()
        print(f"code: {version}; machine: {os.cpu_count()} CPUs; {pg}")
        print(
            f"ingest window: {elapsed:.2f} s, {connections} connections, "
            f"gunicorn -w 2 (sync), batches of {GRAPH_RUNS_PER_BATCH} graph runs × "
            f"{NODES_PER_RUN} node runs"
        )
        print(
            f"  requests:        {requests} ({ingest.requests_ok} ok, "
            f"{ingest.requests_failed} failed) {ingest.statuses}"
        )
        if ingest.first_failure:
            print(f"  first failure:   {ingest.first_failure}")
        print(f"  requests/s:      {requests / elapsed:,.1f}")
        print(f"  graph runs/s:    {ingest.graph_runs / elapsed:,.0f} ({ingest.graph_runs} stored)")
        print(f"  events/s stored: {events_per_s:,.0f} ({ingest.events} node runs stored)")
        print(
            f"  latency per batch: p50 {_percentile(lat, 0.5) * 1000:.0f} ms, "
            f"p95 {_percentile(lat, 0.95) * 1000:.0f} ms, max {lat[-1] * 1000 if lat else 0:.0f} ms"
        )
        slices = ", ".join(f"{rate:.1f}" for rate in ingest.per_slice)
        print(f"  requests/s per {ingest.slice_s:g} s slice: {slices}")
        print(f"  CPU cores used:  {ingest.cpu.format()}")
        print(f"  gunicorn workers' DB connections ({SAMPLE_INTERVAL_S:g} s samples):")
        for line in ingest.activity:
            print(f"    {line}")
        for copy in copies:
            print(
                f"COPY ({copy.method}, commit every {EVENTS_PER_BATCH} rows): "
                f"{copy.rows_per_s:,.0f} rows/s ({copy.rows} rows in {copy.elapsed_s:.2f} s)"
            )
            print(f"  CPU cores used:  {copy.cpu.format()}")
        print(f"COPY ceiling (best): {best.rows_per_s:,.0f} rows/s ({best.method})")
        print(f"ingest_vs_copy={events_per_s / best.rows_per_s:.3f}")
        return 0 if ingest.requests_failed == 0 else 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_senders(senders)
        stop_gunicorn(server)
        if database_created:
            try:
                drop_database()
            except psycopg.Error as exc:
                print(f"could not drop database {DB_NAME}: {exc}", file=sys.stderr)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("Interrupted; gunicorn and the senders are stopped, the database dropped.")
        sys.exit(130)
