"""Per-pool counters and a latency reservoir, cheap enough for every message."""

from __future__ import annotations

from array import array
from dataclasses import dataclass

#: Latencies kept for percentiles (a power of two: the index is masked).
_RING = 4096
#: Histogram buckets: bucket k counts latencies below 2**k microseconds.
HIST_BUCKETS = 27


class Stats:
    """Counters a pool updates on its hot path.

    Latencies go into a fixed ring of the last 4096 samples; percentiles are
    computed only when someone asks.
    """

    __slots__ = (
        "_ring",
        "_slot",
        "error",
        "hist",
        "latency_sum",
        "nomore",
        "ok",
        "restarts",
        "timeout",
    )

    def __init__(self) -> None:
        self.ok = 0
        self.error = 0
        self.timeout = 0
        self.nomore = 0
        self.restarts = 0
        self._ring = array("d", bytes(8 * _RING))
        self._slot = 0
        #: counts per power-of-two bucket of microseconds (for /metrics)
        self.hist = [0] * HIST_BUCKETS
        self.latency_sum = 0.0

    def record(self, seconds: float) -> None:
        """Record one answered message's latency."""
        self._ring[self._slot & (_RING - 1)] = seconds
        self._slot += 1
        # bit_length of the microseconds: a bucket without a search
        bucket = int(seconds * 1e6).bit_length()
        self.hist[bucket if bucket < HIST_BUCKETS else HIST_BUCKETS - 1] += 1
        self.latency_sum += seconds

    def percentiles(self) -> tuple[float, float]:
        """p50 and p99 latency in seconds over the recent samples (0.0 if none)."""
        n = min(self._slot, _RING)
        if n == 0:
            return 0.0, 0.0
        samples = sorted(self._ring[:n])
        return samples[(n - 1) // 2], samples[min(n - 1, (99 * n) // 100)]


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of one pool, for status output and tests."""

    pool: str
    state: str
    workers: int
    ok: int
    error: int
    timeout: int
    running: int
    queued: int
    nomore: int
    restarts: int
    p50_ms: float
    p99_ms: float
    reason: str
