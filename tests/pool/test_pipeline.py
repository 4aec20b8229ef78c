"""Sync pools with ``pipeline``, and what a pool does when no worker is left."""

from __future__ import annotations

import asyncio
import sys

from drop.errors import PoolFailed, WorkerCrashed
from drop.function import Mode, WorkerConfig
from drop.pool import Pool, PoolConfig, PoolState, Restart

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


async def test_a_pool_whose_last_worker_is_not_restarted_fails_what_waits() -> None:
    # Given one worker that is never restarted and dies on "die"
    worker = WorkerConfig(argv=(sys.executable, "-c", ECHO_OR_DIE), cwd=".", env=worker_env("t"))
    pool = Pool(PoolConfig(name="temp", worker=worker, restart=Restart.NEVER))
    await pool.start()
    try:
        # When it dies with messages still queued behind it
        outcomes = await asyncio.wait_for(pool.submit_batch(["a", "die", "b", "c"]), 5)
        # Then the queued ones fail at once instead of waiting forever
        assert outcomes[0] == "a"
        assert [type(o) for o in outcomes[1:]] == [WorkerCrashed, PoolFailed, PoolFailed]
        assert pool.state is PoolState.FAILED
        assert "not restarted (restart: never); no worker left" in pool.reason
    finally:
        await pool.stop()


TWO_LINES = (
    "import sys\n"
    "for line in sys.stdin:\n"
    "    if line.strip() == 'two':\n"
    "        sys.stdout.write('one\\ntwo\\n')\n"
    "    else:\n"
    "        sys.stdout.write(line)\n"
    "    sys.stdout.flush()\n"
)


async def test_a_sync_worker_answering_with_two_lines_is_caught_not_shifted() -> None:
    # Given a worker that answers "two" with two lines in one write
    worker = WorkerConfig(argv=(sys.executable, "-c", TWO_LINES), cwd=".", env=worker_env("t"))
    pool = Pool(PoolConfig(name="two", worker=worker, backoff=0.02))
    await pool.start()
    try:
        # When messages are queued behind it
        outcomes = await asyncio.wait_for(pool.submit_batch(["a", "two", "b", "c", "d"]), 5)
        # Then the extra line is a protocol error, not the next message's answer,
        # and every later message gets its own answer from a fresh worker
        assert outcomes[0] == "a"
        assert isinstance(outcomes[2], WorkerCrashed)
        assert "more than one line for one message" in str(outcomes[2])
        assert outcomes[3:] == ["c", "d"]
    finally:
        await pool.stop()


async def test_a_stream_source_that_finishes_stops_its_pool_without_failing_it() -> None:
    # Given a stream worker that writes three events and exits 0 (restart: on-failure)
    source = "import sys\nsys.stdin.readline()\nprint('e1\\ne2\\ne3', flush=True)\n"
    worker = WorkerConfig(
        argv=(sys.executable, "-c", source), cwd=".", env=worker_env("s"), mode=Mode.STREAM
    )
    pool = Pool(PoolConfig(name="source", worker=worker, restart=Restart.ON_FAILURE))
    events: list[str] = []
    pool.add_listener(events.append)
    await pool.start()
    try:
        # Then its events arrive and the pool ends stopped, not failed
        for _ in range(200):
            if pool.state is PoolState.STOPPED:
                break
            await asyncio.sleep(0.01)
        assert events == ["e1", "e2", "e3"]
        assert pool.state is PoolState.STOPPED
        assert "not restarted (restart: on-failure)" in pool.reason
    finally:
        await pool.stop()
