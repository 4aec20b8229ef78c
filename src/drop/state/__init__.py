"""Cluster state: key-value buckets in memory or in NATS JetStream."""

from drop.state._base import KeyValue, StateStore
from drop.state._memory import MemoryBucket, MemoryStore, check_key

__all__ = ["KeyValue", "MemoryBucket", "MemoryStore", "StateStore", "check_key"]
