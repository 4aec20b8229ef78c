"""Every error DROP raises on purpose.

::

    DropError
     ├── SpecError            a flow file or pool setting is wrong (names file, line, field)
     ├── ProtocolError        a message or a worker's line breaks the line protocol
     │    └── LineTooLong     a line is longer than the pool's max_line
     ├── WorkerError          a worker could not answer a message
     │    ├── WorkerCrashed   it exited or could not start (exit status, signal, stderr tail)
     │    ├── WorkerTimeout   it did not answer within the pool's timeout
     │    └── WorkerGone      it was stopped while the message was in flight
     ├── PoolError
     │    ├── PoolFull        the bounded queue is full (counted as ``nomore``)
     │    ├── PoolFailed      restarts exhausted their budget; the pool takes no work
     │    └── PoolStopped     the pool is stopped or stopping
     ├── FlowError            a flow could not start, run a scenario or finish
     ├── NotFound             no flow, pool, scenario or ref of that name
     ├── Conflict             the name is taken (a pool of another flow, say)
     └── StateError           the state store failed (NATS down, bad key)
          └── StateConflict   a compare-and-set lost: the key changed meanwhile

Lower-level exceptions (``OSError`` from spawning, ``UnicodeDecodeError`` from a
worker's output) are translated inside ``drop.function`` and never escape raw.
"""

from __future__ import annotations


class DropError(Exception):
    """Base of every error DROP raises on purpose."""


class SpecError(DropError):
    """A flow file or setting is invalid.

    Attributes:
        problems: every problem found, each ``"file:line: path: message"``.
    """

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class ProtocolError(DropError):
    """A message or a worker's output line breaks the line protocol."""


class LineTooLong(ProtocolError):
    """A line is longer than the pool's ``max_line``."""


class WorkerError(DropError):
    """A worker could not answer a message."""


class WorkerCrashed(WorkerError):
    """The worker exited, was killed, or could not start."""


class WorkerTimeout(WorkerError):
    """The worker did not answer within the pool's timeout."""


class WorkerGone(WorkerError):
    """The worker was stopped while the message was in flight."""


class PoolError(DropError):
    """A pool refused a message."""


class PoolFull(PoolError):
    """The pool's bounded queue is full; retry later or raise ``queue``."""


class PoolFailed(PoolError):
    """The pool spent its restart budget and is marked failed."""


class PoolStopped(PoolError):
    """The pool is stopped or stopping."""


class FlowError(DropError):
    """A flow could not start, run a scenario, or finish."""


class NotFound(DropError):
    """No flow, pool, scenario or ref of that name."""


class Conflict(DropError):
    """The name is taken, or the object is in a state that forbids the action."""


class StateError(DropError):
    """The state store failed: NATS unreachable, a bad key, a broken bucket."""


class StateConflict(StateError):
    """A compare-and-set lost: the key was created or changed meanwhile."""


__all__ = [
    "Conflict",
    "DropError",
    "FlowError",
    "LineTooLong",
    "NotFound",
    "PoolError",
    "PoolFailed",
    "PoolFull",
    "PoolStopped",
    "ProtocolError",
    "SpecError",
    "StateConflict",
    "StateError",
    "WorkerCrashed",
    "WorkerError",
    "WorkerGone",
    "WorkerTimeout",
]
