"""System metrics: the host's CPU and memory, and the sampling worker process's own, as metric
points. Sampled by the beat task ``sample_system_metrics`` every ``LGMON_SYSTEM_SAMPLE_INTERVAL_S``.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime

import psutil

from .models import MetricPoint

CPU_PERCENT = "system.cpu_percent"
MEMORY_PERCENT = "system.memory_percent"
PROCESS_CPU_PERCENT = "process.cpu_percent"
PROCESS_RSS_BYTES = "process.memory_rss_bytes"

_process: psutil.Process | None = None


def _primed_process() -> psutil.Process:
    """This process, with CPU counters started: psutil's CPU percentages compare two calls."""
    global _process
    if _process is None or _process.pid != os.getpid():
        _process = psutil.Process()
        _process.cpu_percent(interval=None)
        psutil.cpu_percent(interval=0.1)
    return _process


def sample(now: datetime) -> list[MetricPoint]:
    """Take one sample and store it; the points are returned."""
    process = _primed_process()
    host = {"host": socket.gethostname()}
    own = {**host, "pid": str(process.pid), "process": process.name()}
    points = [
        MetricPoint(name=CPU_PERCENT, timestamp=now, value=psutil.cpu_percent(None), labels=host),
        MetricPoint(
            name=MEMORY_PERCENT, timestamp=now, value=psutil.virtual_memory().percent, labels=host
        ),
        MetricPoint(
            name=PROCESS_CPU_PERCENT, timestamp=now, value=process.cpu_percent(None), labels=own
        ),
        MetricPoint(
            name=PROCESS_RSS_BYTES,
            timestamp=now,
            value=float(process.memory_info().rss),
            labels=own,
        ),
    ]
    return MetricPoint.objects.bulk_create(points)
