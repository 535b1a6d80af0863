"""Client SDK overhead: a trivial 3-node LangGraph graph invoked with and without
``LangGraphMonitor``, sync (``invoke``) and async (``ainvoke``).

What it measures: ``BENCH_INVOCATIONS`` (default 10,000) invocations of each mode with the
monitor and as many without, interleaved in blocks of ``BENCH_BLOCK`` (default 100) so that
drifts in machine speed hit both sides alike, after a warm-up. The monitor is real: its sender
thread batches every graph run (with its three node runs) as JSON and POSTs it over HTTP, so
the serialisation and the socket work compete with the app for the GIL as they would in
production. The receiving end is, by default, a sink in a separate process that answers each
batch like lgmon's ingest API (so the server's CPU is not on the app's core budget... it is
still on this machine); pass ``LGMON_URL`` and ``LGMON_API_KEY`` to send to a real lgmon
instead. Every run must arrive: the benchmark fails if the sender reports anything
undelivered.

Prints per-mode microseconds per invocation and ratios; the last line is
``sdk_overhead=<ratio>``, the larger of the sync and async ratios (target: at most 1.10).

Run from the repository root::

    .venv/bin/python bench/sdk_overhead.py
    BENCH_INVOCATIONS=2000 .venv/bin/python bench/sdk_overhead.py
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from lgmon_client import LangGraphMonitor, Sender

INVOCATIONS = int(os.environ.get("BENCH_INVOCATIONS", "10000"))
BLOCK = int(os.environ.get("BENCH_BLOCK", "100"))
WARMUP = 300

SINK = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import gzip

class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        data = json.loads(body)
        runs = len(data.get("graph_runs", [])) + len(data.get("metric_points", []))
        answer = json.dumps({"summary": {"created": runs, "duplicate": 0, "rejected": 0}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class State(TypedDict):
    n: int


def increment(state: State) -> dict[str, int]:
    return {"n": state["n"] + 1}


async def aincrement(state: State) -> dict[str, int]:
    return {"n": state["n"] + 1}


def three_nodes(func: Callable[..., Any]) -> Any:
    builder = StateGraph(State)
    for name in ("a", "b", "c"):
        builder.add_node(name, func)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    builder.add_edge("c", END)
    return builder.compile(name="bench-3-nodes")


def measure_sync(monitor: LangGraphMonitor) -> tuple[float, float]:
    graph = three_nodes(increment)
    plain: Any = {"metadata": {"user_id": "bench"}}
    monitored: Any = {**plain, "callbacks": [monitor]}
    for _ in range(WARMUP):
        graph.invoke({"n": 0}, config=plain)
        graph.invoke({"n": 0}, config=monitored)
    totals = {"plain": 0.0, "monitored": 0.0}
    for block in range(INVOCATIONS // BLOCK * 2):
        key, config = ("plain", plain) if block % 2 == 0 else ("monitored", monitored)
        started = time.perf_counter()
        for _ in range(BLOCK):
            graph.invoke({"n": 0}, config=config)
        totals[key] += time.perf_counter() - started
    return totals["plain"], totals["monitored"]


async def measure_async(monitor: LangGraphMonitor) -> tuple[float, float]:
    graph = three_nodes(aincrement)
    plain: Any = {"metadata": {"user_id": "bench"}}
    monitored: Any = {**plain, "callbacks": [monitor]}
    for _ in range(WARMUP):
        await graph.ainvoke({"n": 0}, config=plain)
        await graph.ainvoke({"n": 0}, config=monitored)
    totals = {"plain": 0.0, "monitored": 0.0}
    for block in range(INVOCATIONS // BLOCK * 2):
        key, config = ("plain", plain) if block % 2 == 0 else ("monitored", monitored)
        started = time.perf_counter()
        for _ in range(BLOCK):
            await graph.ainvoke({"n": 0}, config=config)
        totals[key] += time.perf_counter() - started
    return totals["plain"], totals["monitored"]


def main() -> None:
    sink: subprocess.Popen[str] | None = None
    url = os.environ.get("LGMON_URL")
    key = os.environ.get("LGMON_API_KEY", "bench")
    if not url:
        sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
        assert sink.stdout is not None
        url = f"http://127.0.0.1:{sink.stdout.readline().strip()}"
    sender = Sender(url, key, max_queue=100_000)
    monitor = LangGraphMonitor(sender)
    try:
        results = {}
        modes: list[tuple[str, Callable[[], tuple[float, float]]]] = [
            ("sync", lambda: measure_sync(monitor)),
            ("async", lambda: asyncio.run(measure_async(monitor))),
        ]
        for mode, run in modes:
            plain, monitored = run()
            ratio = monitored / plain
            results[mode] = ratio
            per_plain = plain / INVOCATIONS * 1e6
            per_monitored = monitored / INVOCATIONS * 1e6
            print(
                f"{mode}: {INVOCATIONS} invocations each; without monitor {per_plain:.1f} us, "
                f"with monitor {per_monitored:.1f} us per invocation; ratio {ratio:.3f}"
            )
        assert sender.flush(timeout=60), "the sender did not drain"
        stats = sender.stats()
        expected = 2 * (INVOCATIONS + WARMUP)
        print(f"sender: {json.dumps(stats.__dict__)}")
        assert stats.sent == expected and stats.undelivered == 0, (stats, expected)
        print(f"sdk_overhead_sync={results['sync']:.3f}")
        print(f"sdk_overhead_async={results['async']:.3f}")
        print(f"sdk_overhead={max(results.values()):.3f}")
    finally:
        sender.close(timeout=10)
        if sink is not None:
            sink.terminate()
            sink.wait(timeout=10)


if __name__ == "__main__":
    main()
