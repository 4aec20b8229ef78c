"""How a worker process is read, logged, crashed, limited and cleaned up,
seen through a pool of real processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import psutil
import pytest

from drop.errors import LineTooLong, ProtocolError, WorkerCrashed
from drop.function import Mode
from drop.function import _memory as memory_module
from drop.pool import PoolState
from tests.conftest import MakePool, eventually, fixture

COMMANDS = ("python3", fixture("commands.py"))


async def test_result_line_of_200000_bytes_comes_back_whole_under_default_max_line(
    make_pool: MakePool,
) -> None:
    pool = await make_pool("big", COMMANDS)

    result = await pool.call("big:200000", timeout=5)

    assert len(result) == 200_000
    assert result == "x" * 200_000
    assert pool.snapshot().ok == 1


async def test_over_long_answer_fails_only_its_message_and_next_message_gets_its_own_answer(
    make_pool: MakePool,
) -> None:
    # Given a pool whose lines may be at most 100,000 bytes
    pool = await make_pool("long", COMMANDS, max_line=100_000)

    # When the worker answers one message with a 200,000-byte line
    with pytest.raises(LineTooLong) as info:
        await pool.call("big:200000", timeout=5)

    # Then only that message fails, naming the limit
    assert "max_line (100000 bytes)" in str(info.value)
    assert "long/0" in str(info.value)
    # And the next message gets its own answer, not the tail of the long line
    assert await pool.call("after", timeout=5) == "after"
    assert await pool.call("big:99999", timeout=5) == "x" * 99_999
    snap = pool.snapshot()
    assert (snap.ok, snap.error, snap.restarts) == (2, 1, 0)


async def test_invalid_utf8_answer_fails_with_protocol_error_and_next_message_is_answered(
    make_pool: MakePool,
) -> None:
    # Given a worker that answers b"caf\xe9" and writes b"\x97 warn" to stderr
    pool = await make_pool("utf8", COMMANDS)

    # When it is asked
    with pytest.raises(ProtocolError) as info:
        await pool.call("badutf8", timeout=5)

    # Then the message fails naming invalid UTF-8 (byte 3 of "caf\xe9")
    text = str(info.value)
    assert "invalid UTF-8" in text
    assert "at byte 3" in text
    assert type(info.value) is ProtocolError
    # And the pool is not hung: the next message is answered by the same worker
    pid = pool.workers()[0].pid
    assert await pool.call("café", timeout=5) == "café"
    assert pool.workers()[0].pid == pid
    snap = pool.snapshot()
    assert (snap.ok, snap.error) == (1, 1)


async def test_worker_flooding_stderr_is_answered_with_rotated_log_and_flat_memory(
    make_pool: MakePool, tmp_path: Path
) -> None:
    # Given a worker that writes 1 MiB to stderr before every answer
    log_dir = tmp_path / "logs"
    pool = await make_pool("flood", ("python3", fixture("stderr_flood.py")), log_dir=log_dir)
    max_bytes = pool.log.max_bytes
    backups = pool.log.backups
    me = psutil.Process()
    rss_before = me.memory_info().rss

    # When 100 messages are sent
    futs = [pool.submit(f"m{i}") for i in range(100)]
    results = await asyncio.wait_for(asyncio.gather(*futs), 30)

    # Then every one is answered with its own line
    assert results == [f"m{i}" for i in range(100)]
    assert pool.snapshot().ok == 100
    # And memory stayed flat
    growth = me.memory_info().rss - rss_before
    assert growth < 50 * 1024 * 1024, f"RSS grew by {growth / 2**20:.1f} MiB"
    # And the log exists, was rotated, and is bounded by max_bytes per file
    live = log_dir / "flood.log"
    assert live.exists()
    files = sorted(log_dir.iterdir())
    names = {p.name for p in files}
    assert names == {"flood.log"} | {f"flood.log.{i}" for i in range(1, backups + 1)}
    for path in files:
        assert path.stat().st_size <= max_bytes, path
    # each file holds whole prefixed stderr lines of the worker
    with open(log_dir / "flood.log.1", "rb") as f:
        head = f.read(4096)
    assert head.startswith(b"[0] " + b"e" * 1023 + b"\n[0] e")


async def test_sync_worker_exiting_with_status_3_fails_with_crash_naming_status_and_stderr(
    make_pool: MakePool,
) -> None:
    pool = await make_pool("crash", ("read l; echo boom >&2; exit 3",), shell=True, timeout=30.0)

    with pytest.raises(WorkerCrashed) as info:
        await pool.call("hello", timeout=5)

    text = str(info.value)
    assert "exited with status 3" in text
    assert "boom" in text
    assert "crash/0" in text
    assert pool.snapshot().ok == 0
    assert pool.snapshot().error == 1


async def test_async_worker_exit_fails_every_ref_in_flight_at_once(make_pool: MakePool) -> None:
    # Given an async worker that reads 3 refs, then exits with status 3
    pool = await make_pool(
        "acrash",
        ("read a; read b; read c; echo dying >&2; exit 3",),
        shell=True,
        mode=Mode.ASYNC,
        concurrency=3,
        timeout=30.0,
    )

    # When 3 messages are in flight
    t0 = time.monotonic()
    futs = [pool.submit(f"m{i}") for i in range(3)]
    outcomes = await asyncio.wait_for(asyncio.gather(*futs, return_exceptions=True), 10)
    elapsed = time.monotonic() - t0

    # Then all three fail with the crash, long before the 30 s timeout
    assert elapsed < 2.0
    assert all(isinstance(o, WorkerCrashed) for o in outcomes), outcomes
    for o in outcomes:
        assert "exited with status 3" in str(o)
        assert "dying" in str(o)
    snap = pool.snapshot()
    assert (snap.ok, snap.error, snap.timeout) == (0, 3, 0)


def _group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    found = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return found


def _gone_or_dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _no_zombie_children() -> bool:
    return not [c for c in psutil.Process().children() if c.status() == psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("how", ["stop", "scale0"])
async def test_stopping_a_worker_leaves_no_process_of_its_group_behind(
    make_pool: MakePool, tmp_path: Path, how: str
) -> None:
    # Given a worker `sh -c 'python3 w.py'` whose w.py started `sleep 1000`
    shutil.copy(fixture("spawn_child.py"), tmp_path / "w.py")
    pool = await make_pool(f"grp-{how}", ("python3 w.py",), shell=True, cwd=tmp_path)
    assert await pool.call("hi", timeout=5) == "hi"
    sleep_pid = int(await pool.call("pid", timeout=5))
    pgid = pool.workers()[0].pid
    assert pgid is not None
    # (the child may still be inside execve when its pid comes back)
    await eventually(lambda: psutil.Process(sleep_pid).cmdline() == ["sleep", "1000"])
    assert os.getpgid(sleep_pid) == pgid

    # When the pool is stopped, or scaled to 0
    if how == "stop":
        await pool.stop(timeout=3)
        assert pool.state is PoolState.STOPPED
    else:
        await pool.scale(0)
        assert pool.size == 0

    # Then the sleep and every other process of the group are gone (a killed
    # process closes its pipes a moment before the kernel marks it dead)
    await eventually(lambda: _gone_or_dead(sleep_pid), timeout=1)
    assert _group_members(pgid) == []
    # And the test process has no zombie children
    await eventually(_no_zombie_children, timeout=2)


async def test_worker_over_its_memory_limit_crashes_naming_the_limit_and_is_restarted(
    make_pool: MakePool,
) -> None:
    # Given a worker limited to 64 MiB
    pool = await make_pool("mem", COMMANDS, memory_mb=64, backoff=0.05)
    assert await pool.call("alloc:1", timeout=5) == "allocated 1"
    first_pid = pool.workers()[0].pid
    kind = pool.workers()[0].memory_kind

    # When it allocates 200 MB on a message
    with pytest.raises(WorkerCrashed) as info:
        await pool.call("alloc:200", timeout=10)

    # Then the message fails naming the memory limit and how it was enforced:
    # a cgroup's OOM kill where this machine allows one, else MemoryError
    text = str(info.value)
    assert "memory limit 64 MiB" in text
    assert kind is not None and kind in text
    if kind.startswith("cgroup"):
        assert "killed by signal 9 (SIGKILL): stopped for going over" in text
    else:
        assert "MemoryError" in text
    # And the next message is answered by a restarted worker
    assert await pool.call("next", timeout=10) == "next"
    assert pool.workers()[0].pid != first_pid
    assert pool.snapshot().restarts == 1


async def test_without_cgroups_the_memory_limit_falls_back_to_an_address_space_limit(
    make_pool: MakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a machine where no cgroup can be made
    monkeypatch.setattr(memory_module, "_base", lambda: None)
    pool = await make_pool("memrl", COMMANDS, memory_mb=64, backoff=0.05)
    assert pool.workers()[0].memory_kind == "rlimit"
    # When the worker allocates past its limit, the allocation itself fails
    with pytest.raises(WorkerCrashed) as info:
        await pool.call("alloc:200", timeout=10)
    text = str(info.value)
    assert "(memory limit 64 MiB, rlimit)" in text
    assert "MemoryError" in text
