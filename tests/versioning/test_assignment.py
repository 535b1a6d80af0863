"""Variant assignment: GrowthBook's published vectors, cross-process stability and split quality.

Vectors below are copied from GrowthBook's shared SDK test cases,
``growthbook/growthbook`` ``packages/sdk-js/test/cases.json`` (spec 0.5.4; the ``hash``,
``getBucketRange`` and ``chooseVariation`` sections are identical in spec 0.7.1, the copy in
``growthbook/growthbook-python`` ``tests/cases.json``).
"""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from scipy import stats

from versioning.assignment import (
    assign,
    bucket_ranges,
    choose_variant,
    equal_weights,
    fnv1a32,
    hash_v2,
    new_salt,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

# --- GrowthBook's published vectors ---------------------------------------------------------

# cases.json "hash" section, hashVersion 2 entries: [seed, value, 2, expected].
# (The section's only other v2-style entry is ["abc", "def", 99, null], an unknown version.)
HASH_V2_CASES: list[tuple[str, str, float]] = [
    ("seed", "a", 0.0505),
    ("seed", "b", 0.2696),
    ("foo", "ab", 0.2575),
    ("foo", "def", 0.2019),
    ("89123klj", "8952klfjas09ujkasdf", 0.124),
    ("90850943850283058242805", "123", 0.7516),
    ("()**(%$##$%#$#", '___)((*":&', 0.0128),
]

# cases.json "feature" and "stickyBucket" sections: experiment results of rules with
# "hashVersion": 2, as (seed, hashValue, experimentResult.bucket). The seed is the rule's
# "seed", or its "key" when it has none.
HASH_V2_BUCKET_CASES: list[tuple[str, str, float]] = [
    ("feature", "123", 0.5231),  # feature: "creates experiments properly"
    ("experiment", "1", 0.4413),  # feature: "Support passthrough variations"
    ("holdout", "1", 0.8043),  # feature: "Support holdout groups"
    ("feature-exp", "d123", 0.6468),  # stickyBucket: "performs evaluation without sticky bucket"
    ("feature-exp", "i123", 0.9943),  # stickyBucket: "upgrades a sticky bucket doc ..."
]

# cases.json "feature" section, hashVersion 2 force rules with a "range": the rule applies, so
# the unit's v2 hash lies in the range. (seed, hashValue, range)
HASH_V2_RANGE_CASES: list[tuple[str, str, tuple[float, float]]] = [
    ("feature", "1", (0.96, 0.97)),  # "Force rule, hash version 2" (seed = feature key)
    ("fjdslafdsa", "1", (0.0, 0.5)),  # "Force rule, use seed with range"
]

# cases.json "run" and "feature" sections, hashVersion 2 experiments given as weights and
# coverage: (seed, hashValue, weights, coverage, expected variation).
ASSIGN_CASES: list[tuple[str, str, tuple[float, ...], float, int]] = [
    ("foo", "1", (0.5, 0.5), 1.0, 1),  # run: "Uses seed with default weights/coverage"
    ("foo", "1", (0.5, 0.5), 0.99, 1),  # run: "Uses seed with weights/coverage"
    ("feature", "123", (0.1, 0.9), 0.99, 1),  # feature: "creates experiments properly"
    # feature: "Prerequisite experiment flag in target bucket" (seed = key "experiment")
    ("experiment", "1234", (0.5, 0.5), 1.0, 1),
]

# cases.json "feature" section, hashVersion 2 experiments given as explicit "ranges":
# (seed, hashValue, ranges, expected variation).
CHOOSE_WITH_HASH_CASES: list[tuple[str, str, list[tuple[float, float]], int]] = [
    ("foo", "1", [(0, 0.5), (0.5, 1.0)], 1),  # run: "Uses seed and hash version"
    ("experiment", "1", [(0, 0.5), (0.5, 1.0)], 0),  # feature: "Support passthrough variations"
    ("holdout", "1", [(0, 0.99), (0.99, 1.0)], 0),  # feature: "Support holdout groups"
]

# cases.json "hash" section, hashVersion 1 entries: [seed, value, 1, expected], where
# version 1 is fnv1a32(value + seed) % 1000 / 1000. Only the FNV-1a core is shared with v2.
HASH_V1_CASES: list[tuple[str, str, float]] = [
    ("", "a", 0.22),
    ("", "b", 0.077),
    ("b", "a", 0.946),
    ("ef", "d", 0.652),
    ("asdf", "8952klfjas09ujk", 0.549),
    ("", "123", 0.011),
    ("", '___)((*":&', 0.563),
]

# cases.json "getBucketRange": [name, [numVariations, coverage, weights], expected ranges].
# null weights become equal_weights(numVariations). Omitted: "weights.length not equal to num
# variations", which bucket_ranges cannot express (it takes the variant count from the weights).
BUCKET_RANGE_CASES: list[tuple[str, int, float, list[float] | None, list[tuple[float, float]]]] = [
    ("normal 50/50", 2, 1, None, [(0, 0.5), (0.5, 1)]),
    ("reduced coverage", 2, 0.5, None, [(0, 0.25), (0.5, 0.75)]),
    ("zero coverage", 2, 0, None, [(0, 0), (0.5, 0.5)]),
    ("4 variations", 4, 1, None, [(0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1)]),
    ("uneven weights", 2, 1, [0.4, 0.6], [(0, 0.4), (0.4, 1)]),
    ("uneven weights, 3 variations", 3, 1, [0.2, 0.3, 0.5], [(0, 0.2), (0.2, 0.5), (0.5, 1)]),
    (
        "uneven weights, reduced coverage, 3 variations",
        3,
        0.2,
        [0.2, 0.3, 0.5],
        [(0, 0.04), (0.2, 0.26), (0.5, 0.6)],
    ),
    ("negative coverage", 2, -0.2, None, [(0, 0), (0.5, 0.5)]),
    ("coverage above 1", 2, 1.5, None, [(0, 0.5), (0.5, 1)]),
    ("weights sum below 1", 2, 1, [0.4, 0.1], [(0, 0.5), (0.5, 1)]),
    ("weights sum above 1", 2, 1, [0.7, 0.6], [(0, 0.5), (0.5, 1)]),
    ("weights sum almost equals 1", 2, 1, [0.4, 0.5999], [(0, 0.4), (0.4, 0.9999)]),
]

# cases.json "chooseVariation": [name, n, ranges, expected]; -1 (no variation) becomes None.
CHOOSE_VARIATION_CASES: list[tuple[str, float, list[tuple[float, float]], int | None]] = [
    ("even range, 0.2", 0.2, [(0, 0.5), (0.5, 1)], 0),
    ("even range, 0.4", 0.4, [(0, 0.5), (0.5, 1)], 0),
    ("even range, 0.6", 0.6, [(0, 0.5), (0.5, 1)], 1),
    ("even range, 0.8", 0.8, [(0, 0.5), (0.5, 1)], 1),
    ("even range, 0", 0, [(0, 0.5), (0.5, 1)], 0),
    ("even range, 0.5", 0.5, [(0, 0.5), (0.5, 1)], 1),
    ("reduced range, 0.2", 0.2, [(0, 0.25), (0.5, 0.75)], 0),
    ("reduced range, 0.4", 0.4, [(0, 0.25), (0.5, 0.75)], None),
    ("reduced range, 0.6", 0.6, [(0, 0.25), (0.5, 0.75)], 1),
    ("reduced range, 0.8", 0.8, [(0, 0.25), (0.5, 0.75)], None),
    ("reduced range, 0.25", 0.25, [(0, 0.25), (0.5, 0.75)], None),
    ("reduced range, 0.5", 0.5, [(0, 0.25), (0.5, 0.75)], 1),
    ("zero range", 0.5, [(0, 0.5), (0.5, 0.5), (0.5, 1)], 2),
]

# cases.json "getEqualWeights": [numVariations, expected].
EQUAL_WEIGHTS_CASES: list[tuple[int, list[float]]] = [
    (-1, []),
    (0, []),
    (1, [1]),
    (2, [0.5, 0.5]),
    (3, [0.33333333, 0.33333333, 0.33333333]),
    (4, [0.25, 0.25, 0.25, 0.25]),
]


@pytest.mark.parametrize(("salt", "unit", "expected"), HASH_V2_CASES + HASH_V2_BUCKET_CASES)
def test_hash_v2_matches_growthbook(salt: str, unit: str, expected: float) -> None:
    assert hash_v2(salt, unit) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("salt", "unit", "bounds"), HASH_V2_RANGE_CASES)
