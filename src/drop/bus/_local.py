"""Routing between pools of one node: no copies, no tasks, no NATS.

A ``Subscription`` is registered as an output listener on the source pool and
hands each line that passes its filter straight to the target's ``deliver``,
inside the source worker's pipe callback. Nothing is held in between, so once
every pool is idle nothing is in transit either.
"""

from __future__ import annotations

from typing import Protocol

from drop.bus._filter import LineFilter, compile_filter


class Deliverable(Protocol):
    """Anything that takes subscription lines (a pool)."""

    name: str

    def deliver(self, message: str, to_all: bool = False) -> None:
        """Take one line; never raise (refusals become the target's error events)."""


class Subscription:
    """``target`` receives ``source``'s output lines that pass ``filter``.

    Args:
        source: the name of the pool whose output is wanted.
        target: who receives the lines.
        filter: a filter as written in a flow (see ``compile_filter``).
        to_all: every worker of the target gets each line (``all``/``dall``).
    """

    __slots__ = ("_match", "filter", "source", "target", "to_all")

    def __init__(
        self, source: str, target: Deliverable, filter: str | None = None, to_all: bool = False
    ) -> None:
        self.source = source
        self.target = target
        self.filter = filter
        self.to_all = to_all
        self._match: LineFilter = compile_filter(filter)

    def __call__(self, line: str) -> None:
        match = self._match
        if match is None or match(line):
            self.target.deliver(line, self.to_all)

    def __repr__(self) -> str:
        return f"Subscription({self.source} -> {self.target.name}, filter={self.filter!r})"
