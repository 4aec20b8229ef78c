"""One worker process speaking the line protocol.

::

    STARTING ──spawned──▶ RUNNING ──stop()──▶ DRAINING ──EOF, exit──▶ EXITED
        │                    │                                          ▲
        └──spawn failed──────┴──────────── exit / kill() ───────────────┘

The worker owns its process group: on exit or stop every process the function
started is killed, so nothing is left behind. Each message in flight when the
worker exits gets an error naming the exit status or signal and the last
stderr lines; nobody waits forever.

The hot path (``send`` and the stdout reader) allocates no task and no timer
per message: timeouts are checked by the pool's watchdog through
``expire()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import signal
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from drop._proc import die_with_parent
from drop.errors import (
    DropError,
    LineTooLong,
    ProtocolError,
    WorkerCrashed,
    WorkerError,
    WorkerGone,
    WorkerTimeout,
)
from drop.function import _guard
from drop.function._logs import LogSink, StderrTail
from drop.function._memory import MemoryLimit

#: Default longest line accepted in either direction (bytes, without the newline).
DEFAULT_MAX_LINE = 1024 * 1024
#: How long after the process exits we wait for its pipes to close.
_PIPE_GRACE = 1.0


class Mode(enum.StrEnum):
    """How a function answers: one line per line, tagged lines, or on its own."""

    SYNC = "sync"
    ASYNC = "async"
    STREAM = "stream"


_SYNC, _ASYNC, _STREAM = 0, 1, 2
_KIND = {Mode.SYNC: _SYNC, Mode.ASYNC: _ASYNC, Mode.STREAM: _STREAM}


class WorkerState(enum.StrEnum):
    """Where a worker is in its life (see the diagram at the top of the module)."""

    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    EXITED = "exited"


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What every worker of one pool is started with.

    Attributes:
        argv: the command, already split; with ``shell`` a single string in argv[0].
        cwd: the folder the function runs in.
        env: the whole environment (``DROP_WORKER`` is added per worker);
            ``None`` inherits this process's.
        mode: sync, async or stream.
        concurrency: messages in flight per worker in async mode.
        pipeline: messages in flight per worker in sync mode; answers still
            come in order, one per line (1: one at a time).
        max_line: longest line in bytes, either direction.
        memory_mb: address-space limit in MiB, or ``None``.
        stop_timeout: seconds between EOF and the kill on a polite stop.
        shell: run ``argv[0]`` through ``/bin/sh -c``.
    """

    argv: tuple[str, ...]
    cwd: str
    env: Mapping[str, str] | None = None
    mode: Mode = Mode.SYNC
    concurrency: int = 1
    pipeline: int = 1
    max_line: int = DEFAULT_MAX_LINE
    memory_mb: int | None = None
    stop_timeout: float = 5.0
    shell: bool = False


