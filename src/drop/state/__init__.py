"""Cluster state: key-value buckets in memory or in NATS JetStream."""

from drop.state._base import KeyValue, StateStore
from drop.state._embedded import EmbeddedNats
from drop.state._memory import MemoryBucket, MemoryStore, check_key
from drop.state._nats import NatsBucket, NatsStore

__all__ = [
    "EmbeddedNats",
    "KeyValue",
    "MemoryBucket",
    "MemoryStore",
    "NatsBucket",
    "NatsStore",
    "StateStore",
    "check_key",
]
