"""``/metrics``: read at scrape time from the pools' own counters, so the
message path pays nothing for it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import psutil
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from drop.pool import Pool
from drop.pool._stats import HIST_BUCKETS

_COUNTERS = (
    ("ok", "messages answered"),
    ("error", "messages that failed"),
    ("timeout", "messages that timed out"),
    ("nomore", "messages refused because the pool was full"),
    ("restarts", "worker restarts"),
)


class _PoolCollector:
    def __init__(self, node: str, pools: Mapping[str, tuple[str, Pool]]) -> None:
        self._node = node
        self._pools = pools

    def collect(self) -> Iterator[Metric]:
        labels = ["node", "flow", "pool"]
        counters = {
            name: CounterMetricFamily(f"drop_pool_{name}", doc, labels=labels)
            for name, doc in _COUNTERS
        }
        queued = GaugeMetricFamily("drop_pool_queued", "messages waiting", labels=labels)
        running = GaugeMetricFamily("drop_pool_running", "messages in flight", labels=labels)
        workers = GaugeMetricFamily("drop_pool_workers", "live workers", labels=labels)
        latency = HistogramMetricFamily(
            "drop_pool_latency_seconds", "time from send to answer", labels=labels
        )
        for name, (flow, pool) in sorted(self._pools.items()):
            values = [self._node, flow, name]
            stats = pool.stats
            snap = pool.snapshot()
            for counter, _ in _COUNTERS:
                counters[counter].add_metric(values, getattr(stats, counter))
            queued.add_metric(values, snap.queued)
            running.add_metric(values, snap.running)
            workers.add_metric(values, snap.workers)
            buckets, total = [], 0
            for k in range(HIST_BUCKETS):
                total += stats.hist[k]
                bound = "+Inf" if k == HIST_BUCKETS - 1 else repr((2**k) / 1e6)
                buckets.append((bound, total))
            latency.add_metric(values, buckets, stats.latency_sum)
        yield from counters.values()
        yield from (queued, running, workers, latency)
        proc = psutil.Process()
        node_labels = ["node"]
        cpu = GaugeMetricFamily("drop_node_cpu_percent", "machine CPU use", labels=node_labels)
        cpu.add_metric([self._node], psutil.cpu_percent(interval=None))
        mem = GaugeMetricFamily("drop_node_memory_bytes", "node process RSS", labels=node_labels)
        mem.add_metric([self._node], proc.memory_info().rss)
        avail = GaugeMetricFamily(
            "drop_node_memory_available_bytes", "machine memory available", labels=node_labels
        )
        avail.add_metric([self._node], psutil.virtual_memory().available)
        yield from (cpu, mem, avail)


def metrics_text(node: str, pools: Mapping[str, tuple[str, Pool]]) -> tuple[bytes, str]:
    """The metrics page and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_PoolCollector(node, pools))  # type: ignore[arg-type]
    return generate_latest(registry), CONTENT_TYPE_LATEST
