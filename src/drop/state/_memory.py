"""Buckets in this process's memory: for ``drop run`` and unit tests of a corner."""

from __future__ import annotations

import re

from drop.errors import StateConflict, StateError

_KEY = re.compile(r"^[A-Za-z0-9_=-]+$")


def check_key(bucket: str, key: str) -> None:
    """Raise ``StateError`` naming the bucket if ``key`` is not a valid key."""
    if not _KEY.match(key):
        raise StateError(
            f"bucket {bucket}: invalid key {key!r}: use letters, digits, '_', '-' and '='"
        )


class MemoryBucket:
    """A bucket as a dict of ``key -> (value, revision)``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._items: dict[str, tuple[bytes, int]] = {}
        self._revision = 0

    async def get(self, key: str) -> tuple[bytes, int] | None:
        check_key(self.name, key)
        return self._items.get(key)

    async def put(self, key: str, value: bytes) -> int:
        check_key(self.name, key)
        self._revision += 1
        self._items[key] = (value, self._revision)
        return self._revision

    async def create(self, key: str, value: bytes) -> int:
        check_key(self.name, key)
        if key in self._items:
            raise StateConflict(f"bucket {self.name}: key {key!r} exists")
        return await self.put(key, value)

    async def update(self, key: str, value: bytes, revision: int) -> int:
        check_key(self.name, key)
        current = self._items.get(key)
        if current is None or current[1] != revision:
            have = None if current is None else current[1]
            raise StateConflict(
                f"bucket {self.name}: key {key!r} is at revision {have}, not {revision}"
            )
        return await self.put(key, value)

    async def delete(self, key: str) -> None:
        check_key(self.name, key)
        self._items.pop(key, None)

    async def keys(self) -> list[str]:
        return sorted(self._items)


class MemoryStore:
    """A ``StateStore`` whose buckets live in memory and die with the process."""

    def __init__(self) -> None:
        self._buckets: dict[str, MemoryBucket] = {}

    async def bucket(self, name: str) -> MemoryBucket:
        if name not in self._buckets:
            self._buckets[name] = MemoryBucket(name)
        return self._buckets[name]

    async def close(self) -> None:
        self._buckets.clear()
