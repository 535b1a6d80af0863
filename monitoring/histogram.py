"""Log-spaced latency histograms with a bounded relative error (the DDSketch mapping).

A duration ``d`` (milliseconds) falls in bucket ``i = ceil(log(d) / log(GAMMA))``, which covers
``(GAMMA**(i-1), GAMMA**i]``. Reporting ``2 * GAMMA**i / (GAMMA + 1)`` for any value in that
bucket is off by at most ``RELATIVE_ACCURACY`` of the value. Buckets are stored sparse, as
``{str(index): count}``, so a rollup row holds only the buckets its durations hit.

Pure functions, no Django: used by ingest, the stats queries and the benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
# Durations below one microsecond share the lowest bucket.
MIN_TRACKED_MS = 0.001
_MIN_INDEX = math.ceil(math.log(MIN_TRACKED_MS) / _LOG_GAMMA)

Histogram = dict[str, int]


def bucket_index(duration_ms: float) -> int:
    """The bucket a duration falls in; durations under ``MIN_TRACKED_MS`` go to the lowest."""
    if duration_ms <= MIN_TRACKED_MS:
        return _MIN_INDEX
    return math.ceil(math.log(duration_ms) / _LOG_GAMMA)


def bucket_value(index: int) -> float:
    """The representative value of a bucket, within ``RELATIVE_ACCURACY`` of all its members."""
    return 2 * GAMMA**index / (GAMMA + 1)


def merge_into(target: Histogram, other: Mapping[str, int]) -> None:
    """Add ``other``'s counts to ``target`` in place."""
    get = target.get
    for key, count in other.items():
        target[key] = get(key, 0) + count


def quantiles(
    histogram: Mapping[str, int],
    qs: Iterable[float],
    *,
    lowest: float | None = None,
    highest: float | None = None,
) -> list[float | None]:
    """Estimate each quantile ``q`` (0..1) of the durations counted in ``histogram``.

    1. Sort the buckets by index and total their counts.
    2. For each q, the wanted rank is ``q * (total - 1)`` (0-based, as DDSketch and numpy's
       "lower" method count); walk the cumulative counts to the bucket holding that rank.
    3. Report the bucket's representative value, clamped to the exact ``lowest`` / ``highest``
       duration when those are known; p0 and p100 are then those exact values.

    Returns ``None`` for every quantile when the histogram is empty.
    """
    buckets = sorted((int(key), count) for key, count in histogram.items() if count > 0)
    total = sum(count for _, count in buckets)
    wanted = list(qs)
    if total == 0:
        return [None for _ in wanted]
    results: list[float | None] = []
    for q in wanted:
        rank = q * (total - 1)
        seen = 0
        value = bucket_value(buckets[-1][0])
        for index, count in buckets:
            seen += count
            if seen > rank:
                value = bucket_value(index)
                break
        if lowest is not None:
            value = lowest if q <= 0 else max(value, lowest)
        if highest is not None:
            value = highest if q >= 1 else min(value, highest)
        results.append(value)
    return results