def test_hash_v2_in_growthbook_force_rule_range(
    salt: str, unit: str, bounds: tuple[float, float]
) -> None:
    assert bounds[0] <= hash_v2(salt, unit) < bounds[1]


@pytest.mark.parametrize(("salt", "unit", "weights", "coverage", "expected"), ASSIGN_CASES)
def test_assign_matches_growthbook_experiments(
    salt: str, unit: str, weights: tuple[float, ...], coverage: float, expected: int
) -> None:
    assert assign(salt, unit, weights, coverage) == expected


@pytest.mark.parametrize(("salt", "unit", "ranges", "expected"), CHOOSE_WITH_HASH_CASES)
def test_choose_variant_on_hash_matches_growthbook(
    salt: str, unit: str, ranges: list[tuple[float, float]], expected: int
) -> None:
    assert choose_variant(hash_v2(salt, unit), ranges) == expected


@pytest.mark.parametrize(("salt", "unit", "expected"), HASH_V1_CASES)
def test_fnv1a32_reproduces_growthbook_hash_v1(salt: str, unit: str, expected: float) -> None:
    assert (fnv1a32(unit + salt) % 1000) / 1000 == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("text", "expected"),
    # Reference values of 32-bit FNV-1a (Landon Curt Noll's FNV test suite).
    [("", 0x811C9DC5), ("a", 0xE40C292C), ("foobar", 0xBF9CF968)],
)
def test_fnv1a32_reference_values(text: str, expected: int) -> None:
    assert fnv1a32(text) == expected


