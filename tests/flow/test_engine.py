"""Flows running for real: subscriptions, scenarios, derived start and stop."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from drop.errors import FlowError
from drop.flow import Flow, load_flow_text
from drop.pool import PoolState

from ..conftest import eventually

PY = sys.executable

#: answers each line with "tag:even,N" or "tag:odd,N"
PARITY = (
    "import sys\n"
    "for l in sys.stdin:\n"
    "    n = int(l)\n"
    "    print(('tag:even,' if n % 2 == 0 else 'tag:odd,') + str(n), flush=True)\n"
)
#: answers each line with "WORKER:LINE"
WHO = (
    "import os, sys\n"
    "for l in sys.stdin:\n"
    "    print(os.environ['DROP_WORKER'] + ':' + l.strip(), flush=True)\n"
)


@pytest.fixture
async def flows(tmp_path: Path) -> AsyncIterator[Callable[[str], Flow]]:
    made: list[Flow] = []
    (tmp_path / "parity.py").write_text(PARITY)
    (tmp_path / "who.py").write_text(WHO)

    def make(text: str) -> Flow:
        flow = Flow(load_flow_text(text, base_dir=tmp_path), data_dir=tmp_path / "data")
        made.append(flow)
        return flow

    yield make
    for flow in made:
        await flow.stop()


async def test_label_subscription_delivers_only_matching_lines(
    flows: Callable[[str], Flow],
) -> None:
    # Given parity -> evens (label:even), and a listener on the output pool
    flow = flows(
        f"name: f\nfunc:\n"
        f"  - name: parity\n    cmd: {PY} parity.py\n"
        f"  - name: evens\n    cmd: {PY} who.py\n"
        "    sub:\n      - {name: parity, filter: 'label:even'}\n"
    )
    seen: list[str] = []
    flow.add_output_listener(lambda pool, line: seen.append(line))
    await flow.start()
    # When 10 numbers go in
    results = await asyncio.gather(*(flow.entry.call(str(n)) for n in range(10)))
    await flow.wait_idle(timeout=5)
    # Then the entry answers each, and only the even ones reach the subscriber
    assert results == [("tag:even," if n % 2 == 0 else "tag:odd,") + str(n) for n in range(10)]
    assert sorted(seen) == sorted(f"0:tag:even,{n}" for n in range(0, 10, 2))
    assert flow.spec.output_pools == ["evens"]


async def test_subscription_type_all_reaches_every_worker(flows: Callable[[str], Flow]) -> None:
    flow = flows(
        f"name: f\nfunc:\n"
        f"  - name: parity\n    cmd: {PY} parity.py\n"
        f"  - name: fan\n    cmd: {PY} who.py\n    size: 3\n    sub:\n"
        f"      - {{name: parity, filter: no, type: dall}}\n"
    )
    seen: list[str] = []
    flow.add_output_listener(lambda pool, line: seen.append(line))
    await flow.start()
    await flow.entry.call("7")
    await flow.wait_idle(timeout=5)
    assert sorted(seen) == ["0:tag:odd,7", "1:tag:odd,7", "2:tag:odd,7"]


async def test_derived_start_starts_consumers_first_and_stop_reverses(
    flows: Callable[[str], Flow],
) -> None:
    flow = flows(
        f"name: f\nfunc:\n"
        f"  - name: a\n    cmd: {PY} parity.py\n"
        f"  - name: b\n    cmd: {PY} who.py\n    sub: [{{name: a}}]\n"
        f"  - name: c\n    cmd: {PY} who.py\n    sub: [{{name: b}}]\n"
    )
    start = [(s.kind, s.pool) for s in flow.scenario("start")]
    assert start == [
        ("subscribe", "b"),
        ("subscribe", "c"),
        ("start_pool", "c"),
        ("start_pool", "b"),
        ("start_pool", "a"),
    ]
    assert [s.pool for s in flow.scenario("stop")] == ["a", "b", "c"]


async def test_named_scenario_runs_calls_scale_and_cast_in_order(
    flows: Callable[[str], Flow],
) -> None:
    flow = flows(
        f"name: f\nfunc:\n  - name: w\n    cmd: {PY} who.py\n"
        "scenarios:\n  poke:\n"
        "    - scale: {pool: w, size: 2}\n"
        "    - call: {pool: w, message: hi, all: true}\n"
        "    - cast: {pool: w, message: bye}\n"
        "    - wait_idle: null\n"
        "    - call: {pool: w, message: again}\n"
    )
    await flow.start()
    results = await flow.run_scenario("poke")
    assert results[:2] == ["0:hi", "1:hi"]
    assert results[2] in ("0:again", "1:again")
    assert flow.pools["w"].size == 2
    with pytest.raises(FlowError, match=r"no scenario 'nope' \(scenarios: poke, start, stop\)"):
        await flow.run_scenario("nope")


async def test_broken_pools_fail_visibly_while_a_healthy_pool_keeps_its_latency(
    flows: Callable[[str], Flow],
) -> None:
    # Given a flow with a missing command, /bin/false and a healthy echo
    flow = flows(
        "name: f\nfunc:\n"
        f"  - name: healthy\n    cmd: {PY} who.py\n"
        "  - name: missing\n    cmd: /no/such/program\n    max_restarts: 3\n    backoff: 20ms\n"
        "  - name: falls\n    cmd: /bin/false\n    max_restarts: 3\n    backoff: 20ms\n"
    )
    errors: list[str] = []
    flow.add_error_listener(lambda pool, text: errors.append(f"{pool}: {text}"))
    await flow.start()
    # When the healthy pool is called while the others spin through their budget
    latencies = []
    deadline = time.monotonic() + 5
    while len(flow.failed_pools()) < 2 and time.monotonic() < deadline:
        t0 = time.perf_counter()
        assert await flow.pools["healthy"].call("x") == "0:x"
        latencies.append(time.perf_counter() - t0)
        await asyncio.sleep(0.005)
    # Then both broken pools are failed, each with its reason, and the healthy one stayed fast
    assert sorted(p.name for p in flow.failed_pools()) == ["falls", "missing"]
    assert "No such file or directory" in flow.pools["missing"].reason
    assert "exited with status 1" in flow.pools["falls"].reason
    assert "exceed max_restarts 3" in flow.pools["falls"].reason
    assert flow.pools["healthy"].state is PoolState.RUNNING
    assert statistics.median(latencies) < 0.02
    # each restart step was reported once: 3 restarts + the failure, per pool
    assert sum(1 for e in errors if e.startswith("falls: ") and "; restart " in e) == 3
    assert sum(1 for e in errors if e.startswith("falls: ") and "pool failed" in e) == 1


async def test_wait_idle_times_out_with_the_busy_pools_named(flows: Callable[[str], Flow]) -> None:
    flow = flows(
        "name: f\nfunc:\n  - name: slow\n"
        "    cmd: sh -c 'read l; sleep 5'\n    stop_timeout: 200ms\n"
    )
    await flow.start()
    flow.entry.cast("x")
    with pytest.raises(FlowError, match=r"still busy after 0.2s: \['slow'\]"):
        await flow.wait_idle(timeout=0.2)
    await eventually(lambda: flow.pools["slow"].snapshot().running == 1)
