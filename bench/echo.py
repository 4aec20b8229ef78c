"""A minimal line echo, the function every case of ``bench/pipeline.py`` runs.

It reads one line, writes it back unchanged and flushes, line by line, until
EOF. Because the line goes back unchanged it speaks both DROP protocols: in
sync mode the answer to ``PAYLOAD`` is ``PAYLOAD``, and in async mode the
answer to ``REF::PAYLOAD`` is ``REF::PAYLOAD``.

It uses the binary buffers: no decoding, and ``readline`` takes every line
already waiting in the pipe from one read, so a pipelined caller is not held
back by the echo.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Echo stdin to stdout, one flushed line at a time, until EOF."""
    readline = sys.stdin.buffer.readline
    out = sys.stdout.buffer
    write = out.write
    flush = out.flush
    for line in iter(readline, b""):
        write(line)
        flush()


if __name__ == "__main__":
    main()