def test_fnv1a32_hashes_utf8_bytes() -> None:
    def fnv_bytes(data: bytes) -> int:
        value = 0x811C9DC5
        for byte in data:
            value = ((value ^ byte) * 0x01000193) % 2**32
        return value

    for text in ["é", "ünït-7", "用户-42", "🙂"]:
        assert fnv1a32(text) == fnv_bytes(text.encode("utf-8"))
        assert 0 <= fnv1a32(text) < 2**32


@pytest.mark.parametrize(
    ("name", "count", "coverage", "weights", "expected"),
    BUCKET_RANGE_CASES,
    ids=[case[0] for case in BUCKET_RANGE_CASES],
)
def test_bucket_ranges_match_growthbook(
    name: str,
    count: int,
    coverage: float,
    weights: list[float] | None,
    expected: list[tuple[float, float]],
) -> None:
    ranges = bucket_ranges(weights if weights is not None else equal_weights(count), coverage)
    assert len(ranges) == len(expected)
    for (start, end), (want_start, want_end) in zip(ranges, expected, strict=True):
        assert start == pytest.approx(want_start, abs=1e-6)
        assert end == pytest.approx(want_end, abs=1e-6)


@pytest.mark.parametrize(
    ("name", "n", "ranges", "expected"),
    CHOOSE_VARIATION_CASES,
    ids=[case[0] for case in CHOOSE_VARIATION_CASES],
)
def test_choose_variant_matches_growthbook(
    name: str, n: float, ranges: list[tuple[float, float]], expected: int | None
) -> None:
    assert choose_variant(n, ranges) == expected


@pytest.mark.parametrize(("count", "expected"), EQUAL_WEIGHTS_CASES)
def test_equal_weights_match_growthbook(count: int, expected: list[float]) -> None:
    assert equal_weights(count) == pytest.approx(expected, abs=1e-6)


def test_weights_within_tolerance_are_not_rescaled() -> None:
    """GrowthBook keeps weights summing to 0.9999 as given: the top 0.0001 is unassigned."""
    ranges = bucket_ranges([0.4, 0.5999])
    assert choose_variant(0.9998, ranges) == 1
    assert choose_variant(0.9999, ranges) is None


# --- Edge cases of assign -------------------------------------------------------------------


def test_assign_excludes_empty_unit_and_single_variant() -> None:
    assert assign("salt", "", (0.5, 0.5)) is None
    assert assign("salt", "user-1", (1.0,)) is None
    assert assign("salt", "user-1", ()) is None


def test_assign_with_zero_coverage_assigns_nobody() -> None:
    assert all(assign("salt", f"user-{i}", (0.5, 0.5), 0.0) is None for i in range(1000))


