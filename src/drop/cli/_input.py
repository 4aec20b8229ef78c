"""Reading input lines without blocking the event loop.

A thread reads the file (or stdin) in chunks of whatever is available and
hands complete lines to the loop in batches, through a small bounded queue:
a typed line reaches the flow at once, a big file streams at full speed, and
a slow flow slows the reader instead of filling memory.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator

_CHUNK = 256 * 1024
_DEPTH = 8


async def read_batches(fd: int) -> AsyncIterator[list[bytes]]:
    """Yield the lines of ``fd`` (without newlines), a list at a time.

    A last line without a newline is still a line. The descriptor is not closed.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list[bytes] | BaseException | None] = asyncio.Queue(_DEPTH)
    stop = threading.Event()

    def put(item: list[bytes] | BaseException | None) -> None:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    def reader() -> None:
        rest = b""
        try:
            while not stop.is_set():
                data = os.read(fd, _CHUNK)
                if not data:
                    break
                data = rest + data
                lines = data.split(b"\n")
                rest = lines.pop()
                if lines:
                    put(lines)
            if rest and not stop.is_set():
                put([rest])
            put(None)
        except BaseException as exc:  # handed to the loop, which re-raises it
            if not stop.is_set():
                put(exc)

    thread = threading.Thread(target=reader, name="drop-input", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # let a reader blocked on a full queue finish its put
        while not queue.empty():
            queue.get_nowait()
