"""How close does a DROP pool get to the fastest Python driver of the same processes?

Run it as ``.venv/bin/python bench/pipeline.py [--quick] [--pin]``. It prints one
table of messages per second, each the median of ``--repeats`` runs, for:

a1  raw, one line in flight per process: the fastest driver we can write in
    Python. A ``SubprocessProtocol`` on uvloop writes the next line from inside
    ``pipe_data_received`` as soon as a reply's newline arrives: no task, future,
    timer, decode or bookkeeping per message. It is a ceiling, not a rival.
a2  raw, pipelined: the same driver, but it keeps a bounded window of
    ``--window`` lines in flight per process, counts newline-terminated replies
    and tops the window up with one write per batch of replies.
b   a DROP sync pool (``Mode.SYNC``): with N workers, N caller coroutines each
    doing ``await pool.submit(line)`` one message at a time, so each worker has
    one message in flight, as in a1.
c   a DROP async pool (``Mode.ASYNC``, ``concurrency = --window``): one caller
    keeps a bounded window of ``--window`` x N submitted futures, so each worker
    has as many messages in flight as a2 gives each raw process.
b'  the sync pool fed with ``submit_batch`` (about ``--window`` x N messages
c'  submitted at a time, one future per batch) and the async pool fed the
    same way: how batch runs, subscriptions and HTTP batch calls move lines.
    A sync worker still has exactly one message in flight; the pool writes
    the next one from inside the reply's callback, as a1 does.

each with 1 and 2 workers (processes), and the ratios b/a1 and c/a2: the share of
the raw ceiling that DROP keeps.

Why the baseline is fair:

* Same function, same process set-up. Every case runs ``bench/echo.py`` (binary
  readline, write, flush per line) with the same interpreter, environment and
  pipes (stdin, stdout and stderr piped, a new session), on the same uvloop.
* Same work. Each case answers a fixed number of messages of the same payload
  (``--quick`` divides the counts by 10), split evenly over the workers. Async
  mode's ``REF::`` prefix is DROP's protocol, so it is counted as DROP's cost.
* Start-up is not measured. Processes are spawned and answer one warm-up line
  each before the clock starts, and the clock stops when the last reply is in,
  before anything is stopped.
* Same conditions. On a small VM the scheduler decides most of the result:
  a pipe ping-pong between two cores is several times slower than on one core,
  and where the echo lands changes from run to run. So the cases run
  interleaved (a1, b, a2, c, a1, b, ...) with fresh processes each time, the
  median of the repeats is reported, and the spread is printed next to it.
  ``--pin`` puts this process and, by inheritance, every echo on CPU 0, which
  removes cross-core wake-ups and shows the per-message CPU cost instead.
* DROP is used as a caller would use it: ``submit`` returns a future, which a
  coroutine awaits. The cost of that future and of waking the coroutine is
  part of what is measured, because the raw driver does without it.

Every loop is bounded by its message count, each run by a timeout, and every
pool and raw process is stopped at the end of its run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

from drop.errors import DropError
from drop.function import Mode, WorkerConfig
from drop.pool import Pool, PoolConfig

HERE = Path(__file__).resolve().parent
#: The command of every echo process, raw or pooled.
ECHO_ARGV = (sys.executable, str(HERE / "echo.py"))
#: The message every case sends (16 bytes; the echo returns it unchanged).
PAYLOAD = "hello drop bench"
#: Seconds one run may take before it is abandoned as broken.
RUN_TIMEOUT = 120.0
#: Seconds a raw echo may take to exit after EOF before it is killed.
EXIT_TIMEOUT = 5.0
WORKER_COUNTS = (1, 2)

Run = Callable[[int], Awaitable[float]]


# -- the raw driver -------------------------------------------------------------


class _EchoDriver(asyncio.SubprocessProtocol):
    """Drives one echo process from its pipe callback.

    ``start(count, window)`` writes ``window`` lines; each time replies arrive
    it writes as many new lines as replies came in (one write), until ``count``
    replies are in. Replies are counted by their newlines, so a reply split
    over two reads, or many replies in one read, are counted right.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._line = (PAYLOAD + "\n").encode()
        self.stdin: asyncio.WriteTransport | None = None
        self.exited: asyncio.Future[None] = loop.create_future()
        self._done: asyncio.Future[None] = loop.create_future()
        self._target = 0
        self._sent = 0
        self._received = 0

    def start(self, count: int, window: int) -> asyncio.Future[None]:
        """Send ``count`` lines, at most ``window`` unanswered; the future is
        done when every reply is in."""
        assert self.stdin is not None
        self._done = self._loop.create_future()
        self._target = count
        self._received = 0
        self._sent = min(window, count)
        self.stdin.write(self._line * self._sent)
        return self._done

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd != 1:
            return
        replies = data.count(b"\n")
        if not replies:
            return
        self._received += replies
        more = min(replies, self._target - self._sent)
        if more > 0:
            self._sent += more
            assert self.stdin is not None
            self.stdin.write(self._line * more)
        elif self._received >= self._target and not self._done.done():
            self._done.set_result(None)

    def process_exited(self) -> None:
        if not self._done.done():
            self._done.set_exception(RuntimeError("echo process exited during a run"))
        if not self.exited.done():
            self.exited.set_result(None)