def test_hash_v2_is_in_unit_interval_with_four_decimals() -> None:
    for i in range(5000):
        n = hash_v2("range-check", f"unit-{i}")
        assert 0.0 <= n < 1.0
        assert round(n * 10000) == pytest.approx(n * 10000, abs=1e-6)


def test_new_salt_is_random_hex() -> None:
    salts = {new_salt() for _ in range(50)}
    assert len(salts) == 50
    for salt in salts:
        assert len(salt) == 16
        assert set(salt) <= set(string.hexdigits.lower())


# --- Stability across processes -------------------------------------------------------------

_CROSS_PROCESS_SCRIPT = """
import json
from versioning.assignment import assign
units = [f"unit-{i}" for i in range(150)] + [f"ünït-{i}" for i in range(50)]
print(json.dumps({
    "builtin_hash": hash("probe-string"),
    "variants": [assign("cross-process", u, (0.2, 0.3, 0.5), 0.9) for u in units],
}))
"""


def _run_in_subprocess(hash_seed: str) -> dict[str, object]:
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = hash_seed
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONIOENCODING"] = "utf-8"
    completed = subprocess.run(
        [sys.executable, "-c", _CROSS_PROCESS_SCRIPT],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(completed.stdout)
    return result


def test_assignment_is_identical_across_processes_with_different_hash_seeds() -> None:
    first = _run_in_subprocess("1")
    second = _run_in_subprocess("12345")
    units = [f"unit-{i}" for i in range(150)] + [f"ünït-{i}" for i in range(50)]
    here = [assign("cross-process", u, (0.2, 0.3, 0.5), 0.9) for u in units]

    # The seeds really differ: Python's own hash() disagrees between the two processes ...
    assert first["builtin_hash"] != second["builtin_hash"]
    # ... while the assignment agrees everywhere, and is not trivially constant.
    assert first["variants"] == second["variants"] == here
    assert len(here) == 200
    assert set(here) == {None, 0, 1, 2}


# --- Statistical quality --------------------------------------------------------------------

UNITS = [f"user-{i}" for i in range(100_000)]


def _shares(variants: Sequence[int | None], count: int) -> list[float]:
    counts = Counter(variants)
    return [counts[i] / len(variants) for i in range(count)]


@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.2, 0.3, 0.5)])
def test_split_follows_weights(weights: tuple[float, ...]) -> None:
    variants = [assign("split-test", unit, weights) for unit in UNITS]
    assert None not in variants
    shares = _shares(variants, len(weights))
    for share, weight in zip(shares, weights, strict=True):
        assert share == pytest.approx(weight, abs=0.01)

    observed = [share * len(UNITS) for share in shares]
    expected = [weight * len(UNITS) for weight in weights]
    assert stats.chisquare(observed, expected).pvalue > 0.001


@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.2, 0.3, 0.5)])
def test_raising_coverage_never_moves_an_assigned_unit(weights: tuple[float, ...]) -> None:
    low = [assign("coverage-test", unit, weights, 0.4) for unit in UNITS]
    high = [assign("coverage-test", unit, weights, 0.8) for unit in UNITS]

    moved = [unit for unit, a, b in zip(UNITS, low, high, strict=True) if a is not None and a != b]
    assert moved == []

    covered_low = sum(a is not None for a in low) / len(UNITS)
    covered_high = sum(b is not None for b in high) / len(UNITS)
    assert covered_low == pytest.approx(0.4, abs=0.01)
    assert covered_high == pytest.approx(0.8, abs=0.01)
    # Within the covered units the split still follows the weights.
    assigned = [b for b in high if b is not None]
    for share, weight in zip(_shares(assigned, len(weights)), weights, strict=True):
        assert share == pytest.approx(weight, abs=0.01)


def test_different_salts_give_independent_splits() -> None:
    first = [assign("experiment-a", unit, (0.5, 0.5)) for unit in UNITS]
    second = [assign("experiment-b", unit, (0.5, 0.5)) for unit in UNITS]
    agreement = sum(a == b for a, b in zip(first, second, strict=True)) / len(UNITS)
    assert agreement == pytest.approx(0.5, abs=0.01)

    # Independence: each cell of the 2x2 table holds about a quarter of the units.
    table = Counter(zip(first, second, strict=True))
    for cell in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        assert table[cell] / len(UNITS) == pytest.approx(0.25, abs=0.01)
