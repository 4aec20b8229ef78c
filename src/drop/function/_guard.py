"""A guardian that kills every worker's process group if its owner dies.

Workers get a parent-death signal, but the processes a function starts
itself do not, and nothing in the owner runs on ``kill -9``. So the owner (a
node, or ``drop run``) starts one small guardian process and tells it, over
a pipe, each worker process group it starts and reaps. When the pipe closes
(the owner exited, however it exited) the guardian kills the groups still
listed. One process per owner, one short write per worker start and exit;
nothing per message.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

_SCRIPT = """
import os, signal, sys
groups = set()
for line in sys.stdin:
    try:
        pgid = int(line[1:])
    except ValueError:
        continue
    (groups.add if line[0] == "+" else groups.discard)(pgid)
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""

_guardian: Guardian | None = None


class Guardian:
    """The guardian process and the write end of its pipe."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C is not for it
        )
        assert self._proc.stdin is not None
        self._fd = self._proc.stdin.fileno()

    def _say(self, line: str) -> None:
        with contextlib.suppress(OSError):
            os.write(self._fd, line.encode())

    def track(self, pgid: int) -> None:
        """A worker's process group was started."""
        self._say(f"+{pgid}\n")

    def untrack(self, pgid: int) -> None:
        """A worker's process group is gone."""
        self._say(f"-{pgid}\n")

    def close(self) -> None:
        """Let the guardian finish (it kills whatever is still listed)."""
        assert self._proc.stdin is not None
        with contextlib.suppress(OSError):
            self._proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(5)


def start_guardian() -> Guardian:
    """Start this process's guardian (once); workers started from now on are guarded."""
    global _guardian
    if _guardian is None:
        _guardian = Guardian()
    return _guardian


def stop_guardian() -> None:
    """Close this process's guardian, if any."""
    global _guardian
    guardian, _guardian = _guardian, None
    if guardian is not None:
        guardian.close()


def track(pgid: int) -> None:
    """Tell the guardian, if there is one, about a new worker process group."""
    if _guardian is not None:
        _guardian.track(pgid)


def untrack(pgid: int) -> None:
    """Tell the guardian, if there is one, that a worker process group is gone."""
    if _guardian is not None:
        _guardian.untrack(pgid)
