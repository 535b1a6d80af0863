"""Deterministic variant assignment for A/B tests, compatible with GrowthBook's hashing.

This is GrowthBook's published bucketing ("hashing version 2"), so a unit that a GrowthBook
SDK puts in variant *i* of an experiment with the same salt (GrowthBook calls it the *seed*),
weights and coverage is put in variant *i* here too:

1. ``n = fnv1a32(str(fnv1a32(salt + unit))) % 10000 / 10000``, a number in ``[0, 1)`` with four
   decimal places (:func:`hash_v2`).
2. The variants' ranges are laid end to end by weight, each range shrunk to ``coverage`` of its
   slot: ``[start, start + coverage * weight)`` (:func:`bucket_ranges`).
3. The unit gets the first variant whose range contains ``n``, or none (:func:`choose_variant`).

Reference: ``hash``, ``getBucketRanges`` and ``chooseVariation`` in GrowthBook's JavaScript SDK
(``growthbook/growthbook``, ``packages/sdk-js/src/util.ts``) and ``gbhash``, ``getBucketRanges``
and ``chooseVariation`` in its Python SDK (``growthbook/growthbook-python``,
``growthbook/core.py``); the shared test cases are in ``packages/sdk-js/test/cases.json``.

Everything here is a pure function of its arguments: the same inputs give the same variant in
every process, on every machine and in every version of Python. Python's built-in ``hash()`` is
salted per process (``PYTHONHASHSEED``) and is deliberately never used.

Non-ASCII unit ids: :func:`fnv1a32` hashes the UTF-8 bytes of its input (standard FNV-1a, as
GrowthBook's Go SDK does). GrowthBook's SDKs do not agree with each other on non-ASCII text (the
JavaScript SDK hashes UTF-16 code units, the Python SDK whole code points), so cross-SDK
agreement is only guaranteed for ASCII salts and unit ids, which is what :func:`new_salt` and
typical user / session ids are.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

__all__ = [
    "assign",
    "bucket_ranges",
    "choose_variant",
    "equal_weights",
    "fnv1a32",
    "hash_v2",
    "new_salt",
]

_FNV32_OFFSET_BASIS = 0x811C9DC5
_FNV32_PRIME = 0x01000193
_UINT32_MASK = 0xFFFFFFFF

# GrowthBook keeps weights whose sum lies in [0.99, 1.01] as they are (no normalisation) and
# replaces any other weights with equal weights.
_WEIGHT_SUM_MIN = 0.99
_WEIGHT_SUM_MAX = 1.01

VariantRange = tuple[float, float]


def fnv1a32(text: str) -> int:
    """Return the 32-bit FNV-1a hash of the UTF-8 encoding of ``text``, as an int in [0, 2**32).

    >>> hex(fnv1a32("a"))
    '0xe40c292c'
    """
    value = _FNV32_OFFSET_BASIS
    for byte in text.encode("utf-8"):
        value = ((value ^ byte) * _FNV32_PRIME) & _UINT32_MASK
    return value


def hash_v2(salt: str, unit: str) -> float:
    """Return the unit's bucket for an experiment salted with ``salt``: a float in [0, 1).

    GrowthBook's hashing version 2: ``fnv1a32(str(fnv1a32(salt + unit))) % 10000 / 10000``.
    Hashing the decimal string of the first hash again removes the bias of version 1, so the
    result has 10,000 equally likely values 0.0000 ... 0.9999.
    """
    return (fnv1a32(str(fnv1a32(salt + unit))) % 10000) / 10000


def equal_weights(count: int) -> list[float]:
    """Return ``count`` equal weights summing to 1 (``[]`` when ``count`` is below 1).

    GrowthBook's ``getEqualWeights``; :func:`bucket_ranges` falls back to it for bad weights.
    """
    if count < 1:
        return []
    return [1 / count] * count


def bucket_ranges(weights: Sequence[float], coverage: float = 1.0) -> list[VariantRange]:
    """Return one half-open range ``(start, end)`` per variant, laid end to end by weight.

    Follows GrowthBook's ``getBucketRanges`` exactly:

    * ``coverage`` is clamped to [0, 1];
    * weights whose sum lies within [0.99, 1.01] are used as given (*not* rescaled, so weights
      summing to 0.9999 leave a tiny unassigned gap at the top); any other weights are replaced
      by equal weights;
    * variant ``i`` gets ``[start_i, start_i + coverage * weight_i)``, where ``start_i`` is the
      sum of the weights before it. Raising the coverage therefore only ever extends a range at
      its end: a unit already assigned keeps its variant.

    Like GrowthBook, this does not reject negative or non-finite weights (they give ranges that
    contain nothing); validate stored experiment weights where they are entered.
    """
    coverage = min(max(coverage, 0.0), 1.0)
    total = sum(weights)
    chosen: Sequence[float] = weights
    if total < _WEIGHT_SUM_MIN or total > _WEIGHT_SUM_MAX:
        chosen = equal_weights(len(weights))

    ranges: list[VariantRange] = []
    cumulative = 0.0
    for weight in chosen:
        start = cumulative
        cumulative += weight
        ranges.append((start, start + coverage * weight))
    return ranges


def choose_variant(n: float, ranges: Sequence[VariantRange]) -> int | None:
    """Return the index of the first range with ``start <= n < end``, or None if there is none.

    GrowthBook's ``chooseVariation``, which returns -1 where this returns None.
    """
    for index, (start, end) in enumerate(ranges):
        if start <= n < end:
            return index
    return None


def assign(salt: str, unit: str, weights: Sequence[float], coverage: float = 1.0) -> int | None:
    """Return the variant index for ``unit`` in the experiment salted with ``salt``.

    Returns None when the unit is not in the experiment: its bucket falls outside the covered
    part of every range (see :func:`bucket_ranges`). As in GrowthBook, a unit with an empty id
    and an experiment with fewer than two variants never assign anyone, since every anonymous
    user would otherwise share one bucket and a single variant has nothing to compare against.
    """
    if not unit or len(weights) < 2:
        return None
    return choose_variant(hash_v2(salt, unit), bucket_ranges(weights, coverage))


def new_salt() -> str:
    """Return a fresh random salt (16 lowercase hex characters) for a new experiment.

    Store it on the experiment and never change it while the experiment runs: a new salt
    reshuffles every unit.
    """
    return secrets.token_hex(8)