_RawProc = tuple[asyncio.SubprocessTransport, _EchoDriver]


async def _spawn_raw(env: Mapping[str, str]) -> _RawProc:
    loop = asyncio.get_running_loop()
    driver = _EchoDriver(loop)
    transport, _ = await loop.subprocess_exec(
        lambda: driver,
        *ECHO_ARGV,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(HERE),
        env=dict(env),
        start_new_session=True,
    )
    driver.stdin = transport.get_pipe_transport(0)  # type: ignore[assignment]
    return transport, driver


async def _close_raw(procs: list[_RawProc]) -> None:
    """EOF to every echo, wait for it to exit (kill it if it won't), close."""
    for transport, _ in procs:
        stdin = transport.get_pipe_transport(0)
        if stdin is not None:
            stdin.close()
    for transport, driver in procs:
        try:
            await asyncio.wait_for(asyncio.shield(driver.exited), EXIT_TIMEOUT)
        except TimeoutError:
            transport.kill()
            await driver.exited
        finally:
            transport.close()


async def run_raw(workers: int, count: int, window: int, env: Mapping[str, str]) -> float:
    """Messages/s of the raw driver over ``workers`` echo processes."""
    procs: list[_RawProc] = []
    try:
        for _ in range(workers):
            procs.append(await _spawn_raw(env))
        await asyncio.gather(*(driver.start(1, 1) for _, driver in procs))  # warm-up
        shares = _split(count, workers)
        started = time.perf_counter()
        await asyncio.gather(
            *(driver.start(n, window) for (_, driver), n in zip(procs, shares, strict=True))
        )
        elapsed = time.perf_counter() - started
    finally:
        await _close_raw(procs)
    return count / elapsed


# -- DROP pools -----------------------------------------------------------------


def _pool(mode: Mode, workers: int, concurrency: int, env: Mapping[str, str]) -> Pool:
    worker = WorkerConfig(
        argv=ECHO_ARGV, cwd=str(HERE), env=dict(env), mode=mode, concurrency=concurrency
    )
    return Pool(PoolConfig(name=f"bench-{mode}", worker=worker, size_min=workers, size_max=workers))


async def _sync_caller(pool: Pool, count: int) -> str:
    """One message at a time: ``await pool.submit(line)``."""
    submit = pool.submit
    last = ""
    for _ in range(count):
        last = await submit(PAYLOAD)
    return last


