"""Batch runs: feed input lines to a flow's entry pool, drain, finish, report.

This is ``drop run``'s engine, kept apart from the terminal so a node can
run the same batch for an HTTP caller. Input is fed through a bounded window
of futures; the feeder also waits while any pool's queue is over half full,
so a slow pool downstream slows the input instead of overflowing.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from drop.errors import DropError, PoolFull
from drop.flow._engine import Flow

#: Messages in flight to the entry pool at most.
DEFAULT_WINDOW = 512
#: Error texts kept in the report; the rest are only counted.
_KEPT_ERRORS = 20


@dataclass(slots=True)
class BatchReport:
    """What a batch run did.

    Attributes:
        lines: input lines read.
        failed: input lines whose message failed (or could not be sent).
        outputs: lines emitted as the flow's output.
        errors: the first error texts, each naming its input line or pool.
        error_events: error events raised by all pools.
        failed_pools: pools that spent their restart budget, with the reason.
        seconds: wall time of the run.
    """

    lines: int = 0
    failed: int = 0
    outputs: int = 0
    errors: list[str] = field(default_factory=list)
    error_events: int = 0
    failed_pools: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every message succeeded and no pool failed."""
        return not self.failed and not self.failed_pools and not self.error_events

    def note(self, text: str) -> None:
        """Keep an error text if there is room."""
        if len(self.errors) < _KEPT_ERRORS:
            self.errors.append(text)


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
    pools emit during it and the results of its calls; otherwise what the
    output pools emit during the whole run.

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
        report.note(f"pool {pool}: {text}")

    flow.add_output_listener(output)
    flow.add_error_listener(error_event)
    await flow.start()
    try:
        await _feed(flow, batches, report, window, on_progress)
        await flow.wait_idle()
        if has_finish:
            collecting[0] = True
            for line in await flow.run_scenario("finish"):
                report.outputs += 1
                emit(line)
    finally:
        report.failed_pools = [f"{p.name}: {p.reason}" for p in flow.failed_pools()]
        await flow.stop()
        report.seconds = time.monotonic() - started
    return report


async def _feed(
    flow: Flow,
    batches: AsyncIterator[list[bytes]],
    report: BatchReport,
    window: int,
    on_progress: Callable[[int], None] | None,
) -> None:
    entry = flow.entry
    pending: deque[tuple[int, asyncio.Future[str]]] = deque()

    async def settle_oldest() -> None:
        number, fut = pending.popleft()
        try:
            await fut
        except DropError as exc:
            report.failed += 1
            report.note(f"input line {number}: {exc}")

    async for batch in batches:
        consumed = 0
        for raw in batch:
            report.lines += 1
            consumed += len(raw) + 1
            try:
                line = raw.decode()
            except UnicodeDecodeError as exc:
                report.failed += 1
                report.note(f"input line {report.lines}: not UTF-8 at byte {exc.start}; skipped")
                continue
            while True:
                try:
                    fut = entry.submit(line)
                    break
                except PoolFull:
                    if pending:
                        await settle_oldest()
                    else:
                        await asyncio.sleep(0.005)
                except DropError as exc:
                    report.failed += 1
                    report.note(f"input line {report.lines}: {exc}")
                    fut = None
                    break
            if fut is not None:
                pending.append((report.lines, fut))
            if len(pending) >= window:
                await settle_oldest()
            while flow.crowded():
                if pending:
                    await settle_oldest()
                else:
                    await asyncio.sleep(0.002)
        if on_progress is not None:
            on_progress(consumed)
    while pending:
        await settle_oldest()
