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
    chunk_size = max(1, min(_CHUNK, window // 2))
    # (number of the chunk's first input line, its outcomes)
    pending: deque[tuple[int, asyncio.Future[list[str | DropError]]]] = deque()

    async def settle_oldest() -> None:
        first, fut = pending.popleft()
        try:
            outcomes = await fut
        except DropError as exc:  # the pool failed or stopped under the whole chunk
            report.failed += 1
            report.note(f"input lines from {first}: {exc}")
            return
        for offset, outcome in enumerate(outcomes):
            if isinstance(outcome, DropError):
                report.failed += 1
                report.note(f"input line {first + offset}: {outcome}")

    async def send(first: int, lines: list[str]) -> None:
        while True:
            try:
                pending.append((first, entry.submit_batch(lines)))
                break
            except PoolFull:
                if not pending:
                    await asyncio.sleep(0.005)
                    continue
                await settle_oldest()
        while len(pending) * chunk_size >= window or (pending and flow.crowded()):
            await settle_oldest()

    lines: list[str] = []
    first = 1
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
                report.note(f"input line {report.lines}: not UTF-8 at byte {exc.start}; skipped")
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
    while pending:
        await settle_oldest()
