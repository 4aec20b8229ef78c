"""Sync pools with ``pipeline``: several lines in flight, answers in order."""

from __future__ import annotations

import sys

from drop.errors import WorkerCrashed
from drop.function import Mode, WorkerConfig
from drop.pool import Pool, PoolConfig

from ..conftest import fixture, worker_env

ECHO_OR_DIE = (
    "import sys\n"
    "for line in sys.stdin:\n"
    "    if line.strip() == 'die':\n"
    "        sys.exit(3)\n"
    "    sys.stdout.write(line)\n"
    "    sys.stdout.flush()\n"
)


def _pool(pipeline: int, argv: tuple[str, ...]) -> Pool:
    worker = WorkerConfig(
        argv=argv, cwd=".", env=worker_env("pipe"), mode=Mode.SYNC, pipeline=pipeline
    )
    return Pool(PoolConfig(name="pipe", worker=worker, backoff=0.02))


async def test_a_pipelined_sync_worker_holds_that_many_lines_and_answers_in_order() -> None:
    # Given one echo worker allowed 4 lines in flight
    pool = _pool(4, (sys.executable, fixture("commands.py")))
    await pool.start()
    try:
        # When 10 messages are submitted at once
        batch = pool.submit_batch([f"m{i}" for i in range(10)])
        # Then 4 are written to the worker and 6 wait in the queue
        (worker,) = pool.workers()
        assert (worker.inflight, pool.queued) == (4, 6)
        # and every answer belongs to its own message, in order
        assert await batch == [f"m{i}" for i in range(10)]
        assert pool.snapshot().ok == 10
    finally:
        await pool.stop()


async def test_a_crash_fails_every_pipelined_line_with_the_exit_status() -> None:
    pool = _pool(3, (sys.executable, "-c", ECHO_OR_DIE))
    await pool.start()
    try:
        outcomes = await pool.submit_batch(["die", "b", "c", "d"])
        # the three in flight fail together; the fourth waited and is answered
        assert [type(o) for o in outcomes[:3]] == [WorkerCrashed] * 3
        assert all("exited with status 3" in str(o) for o in outcomes[:3])
        assert outcomes[3] == "d"
    finally:
        await pool.stop()
