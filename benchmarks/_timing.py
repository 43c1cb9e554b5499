"""Interleaved timing shared by the benchmark scripts.

Candidates are timed in rounds (a, b, c, a, b, c, ...) after a warm-up, each
round timing a block of calls with ``time.perf_counter``.  Ratios are medians
of the per-round ratios, so drift in the load of a shared machine hits every
candidate alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(cands: dict[str, Callable[[], object]], rounds: int, block_s: float = 0.05,
                warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each candidate, one value per round.  Each round
    times a block of about ``block_s`` seconds of calls (at least one)."""
    calls = {}
    for name, fn in cands.items():  # warm-up, and calls per block of about block_s
        for _ in range(warmup):
            fn()
        t0 = time.perf_counter()
        fn()
        calls[name] = max(1, int(block_s / max(time.perf_counter() - t0, 1e-6)))
    times: dict[str, list[float]] = {name: [] for name in cands}
    for _ in range(rounds):
        for name, fn in cands.items():
            t0 = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            times[name].append((time.perf_counter() - t0) / calls[name])
    return times


def median_ms(values: list[float]) -> float:
    return 1e3 * statistics.median(values)


def median_us(values: list[float]) -> float:
    return 1e6 * statistics.median(values)


def ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of time(a) / time(b) measured in the same round."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def best_ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Best (least disturbed) time of a over best time of b."""
    return min(times[a]) / min(times[b])
