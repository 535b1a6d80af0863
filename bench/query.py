"""Query benchmark: window statistics and usage analytics at 1M and at 10M stored runs.

What it measures, on a dedicated PostgreSQL database (``lgmon_bench_query``, recreated):

1. Loads synthetic runs through the real ingest code, first 1,000,000 runs, then more up to
   10,000,000: ``monitoring.ingest.store`` (COPY of the raw rows plus one ``RollupDelta`` row,
   one transaction per chunk: at most 5,000 graph runs completing in one aligned 15-minute
   slot), then ``rollups.apply_pending`` after every chunk, which folds the delta into the
   minute and hour rollups and the session activity (in production a Celery beat task does
   that every 2 s). The load rate counts both. It is a backfill of 14 days of history: from
   1M to 10M every chunk adds to rollup rows that exist already, which costs more per run
   than live ingest, where a round touches the rows of the current minute or two.
   A "run" is one raw row; every graph run has 4 node runs, so 10M runs = 2M graph runs +
   8M node runs. 10 graphs x 5 node names, ~5 % errors, ~1.5 % interrupted, lognormal
   durations (node medians 5 ms to 2 s, sigma 0.8). Graph runs come in sessions: 3-8 runs
   of one graph by one user (one session id), a pause of 5 s + exponential(30 s) between
   them (completion to completion); sessions end over the 14 days of raw retention (30 % in
   the last day). 20,000 users, user k (0 = busiest) starting sessions in proportion to
   1 / (k + 1) ** 0.5, so ``user-0`` has about 0.35 % of them.
2. With ``now`` fixed at the end of the data, for the last 10 min, 1 h and 24 h:
   a) ``rollups.window_stats`` for one graph (30 repetitions, median and p95),
   b) ``rollups.grouped_window_stats`` per node across all graphs (30 repetitions),
   c) for contrast, the same statistics from the raw rows in SQL (a few repetitions),
   plus a breakdown of where the time of (a) and (b) goes: SQL, the ORM's row iterator,
   ``Histogram.from_bytes``, histogram merge + quantiles, other Python.
3. Usage analytics (20 repetitions, median and p95, soft target 100 ms): ``active_users`` for
   the last 1 d and 7 d, all graphs and one graph; ``user_analytics`` for the busiest user
   over 7 d; ``popular_graphs`` over 7 d; with the SQL time of one call and, for contrast
   and as a check of the figures, the same from the raw rows in SQL.
4. Accuracy: histogram p50/p95/p99 against exact order statistics computed in PostgreSQL.
5. Prints PASS/FAIL against the targets; the last line is ``query_p95_ms=<ms>`` (one
   graph's window statistics, worst window, at the largest size).

Run it from the repository root (about 20 minutes at full size on 2 cores)::

    .venv/bin/python bench/query.py
    BENCH_RUNS=100000,300000 .venv/bin/python bench/query.py   # quick, smaller sizes
    BENCH_KEEP=1 .venv/bin/python bench/query.py               # keep the database afterwards

It is a benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg

if TYPE_CHECKING:
    from monitoring.ingest import GraphRunIn
    from monitoring.rollups import Scope

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "lgmon_bench_query"
SERVER_URL = "postgres://postgres@127.0.0.1:5432"

DEFAULT_SIZES = (1_000_000, 10_000_000)
NODES_PER_RUN = 4
ROWS_PER_GRAPH_RUN = 1 + NODES_PER_RUN
# Graph runs per store() call, each followed by rollups.apply_pending(): at most CHUNK, and
# no more than CHUNK_SPAN of completions (aligned), so that one apply round touches at most
# ~15 minutes of rollup rows, as a live beat task (every 2 s) touches a minute or two. A
# round over a few hours of history is much slower per run: upsert's lookup of existing
# rows ORs one condition per key (measured: 4,000 keys 0.35 s, ~19,000 keys 26 s).
CHUNK = 5_000
CHUNK_SPAN = timedelta(minutes=15)
SEED = 20_240_601

RETENTION = timedelta(days=14)
RECENT_SHARE = 0.3  # of the sessions end in the last 24 h
SIGMA = 0.8
ERROR_RATE = 0.05
INTERRUPTED_RATE = 0.015

USERS = 20_000
USER_SKEW = 0.5  # user k (0 = busiest) starts sessions in proportion to 1 / (k + 1) ** USER_SKEW
SESSION_RUNS = (3, 8)  # graph runs per session, uniform, both included
SESSION_PAUSE_S = (5.0, 30.0)  # pause between a session's runs: minimum + exponential mean
BUSY_USER = "user-0"

GRAPHS = (
    "support_agent",
    "rag_qa",
    "code_review",
    "sql_agent",
    "triage",
    "summarizer",
    "planner",
    "research",
    "email_writer",
    "doc_extract",
)
# Every graph has these 5 nodes; a run goes route -> (retrieve | tools) -> call_model -> respond.
NODES = ("route", "retrieve", "call_model", "tools", "respond")

WINDOWS = (
    ("10m", timedelta(minutes=10)),
    ("1h", timedelta(hours=1)),
    ("24h", timedelta(hours=24)),
)
QUANTILES = (0.5, 0.95, 0.99)
REPS = 30
RAW_REPS = 3
ANALYTICS_REPS = 20

TARGET_GRAPH_MS = 50.0
TARGET_PER_NODE_P95_MS = 100.0
TARGET_REL_ERROR = 0.02
TARGET_ANALYTICS_MS = 100.0  # soft target, p95


# --- setup -----------------------------------------------------------------------------------


def recreate_database() -> None:
    with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DB_NAME}")


def drop_database() -> None:
    with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def setup_django() -> None:
    os.environ["DATABASE_URL"] = f"{SERVER_URL}/{DB_NAME}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "lgmon_site.settings"
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def sizes_from_env() -> list[int]:
    raw = os.environ.get("BENCH_RUNS", "")
    sizes = [int(part) for part in raw.replace("_", "").split(",") if part.strip()] or list(
        DEFAULT_SIZES
    )
    if sizes != sorted(sizes) or sizes[0] < ROWS_PER_GRAPH_RUN:
        raise SystemExit(f"BENCH_RUNS must be increasing run counts, got {raw!r}")
    return sizes


def label(runs: int) -> str:
    if runs % 1_000_000 == 0:
        return f"{runs // 1_000_000}M"
    if runs % 1_000 == 0:
        return f"{runs // 1_000}k"
    return str(runs)


def load_average() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


# --- synthetic data --------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """The fixed traits of the synthetic workload: traffic per graph and per user, latency
    per node."""

    weights: np.ndarray  # share of the sessions per graph
    user_weights: np.ndarray  # share of the sessions per user
    medians_ms: np.ndarray  # (graph, node) -> median duration
    end: datetime  # every timestamp is before this; queries use it as "now"

    @classmethod
    def make(cls, rng: np.random.Generator, end: datetime) -> Shape:
        weights = 1 / np.arange(1, len(GRAPHS) + 1) ** 0.7
        users = 1 / np.arange(1, USERS + 1) ** USER_SKEW
        medians = np.geomspace(5.0, 2000.0, len(GRAPHS) * len(NODES))
        medians = rng.permutation(medians).reshape(len(GRAPHS), len(NODES))
        return cls(weights / weights.sum(), users / users.sum(), medians, end)


@dataclass
class Loaded:
    graph_runs: int = 0
    sessions: int = 0
    max_graph_ms: float = 0.0


def generate(
    count: int, rng: np.random.Generator, shape: Shape, loaded: Loaded
) -> Iterator[list[GraphRunIn]]:
    """``count`` graph runs in sessions, in chunks, in order of completion as a live ingest
    would see them (see the module docstring for the shape of the sessions)."""
    if count <= 0:
        return
    low, high = SESSION_RUNS
    sizes = rng.integers(low, high + 1, count // low + 1)
    ends = np.cumsum(sizes)
    sessions = int(np.searchsorted(ends, count)) + 1
    sizes, ends = sizes[:sessions], ends[:sessions]
    sizes[-1] -= ends[-1] - count  # the last session is cut to make ``count`` runs
    ends[-1] = count
    day_s = 86_400.0
    recent = rng.random(sessions) < RECENT_SHARE
    # Seconds between a session's last completion and the end; an hour of room (more than
    # a session lasts) keeps runs in retention.
    last_ago_s = np.where(
        recent,
        rng.uniform(0.0, day_s, sessions),
        rng.uniform(day_s, RETENTION.total_seconds() - 3600, sessions),
    )
    session_graph = rng.choice(len(GRAPHS), sessions, p=shape.weights)
    session_user = rng.choice(USERS, sessions, p=shape.user_weights)
    blob = rng.bytes(16 * sessions)
    session_ids = [
        str(uuid.UUID(bytes=blob[16 * i : 16 * i + 16], version=4)) for i in range(sessions)
    ]
    loaded.sessions += sessions
    # Per run: its session, and its completion as seconds before the end. A run completes
    # the sum of the later runs' pauses before the session's last one.
    session = np.repeat(np.arange(sessions), sizes)
    pause_s = SESSION_PAUSE_S[0] + rng.exponential(SESSION_PAUSE_S[1], count)
    total_s = np.cumsum(pause_s)
    ago_s = last_ago_s[session] + total_s[ends - 1][session] - total_s
    order = np.argsort(-ago_s, kind="stable")
    ago_s, session = ago_s[order], session[order]
    graph, user = session_graph[session], session_user[session]
    # Chunks end every CHUNK runs and wherever completions cross a CHUNK_SPAN boundary.
    span_s = CHUNK_SPAN.total_seconds()
    slot = np.floor((shape.end.timestamp() - ago_s) / span_s)
    cuts = [0, *(np.flatnonzero(np.diff(slot)) + 1).tolist(), count]
    for first, stop in itertools.pairwise(cuts):
        for lo in range(first, stop, CHUNK):
            hi = min(lo + CHUNK, stop)
            chunk_ids = [session_ids[i] for i in session[lo:hi].tolist()]
            yield build_chunk(
                ago_s[lo:hi], graph[lo:hi], user[lo:hi], chunk_ids, rng, shape, loaded
            )


def build_chunk(
    ago_s: np.ndarray,
    graph: np.ndarray,
    users: np.ndarray,
    session_ids: list[str],
    rng: np.random.Generator,
    shape: Shape,
    loaded: Loaded,
) -> list[GraphRunIn]:
    from monitoring.ingest import GraphRunIn, NodeRunIn

    size = len(ago_s)
    branch = rng.integers(0, 2, size)  # retrieve or tools
    node_index = np.stack(
        [np.zeros(size, int), 1 + 2 * branch, np.full(size, 2), np.full(size, 4)], axis=1
    )
    node_ms = shape.medians_ms[graph[:, None], node_index] * np.exp(
        SIGMA * rng.standard_normal((size, NODES_PER_RUN))
    )
    gaps_ms = rng.exponential(0.3, (size, NODES_PER_RUN))
    node_offset_ms = np.cumsum(gaps_ms + node_ms, axis=1) - node_ms
    graph_ms = node_offset_ms[:, -1] + node_ms[:, -1] + rng.exponential(1.0, size)
    start_ago_us = np.rint(ago_s * 1e6 + graph_ms * 1000).astype(np.int64)
    node_ago_us = start_ago_us[:, None] - np.rint(node_offset_ms * 1000).astype(np.int64)
    roll = rng.random(size)
    loaded.max_graph_ms = max(loaded.max_graph_ms, float(graph_ms.max()))

    end = shape.end
    statuses = [
        "error"
        if r < ERROR_RATE
        else "interrupted"
        if r < ERROR_RATE + INTERRUPTED_RATE
        # success otherwise
        else "success"
        for r in roll.tolist()
    ]
    runs: list[GraphRunIn] = []
    for graph_i, status, start_us, graph_d, nodes_i, nodes_us, nodes_d, user, session_id in zip(
        graph.tolist(),
        statuses,
        start_ago_us.tolist(),
        graph_ms.tolist(),
        node_index.tolist(),
        node_ago_us.tolist(),
        node_ms.tolist(),
        users.tolist(),
        session_ids,
        strict=True,
    ):
        error = "RuntimeError: tool call failed" if status == "error" else ""
        node_runs = [
            NodeRunIn(
                None,
                NODES[nodes_i[k]],
                "success",
                end - timedelta(microseconds=nodes_us[k]),
                nodes_d[k],
                1,
                "",
            )
            for k in range(NODES_PER_RUN - 1)
        ]
        node_runs.append(
            NodeRunIn(
                None,
                NODES[nodes_i[-1]],
                status,
                end - timedelta(microseconds=nodes_us[-1]),
                nodes_d[-1],
                1,
                error,
            )
        )
        runs.append(
            GraphRunIn(
                run_id=str(uuid.uuid4()),
                parent_run_id=None,
                graph=GRAPHS[graph_i],
                status=status,
                started_at=end - timedelta(microseconds=start_us),
                duration_ms=graph_d,
                user_id=f"user-{user}",
                session_id=session_id,
                version="v3",
                experiment="",
                error=error,
                metadata_json="{}",
                node_runs=node_runs,
            )
        )
    loaded.graph_runs += size
    return runs


def load(target_runs: int, rng: np.random.Generator, shape: Shape, loaded: Loaded) -> None:
    """Store graph runs (``ingest.store``, then ``rollups.apply_pending``) until
    ``target_runs`` raw rows are stored."""
    from monitoring import ingest, rollups
    from monitoring.models import RollupDelta

    count = target_runs // ROWS_PER_GRAPH_RUN - loaded.graph_runs
    sessions_before = loaded.sessions
    generate_s = store_s = apply_s = 0.0
    applied = 0
    started = time.perf_counter()
    chunks = generate(count, rng, shape, loaded)
    while True:
        t0 = time.perf_counter()
        runs = next(chunks, None)
        t1 = time.perf_counter()
        generate_s += t1 - t0
        if runs is None:
            break
        ingest.store(list(enumerate(runs)), [], shape.end)
        t2 = time.perf_counter()
        store_s += t2 - t1
        applied += rollups.apply_pending()
        apply_s += time.perf_counter() - t2
    elapsed = time.perf_counter() - started
    rows = count * ROWS_PER_GRAPH_RUN
    pending = RollupDelta.objects.count()
    print(
        f"loaded {count:,} graph runs ({loaded.sessions - sessions_before:,} sessions)"
        f" + {count * NODES_PER_RUN:,} node runs = {rows:,} runs in {elapsed:.1f} s:"
        f" {rows / elapsed:,.0f} runs/s overall, {rows / (store_s + apply_s):,.0f} runs/s in"
        f" ingest.store + rollups.apply_pending (generating {generate_s:.1f} s;"
        f" storing {store_s:.1f} s = {rows / store_s:,.0f} runs/s; applying {applied:,}"
        f" deltas {apply_s:.1f} s = {rows / apply_s:,.0f} runs/s); {pending} deltas pending"
    )
    t0 = time.perf_counter()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"VACUUM ANALYZE in {time.perf_counter() - t0:.1f} s")


# --- timing ----------------------------------------------------------------------------------


def nearest_rank(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Timing:
    samples_ms: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p95(self) -> float:
        return nearest_rank(self.samples_ms, 0.95)


def timed(call: Callable[[], object], reps: int) -> Timing:
    call()  # warm-up, untimed
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1000)
    return Timing(samples)


@contextmanager
def sql_profile() -> Iterator[list[float]]:
    """Milliseconds of every SQL statement Django executes inside the block (a client-side
    cursor's execute includes fetching its rows)."""
    from django.db import connection

    durations: list[float] = []

    def wrapper(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            durations.append((time.perf_counter() - t0) * 1000)

    with connection.execute_wrapper(wrapper):
        yield durations


def tables() -> dict[str, str]:
    from monitoring.models import GraphRun, HourRollup, MinuteRollup, NodeRun, SessionActivity

    return {
        "graphrun": GraphRun._meta.db_table,
        "noderun": NodeRun._meta.db_table,
        "minute": MinuteRollup._meta.db_table,
        "hour": HourRollup._meta.db_table,
        "session": SessionActivity._meta.db_table,
    }


def raw_graph_sql() -> str:
    t = tables()
    return (
        "SELECT count(*), count(*) FILTER (WHERE status = 'error'),"
        " percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_ms)"
        f" FROM {t['graphrun']} WHERE graph_id = %s AND started_at >= %s AND started_at < %s"
    )


def raw_per_node_sql() -> str:
    # Node runs are bucketed by their own started_at; the graph run's started_at bound (the
    # window start minus the longest graph run) only lets the graphrun_started index help.
    t = tables()
    return (
        "SELECT g.name, nr.node, count(*), count(*) FILTER (WHERE nr.status = 'error'),"
        " percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY nr.duration_ms)"
        f" FROM {t['noderun']} nr JOIN {t['graphrun']} gr ON gr.id = nr.graph_run_id"
        " JOIN versioning_graph g ON g.id = gr.graph_id"
        " WHERE gr.started_at >= %s AND gr.started_at < %s"
        " AND nr.started_at >= %s AND nr.started_at < %s GROUP BY g.name, nr.node"
    )


@dataclass
class Breakdown:
    """Median ms of one call, split into SQL (plain cursor), the ORM's row iterator on top,
    ``Histogram.from_bytes``, merge + quantiles, and the rest (``Stats`` bookkeeping)."""

    sql_ms: float
    orm_ms: float
    decode_ms: float
    merge_ms: float
    total_ms: float
    rows: int
    histogram_entries: int

    @property
    def other_ms(self) -> float:
        return self.total_ms - self.orm_ms - self.decode_ms - self.merge_ms


def breakdown(start: datetime, end: datetime, scope: Scope, grouped: bool) -> Breakdown:
    from django.db import connection

    from monitoring import histogram, rollups

    extra = ("graph__name", "node") if grouped else ()
    pieces = rollups.window_pieces(start, end)
    sqls = [
        model._default_manager.filter(scope.filter(), bucket_start__gte=lo, bucket_start__lt=hi)
        .values_list(*extra, *rollups.ROW_FIELDS)
        .query.sql_with_params()
        for model, lo, hi in pieces
    ]
    fetched: list[tuple[Any, ...]] = []

    def sql_only() -> None:
        with connection.cursor() as cursor:
            for sql, params in sqls:
                cursor.execute(sql, params)
                cursor.fetchall()

    def orm_fetch() -> None:
        fetched.clear()
        for model, lo, hi in pieces:
            fetched.extend(rollups.rows(model, lo, hi, scope, extra))

    decoded: list[tuple[tuple[Any, ...], histogram.Histogram]] = []

    def decode() -> None:
        decoded[:] = [
            (row[: len(extra)], histogram.Histogram.from_bytes(row[-1])) for row in fetched
        ]

    def merge() -> None:
        groups: dict[tuple[Any, ...], list[histogram.Histogram]] = {}
        for key, part in decoded:
            groups.setdefault(key, []).append(part)
        for parts in groups.values():
            histogram.quantiles(histogram.merge(parts), QUANTILES)

    def full() -> None:
        if grouped:
            rollups.grouped_window_stats(start, end, scope)
        else:
            rollups.window_stats(start, end, scope)

    reps = 10
    sql_t = timed(sql_only, reps)
    orm_t = timed(orm_fetch, reps)
    decode_t = timed(decode, reps)
    merge_t = timed(merge, reps)
    full_t = timed(full, reps)
    entries = sum(max(0, len(row[-1]) - 4) // 4 for row in fetched)
    return Breakdown(
        sql_t.median,
        orm_t.median,
        decode_t.median,
        merge_t.median,
        full_t.median,
        len(fetched),
        entries,
    )


@dataclass
class SizeResult:
    runs: int
    graph: dict[str, Timing] = field(default_factory=dict)
    per_node: dict[str, Timing] = field(default_factory=dict)
    raw_graph: dict[str, Timing] = field(default_factory=dict)
    raw_per_node: dict[str, Timing] = field(default_factory=dict)
    analytics: dict[str, Timing] = field(default_factory=dict)
    max_rel_error: float = 0.0


def measure(runs: int, shape: Shape, loaded: Loaded) -> SizeResult:
    from django.db import connection

    from monitoring import rollups
    from versioning.models import Graph

    connection.close()  # start from a fresh connection; the warm-up calls open it
    result = SizeResult(runs)
    end = shape.end
    graph_name = GRAPHS[0]  # the busiest graph
    graph_id = Graph.objects.get(name=graph_name).id
    margin = timedelta(milliseconds=loaded.max_graph_ms + 1000)
    print(f"\n=== {label(runs)} runs: query timings (now = {end.isoformat()}; {load_average()})")
    print(
        f"{'window':>6} | {'graph window_stats':>22} | {'per-node grouped stats':>22}"
        f" | {'raw SQL: graph':>14} | {'raw SQL: per node':>17}"
    )
    print(
        f"{'':>6} | {'median':>10} {'p95':>11} | {'median':>10} {'p95':>11}"
        f" | {'median':>14} | {'median':>17}"
    )
    for name, width in WINDOWS:
        start = end - width
        lo = rollups.floor_minute(start)
        graph_scope = rollups.Scope(graph=graph_name)
        node_scope = rollups.Scope(node=rollups.Scope.ALL_NODES)
        result.graph[name] = timed(partial(rollups.window_stats, start, end, graph_scope), REPS)
        result.per_node[name] = timed(
            partial(rollups.grouped_window_stats, start, end, node_scope), REPS
        )

        def raw_graph(lo: datetime = lo) -> None:
            with connection.cursor() as cursor:
                cursor.execute(raw_graph_sql(), [graph_id, lo, end])
                cursor.fetchall()

        def raw_nodes(lo: datetime = lo) -> None:
            with connection.cursor() as cursor:
                cursor.execute(raw_per_node_sql(), [lo - margin, end, lo, end])
                cursor.fetchall()

        result.raw_graph[name] = timed(raw_graph, RAW_REPS)
        result.raw_per_node[name] = timed(raw_nodes, RAW_REPS)
        g, n = result.graph[name], result.per_node[name]
        print(
            f"{name:>6} | {g.median:8.1f}ms {g.p95:9.1f}ms | {n.median:8.1f}ms {n.p95:9.1f}ms"
            f" | {result.raw_graph[name].median:12.1f}ms"
            f" | {result.raw_per_node[name].median:15.1f}ms"
        )

    print(
        "\nwhere the time goes (medians of 10 calls): SQL = execute + fetch all rows through a"
        "\nplain cursor (histograms as bytea); ORM = rollups.rows (Django's server-side cursor"
        "\niterator) minus SQL; decode = Histogram.from_bytes of every row; merge = histogram"
        "\nmerge + quantiles per group; other = the rest of the call (Stats bookkeeping, dicts);"
        "\nhistogram entries = total length of the dense count arrays read:"
    )
    for name, width in WINDOWS:
        for what, scope, grouped in (
            ("graph", rollups.Scope(graph=graph_name), False),
            ("per-node", rollups.Scope(node=rollups.Scope.ALL_NODES), True),
        ):
            b = breakdown(end - width, end, scope, grouped)
            print(
                f"  {name:>4} {what:<8}: {b.rows:6,} rollup rows, {b.histogram_entries:9,}"
                f" histogram entries | SQL {b.sql_ms:6.1f} ms, ORM"
                f" {max(0.0, b.orm_ms - b.sql_ms):5.1f} ms, decode {b.decode_ms:5.1f} ms,"
                f" merge {b.merge_ms:5.1f} ms, other {max(0.0, b.other_ms):5.1f} ms,"
                f" total {b.total_ms:6.1f} ms"
            )
    print_rollup_sizes()
    measure_analytics(result, shape)
    result.max_rel_error = accuracy(shape, margin)
    return result


def print_rollup_sizes() -> None:
    from django.db import connection

    t = tables()
    with connection.cursor() as cursor:
        for key in ("graphrun", "noderun", "minute", "hour", "session"):
            table = t[key]
            cursor.execute(f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}")
            rows, size = cursor.fetchone()
            extra = ""
            if key in ("minute", "hour"):
                cursor.execute(
                    "SELECT avg(greatest(octet_length(histogram) - 4, 0) / 4.0)"
                    f" FROM {table} TABLESAMPLE SYSTEM (10) REPEATABLE (1)"
                )
                (avg_entries,) = cursor.fetchone()
                extra = f", ~{float(avg_entries or 0):.0f} histogram entries (dense) per row"
            elif key == "session":
                cursor.execute(f"SELECT coalesce(sum(runs), 0) FROM {table}")
                (session_runs,) = cursor.fetchone()
                extra = f", {session_runs / max(rows, 1):.2f} graph runs per row"
            print(f"  {table}: {rows:,} rows, {size / 2**20:,.0f} MiB{extra}")


# --- usage analytics -------------------------------------------------------------------------


def raw_active_sql(one_graph: bool) -> str:
    """Runs (from the window's minute, as the rollups count them), distinct users and
    sessions (from the exact start) of the graph runs in a window."""
    t = tables()
    graph = " AND graph_id = %s" if one_graph else ""
    return (
        "SELECT count(*),"
        " count(DISTINCT user_id) FILTER (WHERE started_at >= %s AND user_id <> ''),"
        " count(DISTINCT session_id) FILTER (WHERE started_at >= %s AND session_id <> '')"
        f" FROM {t['graphrun']} WHERE started_at >= %s AND started_at < %s{graph}"
    )


def raw_popular_sql() -> str:
    t = tables()
    return (
        f"SELECT g.name, count(*) FROM {t['graphrun']} gr"
        " JOIN versioning_graph g ON g.id = gr.graph_id"
        " WHERE gr.started_at >= %s AND gr.started_at < %s"
        " GROUP BY g.name ORDER BY count(*) DESC, g.name LIMIT %s"
    )


@dataclass
class Case:
    """One analytics call: ``describe`` turns its result into text and a value that the raw
    SQL (``raw``, optional) must reproduce."""

    name: str
    call: Callable[[], Any]
    describe: Callable[[Any], tuple[str, object]]
    raw: Callable[[], object] | None = None


def raw_query(sql: str, params: list[Any]) -> Callable[[], list[tuple[Any, ...]]]:
    from django.db import connection

    def run() -> list[tuple[Any, ...]]:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    return run


def analytics_cases(shape: Shape) -> list[Case]:
    from analytics import queries
    from monitoring.rollups import floor_minute
    from versioning.models import Graph

    end = shape.end
    graph_name = GRAPHS[0]
    graph_id = Graph.objects.get(name=graph_name).id

    def describe_active(result: dict[str, Any]) -> tuple[str, object]:
        users, sessions, runs = result["users"], result["sessions"], result["runs"]
        text = f"{users:,} users, {sessions:,} sessions, {runs:,} runs"
        return text, [(runs, users, sessions)]

    def describe_user(result: dict[str, Any]) -> tuple[str, object]:
        text = (
            f"{result['user_id']}: {result['total_runs']:,} runs, {result['sessions']:,}"
            f" sessions, {len(result['runs_per_graph'])} graphs"
        )
        return text, None

    def describe_popular(result: list[dict[str, Any]]) -> tuple[str, object]:
        top = result[0] if result else {"graph": "-", "runs": 0}
        total = sum(entry["runs"] for entry in result)
        text = f"{len(result)} graphs, top {top['graph']} {top['runs']:,} of {total:,} runs"
        return text, [(entry["graph"], entry["runs"]) for entry in result]

    cases = []
    for days in (1, 7):
        start = end - timedelta(days=days)
        for graph, suffix in ((None, "all graphs"), (graph_name, "one graph")):
            params: list[Any] = [start, start, floor_minute(start), end]
            if graph is not None:
                params.append(graph_id)
            cases.append(
                Case(
                    f"active_users {days}d, {suffix}",
                    partial(queries.active_users, start, end, graph),
                    describe_active,
                    raw_query(raw_active_sql(graph is not None), params),
                )
            )
    week = end - timedelta(days=7)
    cases.append(
        Case(
            "user_analytics busy user 7d",
            partial(queries.user_analytics, BUSY_USER, week, end),
            describe_user,
        )
    )
    cases.append(
        Case(
            "popular_graphs 7d",
            partial(queries.popular_graphs, week, end, 10),
            describe_popular,
            raw_query(raw_popular_sql(), [floor_minute(week), end, 10]),
        )
    )
    return cases


def measure_analytics(result: SizeResult, shape: Shape) -> None:
    print(
        f"\nusage analytics ({ANALYTICS_REPS} calls, soft target p95 < {TARGET_ANALYTICS_MS:.0f}"
        f" ms; SQL = Django's statements in one more call; raw = the same from the raw runs"
        f" in SQL, median of {RAW_REPS}; {load_average()}):"
    )
    for case in analytics_cases(shape):
        timing = timed(case.call, ANALYTICS_REPS)
        result.analytics[case.name] = timing
        with sql_profile() as durations:
            text, comparable = case.describe(case.call())
        raw_text = ""
        if case.raw is not None:
            raw_result = case.raw()
            raw_t = timed(case.raw, RAW_REPS)
            check = "same figures" if raw_result == comparable else f"DIFFERS: {raw_result}"
            raw_text = f" | raw {raw_t.median:7.1f} ms, {check}"
        print(
            f"  [{verdict(timing.p95 < TARGET_ANALYTICS_MS)}] {case.name:<29}"
            f" median {timing.median:7.1f} ms, p95 {timing.p95:7.1f} ms"
            f" | SQL {sum(durations):7.1f} ms in {len(durations)} statements"
            f" (slowest {max(durations, default=0.0):6.1f}){raw_text} | {text}"
        )


# --- accuracy --------------------------------------------------------------------------------


def exact_quantiles(sql: str, params: list[Any]) -> tuple[int, list[float]]:
    """Exact order statistics at rank floor(q * (n - 1)), as ``histogram.quantiles`` ranks.

    ``percentile_disc(f)`` returns the row at 1-based position ceil(f * n); asking for
    f = (k + 0.5) / n returns the row at 0-based rank k.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ({sql}) AS s", params)
        (count,) = cursor.fetchone()
        if count == 0:
            return 0, []
        fractions = [(math.floor(q * (count - 1)) + 0.5) / count for q in QUANTILES]
        cursor.execute(
            f"SELECT percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY d) FROM ({sql}) AS s",
            [fractions, *params],
        )
        (values,) = cursor.fetchone()
    return count, list(values)


def accuracy(shape: Shape, margin: timedelta) -> float:
    from monitoring import rollups
    from versioning.models import Graph

    t = tables()
    ids = dict(Graph.objects.values_list("name", "id"))
    medians = shape.medians_ms
    busiest, middle, quietest = 0, len(GRAPHS) // 2, len(GRAPHS) - 1
    groups: list[tuple[int, str | None]] = [(busiest, None), (middle, None), (quietest, None)]
    groups += [
        (busiest, NODES[int(np.argmin(medians[busiest]))]),
        (busiest, NODES[int(np.argmax(medians[busiest]))]),
        (middle, "retrieve"),
        (middle, "tools"),
        (quietest, "call_model"),
    ]
    graph_sql = (
        f"SELECT duration_ms AS d FROM {t['graphrun']}"
        " WHERE graph_id = %s AND started_at >= %s AND started_at < %s"
    )
    node_sql = (
        f"SELECT nr.duration_ms AS d FROM {t['noderun']} nr"
        f" JOIN {t['graphrun']} gr ON gr.id = nr.graph_run_id"
        " WHERE gr.graph_id = %s AND gr.started_at >= %s AND gr.started_at < %s"
        " AND nr.node = %s AND nr.started_at >= %s AND nr.started_at < %s"
    )
    print("\naccuracy: histogram estimate vs exact (p50 / p95 / p99 in ms, relative error)")
    worst = 0.0
    end = shape.end
    for name, width in WINDOWS:
        start = end - width
        lo = rollups.floor_minute(start)
        for graph_i, node in groups:
            graph = GRAPHS[graph_i]
            stats = rollups.window_stats(start, end, rollups.Scope(graph=graph, node=node))
            if node is None:
                count, exact = exact_quantiles(graph_sql, [ids[graph], lo, end])
            else:
                params = [ids[graph], lo - margin, end, node, lo, end]
                count, exact = exact_quantiles(node_sql, params)
            what = f"{graph}/{node or '(graph)'}"
            if count == 0:
                print(f"  {name:>4} {what:<26} no runs (rollups: {stats['runs']})")
                continue
            latency = stats["latency_ms"]
            estimates = [latency["p50"], latency["p95"], latency["p99"]]
            errors = [abs(e - x) / x for e, x in zip(estimates, exact, strict=True)]
            worst = max(worst, *errors)
            check = "" if stats["runs"] == count else f"  COUNT MISMATCH rollups {stats['runs']}"
            print(
                f"  {name:>4} {what:<26} n={count:>7,}  "
                + "  ".join(
                    f"{e:8.2f}/{x:8.2f} ({err:5.2%})"
                    for e, x, err in zip(estimates, exact, errors, strict=True)
                )
                + check
            )
    print(f"largest relative error: {worst:.3%}")
    return worst


# --- main ------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    sizes = sizes_from_env()
    began = time.perf_counter()
    print(f"query benchmark: sizes {', '.join(label(s) for s in sizes)} runs; {load_average()}")
    recreate_database()
    setup_django()
    from monitoring.rollups import floor_hour

    # An end that is not on an hour or minute boundary, so windows read minute edges.
    end = floor_hour(datetime.now(UTC)) - timedelta(hours=1) + timedelta(minutes=37, seconds=20)
    rng = np.random.default_rng(SEED)
    shape = Shape.make(rng, end)
    loaded = Loaded()
    results: list[SizeResult] = []
    try:
        for runs in sizes:
            print(f"\n=== loading up to {label(runs)} runs ({load_average()})")
            load(runs, rng, shape, loaded)
            results.append(measure(runs, shape, loaded))
    finally:
        from django.db import connection

        connection.close()
        if os.environ.get("BENCH_KEEP") == "1":
            print(f"\nkeeping database {DB_NAME} (BENCH_KEEP=1)")
        else:
            drop_database()

    last = results[-1]
    print(f"\n=== targets (total time {time.perf_counter() - began:.0f} s; {load_average()})")
    for result in results:
        worst_name = max(result.graph, key=lambda n: result.graph[n].p95)
        worst = result.graph[worst_name].p95
        print(
            f"[{verdict(worst < TARGET_GRAPH_MS)}] one graph's window statistics under"
            f" {TARGET_GRAPH_MS:.0f} ms at {label(result.runs)} runs: p95 {worst:.1f} ms"
            f" (worst window {worst_name})"
        )
    worst_name = max(last.per_node, key=lambda n: last.per_node[n].p95)
    per_node_p95 = last.per_node[worst_name].p95
    print(
        f"[{verdict(per_node_p95 < TARGET_PER_NODE_P95_MS)}] per-node stats across all graphs,"
        f" p95 under {TARGET_PER_NODE_P95_MS:.0f} ms at {label(last.runs)} runs:"
        f" {per_node_p95:.1f} ms (worst window {worst_name})"
    )
    rel = max(result.max_rel_error for result in results)
    print(
        f"[{verdict(rel <= TARGET_REL_ERROR)}] histogram estimates within"
        f" {TARGET_REL_ERROR:.0%}: largest relative error {rel:.3%}"
    )
    for result in results:
        for name, timing in result.analytics.items():
            print(
                f"[{verdict(timing.p95 < TARGET_ANALYTICS_MS)}] (soft) {name} under"
                f" {TARGET_ANALYTICS_MS:.0f} ms at {label(result.runs)} runs:"
                f" p95 {timing.p95:.1f} ms (median {timing.median:.1f} ms)"
            )
    query_p95 = max(timing.p95 for timing in last.graph.values())
    print(f"query_p95_ms={query_p95:.1f}")


if __name__ == "__main__":
    main()
