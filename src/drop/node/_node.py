"""One DROP node: ``drop up``.

::

    drop up
     ├─ nats-server (child; or --nats URL)    state: flows, users, tokens
     ├─ FlowRegistry ── Flow ── Pool ── Worker processes
     └─ HTTP API (uvicorn, same event loop)

Start order: data dir, NATS, state buckets, the admin secret, the HTTP
listener (so /healthz answers while flows come back), then the flows. Stop
order is the reverse: stop taking requests, stop the flows (each pool answers
or fails what it holds), close the state, stop nats-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import psutil
import uvicorn

from drop import __version__
from drop.api import Auth, create_asgi
from drop.errors import DropError
from drop.function import start_guardian, stop_guardian
from drop.node._config import NodeConfig
from drop.node._registry import FlowRegistry
from drop.state import EmbeddedNats, NatsStore

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the node owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Node:
    """A running node.

    Args:
        config: the node's settings (``load_config``).
        announce: where the one-time admin secret and the ready line are
            printed (the CLI passes a function writing to stderr).
    """

    def __init__(self, config: NodeConfig, announce: Any = print) -> None:
        self.config = config
        self.name = config.name
        self.max_body = config.max_body
        self.ready = False
        self.started = time.time()
        self.nats_url = ""
        self._announce = announce
        self._nats: EmbeddedNats | None = None
        self._store: NatsStore | None = None
        self._server: _Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.auth: Auth
        self.registry: FlowRegistry

    async def start(self) -> None:
        """Bring the node up (see the module docstring for the order).

        Raises:
            StateError: NATS could not be started or reached.
            OSError: the HTTP port is taken.
        """
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        start_guardian()  # even a kill -9 of the node leaves no worker's child behind
        if cfg.nats:
            self.nats_url = cfg.nats
        else:
            self._nats = EmbeddedNats(cfg.data_dir, listen=cfg.nats_listen, name=self.name)
            await self._nats.start()
            self.nats_url = self._nats.url
        self._store = await NatsStore.connect(self.nats_url, name=f"drop-{self.name}")
        self.registry = FlowRegistry(
            await self._store.bucket("drop_flows"), cfg.data_dir, self.name
        )
        self.auth = Auth(
            await self._store.bucket("drop_users"),
            await self._store.bucket("drop_tokens"),
            token_ttl=cfg.token_ttl,
        )
        secret = await self.auth.bootstrap(cfg.data_dir / "secrets")
        if secret is not None:
            self._announce(
                "drop up: created the admin secret (shown once; also in "
                f"{cfg.data_dir / 'secrets' / 'initial-admin'}, mode 0600):\n  {secret}"
            )
        await self._serve_http()
        for problem in await self.registry.restore():
            log.warning(problem)
            self._announce(f"drop up: {problem}")
        self.ready = True
        self._announce(f"drop up: node {self.name} ready at {cfg.url} (nats {self.nats_url})")

    async def _serve_http(self) -> None:
        cfg = self.config
        if not cfg.tls_cert and cfg.insecure_bind:
            log.warning("serving HTTP without TLS on %s", cfg.http)
            self._announce(f"drop up: WARNING: {cfg.http} without TLS: tokens travel in clear")
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only
        # then, and without it each answer waits ~40 ms for a delayed ACK.
        sock = socket.socket(
            socket.AF_INET6 if ":" in cfg.http_host else socket.AF_INET,
            socket.SOCK_STREAM,
            socket.IPPROTO_TCP,
        )
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((cfg.http_host, cfg.http_port))
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot listen on {cfg.http}: {exc.strerror}") from None
        sock.listen(1024)
        sock.setblocking(False)
        if cfg.http_port == 0:
            cfg.http = f"{cfg.http_host}:{sock.getsockname()[1]}"
        server_config = uvicorn.Config(
            create_asgi(self),
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=str(cfg.tls_cert) if cfg.tls_cert else None,
            ssl_keyfile=str(cfg.tls_key) if cfg.tls_key else None,
            timeout_graceful_shutdown=5,
        )
        self._server = _Server(server_config)
        self._serving = asyncio.get_running_loop().create_task(
            self._server.serve(sockets=[sock]), name="drop-http"
        )
        while not self._server.started:
            if self._serving.done():
                self._serving.result()  # raises what stopped it
                raise OSError(f"HTTP server on {cfg.http} stopped at start")
            await asyncio.sleep(0.01)

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT, then stop. A second signal kills
        what is left at once."""
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                self._announce("drop up: stopping (again to force)")
                self._stop.set()
            else:
                os._exit(130)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        try:
            await self.start()
            await self._stop.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        """Ask ``run`` to return (tests and embedding code)."""
        self._stop.set()

    async def stop(self) -> None:
        """Stop in reverse order; safe to call twice."""
        self.ready = False
        if self._server is not None:
            self._server.should_exit = True
        if self._serving is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._serving, 10)
            self._serving = None
        if hasattr(self, "registry"):
            await self.registry.shutdown()
        if self._store is not None:
            with contextlib.suppress(DropError):
                await self._store.close()
            self._store = None
        if self._nats is not None:
            await self._nats.stop()
            self._nats = None
        stop_guardian()

    # -- what the API shows -----------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Identity and addresses of the node."""
        return {
            "name": self.name,
            "version": __version__,
            "url": self.config.url,
            "nats": self.nats_url,
            "embedded_nats": self._nats is not None,
            "data_dir": str(self.config.data_dir),
            "started": self.started,
            "uptime": round(time.time() - self.started, 3),
            "flows": len(self.registry.names()),
            "pid": os.getpid(),
        }

    def stats(self) -> dict[str, Any]:
        """CPU, memory and load of the machine and process, and every pool's counters."""
        proc = psutil.Process()
        vm = psutil.virtual_memory()
        return {
            "node": self.name,
            "cpu_percent": psutil.cpu_percent(interval=None),
            "cpus": psutil.cpu_count(),
            "load": list(os.getloadavg()),
            "memory": {"total": vm.total, "available": vm.available, "percent": vm.percent},
            "process": {
                "rss": proc.memory_info().rss,
                "cpu_percent": proc.cpu_percent(interval=None),
                "threads": proc.num_threads(),
            },
            "pools": {
                name: {"flow": flow, **_snapshot(pool)}
                for name, (flow, pool) in sorted(self.registry.pools().items())
            },
        }


def _snapshot(pool: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(pool.snapshot())
