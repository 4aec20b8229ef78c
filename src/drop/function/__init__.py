"""Functions: programs that speak the line protocol, one worker process each."""

from drop.function._guard import start_guardian, stop_guardian
from drop.function._logs import LogSink, StderrTail
from drop.function._worker import (
    DEFAULT_MAX_LINE,
    Mode,
    Reply,
    Worker,
    WorkerConfig,
    WorkerListener,
    WorkerState,
)

__all__ = [
    "DEFAULT_MAX_LINE",
    "LogSink",
    "Mode",
    "Reply",
    "StderrTail",
    "Worker",
    "WorkerConfig",
    "WorkerListener",
    "WorkerState",
    "start_guardian",
    "stop_guardian",
]
