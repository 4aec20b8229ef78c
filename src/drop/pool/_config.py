"""How a pool is set up: the typed settings the pool runtime takes.

``drop.flow`` turns YAML into this; nothing here knows about files.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from drop.function import WorkerConfig
from drop.pool._restarts import Restart


class Strategy(enum.StrEnum):
    """Which worker a message goes to."""

    FREE = "free"
    ALL = "all"
    HASH = "hash"
    ROUND_ROBIN = "round_robin"
    RANDOM = "random"


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """Settings of one pool.

    Attributes:
        name: unique within the node.
        worker: how each worker process is started.
        size_min: workers kept even when idle.
        size_max: workers at most; the pool grows while messages wait.
        strategy: how messages pick a worker.
        key: for ``hash``: a regex whose group 1 (or whole match) is the key;
            ``None`` hashes the whole line.
        timeout: seconds a worker may take per message; ``None`` waits forever.
        queue: messages waiting at most before the pool says it is full.
        idle_timeout: seconds a worker above ``size_min`` may idle before it is stopped.
        restart: which worker exits are restarted.
        max_restarts: restarts allowed within ``window`` before the pool fails.
        window: seconds of the restart window.
        backoff: first restart delay; doubles per restart in the window.
        backoff_max: cap on the restart delay.
        cache_ttl: seconds to cache results by message; ``None`` disables.
        cache_size: entries the cache keeps at most.
        retention: seconds results fetched by ref are kept.
    """

    name: str
    worker: WorkerConfig
    size_min: int = 1
    size_max: int = 1
    strategy: Strategy = Strategy.FREE
    key: re.Pattern[str] | None = None
    timeout: float | None = 10.0
    queue: int = 10_000
    idle_timeout: float = 30.0
    restart: Restart = Restart.ALWAYS
    max_restarts: int = 5
    window: float = 30.0
    backoff: float = 0.1
    backoff_max: float = 5.0
    cache_ttl: float | None = None
    cache_size: int = 10_000
    retention: float = 300.0

    @property
    def sticky(self) -> bool:
        """True when a message's worker is chosen before it is sent (not ``free``)."""
        return self.strategy is not Strategy.FREE