class Reply(Protocol):
    """Where one message's outcome goes: an ``asyncio.Future[str]`` or anything
    with the same three methods (a pool's batch collects into a list)."""

    def done(self) -> bool: ...

    def set_result(self, result: str, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


class WorkerListener(Protocol):
    """What a worker tells its owner. Every method runs in the event loop's
    thread, inside the worker's pipe callback; an exception raised here is a
    bug in the owner and propagates to the loop's exception handler."""

    def worker_result(self, worker: Worker, text: str, started: float) -> None:
        """A message sent at ``started`` was answered with ``text``."""

    def worker_failed(self, worker: Worker, error: DropError, started: float) -> None:
        """A message sent at ``started`` failed; its future already holds ``error``."""

    def worker_event(self, worker: Worker, text: str) -> None:
        """A stream worker wrote a line."""

    def worker_exited(self, worker: Worker, reason: str, expected: bool) -> None:
        """The process is gone; ``expected`` when DROP asked it to stop."""


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "exited (status unknown)"
    if returncode < 0:
        sig = -returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by signal {sig} ({name})"
    return f"exited with status {returncode}"


_OOM_WORDS = ("MemoryError", "Cannot allocate memory", "out of memory", "bad_alloc")


def _looks_out_of_memory(returncode: int | None, tail: list[str]) -> bool:
    # Under an address-space limit an allocation fails: runtimes print one of
    # these and exit, or die on a signal (SIGSEGV, SIGABRT, SIGKILL).
    if returncode is not None and returncode < 0:
        return True
    return any(word in line for line in tail for word in _OOM_WORDS)


class Worker(asyncio.SubprocessProtocol):
    """A handle on one function process (and the protocol of its pipes, so a
    reply costs no extra hop).

    Args:
        config: how to start it.
        name: ``POOL/INDEX``, used in every error message.
        index: slot number in the pool, passed as ``DROP_WORKER``.
        listener: told of results, failures, events and the exit.
        log: the pool's stderr log.
    """

    def __init__(
        self,
        config: WorkerConfig,
        *,
        name: str,
        index: int,
        listener: WorkerListener,
        log: LogSink,
    ) -> None:
        self.config = config
        self.name = name
        self.index = index
        self._up = False
        self.state = WorkerState.STARTING
        self.pid: int | None = None
        self.returncode: int | None = None
        #: When the worker last became idle (monotonic seconds); for shrinking.
        self.idle_since = time.monotonic()
        self.exit_reason = ""
        self._listener = listener
        self._stderr = StderrTail(log, f"[{index}] ".encode())
        self._transport: asyncio.SubprocessTransport | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._buf = bytearray()
        self._skipping = False
        self._lines_out = 0
        # sync mode: the one message in flight (started == 0.0 means none)
        self._cur_fut: Reply | None = None
        self._cur_started = 0.0
        # sync mode with pipeline > 1: the messages sent after the current one
        self._pipe: deque[tuple[Reply | None, float, int]] = deque()
        # stdout reads so far, and the read during which the current message
        # was sent: its answer cannot come in that same read
        self._reads = 0
        self._cur_mark = -1
        self._pipeline = config.pipeline
        # async mode: ref -> (future, started); insertion order is age order
        self._refs: dict[int, tuple[Reply | None, float]] = {}
        self._next_ref = 0
        self._expired: set[int] = set()
        self._kill_reason: str | None = None
        self._memory: MemoryLimit | None = None
        self._stopping = False
        self._exit_timer: asyncio.TimerHandle | None = None
        self._exited = asyncio.Event()
        self._wbuf: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        mode = config.mode
        # Plain ints and bools on the hot path: enum member access is slow on 3.11.
        self._kind = _KIND[mode]
        self._concurrency = config.concurrency
        self._max_line = config.max_line
        self._line = (
            self._sync_line
            if mode is Mode.SYNC
            else self._async_line
            if mode is Mode.ASYNC
            else self._stream_line
        )

    @property
    def state(self) -> WorkerState:
        """Where the worker is in its life."""
        return self._state

    @state.setter
    def state(self, value: WorkerState) -> None:
        self._state = value
        self._up = value is WorkerState.RUNNING

    # -- life ---------------------------------------------------------------

    async def start(self) -> None:
        """Spawn the process.

        Raises:
            WorkerCrashed: the command could not be started (missing file,
                not executable, bad folder); the message names the command.
        """
        loop = asyncio.get_running_loop()
        cfg = self.config
        env = dict(os.environ if cfg.env is None else cfg.env)
        env["DROP_WORKER"] = str(self.index)
        argv = ("/bin/sh", "-c", cfg.argv[0]) if cfg.shell else cfg.argv
        memory = None
        if cfg.memory_mb:
            memory = self._memory = MemoryLimit(self.name, cfg.memory_mb)

        def preexec() -> None:
            die_with_parent(signal.SIGKILL)
            if memory is not None:
                memory.apply_in_child()

        try:
            transport, _ = await loop.subprocess_exec(
                lambda: self,
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=cfg.cwd,
                env=env,
                start_new_session=True,
                preexec_fn=preexec,
            )
        except (OSError, ValueError, asyncio.CancelledError) as exc:
            self.state = WorkerState.EXITED
            self.exit_reason = f"cannot start {' '.join(argv)!r} in {cfg.cwd}: {exc}"
            self._exited.set()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise WorkerCrashed(f"worker {self.name}: {self.exit_reason}") from None
        self._attach(transport)
        if self.state is WorkerState.STARTING:
            self.state = WorkerState.RUNNING
        if cfg.mode is Mode.STREAM:
            self._write(b"start\n")

    # -- pipe callbacks (asyncio.SubprocessProtocol) ----------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A quick function can exit before subprocess_exec returns: take the
        # transport here so the exit callbacks always find it.
        self._attach(transport)  # type: ignore[arg-type]

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self._on_stdout(data)
        else:
            self._stderr.feed(data)

    def process_exited(self) -> None:
        self._on_process_exited()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def _attach(self, transport: asyncio.SubprocessTransport) -> None:
        if self._transport is None:
            self._transport = transport
            self._stdin = transport.get_pipe_transport(0)  # type: ignore[assignment]
            self.pid = transport.get_pid()
            _guard.track(self.pid)

    @property
    def alive(self) -> bool:
        """True while the worker takes messages."""
        return self._up

    @property
    def inflight(self) -> int:
        """Messages written to the worker and not yet answered."""
        if self._kind == _SYNC:
            return (1 if self._cur_started else 0) + len(self._pipe)
        return len(self._refs)

    @property
    def free(self) -> bool:
        """True when the worker can take one more message now."""
        if not self._up:
            return False
        kind = self._kind
        if kind == _SYNC:
            return not self._cur_started or len(self._pipe) + 1 < self._pipeline
        if kind == _ASYNC:
            return len(self._refs) < self._concurrency
        return True

    @property
    def memory_kind(self) -> str | None:
        """How ``memory`` is enforced on this worker (``cgroup v1``, ``cgroup v2``,
        ``rlimit``), or ``None`` without a limit."""
        return None if self._memory is None else self._memory.kind

    @property
    def capacity(self) -> int:
        """How many more messages the worker can take now."""
        if not self._up:
            return 0
        kind = self._kind
        if kind == _SYNC:
            return self._pipeline - (1 if self._cur_started else 0) - len(self._pipe)
        if kind == _ASYNC:
            return self._concurrency - len(self._refs)
        return 1 << 30

    def stderr_tail(self, n: int = 5) -> list[str]:
        """The worker's last stderr lines."""
        return self._stderr.last_lines(n)

    async def wait_exited(self) -> None:
        """Return once the process is gone and its pipes are closed."""
        await self._exited.wait()

    async def stop(self, timeout: float | None = None) -> None:
        """Ask the worker to finish: wait for messages in flight, send EOF,
        wait ``stop_timeout``, then kill the process group."""
        if self.state is WorkerState.EXITED:
            return
        timeout = self.config.stop_timeout if timeout is None else timeout
        self._stopping = True
        self.state = WorkerState.DRAINING
        deadline = time.monotonic() + timeout
        while self.inflight and time.monotonic() < deadline and not self._exited.is_set():
            await asyncio.sleep(0.01)
        if self._wbuf:
            self._flush()
        if self._stdin is not None and not self._stdin.is_closing():
            self._stdin.close()
        try:
            await asyncio.wait_for(self._exited.wait(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            self.kill(f"did not exit within {timeout:g}s of EOF (stop_timeout)")
            await self._exited.wait()

    def kill(self, reason: str) -> None:
        """Kill the whole process group now; messages in flight fail with ``reason``."""
        if self._kill_reason is None:
            self._kill_reason = reason
        self._up = False
        self._signal_group(signal.SIGKILL)
        if self._transport is None:
            self._finish()

    def _signal_group(self, sig: int) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    # -- sending ------------------------------------------------------------

    def send(self, payload: bytes, fut: Reply | None, started: float) -> None:
        """Write one message; the caller checked ``free``.

        ``payload`` has no newline (the pool checked). ``fut`` gets the result,
        or is ``None`` when nobody waits (casts and subscription deliveries).
        """
        kind = self._kind
        if kind == _SYNC:
            if self._cur_started:
                self._pipe.append((fut, started, self._reads))
            else:
                self._cur_fut = fut
                self._cur_started = started
                self._cur_mark = self._reads
            stdin = self._stdin
            if stdin is not None and not stdin.is_closing():
                stdin.write(payload + b"\n")
            return
        if kind == _ASYNC:
            ref = self._next_ref = self._next_ref + 1
            self._refs[ref] = (fut, started)
            line = b"%d::%b\n" % (ref, payload)
        else:
            line = payload + b"\n"
            if fut is not None and not fut.done():
                fut.set_result("")
        # Many messages can go out in one loop turn (a batch, a burst of
        # deliveries): gather them into one write, one wake-up of the worker.
        wbuf = self._wbuf
        wbuf.append(line)
        if len(wbuf) == 1:
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        wbuf = self._wbuf
        data = wbuf[0] if len(wbuf) == 1 else b"".join(wbuf)
        wbuf.clear()
        self._write(data)

    def _write(self, data: bytes) -> None:
        stdin = self._stdin
        if stdin is None or stdin.is_closing():
            return
        stdin.write(data)

    def write_buffer_size(self) -> int:
        """Bytes accepted but not yet taken by the process's stdin."""
        stdin = self._stdin
        pending = sum(map(len, self._wbuf))
        return pending if stdin is None else pending + stdin.get_write_buffer_size()

    # -- timeouts -----------------------------------------------------------

    def oldest_started(self) -> float:
        """Start time of the oldest message in flight, or 0.0 for none."""
        if self._kind == _SYNC:
            return self._cur_started
        for _, started in self._refs.values():
            return started
        return 0.0

    def expire(self, deadline: float, timeout: float) -> None:
        """Fail every message in flight that started before ``deadline``.

        A sync worker that is late is hung by definition (one message at a
        time), so it is killed and restarted. An async worker only loses the
        late refs; a late answer to one of them is dropped quietly.
        """
        if self._kind == _SYNC:
            if self._cur_started and self._cur_started < deadline:
                self.kill(f"timed out after {timeout:g}s")
            return
        late = [ref for ref, (_, started) in self._refs.items() if started < deadline]
        for ref in late:
            fut, started = self._refs.pop(ref)
            self._expired.add(ref)
            err = WorkerTimeout(f"worker {self.name}: no answer within {timeout:g}s (timeout)")
            self._fail(fut, err, started)
        if len(self._expired) > 10_000:
            self._expired.clear()

    # -- reading ------------------------------------------------------------

    def _on_stdout(self, data: bytes) -> None:
        if self._kill_reason is not None:
            return  # being killed: what it still says answers nothing
        self._reads += 1
        if not self._buf and not self._skipping and len(data) <= self._max_line:
            kind = self._kind
            if kind == _SYNC:
                # the usual read in sync mode: exactly one whole answer
                end = len(data) - 1
                if data.find(b"\n") == end:
                    self._sync_line(data[:end])
                    return
            elif kind == _ASYNC and data.endswith(b"\n"):
                self._async_lines(data)
                return
        if self._skipping:
            i = data.find(b"\n")
            if i < 0:
                return
            self._skipping = False
            data = data[i + 1 :]
        buf = self._buf
        if buf:
            buf += data
            chunk: bytes | bytearray = buf
        else:
            chunk = data
        max_line = self.config.max_line
        line = self._line
        start = 0
        find = chunk.find
        while True:
            j = find(b"\n", start)
            if j < 0:
                break
            if j - start > max_line:
                self._too_long(chunk[start : start + 32])
            else:
                line(chunk[start:j])
            start = j + 1
            if self._kill_reason is not None:
                buf.clear()
                return
        if chunk is buf:
            del buf[:start]
        elif start < len(chunk):
            buf += chunk[start:]
        if len(buf) > max_line:
            head = bytes(buf[:32])
            buf.clear()
            self._skipping = True
            self._too_long(head)

    def _too_long(self, head: bytes | bytearray) -> None:
        limit = self.config.max_line
        err = LineTooLong(
            f"worker {self.name} wrote a line longer than max_line ({limit} bytes); "
            "raise max_line in the pool or shorten the output"
        )
        mode = self.config.mode
        if mode is Mode.SYNC:
            self._take_sync_fail(err)
        elif mode is Mode.ASYNC:
            ref_text, sep, _ = bytes(head).partition(b"::")
            entry = self._refs.pop(int(ref_text), None) if sep and ref_text.isdigit() else None
            if entry is None:
                self._violation(f"wrote an over-long line with no known ref: {bytes(head)!r}")
            else:
                self._fail(entry[0], err, entry[1])
        else:
            self._listener.worker_failed(self, err, 0.0)

    def _take_sync_fail(self, err: DropError) -> None:
        fut, started = self._cur_fut, self._cur_started
        if not started:
            self._violation(f"wrote a line with no message in flight ({err})")
            return
        self._next_in_pipe()
        self._fail(fut, err, started)

    def _next_in_pipe(self) -> None:
        if self._pipe:
            self._cur_fut, self._cur_started, self._cur_mark = self._pipe.popleft()
        else:
            self._cur_fut = None
            self._cur_started = 0.0

    def _fail(self, fut: Reply | None, err: DropError, started: float) -> None:
        if fut is not None and not fut.done():
            fut.set_exception(err)
        self._listener.worker_failed(self, err, started)

    def _bad_utf8(self, line: bytes | bytearray, exc: UnicodeDecodeError) -> ProtocolError:
        return ProtocolError(
            f"worker {self.name} wrote invalid UTF-8 at byte {exc.start} of output line "
            f"{self._lines_out}: {bytes(line[:80])!r}"
        )

    def _sync_line(self, line: bytes | bytearray) -> None:
        self._lines_out += 1
        started = self._cur_started
        if not started:
            self._violation(
                f"wrote output line {self._lines_out} with no message in flight: "
                f"{bytes(line[:80])!r} (sync mode answers exactly one line per message)"
            )
            return
        if self._cur_mark == self._reads:
            # this line came in the read that prompted the current message:
            # the worker answered one message with more than one line
            self._violation(
                f"wrote output line {self._lines_out} ({bytes(line[:80])!r}) before it could "
                "have read the message in flight: more than one line for one message "
                "(sync mode answers exactly one line per message)"
            )
            return
        fut = self._cur_fut
        if self._pipe:
            self._cur_fut, self._cur_started, self._cur_mark = self._pipe.popleft()
        else:
            self._cur_fut = None
            self._cur_started = 0.0
        try:
            text = line.decode()
        except UnicodeDecodeError as exc:
            self._fail(fut, self._bad_utf8(line, exc), started)
            return
        if fut is not None and not fut.done():
            fut.set_result(text)
        self._listener.worker_result(self, text, started)

    def _async_lines(self, data: bytes) -> None:
        # Whole lines only, none over max_line: the common read in async mode,
        # many answers at once. Anything unusual goes to _async_line.
        refs = self._refs
        result = self._listener.worker_result
        for line in data[:-1].split(b"\n"):
            i = line.find(b"::")
            try:
                entry = refs.pop(int(line[:i])) if i > 0 else None
            except (KeyError, ValueError):
                entry = None
            if entry is None:
                self._async_line(line)
                if self._kill_reason is not None:
                    return
                continue
            self._lines_out += 1
            fut, started = entry
            try:
                text = line[i + 2 :].decode()
            except UnicodeDecodeError as exc:
                self._fail(fut, self._bad_utf8(line, exc), started)
                continue
            if fut is not None and not fut.done():
                fut.set_result(text)
            result(self, text, started)

    def _async_line(self, line: bytes | bytearray) -> None:
        self._lines_out += 1
        i = line.find(b"::")
        try:
            ref = int(line[:i]) if i > 0 else -1
        except ValueError:
            ref = -1
        if ref < 0:
            self._violation(
                f"wrote output line {self._lines_out} without a REF:: prefix: {bytes(line[:80])!r}"
            )
            return
        entry = self._refs.pop(ref, None)
        if entry is None:
            if ref in self._expired:
                self._expired.discard(ref)
                return
            self._violation(f"answered unknown ref {ref} on output line {self._lines_out}")
            return
        fut, started = entry
        try:
            text = line[i + 2 :].decode()
        except UnicodeDecodeError as exc:
            self._fail(fut, self._bad_utf8(line, exc), started)
            return
        if fut is not None and not fut.done():
            fut.set_result(text)
        self._listener.worker_result(self, text, started)

    def _stream_line(self, line: bytes | bytearray) -> None:
        self._lines_out += 1
        try:
            text = line.decode()
        except UnicodeDecodeError as exc:
            self._listener.worker_failed(self, self._bad_utf8(line, exc), 0.0)
            return
        self._listener.worker_event(self, text)

    def _violation(self, what: str) -> None:
        self.kill(f"broke the line protocol: {what}")

    # -- exit ---------------------------------------------------------------

    def _on_process_exited(self) -> None:
        assert self._transport is not None
        self._up = False
        self.returncode = self._transport.get_returncode()
        # Children the function started may still hold our pipes open.
        self._signal_group(signal.SIGKILL)
        self._exit_timer = asyncio.get_running_loop().call_later(_PIPE_GRACE, self._finish)

    def _finish(self) -> None:
        if self._exited.is_set():
            return
        if self._exit_timer is not None:
            self._exit_timer.cancel()
        self.state = WorkerState.EXITED
        if self._transport is not None:
            self.returncode = self._transport.get_returncode()
            self._transport.close()
        reason = self._kill_reason or _describe_exit(self.returncode)
        tail = self._stderr.last_lines()
        memory = self._memory
        if memory is not None:
            if self._kill_reason is None:
                if memory.exceeded():
                    reason += (
                        f": stopped for going over its memory limit {memory.mib} MiB"
                        f" ({memory.kind})"
                    )
                elif _looks_out_of_memory(self.returncode, tail):
                    reason += f" (memory limit {memory.mib} MiB, {memory.kind})"
            memory.close()
        detail = f"{reason}; last stderr: {' | '.join(tail)}" if tail else reason
        self.exit_reason = detail
        expected = self._stopping and self._kill_reason is None
        err_type: type[WorkerError] = WorkerGone if self._stopping else WorkerCrashed
        if self._kill_reason and self._kill_reason.startswith("timed out"):
            err_type = WorkerTimeout
        pending: list[tuple[Reply | None, float]] = []
        if self._cur_started:
            pending.append((self._cur_fut, self._cur_started))
            self._cur_fut, self._cur_started = None, 0.0
        pending.extend((fut, started) for fut, started, _ in self._pipe)
        self._pipe.clear()
        pending.extend(self._refs.values())
        self._refs.clear()
        for fut, started in pending:
            self._fail(fut, err_type(f"worker {self.name} {detail}"), started)
        if self.pid is not None:
            _guard.untrack(self.pid)
        self._exited.set()
        self._listener.worker_exited(self, detail, expected)
