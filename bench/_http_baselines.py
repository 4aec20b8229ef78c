"""The two servers bench/http_bench.py compares DROP with, each a bare ASGI app on
uvicorn (uvloop, httptools, no access log), answering POST bodies with the
echo function's reply.

direct  one long-lived echo process; request lines are written to it as they
        come (pipelined) and replies matched in order: the least a server can
        do to put a function behind HTTP.
direct1 the same, one line in flight at a time (what a sync pool with
        ``pipeline: 1`` does).
fork    a new echo process per request (the classic OpenFaaS watchdog model).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import deque
from pathlib import Path
from typing import Any

import uvicorn

PYEX = Path(__file__).resolve().parents[1] / "examples" / "pyex"
ARGV = (sys.executable, str(PYEX / "pyex.py"), "1")


class _Echo(asyncio.SubprocessProtocol):
    def __init__(self) -> None:
        self.waiting: deque[asyncio.Future[bytes]] = deque()
        self.buf = b""

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd != 1:
            return  # pyex logs to stderr; a real server would keep it
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            self.waiting.popleft().set_result(line)


class Direct:
    def __init__(self, one_at_a_time: bool = False) -> None:
        self.proto: _Echo | None = None
        self.stdin: Any = None
        self.lock = asyncio.Lock() if one_at_a_time else None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.subprocess_exec(
            _Echo, *ARGV, stdin=-1, stdout=-1, stderr=-1, cwd=PYEX
        )
        self.proto, self.stdin = proto, transport.get_pipe_transport(0)

    async def call(self, line: bytes) -> bytes:
        if self.lock is None:
            return await self._call(line)
        async with self.lock:
            return await self._call(line)

    async def _call(self, line: bytes) -> bytes:
        assert self.proto is not None
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.proto.waiting.append(fut)
        self.stdin.write(line + b"\n")
        return await fut


async def fork_call(line: bytes) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        *ARGV, stdin=-1, stdout=-1, stderr=asyncio.subprocess.DEVNULL, cwd=PYEX
    )
    out, _ = await proc.communicate(line + b"\n")
    return out.split(b"\n", 1)[0]


def make_app(kind: str) -> Any:
    direct = Direct(one_at_a_time=kind == "direct1")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if kind != "fork":
                        await direct.start()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        line = body.rstrip(b"\n")
        reply = await (fork_call(line) if kind == "fork" else direct.call(line))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": reply})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["direct", "direct1", "fork"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        make_app(args.kind),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
