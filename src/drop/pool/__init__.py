"""Pools: elastic groups of workers of one function, with strategies, cache and stats."""

from drop.pool._cache import ResultCache, ResultStore
from drop.pool._config import PoolConfig, Strategy
from drop.pool._pool import ErrorListener, OutputListener, Pool, PoolState
from drop.pool._restarts import Decision, Restart, RestartPolicy
from drop.pool._stats import PoolStats, Stats

__all__ = [
    "Decision",
    "ErrorListener",
    "OutputListener",
    "Pool",
    "PoolConfig",
    "PoolState",
    "PoolStats",
    "Restart",
    "RestartPolicy",
    "ResultCache",
    "ResultStore",
    "Stats",
    "Strategy",
]