async def _batch_caller(pool: Pool, count: int, inflight: int) -> str:
    """Keep about ``inflight`` messages submitted, as two alternating batches."""
    chunk = max(1, inflight // 2)
    pending: deque[asyncio.Future[list[str | DropError]]] = deque()
    last: str | DropError = ""
    sent = 0
    while sent < count:
        if len(pending) >= 2:
            last = (await pending.popleft())[-1]
        n = min(chunk, count - sent)
        pending.append(pool.submit_batch([PAYLOAD] * n))
        sent += n
    for fut in pending:
        last = (await fut)[-1]
    return str(last)


async def _window_caller(pool: Pool, count: int, window: int) -> str:
    """Keep at most ``window`` submitted futures; await the oldest to make room."""
    submit = pool.submit
    pending: deque[asyncio.Future[str]] = deque()
    last = ""
    for _ in range(count):
        if len(pending) >= window:
            last = await pending.popleft()
        pending.append(submit(PAYLOAD))
    for fut in pending:
        last = await fut
    return last


def _check(pool: Pool, expected_ok: int, answers: list[str]) -> None:
    snap = pool.snapshot()
    if snap.ok != expected_ok or snap.error or snap.timeout or snap.restarts:
        raise RuntimeError(f"pool {pool.name} did not answer every message: {snap}")
    if any(answer != PAYLOAD for answer in answers):
        raise RuntimeError(f"pool {pool.name} answered {answers!r}, not {PAYLOAD!r}")


async def run_drop_sync(workers: int, count: int, env: Mapping[str, str]) -> float:
    """Messages/s of a sync pool, one caller coroutine per worker."""
    pool = _pool(Mode.SYNC, workers, 1, env)
    try:
        await pool.start()
        await pool.call_all(PAYLOAD)  # warm-up: every worker answers once
        shares = _split(count, workers)
        started = time.perf_counter()
        answers = await asyncio.gather(*(_sync_caller(pool, n) for n in shares))
        elapsed = time.perf_counter() - started
        _check(pool, count + workers, answers)
    finally:
        await pool.stop()
    return count / elapsed


async def run_drop_batch(
    mode: Mode, workers: int, count: int, window: int, env: Mapping[str, str]
) -> float:
    """Messages/s of a pool fed with ``submit_batch``: ``window`` x N messages
    submitted at a time. A sync worker still has one message in flight; the
    pool hands it the next one from inside the reply's callback."""
    pool = _pool(mode, workers, window, env)
    try:
        await pool.start()
        await pool.call_all(PAYLOAD)  # warm-up: every worker answers once
        started = time.perf_counter()
        answer = await _batch_caller(pool, count, window * workers)
        elapsed = time.perf_counter() - started
        _check(pool, count + workers, [answer])
    finally:
        await pool.stop()
    return count / elapsed


async def run_drop_async(workers: int, count: int, window: int, env: Mapping[str, str]) -> float:
    """Messages/s of an async pool fed by one caller with a bounded window."""
    pool = _pool(Mode.ASYNC, workers, window, env)
    try:
        await pool.start()
        await pool.call_all(PAYLOAD)  # warm-up: every worker answers once
        started = time.perf_counter()
        answer = await _window_caller(pool, count, window * workers)
        elapsed = time.perf_counter() - started
        _check(pool, count + workers, [answer])
    finally:
        await pool.stop()
    return count / elapsed


# -- the run --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    """One row of the table."""

    key: str
    label: str
    workers: int
    count: int
    run: Run
    #: the key of the raw case this one is divided by, if any
    baseline: str | None = None


@dataclass(slots=True)
class Results:
    """Every run's messages/s, by (case key, workers)."""

    rates: dict[tuple[str, int], list[float]] = field(default_factory=dict)

    def add(self, case: Case, rate: float) -> None:
        self.rates.setdefault((case.key, case.workers), []).append(rate)

    def median(self, key: str, workers: int) -> float:
        return statistics.median(self.rates[(key, workers)])


def _split(count: int, parts: int) -> list[int]:
    """``count`` split into ``parts`` near-equal shares."""
    base, extra = divmod(count, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _cases(one: int, piped: int, window: int, env: Mapping[str, str]) -> list[Case]:
    """The cases of one round, in the interleaved order they run in."""
    cases: list[Case] = []
    for w in WORKER_COUNTS:

        def a1(n: int, w: int = w) -> Awaitable[float]:
            return run_raw(w, n, 1, env)

        def b(n: int, w: int = w) -> Awaitable[float]:
            return run_drop_sync(w, n, env)

        def a2(n: int, w: int = w) -> Awaitable[float]:
            return run_raw(w, n, window, env)

        def c(n: int, w: int = w) -> Awaitable[float]:
            return run_drop_async(w, n, window, env)

        def bb(n: int, w: int = w) -> Awaitable[float]:
            return run_drop_batch(Mode.SYNC, w, n, window, env)

        def cb(n: int, w: int = w) -> Awaitable[float]:
            return run_drop_batch(Mode.ASYNC, w, n, window, env)

        cases += [
            Case("a1", "a1 raw, 1 in flight", w, one, a1),
            Case("b", "b  DROP sync pool, await each", w, one, b, baseline="a1"),
            Case("bb", "b' DROP sync pool, submit_batch", w, one, bb, baseline="a1"),
            Case("a2", f"a2 raw, pipelined ({window}/proc)", w, piped, a2),
            Case("c", f"c  DROP async pool ({window}/worker)", w, piped, c, baseline="a2"),
            Case("cb", "c' DROP async pool, submit_batch", w, piped, cb, baseline="a2"),
        ]
    return cases


def _table(cases: list[Case], results: Results) -> str:
    header = f"{'case':<34} {'workers':>7} {'msgs/s':>10} {'ratio':>12}   runs (msgs/s)"
    lines = [header, "-" * len(header)]
    for case in cases:
        rates = results.rates[(case.key, case.workers)]
        rate = statistics.median(rates)
        if case.baseline is None:
            ratio = "-"
        else:
            base = results.median(case.baseline, case.workers)
            ratio = f"{case.key}/{case.baseline} {rate / base:.2f}"
        runs = " ".join(f"{r:,.0f}" for r in rates)
        lines.append(f"{case.label:<34} {case.workers:>7} {rate:>10,.0f} {ratio:>12}   {runs}")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    scale = 10 if args.quick else 1
    one, piped = 20_000 // scale, 100_000 // scale
    env = dict(os.environ)
    cases = _cases(one, piped, args.window, env)
    results = Results()
    bench_started = time.perf_counter()
    for round_no in range(1, args.repeats + 1):
        for case in cases:
            async with asyncio.timeout(RUN_TIMEOUT):
                rate = await case.run(case.count)
            results.add(case, rate)
            print(
                f"  round {round_no}/{args.repeats}: {case.label} x{case.workers}: "
                f"{rate:,.0f} msgs/s",
                file=sys.stderr,
                flush=True,
            )
    total = time.perf_counter() - bench_started
    print()
    print(
        f"messages per run: {one:,} one-in-flight, {piped:,} pipelined; "
        f"median of {args.repeats} interleaved runs; total {total:.1f}s"
    )
    print(_table(cases, results))


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer messages per run")
    parser.add_argument(
        "--pin", action="store_true", help="pin this process and every echo to CPU 0"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (default 3)")
    parser.add_argument(
        "--window",
        type=int,
        default=256,
        help="lines in flight per process when pipelined: raw window and DROP "
        "concurrency (default 256)",
    )
    args = parser.parse_args()
    if args.repeats < 1 or args.window < 1:
        parser.error("--repeats and --window must be at least 1")
    return args


def run() -> None:
    args = _parse()
    if args.pin:
        os.sched_setaffinity(0, {0})  # children inherit it
    cpus = sorted(os.sched_getaffinity(0))
    pinning = (
        "--pin: this process and every echo on CPU 0"
        if args.pin
        else f"unpinned: the scheduler places processes on CPUs {cpus}"
    )
    print(
        f"Python {sys.version.split()[0]} ({sys.implementation.name}), "
        f"uvloop {uvloop.__version__}, os.cpu_count()={os.cpu_count()}"
    )
    print(f"pinning: {pinning}", flush=True)
    uvloop.run(main(args))


if __name__ == "__main__":
    run()
