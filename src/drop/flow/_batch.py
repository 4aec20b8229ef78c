"""Batch runs: feed input lines to a flow's entry pool, drain, finish, report.

This is ``drop run``'s engine, kept apart from the terminal so a node can
run the same batch for an HTTP caller. Input goes to the entry pool in chunks
(``Pool.submit_batch``: one future per chunk), at most ``window`` lines in
flight; the feeder also waits while any pool's queue is over half full, so a
slow pool downstream slows the input instead of overflowing.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from drop.errors import DropError, PoolFull
from drop.flow._engine import Flow
from drop.flow._spec import Step

#: Messages in flight to the entry pool at most.
DEFAULT_WINDOW = 1024
#: Input lines per ``submit_batch``: one future per chunk, not per line.
_CHUNK = 256
#: Error texts kept in the report; the rest are only counted.
_KEPT_ERRORS = 20


@dataclass(slots=True)
class BatchReport:
    """What a batch run did.

    Attributes:
        lines: input lines read.
        failed: input lines whose message failed (or could not be sent).
        outputs: lines emitted as the flow's output.
        errors: the first distinct error texts, each naming its input line or pool.
        repeats: for each kept error, how many more times the same error came.
        error_events: error events raised by all pools.
        failed_pools: pools that spent their restart budget, with the reason.
        events_by_pool: error events per pool.
        aborted_at: the input line after which feeding stopped because a
            pool failed (0: the whole input was fed).
        seconds: wall time of the run.
    """

    lines: int = 0
    failed: int = 0
    outputs: int = 0
    errors: list[str] = field(default_factory=list)
    error_events: int = 0
    failed_pools: list[str] = field(default_factory=list)
    events_by_pool: dict[str, int] = field(default_factory=dict)
    repeats: list[int] = field(default_factory=list)
    _seen: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)
    aborted_at: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every message succeeded and no pool failed."""
        return not self.failed and not self.failed_pools and not self.error_events

    def note(self, where: str, error: object) -> None:
        """Keep ``where: error`` if there is room; an error already kept only
        counts one more repeat, so one cause fills one line of the summary."""
        message = str(error)
        # input lines and pool events are kept apart: a line's number matters
        key = (where.partition(" ")[0], message)
        index = self._seen.get(key)
        if index is not None:
            self.repeats[index] += 1
        elif len(self.errors) < _KEPT_ERRORS:
            self._seen[key] = len(self.errors)
            self.errors.append(f"{where}: {message}")
            self.repeats.append(0)


async def run_batch(
    flow: Flow,
    batches: AsyncIterator[list[bytes]],
    emit: Callable[[str], None],
    *,
    window: int = DEFAULT_WINDOW,
    on_progress: Callable[[int], None] | None = None,
) -> BatchReport:
    """Start ``flow``, feed it every input line, wait until it is idle, run its
    ``finish`` scenario if it has one, stop it.

    Output lines go to ``emit``: with a ``finish`` scenario, what the output
    pools emit during it and the results of its calls to other pools;
    otherwise what the output pools emit during the whole run. Feeding stops
    early, and ``finish`` is skipped, when a pool of the flow fails.

    Args:
        flow: a flow, not started.
        batches: input lines (bytes, without newline), a list at a time.
        emit: called with each output line.
        window: messages in flight to the entry pool at most.
        on_progress: called with the number of input bytes consumed.
    """
    report = BatchReport()
    started = time.monotonic()
    has_finish = "finish" in flow.spec.scenarios
    collecting = [not has_finish]

    def output(_pool: str, line: str) -> None:
        if collecting[0]:
            report.outputs += 1
            emit(line)

    def error_event(pool: str, text: str) -> None:
        report.error_events += 1
        report.events_by_pool[pool] = report.events_by_pool.get(pool, 0) + 1
        report.note(f"pool {pool}", text)

    flow.add_output_listener(output)
    flow.add_error_listener(error_event)
    await flow.start()
    try:
        await _feed(flow, batches, report, window, on_progress)
        await flow.wait_idle()
        if has_finish and not report.aborted_at:
            collecting[0] = True
            # a call to an output pool is already printed as that pool's line
            outputs = set(flow.spec.output_pools)

            def print_results(step: Step, results: list[str]) -> None:
                if step.pool not in outputs:
                    for line in results:
                        report.outputs += 1
                        emit(line)

            await flow.run_scenario("finish", print_results)
    finally:
        report.failed_pools = [f"{p.name}: {p.reason}" for p in flow.failed_pools()]
        await flow.stop()
        report.seconds = time.monotonic() - started
    return report


class _Abort(Exception):
    """Feeding stops: a pool of the flow failed, or the entry refuses input."""


async def _feed(
    flow: Flow,
    batches: AsyncIterator[list[bytes]],
    report: BatchReport,
    window: int,
    on_progress: Callable[[int], None] | None,
) -> None:
    entry = flow.entry
    # Lines in flight at the entry may all land on one downstream pool after
    # the feeder last looked (it waits past half full): keep them within a
    # quarter of the smallest queue.
    window = max(1, min(window, *(p.config.queue // 4 for p in flow.pools.values())))
    chunk_size = max(1, min(_CHUNK, window // 2))
    # (number of the chunk's first input line, its size, its outcomes)
    pending: deque[tuple[int, int, asyncio.Future[list[str | DropError]]]] = deque()

    async def settle_oldest() -> None:
        first, size, fut = pending.popleft()
        try:
            outcomes = await fut
        except DropError as exc:  # the pool failed or stopped under the whole chunk
            report.failed += size
            report.note(f"input lines {first}-{first + size - 1}", exc)
            return
        for offset, outcome in enumerate(outcomes):
            if isinstance(outcome, DropError):
                report.failed += 1
                report.note(f"input line {first + offset}", outcome)

    async def send(first: int, lines: list[str]) -> None:
        while True:
            try:
                pending.append((first, len(lines), entry.submit_batch(lines)))
                break
            except PoolFull:
                if not pending:
                    await asyncio.sleep(0.005)
                    continue
                await settle_oldest()
            except DropError as exc:  # failed or stopped: nothing more gets in
                report.failed += len(lines)
                report.note(f"input line {first}", exc)
                raise _Abort from None
        while len(pending) * chunk_size >= window:
            await settle_oldest()
        # A pool downstream that falls behind slows the input: lines between
        # pools are never dropped for want of room.
        while flow.crowded():
            if pending:
                await settle_oldest()
            else:
                await asyncio.sleep(0.002)
        if flow.failed_pools():
            raise _Abort

    lines: list[str] = []
    first = 1
    try:
        async for batch in batches:
            consumed = 0
            for raw in batch:
                report.lines += 1
                consumed += len(raw) + 1
                try:
                    line = raw.decode()
                except UnicodeDecodeError as exc:
                    # flush what came before, so line numbers of outcomes stay right
                    if lines:
                        await send(first, lines)
                        lines = []
                    report.failed += 1
                    report.note(
                        f"input line {report.lines}", f"not UTF-8 at byte {exc.start}; skipped"
                    )
                    first = report.lines + 1
                    continue
                if not lines:
                    first = report.lines
                lines.append(line)
                if len(lines) >= chunk_size:
                    await send(first, lines)
                    lines = []
            if lines:
                # send what a slow producer gave us now, not when the chunk fills
                await send(first, lines)
                lines = []
            if on_progress is not None:
                on_progress(consumed)
    except _Abort:
        report.aborted_at = report.lines
    finally:
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:
            await aclose()
    while pending:
        await settle_oldest()
