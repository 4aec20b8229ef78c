"""Pools of real worker processes: answering, modes, limits, strategies,
restarts, environment, cache and refs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import zlib
from collections import Counter
from pathlib import Path

import pytest

from drop.errors import (
    LineTooLong,
    PoolFailed,
    PoolFull,
    ProtocolError,
    WorkerTimeout,
)
from drop.function import Mode
from drop.pool import PoolState, Strategy
from tests.conftest import PYTHON_DIR, MakePool, eventually, fixture

COMMANDS = ("python3", fixture("commands.py"))


async def test_sync_echo_pool_answers_each_message_with_the_same_line(
    make_pool: MakePool,
) -> None:
    pool = await make_pool("echo", COMMANDS)
    messages = [f"line {i} ✓ with  spaces" for i in range(40)] + ["", "a::b", "  x  "]

    one_by_one = [await pool.call(m, timeout=5) for m in messages]
    at_once = await asyncio.wait_for(asyncio.gather(*(pool.submit(m) for m in messages)), 10)

    assert one_by_one == messages
    assert at_once == messages
    snap = pool.snapshot()
    assert (snap.ok, snap.error, snap.timeout, snap.nomore) == (2 * len(messages), 0, 0, 0)
    assert (snap.running, snap.queued, snap.workers) == (0, 0, 1)
    assert snap.p50_ms > 0


async def test_async_worker_answers_refs_out_of_order_within_its_concurrency(
    make_pool: MakePool, tmp_path: Path
) -> None:
    # Given an async worker that answers each batch in reverse order
    record = tmp_path / "record.json"
    pool = await make_pool(
        "async",
        ("python3", fixture("async_reverse.py"), str(record)),
        mode=Mode.ASYNC,
        concurrency=4,
    )
    messages = [f"msg-{i}::part{i}" for i in range(20)]

    # When 20 messages are sent at once
    results = await asyncio.wait_for(asyncio.gather(*(pool.submit(m) for m in messages)), 10)

    # Then each result belongs to its own message
    assert results == [m.upper() + "!" for m in messages]
    rec = json.loads(record.read_text())
    # And the worker answered out of order, every ref once
    assert sorted(rec["order"]) == list(range(1, 21))
    assert rec["order"] != sorted(rec["order"])
    # And it never held more than `concurrency` messages, and did hold that many
    assert rec["max_inflight"] == 4
    assert pool.snapshot().ok == 20


async def test_pool_whose_workers_keep_failing_is_marked_failed_while_a_healthy_pool_answers(
    make_pool: MakePool,
) -> None:
    # Given a healthy pool and, alongside, a pool of /bin/false and one of a missing command
    healthy = await make_pool("healthy", COMMANDS)
    missing_cmd = "/nonexistent/drop-no-such-command"
    budget = {"max_restarts": 3, "window": 30.0, "backoff": 0.05}
    false_pool, missing = await asyncio.gather(
        make_pool("false", ("/bin/false",), **budget),
        make_pool("missing", (missing_cmd,), **budget),
    )

    # When the failing pools spend their restart budget, the healthy one keeps answering
    answers, sent = [], []
    deadline = time.monotonic() + 10
    i = 0
    while not (false_pool.state is missing.state is PoolState.FAILED) or i < 100:
        assert time.monotonic() < deadline, (false_pool.reason, missing.reason)
        sent.append(f"h{i}")
        answers.append(await healthy.call(f"h{i}", timeout=5))
        i += 1

    # Then both failing pools are FAILED with a reason naming max_restarts
    for pool in (false_pool, missing):
        assert pool.state is PoolState.FAILED
        assert "4 exits within 30s exceed max_restarts 3" in pool.reason
        assert pool.snapshot().restarts == 3
        with pytest.raises(PoolFailed) as info:
            pool.submit("x")
        assert f"pool {pool.name} failed" in str(info.value)
        assert "max_restarts" in str(info.value)
    assert "exited with status 1" in false_pool.reason
    assert missing_cmd in missing.reason
    # And the healthy pool answered everything, fast
    assert answers == sent
    snap = healthy.snapshot()
    assert snap.ok == len(sent)
    assert snap.error == 0
    assert snap.p50_ms < 20, snap


async def test_sync_worker_that_hangs_times_out_and_is_restarted(make_pool: MakePool) -> None:
    # Given a pool with timeout 0.3 s
    pool = await make_pool("slow", COMMANDS, timeout=0.3, backoff=0.05)
    first_pid = pool.workers()[0].pid

    # When its worker sleeps forever on a message
    t0 = time.monotonic()
    with pytest.raises(WorkerTimeout) as info:
        await pool.call("hang", timeout=5)
    elapsed = time.monotonic() - t0

    # Then the call fails with WorkerTimeout within about a second
    assert 0.3 <= elapsed < 1.0
    assert "timed out after 0.3s" in str(info.value)
    assert pool.snapshot().timeout == 1
    # And a restarted worker answers the next message
    assert await pool.call("next", timeout=5) == "next"
    assert pool.workers()[0].pid != first_pid
    snap = pool.snapshot()
    assert (snap.ok, snap.timeout, snap.error, snap.restarts) == (1, 1, 0, 1)


async def test_full_queue_refuses_the_next_message_and_loses_nothing_it_accepted(
    make_pool: MakePool, tmp_path: Path
) -> None:
    # Given a one-worker pool with queue 5 whose worker blocks until a gate opens
    gate = tmp_path / "gate"
    pool = await make_pool("full", ("python3", fixture("gate.py"), str(gate)), queue=5)
    in_flight = pool.submit("m0")
    queued = [pool.submit(f"m{i}") for i in range(1, 6)]
    assert pool.queued == 5

    # When one more message is submitted
    with pytest.raises(PoolFull) as info:
        pool.submit("m6")

    # Then it is refused and counted as nomore
    assert "pool full is full (5 messages queued)" in str(info.value)
    assert pool.snapshot().nomore == 1
    # And once the worker is unblocked every accepted message is answered, in order
    gate.touch()
    results = await asyncio.wait_for(asyncio.gather(in_flight, *queued), 5)
    assert results == [f"m{i}@0" for i in range(6)]
    snap = pool.snapshot()
    assert (snap.ok, snap.error, snap.nomore, snap.queued) == (6, 0, 1, 0)


async def test_hash_strategy_sends_the_same_key_to_the_same_worker(make_pool: MakePool) -> None:
    pool = await make_pool(
        "hash",
        COMMANDS,
        strategy=Strategy.HASH,
        key=re.compile(r"k=(\w+)"),
        size_min=3,
        size_max=3,
    )
    keys = ["alice", "bob", "erin", "grace", "judy", "mallory", "trent", "victor"]
    messages = [f"whoami k={k} n={n}" for n in range(4) for k in keys]

    answers = await asyncio.wait_for(asyncio.gather(*(pool.submit(m) for m in messages)), 10)

    seen: dict[str, set[str]] = {}
    for message, worker in zip(messages, answers, strict=True):
        key = re.search(r"k=(\w+)", message).group(1)  # type: ignore[union-attr]
        seen.setdefault(key, set()).add(worker)
    expected = {k: {str(zlib.crc32(k.encode()) % 3)} for k in keys}
    assert seen == expected
    assert len(set().union(*expected.values())) == 3  # the keys do spread over all workers


async def test_call_all_returns_one_answer_per_worker(make_pool: MakePool) -> None:
    pool = await make_pool("all", COMMANDS, size_min=3, size_max=3)

    assert await asyncio.wait_for(pool.call_all("whoami"), 5) == ["0", "1", "2"]


async def test_round_robin_spreads_nine_messages_evenly_over_three_workers(
    make_pool: MakePool,
) -> None:
    pool = await make_pool("rr", COMMANDS, strategy=Strategy.ROUND_ROBIN, size_min=3, size_max=3)

    answers = await asyncio.wait_for(
        asyncio.gather(*(pool.submit(f"whoami {i}") for i in range(9))), 5
    )

    assert Counter(answers) == {"0": 3, "1": 3, "2": 3}


async def test_free_pool_grows_to_size_max_while_messages_wait_and_shrinks_when_idle(
    make_pool: MakePool, tmp_path: Path
) -> None:
    # Given a free pool of 1..3 gated workers
    gate = tmp_path / "gate"
    pool = await make_pool(
        "elastic",
        ("python3", fixture("gate.py"), str(gate)),
        size_min=1,
        size_max=3,
        idle_timeout=0.3,
        timeout=None,
    )
    assert pool.size == 1

    # When three messages wait and every worker is busy
    futs = [pool.submit(f"m{i}") for i in range(3)]

    # Then the pool grows to 3 workers, each holding one message
    await eventually(
        lambda: len(pool.workers()) == 3 and all(w.inflight == 1 for w in pool.workers()),
        timeout=3,
    )
    assert pool.queued == 0
    # And once they are answered (one per worker) the pool shrinks back to 1
    gate.touch()
    results = await asyncio.wait_for(asyncio.gather(*futs), 5)
    assert sorted(r.split("@")[1] for r in results) == ["0", "1", "2"]
    assert [r.split("@")[0] for r in results] == ["m0", "m1", "m2"]
    await eventually(lambda: pool.size == 1, timeout=3)
    assert pool.snapshot().workers == 1


async def test_free_pool_keeps_growing_when_a_message_arrives_while_a_worker_starts(
    make_pool: MakePool, tmp_path: Path
) -> None:
    # Given a free pool of 1..3 gated workers, its one worker busy
    gate = tmp_path / "gate"
    pool = await make_pool(
        "elastic2",
        ("python3", fixture("gate.py"), str(gate)),
        size_min=1,
        size_max=3,
        timeout=None,
    )
    futs = [pool.submit("m0"), pool.submit("m1")]  # m1 waits: a second worker is started
    await asyncio.sleep(0)  # let that start begin (one loop turn, not a wait for a condition)

    # When a third message arrives while the second worker is still starting
    futs.append(pool.submit("m2"))

    # Then the pool still grows to 3 workers, each holding one message
    try:
        await eventually(
            lambda: len(pool.workers()) == 3 and all(w.inflight == 1 for w in pool.workers()),
            timeout=3,
        )
    finally:
        gate.touch()
        results = await asyncio.wait_for(asyncio.gather(*futs, return_exceptions=True), 5)
    assert sorted(r.split("@")[1] for r in results) == ["0", "1", "2"]


async def test_worker_gets_drop_worker_the_callers_env_and_the_configured_folder(
    make_pool: MakePool, tmp_path: Path
) -> None:
    folder = tmp_path / "work folder"
    folder.mkdir()
    pool = await make_pool("envpool", COMMANDS, cwd=folder, size_min=2, size_max=2)

    answers = [json.loads(a) for a in await asyncio.wait_for(pool.call_all("env"), 5)]

    assert [a["worker"] for a in answers] == ["0", "1"]
    assert [a["pool"] for a in answers] == ["envpool", "envpool"]
    assert [os.path.realpath(a["cwd"]) for a in answers] == [os.path.realpath(folder)] * 2


async def test_worker_env_is_exactly_the_callers_env_plus_drop_worker(
    make_pool: MakePool,
) -> None:
    env = {"PATH": PYTHON_DIR, "DROP_POOL": "bare"}
    pool = await make_pool("bare", COMMANDS, env=env)

    names = json.loads(await pool.call("envnames", timeout=5))

    # Python itself adds LC_CTYPE when it coerces the C locale (PEP 538)
    assert set(names) - {"LC_CTYPE"} == {"DROP_POOL", "DROP_WORKER", "PATH"}


async def test_message_with_newline_or_over_max_line_is_refused_at_submit(
    make_pool: MakePool,
) -> None:
    pool = await make_pool("strict", COMMANDS, max_line=1000)

    with pytest.raises(ProtocolError) as newline:
        pool.submit("a\nb")
    with pytest.raises(LineTooLong) as too_long:
        pool.submit("x" * 1001)
    with pytest.raises(LineTooLong) as too_long_bytes:
        pool.submit("é" * 501)  # 501 characters, 1002 bytes

    assert type(newline.value) is ProtocolError
    assert "pool strict" in str(newline.value)
    assert "newline" in str(newline.value)
    assert "pool strict: message of 1001 bytes is over max_line (1000)" in str(too_long.value)
    assert "message of 1002 bytes" in str(too_long_bytes.value)
    # a line of exactly max_line is fine, and nothing refused reached the worker
    assert await pool.call("x" * 1000, timeout=5) == "x" * 1000
    snap = pool.snapshot()
    assert (snap.ok, snap.error) == (1, 0)


async def test_cached_results_are_returned_without_reaching_the_worker(
    make_pool: MakePool,
) -> None:
    pool = await make_pool("cache", COMMANDS, cache_ttl=60.0)

    first = await pool.call("tick:a", timeout=5)
    again = await pool.call("tick:a", timeout=5)
    other = await pool.call("tick:b", timeout=5)

    assert (first, again, other) == ("a#1", "a#1", "b#2")  # the worker saw 2 messages
    assert pool.cache is not None
    assert (pool.cache.hits, pool.cache.misses) == (1, 2)
    assert pool.snapshot().ok == 3


async def test_cached_pool_call_that_times_out_for_the_caller_leaves_no_error_in_the_loop(
    make_pool: MakePool,
) -> None:
    # Given a cached pool, and a record of the event loop's callback errors
    loop_errors: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    pool = await make_pool("cachetmo", COMMANDS, cache_ttl=60.0, timeout=0.5, backoff=0.05)

    # When a call gives up before the worker answers (its future is cancelled)
    with pytest.raises(WorkerTimeout) as info:
        await pool.call("hang", timeout=0.1)

    # Then the caller gets a WorkerTimeout, the pool recovers, nothing is cached
    assert str(info.value) == "pool cachetmo: no result within 0.1s"
    assert await pool.call("tick:after", timeout=5) == "after#1"
    assert pool.cache is not None
    assert len(pool.cache) == 1
    # And no callback of the pool raised inside the event loop
    assert [str(ctx.get("message")) for ctx in loop_errors] == []


async def test_result_store_returns_outcome_by_ref_after_completion(make_pool: MakePool) -> None:
    pool = await make_pool("refs", COMMANDS)

    ok_ref = pool.submit_ref("hello")
    bad_ref = pool.submit_ref("badutf8")
    assert pool.results.get(ok_ref) == (False, None, None)

    await eventually(lambda: pool.results.get(bad_ref) != (False, None, None))
    assert (ok_ref, bad_ref) == ("refs-1", "refs-2")
    assert pool.results.get(ok_ref) == (True, "hello", None)
    done, result, error = pool.results.get(bad_ref)  # type: ignore[misc]
    assert (done, result) == (True, None)
    assert error is not None
    assert "invalid UTF-8" in error
    assert pool.results.get("refs-999") is None


async def test_a_batch_to_a_cached_pool_is_answered_from_the_cache(make_pool: MakePool) -> None:
    pool = await make_pool("cachebatch", COMMANDS, cache_ttl=60.0)
    assert await pool.call("tick:a", timeout=5) == "a#1"
    # the repeated message comes from the cache; only "b" reaches the worker
    outcomes = await asyncio.wait_for(pool.submit_batch(["tick:a", "tick:b", "tick:a"]), 5)
    assert outcomes == ["a#1", "b#2", "a#1"]
