"""``drop run``: a flow, in this process, over a file of input lines."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import uvloop

from drop.cli._input import read_batches
from drop.flow import BatchReport, Flow, load_flow, run_batch
from drop.function import start_guardian, stop_guardian

#: Exit statuses of ``drop run``.
RET_OK = 0
RET_FLOW_FAILED = 1
RET_USAGE = 2
RET_INTERRUPTED = 130
RET_TERMINATED = 143


def run_flow(
    flow_file: Path,
    input_path: str | None,
    sets: dict[str, str],
    data_dir: Path,
    progress: bool,
) -> int:
    """Run ``flow_file`` over ``input_path`` (``-``/``None``: stdin), print the
    output on stdout and a summary of any failure on stderr.

    Raises:
        SpecError: the flow file is invalid.
        OSError: the input cannot be opened.
    """
    loaded = load_flow(flow_file, sets)
    if input_path in (None, "-"):
        fd, size = sys.stdin.fileno(), None
        close = False
    else:
        fd = os.open(input_path, os.O_RDONLY)
        size = os.fstat(fd).st_size
        close = True
    start_guardian()  # a kill -9 of drop run leaves no worker's child behind
    try:
        report = uvloop.run(_main(Flow(loaded, data_dir=data_dir), fd, size, progress))
    except KeyboardInterrupt:
        sys.stderr.write("drop run: interrupted; the flow was stopped, its workers are gone\n")
        return RET_INTERRUPTED
    except asyncio.CancelledError:
        sys.stderr.write("drop run: terminated; the flow was stopped, its workers are gone\n")
        return RET_TERMINATED
    finally:
        stop_guardian()
        if close:
            os.close(fd)
    return _summarise(report, loaded.spec.name, data_dir)


async def _main(flow: Flow, fd: int, size: int | None, progress: bool) -> BatchReport:
    # SIGTERM cancels the run like Ctrl-C does, so the flow is stopped and
    # every worker's process group killed, not orphaned.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    out = sys.stdout
    write = out.write

    def emit(line: str) -> None:
        write(line)
        write("\n")

    if not progress or size is None:
        report = await run_batch(flow, read_batches(fd), emit)
        out.flush()
        return report
    from rich.console import Console  # only on a terminal
    from rich.progress import BarColumn, Progress, TransferSpeedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        "[progress.percentage]{task.percentage:>3.0f}%",
        TransferSpeedColumn(),
        transient=True,
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task(f"{flow.name}", total=size)
        report = await run_batch(
            flow, read_batches(fd), emit, on_progress=lambda n: bar.advance(task, n)
        )
    out.flush()
    return report


def _summarise(report: BatchReport, flow: str, data_dir: Path) -> int:
    if report.ok:
        return RET_OK
    err = sys.stderr
    events = ", ".join(f"{pool} {n}" for pool, n in sorted(report.events_by_pool.items()))
    err.write(
        f"drop run: flow {flow}: {report.failed} of {report.lines} input lines failed, "
        f"{report.error_events} error events{f' ({events})' if events else ''}\n"
    )
    if report.aborted_at:
        err.write(
            f"  stopped reading input after line {report.aborted_at}: a pool failed, "
            "so the output would be wrong; the rest was not processed\n"
        )
    for text, repeats in zip(report.errors, report.repeats, strict=True):
        more = f" (and {repeats} more times)" if repeats else ""
        err.write(f"  {text}{more}\n")
    for pool in report.failed_pools:
        err.write(f"  failed pool {pool}\n")
    err.write(f"  worker logs: {data_dir / 'logs' / flow}\n")
    return RET_FLOW_FAILED
