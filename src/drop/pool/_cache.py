"""A pool's result cache (by message) and result store (by ref)."""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict


class ResultCache:
    """Results by message text, dropped after ``ttl`` seconds or when over ``size``.

    Args:
        ttl: seconds a result stays valid.
        size: most entries kept; the least recently used goes first.
    """

    def __init__(self, ttl: float, size: int) -> None:
        self.ttl = ttl
        self.size = size
        self._items: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, message: str) -> str | None:
        """The cached result, or ``None``."""
        item = self._items.get(message)
        if item is None or item[0] < time.monotonic():
            if item is not None:
                del self._items[message]
            self.misses += 1
            return None
        self._items.move_to_end(message)
        self.hits += 1
        return item[1]

    def put(self, message: str, result: str) -> None:
        """Remember ``result`` for ``message``."""
        items = self._items
        items[message] = (time.monotonic() + self.ttl, result)
        items.move_to_end(message)
        while len(items) > self.size:
            items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class ResultStore:
    """Outcomes by ref, so a caller that did not wait can fetch them later.

    Args:
        retention: seconds an outcome is kept after it is known.
        prefix: put before every ref (the pool name keeps refs unique per node).
    """

    def __init__(self, retention: float, prefix: str) -> None:
        self.retention = retention
        self.prefix = prefix
        self._counter = itertools.count(1)
        self._pending: set[str] = set()
        # finished outcomes in the order they finished, so expiry pops from the front
        self._done: OrderedDict[str, tuple[float, str | None, str | None]] = OrderedDict()

    def new_ref(self) -> str:
        """A fresh ref, recorded as pending."""
        ref = f"{self.prefix}-{next(self._counter)}"
        self._pending.add(ref)
        return ref

    def done(self, ref: str, result: str | None, error: str | None) -> None:
        """Record the outcome of ``ref``: a result, or an error text."""
        self._expire()
        self._pending.discard(ref)
        self._done[ref] = (time.monotonic() + self.retention, result, error)

    def get(self, ref: str) -> tuple[bool, str | None, str | None] | None:
        """``(finished, result, error)``, or ``None`` for an unknown or expired ref."""
        self._expire()
        if ref in self._pending:
            return False, None, None
        item = self._done.get(ref)
        if item is None:
            return None
        return True, item[1], item[2]

    def _expire(self) -> None:
        now = time.monotonic()
        done = self._done
        while done:
            ref, (expires, _, _) = next(iter(done.items()))
            if expires >= now:
                break
            del done[ref]
