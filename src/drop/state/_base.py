"""The state store: named key-value buckets, in memory or in NATS JetStream.

A node keeps what must survive a restart here: installed flows and their
desired state, users, tokens. Values are bytes; callers choose the encoding.
Every bucket supports compare-and-set through revisions, which leader
election and concurrent admins need.
"""

from __future__ import annotations

from typing import Protocol


class KeyValue(Protocol):
    """One bucket of keys.

    Keys are dot-free ASCII words (``[A-Za-z0-9_=-]``, as NATS allows);
    ``StateError`` names a bad key.
    """

    name: str

    async def get(self, key: str) -> tuple[bytes, int] | None:
        """The value and its revision, or ``None`` if the key is absent."""
        ...

    async def put(self, key: str, value: bytes) -> int:
        """Set ``key``; returns the new revision."""
        ...

    async def create(self, key: str, value: bytes) -> int:
        """Set ``key`` only if absent; raises ``StateConflict`` if present."""
        ...

    async def update(self, key: str, value: bytes, revision: int) -> int:
        """Set ``key`` only if its revision is still ``revision``; raises
        ``StateConflict`` otherwise."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are fine."""
        ...

    async def keys(self) -> list[str]:
        """Every key present, sorted."""
        ...


class StateStore(Protocol):
    """Opens buckets by name."""

    async def bucket(self, name: str) -> KeyValue:
        """The bucket ``name``, created if it does not exist."""
        ...

    async def close(self) -> None:
        """Release connections; buckets are unusable afterwards."""
        ...
