"""Where a function's stderr goes: one rotated log file per pool, and a short tail.

A function may flood stderr or write lines of any length; the sink writes what
arrives chunk by chunk and never holds more than ``tail_bytes`` in memory, so
the pool cannot be stalled or bloated by its own log.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Size at which the log file is rotated to ``NAME.log.1``.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
#: Rotated files kept beside the live one.
DEFAULT_BACKUPS = 3


class LogSink:
    """An append-only, size-rotated log file shared by the workers of one pool.

    Writes are plain blocking ``write`` calls to the page cache: cheap next to
    the pipe read that delivered the bytes, and bounded per chunk.

    Args:
        path: the live log file; its folder is created. ``None`` keeps no file
            (only tails), which unit tests of a corner use.
        max_bytes: rotate once the file grows past this size.
        backups: rotated files to keep.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd = -1
        self._size = 0
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._open()

    def _open(self) -> None:
        assert self.path is not None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._size = os.fstat(self._fd).st_size

    def write(self, data: bytes) -> None:
        """Append ``data``; rotate first if the file is full."""
        if self._fd < 0:
            return
        if self._size + len(data) > self.max_bytes and self._size > 0:
            self._rotate()
        try:
            os.write(self._fd, data)
        except OSError:
            # A full disk must not kill the pool; the tail still records the text.
            return
        self._size += len(data)

    def _rotate(self) -> None:
        assert self.path is not None
        os.close(self._fd)
        for i in range(self.backups, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i - 1}") if i > 1 else self.path
            dst = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, dst)
        self._open()

    def close(self) -> None:
        """Close the file; later writes are ignored."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class StderrTail:
    """The last few hundred bytes a worker wrote to stderr, for error messages.

    Args:
        sink: the pool's log file.
        prefix: put at the start of each line in the file, so the lines of
            different workers stay apart.
        tail_bytes: how much of the end to keep in memory.
    """

    __slots__ = ("_at_line_start", "_prefix", "_sink", "_tail", "tail_bytes")

    def __init__(self, sink: LogSink, prefix: bytes, tail_bytes: int = 2048) -> None:
        self._sink = sink
        self._prefix = prefix
        self._tail = bytearray()
        self._at_line_start = True
        self.tail_bytes = tail_bytes

    def feed(self, data: bytes) -> None:
        """Record a chunk of stderr."""
        text = data.replace(b"\n", b"\n" + self._prefix)
        if self._at_line_start:
            text = self._prefix + text
        if text.endswith(self._prefix):
            text = text[: -len(self._prefix)]
            self._at_line_start = True
        else:
            self._at_line_start = False
        self._sink.write(text)
        tail = self._tail
        if len(data) >= self.tail_bytes:
            tail[:] = data[-self.tail_bytes :]
        else:
            tail += data
            if len(tail) > self.tail_bytes:
                del tail[: len(tail) - self.tail_bytes]

    def last_lines(self, n: int = 5) -> list[str]:
        """The last ``n`` non-empty lines, decoded leniently."""
        text = bytes(self._tail).decode("utf-8", "backslashreplace")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return [ln[:300] for ln in lines[-n:]]
