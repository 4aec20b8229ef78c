"""A pool: an elastic group of workers of one function behind one bounded queue.

::

    PENDING ──start()──▶ RUNNING ──stop()──▶ DRAINING ──▶ STOPPED
                            │
                            └── restart budget spent ──▶ FAILED ──stop()──▶ STOPPED

Messages reach a worker in one of two ways. With ``free`` the pool keeps one
shared queue and any free worker takes the next message. The other
strategies choose a *slot* first (by hash, turn or chance) and the message
waits in that slot's backlog until its worker is free, so a key always
reaches the same worker even across restarts.

The hot path (``submit``/``cast`` → ``Worker.send`` → ``worker_result``)
creates no task, timer or log record per message. A watchdog task, one per
pool, handles timeouts and shrinking.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drop.errors import (
    DropError,
    LineTooLong,
    PoolFailed,
    PoolFull,
    PoolStopped,
    ProtocolError,
    WorkerCrashed,
    WorkerTimeout,
)
from drop.function import LogSink, Mode, Reply, Worker
from drop.pool._cache import ResultCache, ResultStore
from drop.pool._config import PoolConfig, Strategy
from drop.pool._restarts import RestartPolicy
from drop.pool._stats import PoolStats, Stats

log = logging.getLogger(__name__)

#: A message waiting for a worker: payload and where its outcome goes (or None).
_Item = tuple[bytes, "Reply | None"]
_monotonic = time.monotonic
_FREE = Strategy.FREE
_ALL = Strategy.ALL

#: Called with each output line of the pool (results and stream lines).
OutputListener = Callable[[str], None]
#: Called with ``(pool name, error text)`` for each error event.
ErrorListener = Callable[[str, str], None]


class PoolState(enum.StrEnum):
    """Where a pool is in its life (see the diagram at the top of the module)."""

    PENDING = "pending"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(slots=True)
class _Slot:
    """A place for one worker; its backlog outlives the worker's restarts."""

    index: int
    worker: Worker | None = None
    backlog: deque[_Item] = field(default_factory=deque)
    restart: asyncio.TimerHandle | None = None
    starting: bool = False


class _Batch:
    """The outcomes of one ``submit_batch``, filled in by its parts."""

    __slots__ = ("future", "remaining", "results")

    def __init__(self, future: asyncio.Future[list[str | DropError]], size: int) -> None:
        self.future = future
        self.remaining = size
        self.results: list[str | DropError] = [""] * size


class _Part:
    """One message of a batch; quacks like the future a worker resolves."""

    __slots__ = ("batch", "index", "settled")

    def __init__(self, batch: _Batch, index: int) -> None:
        self.batch = batch
        self.index = index
        self.settled = False

    def done(self) -> bool:
        return self.settled or self.batch.future.done()

    def set_result(self, result: str) -> None:
        if self.settled:
            return
        self.settled = True
        batch = self.batch
        batch.results[self.index] = result
        batch.remaining -= 1
        if not batch.remaining and not batch.future.done():
            batch.future.set_result(batch.results)

    def set_exception(self, exception: BaseException) -> None:
        self._settle(exception if isinstance(exception, DropError) else DropError(str(exception)))

    def _settle(self, outcome: str | DropError) -> None:
        if self.settled:
            return
        self.settled = True
        batch = self.batch
        batch.results[self.index] = outcome
        batch.remaining -= 1
        if not batch.remaining and not batch.future.done():
            batch.future.set_result(batch.results)


class Pool:
    """An elastic pool of workers of one function.

    Args:
        config: the pool's settings.
        log_dir: where ``NAME.log`` (the workers' stderr) goes; ``None`` keeps no file.
        node: this node's name, for stats and refs (the flow puts ``DROP_NODE``
            in the workers' environment).
    """

    def __init__(self, config: PoolConfig, *, log_dir: Path | None = None, node: str = "local"):
        self.config = config
        self.name = config.name
        self.node = node
        self._open = False
        self.state = PoolState.PENDING
        #: Why the pool failed, or the last restart decision.
        self.reason = ""
        self.stats = Stats()
        self.log = LogSink(None if log_dir is None else log_dir / f"{config.name}.log")
        self.cache = ResultCache(config.cache_ttl, config.cache_size) if config.cache_ttl else None
        self.results = ResultStore(config.retention, config.name)
        self.recent_errors: deque[str] = deque(maxlen=50)
        self._policy = RestartPolicy(
            config.restart,
            max_restarts=config.max_restarts,
            window=config.window,
            backoff=config.backoff,
            backoff_max=config.backoff_max,
        )
        self._slots: dict[int, _Slot] = {}
        self._queue: deque[_Item] = deque()
        self._queued = 0
        self._running = 0
        self._turn = 0
        self._listeners: list[OutputListener] = []
        self._error_listeners: list[ErrorListener] = []
        self._watchdog: asyncio.Task[None] | None = None
        self._spawns: set[asyncio.Task[None]] = set()
        self._mode = config.worker.mode
        # stream workers never answer a message, so sends are not "in flight"
        self._counted = 0 if self._mode is Mode.STREAM else 1
        # one message at a time per worker: the first free worker is as good as any
        self._sync = self._mode is Mode.SYNC and config.worker.pipeline == 1
        self._max_line = config.worker.max_line
        self._size = config.size_min if config.strategy is Strategy.FREE else config.size_max

    @property
    def state(self) -> PoolState:
        """Where the pool is in its life."""
        return self._state

    @state.setter
    def state(self, value: PoolState) -> None:
        self._state = value
        # a plain bool for the hot path: enum member access is slow on 3.11
        self._open = value is PoolState.RUNNING

    # -- life ---------------------------------------------------------------

    async def start(self) -> None:
        """Start the pool's workers and its watchdog.

        A worker that cannot start is handled by the restart policy; the pool
        still starts, and fails later, visibly, if the budget runs out.
        """
        if self.state not in (PoolState.PENDING, PoolState.STOPPED, PoolState.FAILED):
            raise RuntimeError(f"pool {self.name}: cannot start from state {self.state}")
        if self.state is not PoolState.PENDING:
            # started again by hand: a fresh restart budget and log handle
            self._policy.reset()
            self._slots.clear()
            self.reason = ""
            self.log = LogSink(self.log.path)
        self.state = PoolState.RUNNING
        await asyncio.gather(*(self._spawn(self._new_slot()) for _ in range(self._size)))
        self._watchdog = asyncio.get_running_loop().create_task(
            self._watch(), name=f"drop-pool-{self.name}-watchdog"
        )

    async def stop(self, timeout: float | None = None) -> None:
        """Stop taking messages, let queued and in-flight ones finish (up to
        ``timeout``, default the workers' ``stop_timeout``), fail the rest with
        ``PoolStopped``, then stop every worker (EOF, wait, kill)."""
        if self.state in (PoolState.STOPPED, PoolState.PENDING):
            self.state = PoolState.STOPPED
            return
        timeout = self.config.worker.stop_timeout if timeout is None else timeout
        was_failed = self.state is PoolState.FAILED
        self.state = PoolState.DRAINING
        deadline = time.monotonic() + timeout
        while not self.idle and time.monotonic() < deadline and self._has_live_worker():
            await asyncio.sleep(0.01)
        self._fail_waiting(PoolStopped(f"pool {self.name} stopped before the message was sent"))
        for slot in self._slots.values():
            if slot.restart is not None:
                slot.restart.cancel()
        for task in list(self._spawns):
            await asyncio.gather(task, return_exceptions=True)
        remaining = max(0.1, deadline - time.monotonic())
        await asyncio.gather(
            *(s.worker.stop(remaining) for s in self._slots.values() if s.worker is not None)
        )
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        self.state = PoolState.FAILED if was_failed else PoolState.STOPPED
        self.log.close()

    async def scale(self, size: int) -> None:
        """Set a fixed size: start or stop workers until ``size`` run.

        Idle workers are stopped first; a stopped worker finishes its message.
        Queued messages wait for a worker, even at size 0.
        """
        if size < 0:
            raise ValueError(f"pool {self.name}: size must be >= 0, got {size}")
        self._size = size
        if self.state is not PoolState.RUNNING:
            return
        while len(self._slots) < size:
            await self._spawn(self._new_slot())

        def busy(s: _Slot) -> tuple[int, int]:
            rank = 0 if s.worker is None else 2 if s.worker.inflight else 1
            return rank, -s.index

        extra = sorted(self._slots.values(), key=busy)[: max(0, len(self._slots) - size)]
        await asyncio.gather(*(self._retire(s) for s in extra))
        self._feed_all()

    # -- sending ------------------------------------------------------------

    def submit(self, message: str, strategy: Strategy | None = None) -> asyncio.Future[str]:
        """Send ``message`` and return the future of its result.

        Raises:
            PoolFull: the queue is at its limit (counted as ``nomore``).
            PoolFailed, PoolStopped: the pool takes no messages.
            LineTooLong, ProtocolError: the message is over ``max_line`` or holds a newline.
        """
        payload = self._check(message)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        cache = self.cache
        if cache is not None:
            hit = cache.get(message)
            if hit is not None:
                fut.set_result(hit)
                self.stats.ok += 1
                return fut
            fut.add_done_callback(
                lambda f: f.cancelled() or f.exception() or cache.put(message, f.result())
            )
        self._dispatch(payload, fut, strategy or self.config.strategy)
        return fut

    async def call(self, message: str, timeout: float | None = None) -> str:
        """Send ``message`` and wait for its result (see ``submit`` for errors)."""
        fut = self.submit(message)
        if timeout is None:
            return await fut
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise WorkerTimeout(f"pool {self.name}: no result within {timeout:g}s") from None

    async def call_all(self, message: str) -> list[str]:
        """Send ``message`` to every worker and return their results in slot order."""
        payload = self._check(message)
        loop = asyncio.get_running_loop()
        futs = []
        for slot in sorted(self._slots.values(), key=lambda s: s.index):
            fut: asyncio.Future[str] = loop.create_future()
            self._to_slot(slot, payload, fut)
            futs.append(fut)
        return list(await asyncio.gather(*futs))

    def submit_batch(self, messages: Sequence[str]) -> asyncio.Future[list[str | DropError]]:
        """Send many messages at once; the future gets every outcome, in order.

        A message that cannot be sent (too long, holds a newline) gets its
        error in its place and the others still go. This is the cheap way to
        push many lines: one future per batch, not per message, and the
        writes of one loop turn reach each worker together.

        Raises:
            PoolFull: the batch does not fit in the queue; nothing was sent.
            PoolFailed, PoolStopped: the pool takes no messages.
        """
        if self._queued + len(messages) > self.config.queue:
            self.stats.nomore += 1
            raise PoolFull(
                f"pool {self.name}: a batch of {len(messages)} does not fit in the queue "
                f"({self._queued} of {self.config.queue} taken); send smaller batches"
            )
        if not self._open:
            self._check("")  # raises PoolFailed or PoolStopped, naming the state
        batch = _Batch(asyncio.get_running_loop().create_future(), len(messages))
        if self.cache is not None:
            self._submit_cached(messages, batch)
            return batch.future
        strategy = self.config.strategy
        max_line = self._max_line
        # A free pool with messages queued has no free worker (a worker that
        # frees up takes from the queue at once), so the rest of the batch
        # queues behind them without looking for one.
        queue = self._queue if strategy is _FREE else None
        dispatch = self._dispatch
        worker: Worker | None = None
        room = 0
        for index, message in enumerate(messages):
            part = _Part(batch, index)
            payload = message.encode()
            if len(payload) > max_line or b"\n" in payload:
                part.set_exception(self._invalid(payload))
            elif queue is None:
                dispatch(payload, part, strategy)
            elif queue:
                queue.append((payload, part))
                self._queued += 1
            else:
                # fill one free worker up to its capacity before looking again
                if not room:
                    worker = self._free_worker()
                    room = 0 if worker is None else worker.capacity
                if worker is not None and room:
                    room -= 1
                    self._running += self._counted
                    worker.send(payload, part, _monotonic())
                else:
                    queue.append((payload, part))
                    self._queued += 1
        if queue:
            self._maybe_grow()
        if not messages:
            batch.future.set_result([])
        return batch.future

    def _submit_cached(self, messages: Sequence[str], batch: _Batch) -> None:
        # A cached pool answers what it can from the cache: one submit each.
        def settle(fut: asyncio.Future[str], part: _Part) -> None:
            if fut.cancelled():
                part.set_exception(DropError("cancelled"))
            elif fut.exception() is not None:
                part.set_exception(fut.exception())  # type: ignore[arg-type]
            else:
                part.set_result(fut.result())

        for index, message in enumerate(messages):
            part = _Part(batch, index)
            try:
                fut = self.submit(message)
            except (LineTooLong, ProtocolError) as exc:
                part.set_exception(exc)
                continue
            fut.add_done_callback(lambda f, p=part: settle(f, p))
        if not messages:
            batch.future.set_result([])

    def cast(self, message: str, strategy: Strategy | None = None) -> None:
        """Send ``message`` without waiting; errors of the message become error events."""
        self._dispatch(self._check(message), None, strategy or self.config.strategy)

    def submit_ref(self, message: str) -> str:
        """Send ``message`` and return a ref whose outcome ``results.get`` tells later."""
        fut = self.submit(message)
        ref = self.results.new_ref()

        def record(f: asyncio.Future[str]) -> None:
            if f.cancelled():
                self.results.done(ref, None, "cancelled")
                return
            exc = f.exception()
            self.results.done(ref, None if exc else f.result(), str(exc) if exc else None)

        fut.add_done_callback(record)
        return ref

    def deliver(self, message: str, to_all: bool = False) -> None:
        """Take a line from a subscription. A refusal becomes an error event
        (and ``nomore``) instead of an exception in the sender's callback."""
        try:
            self._dispatch(
                self._check(message), None, Strategy.ALL if to_all else self.config.strategy
            )
        except DropError as exc:
            self._error(f"subscription delivery refused: {exc}")

    def _check(self, message: str) -> bytes:
        if not self._open:
            state = self.state
            if state is PoolState.FAILED:
                raise PoolFailed(f"pool {self.name} failed: {self.reason}")
            raise PoolStopped(f"pool {self.name} is {state}; start it first")
        payload = message.encode()
        if len(payload) > self._max_line or b"\n" in payload:
            raise self._invalid(payload)
        return payload

    def _invalid(self, payload: bytes) -> ProtocolError:
        if len(payload) > self._max_line:
            return LineTooLong(
                f"pool {self.name}: message of {len(payload)} bytes is over max_line "
                f"({self._max_line}); split it or raise max_line"
            )
        return ProtocolError(f"pool {self.name}: a message is one line; this one holds a newline")

    def _dispatch(self, payload: bytes, fut: Reply | None, strategy: Strategy) -> None:
        if strategy is _FREE:
            worker = self._free_worker()
            if worker is not None:
                self._running += self._counted
                worker.send(payload, fut, time.monotonic())
                return
            self._enqueue(self._queue, (payload, fut))
            self._maybe_grow()
            return
        if strategy is _ALL:
            for slot in list(self._slots.values()):
                self._to_slot(slot, payload, fut)
                fut = None  # the caller's future takes the first answer
            return
        slots = self._slots
        if not slots:
            self._enqueue(self._queue, (payload, fut))
            return
        if strategy is Strategy.HASH:
            index = self._hash_index(payload)
            slot = slots.get(index) or next(iter(slots.values()))
        elif strategy is Strategy.ROUND_ROBIN:
            self._turn += 1
            ordered = list(slots.values())
            slot = ordered[self._turn % len(ordered)]
        else:
            slot = random.choice(list(slots.values()))
        self._to_slot(slot, payload, fut)

    def _to_slot(self, slot: _Slot, payload: bytes, fut: Reply | None) -> None:
        worker = slot.worker
        if worker is not None and worker.free and not slot.backlog:
            self._running += self._counted
            worker.send(payload, fut, time.monotonic())
        else:
            self._enqueue(slot.backlog, (payload, fut))

    def _enqueue(self, queue: deque[_Item], item: _Item) -> None:
        if self._queued >= self.config.queue:
            self.stats.nomore += 1
            raise PoolFull(
                f"pool {self.name} is full ({self.config.queue} messages queued); "
                "retry later, add workers or raise queue"
            )
        queue.append(item)
        self._queued += 1

    def _hash_index(self, payload: bytes) -> int:
        key = payload
        pattern = self.config.key
        if pattern is not None:
            m = pattern.search(payload.decode())
            if m is not None:
                key = (m.group(1) if m.groups() else m.group(0)).encode()
        return zlib.crc32(key) % max(1, self._size)

    def _free_worker(self) -> Worker | None:
        best: Worker | None = None
        for slot in self._slots.values():
            worker = slot.worker
            if worker is not None and worker.free and not slot.backlog:
                if self._sync:
                    return worker
                if best is None or worker.inflight < best.inflight:
                    best = worker
        return best

    def _feed(self, slot: _Slot) -> None:
        worker = slot.worker
        if worker is None:
            return
        backlog, queue = slot.backlog, self._queue
        while worker.free and (backlog or queue):
            payload, fut = backlog.popleft() if backlog else queue.popleft()
            self._queued -= 1
            if fut is not None and fut.done():
                continue  # the caller gave up (cancelled) while it waited
            self._running += self._counted
            worker.send(payload, fut, time.monotonic())
        if not worker.inflight:
            worker.idle_since = time.monotonic()

    def _feed_all(self) -> None:
        for slot in list(self._slots.values()):
            self._feed(slot)

    # -- what workers tell us -------------------------------------------------

    def worker_result(self, worker: Worker, text: str, started: float) -> None:
        """A message was answered: count it, emit it, feed the worker."""
        stats = self.stats
        stats.ok += 1
        now = _monotonic()
        stats.record(now - started)
        self._running -= 1
        if text and self._listeners:
            for listener in self._listeners:
                listener(text)
        worker.idle_since = now  # the watchdog only reads it once inflight is 0
        if not self._queued:
            return
        slot = self._slots.get(worker.index)
        if slot is None or slot.worker is not worker:
            return
        if slot.backlog or not self._sync:
            self._feed(slot)
            return
        # The common case, inlined: a sync worker just became free and the
        # shared queue has work. Its send time is the reply's time.
        queue = self._queue
        while queue:
            payload, fut = queue.popleft()
            self._queued -= 1
            if fut is None or not fut.done():
                self._running += 1
                worker.send(payload, fut, now)
                return

    def worker_failed(self, worker: Worker, error: DropError, started: float) -> None:
        """A message failed: count it and raise an error event."""
        if started:
            self._running -= 1
            if isinstance(error, WorkerTimeout):
                self.stats.timeout += 1
            else:
                self.stats.error += 1
        else:
            self.stats.error += 1
        self._error(str(error))
        slot = self._slots.get(worker.index)
        if slot is not None and slot.worker is worker and worker.alive:
            self._feed(slot)

    def worker_event(self, worker: Worker, text: str) -> None:
        """A stream worker wrote a line: emit it."""
        self.stats.ok += 1
        if text:
            for listener in self._listeners:
                listener(text)

    def worker_exited(self, worker: Worker, reason: str, expected: bool) -> None:
        """A worker is gone: restart it with backoff, or fail the pool."""
        slot = self._slots.get(worker.index)
        if slot is None or slot.worker is not worker:
            return
        slot.worker = None
        if expected or self.state is not PoolState.RUNNING:
            return
        self._after_exit(slot, f"worker {worker.name} {reason}", clean=worker.returncode == 0)

    def _after_exit(self, slot: _Slot, why: str, clean: bool) -> None:
        decision = self._policy.decide(time.monotonic(), clean=clean, why=why)
        self.reason = decision.reason
        self._error(decision.reason)
        log.warning(decision.reason, extra={"pool": self.name, "slot": slot.index})
        if decision.failed:
            self._fail_pool(decision.reason)
        elif decision.restart:
            self.stats.restarts += 1
            loop = asyncio.get_running_loop()
            slot.restart = loop.call_later(decision.delay, self._restart_slot, slot)
        else:
            self._slots.pop(slot.index, None)
            if not self._slots:
                # nothing left to answer what waits, and nothing will restart:
                # a clean finish (a stream source that is done) stops the pool,
                # a failure fails it
                if clean:
                    self.state = PoolState.STOPPED
                    self.reason = f"{decision.reason}; no worker left"
                    self._fail_waiting(PoolStopped(f"pool {self.name} stopped: {self.reason}"))
                else:
                    self._fail_pool(f"{decision.reason}; no worker left")
                return
            self._requeue(slot)

    def _restart_slot(self, slot: _Slot) -> None:
        slot.restart = None
        if self.state is PoolState.RUNNING and self._slots.get(slot.index) is slot:
            self._start_task(slot)

    def _fail_pool(self, reason: str) -> None:
        self.state = PoolState.FAILED
        self.reason = reason
        self._fail_waiting(PoolFailed(f"pool {self.name} failed: {reason}"))

    def _fail_waiting(self, error: DropError) -> None:
        items = list(self._queue)
        self._queue.clear()
        for slot in self._slots.values():
            items.extend(slot.backlog)
            slot.backlog.clear()
        self._queued = 0
        for _, fut in items:
            if fut is not None and not fut.done():
                fut.set_exception(error)
            self.stats.error += 1
        if items:
            self._error(f"{len(items)} queued messages failed: {error}")

    def _requeue(self, slot: _Slot) -> None:
        queue = self._queue
        while slot.backlog:
            queue.append(slot.backlog.popleft())
        self._feed_all()

    def _error(self, text: str) -> None:
        self.recent_errors.append(text)
        for listener in self._error_listeners:
            listener(self.name, text)

    # -- workers --------------------------------------------------------------

    def _new_slot(self) -> _Slot:
        index = 0
        while index in self._slots:
            index += 1
        slot = _Slot(index)
        self._slots[index] = slot
        return slot

    def _start_task(self, slot: _Slot) -> None:
        task = asyncio.get_running_loop().create_task(self._spawn(slot))
        self._spawns.add(task)
        task.add_done_callback(self._spawns.discard)

    async def _spawn(self, slot: _Slot) -> None:
        worker = Worker(
            self.config.worker,
            name=f"{self.name}/{slot.index}",
            index=slot.index,
            listener=self,
            log=self.log,
        )
        # In the slot before it starts: a function that exits at once is
        # reported through worker_exited like any other exit.
        slot.worker = worker
        slot.starting = True
        try:
            await worker.start()
        except WorkerCrashed as exc:
            slot.worker = None
            if self.state is PoolState.RUNNING:
                self._after_exit(slot, str(exc), clean=False)
            return
        finally:
            slot.starting = False
        if self._slots.get(slot.index) is not slot or self.state not in (
            PoolState.RUNNING,
            PoolState.DRAINING,
        ):
            await worker.stop(0.5)
            return
        if slot.worker is worker:
            self._feed(slot)
            if self._queue:
                self._maybe_grow()

    async def _retire(self, slot: _Slot) -> None:
        self._slots.pop(slot.index, None)
        if slot.restart is not None:
            slot.restart.cancel()
        if slot.worker is not None:
            await slot.worker.stop()
        self._requeue(slot)

    def _has_live_worker(self) -> bool:
        return any(s.worker is not None or s.starting or s.restart for s in self._slots.values())

    def _maybe_grow(self) -> None:
        if len(self._slots) >= self.config.size_max or self.state is not PoolState.RUNNING:
            return
        if any(s.starting or s.restart for s in self._slots.values()):
            return
        self._start_task(self._new_slot())

    async def _watch(self) -> None:
        cfg = self.config
        timeout = cfg.timeout
        tick = 0.5 if timeout is None else min(0.5, max(0.02, timeout / 4))
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if timeout is not None:
                deadline = now - timeout
                for slot in list(self._slots.values()):
                    worker = slot.worker
                    if worker is not None:
                        oldest = worker.oldest_started()
                        if oldest and oldest < deadline:
                            worker.expire(deadline, timeout)
            if (
                cfg.strategy is Strategy.FREE
                and len(self._slots) > max(cfg.size_min, self._size)
                and not self._queued
            ):
                for slot in list(self._slots.values()):
                    worker = slot.worker
                    if (
                        worker is not None
                        and not worker.inflight
                        and now - worker.idle_since > cfg.idle_timeout
                        and len(self._slots) > max(cfg.size_min, self._size)
                    ):
                        await self._retire(slot)

    # -- looking in -----------------------------------------------------------

    def add_listener(self, listener: OutputListener) -> None:
        """Call ``listener(line)`` for each non-empty output line of the pool."""
        self._listeners.append(listener)

    def remove_listener(self, listener: OutputListener) -> None:
        """Undo ``add_listener``."""
        self._listeners.remove(listener)

    def add_error_listener(self, listener: ErrorListener) -> None:
        """Call ``listener(pool, text)`` for each error event of the pool."""
        self._error_listeners.append(listener)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing in flight (stream pools: nothing unwritten)."""
        if self._queued or self._running:
            return False
        if self._mode is Mode.STREAM:
            return not any(
                s.worker is not None and s.worker.write_buffer_size() for s in self._slots.values()
            )
        return True

    @property
    def queued(self) -> int:
        """Messages waiting for a worker."""
        return self._queued

    @property
    def size(self) -> int:
        """Workers running or being started."""
        return len(self._slots)

    def workers(self) -> list[Worker]:
        """The live workers, in slot order."""
        return [s.worker for s in sorted(self._slots.values(), key=lambda s: s.index) if s.worker]

    def snapshot(self) -> PoolStats:
        """The pool's counters now."""
        s = self.stats
        p50, p99 = s.percentiles()
        return PoolStats(
            pool=self.name,
            state=str(self.state),
            workers=sum(1 for sl in self._slots.values() if sl.worker is not None),
            ok=s.ok,
            error=s.error,
            timeout=s.timeout,
            running=self._running,
            queued=self._queued,
            nomore=s.nomore,
            restarts=s.restarts,
            p50_ms=round(p50 * 1000, 3),
            p99_ms=round(p99 * 1000, 3),
            reason=self.reason,
        )
