"""A running flow: its pools, the subscriptions between them, its scenarios.

``start`` and ``stop`` are scenarios like any other. When the file does not
write them they are derived from ``func``: every subscription is wired, then
pools start consumers first (a pool starts after the pools that subscribe to
it, so no early line finds its subscriber missing); ``stop`` stops them in
the reverse order, sources first, so each pool's last lines still reach a
running subscriber.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable
from pathlib import Path

from drop.bus import Subscription
from drop.errors import DropError, FlowError
from drop.flow._build import pool_config
from drop.flow._loader import LoadedFlow
from drop.flow._spec import Step
from drop.pool import Pool, PoolState

#: Called with ``(pool, line)`` for each output line of an output pool.
FlowOutputListener = Callable[[str, str], None]


class FlowState(enum.StrEnum):
    """Where a flow is in its life."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"


class Flow:
    """The runtime of one flow.

    Args:
        loaded: the validated flow file.
        data_dir: pools write their stderr logs to ``DATA_DIR/logs/FLOW/POOL.log``.
        node: this node's name, passed to functions as ``DROP_NODE``.
    """

    def __init__(self, loaded: LoadedFlow, *, data_dir: Path, node: str = "local") -> None:
        self.spec = loaded.spec
        self.name = loaded.spec.name
        self.source = loaded.source
        self.state = FlowState.STOPPED
        self.log_dir = data_dir / "logs" / self.name
        self.pools: dict[str, Pool] = {
            spec.name: Pool(
                pool_config(self.spec, spec, base_dir=loaded.base_dir, node=node),
                log_dir=self.log_dir,
                node=node,
            )
            for spec in self.spec.func
        }
        self._subs: dict[tuple[str, str], Subscription] = {}

    # -- scenarios --------------------------------------------------------------

    def scenario(self, name: str) -> list[Step]:
        """The steps of scenario ``name`` (``start``/``stop`` derived when absent).

        Raises:
            FlowError: no such scenario.
        """
        steps = self.spec.scenarios.get(name)
        if steps is not None:
            return steps
        if name == "start":
            subs = [
                Step(kind="subscribe", pool=p.name, to=s.name, filter=s.filter, type=s.type)
                for p in self.spec.func
                for s in p.sub
            ]
            return subs + [Step(kind="start_pool", pool=n) for n in self._start_order()]
        if name == "stop":
            return [Step(kind="stop_pool", pool=n) for n in reversed(self._start_order())]
        known = sorted({"start", "stop", *self.spec.scenarios})
        raise FlowError(f"flow {self.name}: no scenario {name!r} (scenarios: {', '.join(known)})")

    def _start_order(self) -> list[str]:
        remaining = [p.name for p in self.spec.func]
        order: list[str] = []
        while remaining:
            ready = next(
                (n for n in remaining if all(s in order for s in self.spec.subscribers_of(n))),
                remaining[0],  # a cycle: fall back to declared order
            )
            order.append(ready)
            remaining.remove(ready)
        return order

    async def start(self) -> None:
        """Run the ``start`` scenario."""
        self.state = FlowState.STARTING
        try:
            await self.run_scenario("start")
        except BaseException:
            await self.stop()
            raise
        self.state = FlowState.RUNNING

    async def stop(self) -> None:
        """Run the ``stop`` scenario, then stop whatever it left running."""
        self.state = FlowState.STOPPING
        try:
            await self.run_scenario("stop")
        finally:
            await asyncio.gather(*(p.stop() for p in self.pools.values()))
            self.state = FlowState.STOPPED

    async def run_scenario(
        self, name: str, on_results: Callable[[Step, list[str]], None] | None = None
    ) -> list[str]:
        """Run the steps of scenario ``name`` in order.

        Args:
            name: the scenario.
            on_results: called after each step with the step and its call results.

        Returns:
            the results of its ``call`` steps, in order.

        Raises:
            FlowError: naming the scenario, the step and what went wrong.
        """
        results: list[str] = []
        for i, step in enumerate(self.scenario(name)):
            step_results: list[str] = []
            try:
                await self._run_step(step, step_results)
            except DropError as exc:
                raise FlowError(
                    f"flow {self.name}: scenario {name} step {i + 1} ({step.kind}): {exc}"
                ) from exc
            results.extend(step_results)
            if on_results is not None:
                on_results(step, step_results)
        return results

    async def _run_step(self, step: Step, results: list[str]) -> None:
        kind = step.kind
        if kind == "wait_idle":
            await self.wait_idle(step.pools or ([step.pool] if step.pool else None), step.timeout)
            return
        assert step.pool is not None
        pool = self.pools[step.pool]
        if kind == "start_pool":
            if pool.state not in (PoolState.RUNNING, PoolState.DRAINING):
                await pool.start()
        elif kind == "stop_pool":
            await pool.stop()
        elif kind == "subscribe":
            assert step.to is not None
            self.subscribe(step.pool, step.to, step.filter, step.type in ("all", "dall"))
        elif kind == "unsubscribe":
            assert step.to is not None
            self.unsubscribe(step.pool, step.to)
        elif kind == "call":
            assert step.message is not None
            if step.all:
                results.extend(await pool.call_all(step.message))
            else:
                results.append(await pool.call(step.message, step.timeout))
        elif kind == "cast":
            assert step.message is not None
            pool.cast(step.message)
        elif kind == "scale":
            assert step.size is not None
            await pool.scale(step.size)

    # -- wiring -------------------------------------------------------------------

    def subscribe(
        self, pool: str, to: str, filter: str | None = None, to_all: bool = False
    ) -> None:
        """Let ``pool`` receive ``to``'s output lines that pass ``filter``."""
        self.unsubscribe(pool, to)
        sub = Subscription(to, self.pools[pool], filter, to_all)
        self.pools[to].add_listener(sub)
        self._subs[(pool, to)] = sub

    def unsubscribe(self, pool: str, to: str) -> None:
        """Undo ``subscribe``; unknown pairs are ignored."""
        sub = self._subs.pop((pool, to), None)
        if sub is not None:
            self.pools[to].remove_listener(sub)

    def add_output_listener(self, listener: FlowOutputListener) -> None:
        """Call ``listener(pool, line)`` for each line of the flow's output pools."""
        for name in self.spec.output_pools:
            self.pools[name].add_listener(lambda line, _n=name: listener(_n, line))

    def add_error_listener(self, listener: Callable[[str, str], None]) -> None:
        """Call ``listener(pool, text)`` for each error event of any pool."""
        for pool in self.pools.values():
            pool.add_error_listener(listener)

    # -- looking in ---------------------------------------------------------------

    @property
    def entry(self) -> Pool:
        """The pool that receives the flow's input."""
        return self.pools[self.spec.entry_pool]

    def idle(self, names: list[str] | None = None) -> bool:
        """True when the named pools (default: all) have nothing queued or in flight."""
        pools = self.pools.values() if names is None else [self.pools[n] for n in names]
        return all(p.idle for p in pools)

    async def wait_idle(self, names: list[str] | None = None, timeout: float | None = None) -> None:
        """Wait until ``idle(names)``.

        Lines between local pools are delivered inside the sender's callback,
        so one pass that finds every pool idle means nothing is in transit.

        Raises:
            FlowError: still busy after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while not self.idle(names):
            if deadline is not None and time.monotonic() > deadline:
                busy = [n for n, p in self.pools.items() if not p.idle]
                raise FlowError(f"flow {self.name}: still busy after {timeout:g}s: {busy}")
            await asyncio.sleep(delay)
            delay = min(0.02, delay * 2)

    def crowded(self) -> bool:
        """True when some pool's queue is over half full: a feeder should wait."""
        return any(p.queued * 2 > p.config.queue for p in self.pools.values())

    def failed_pools(self) -> list[Pool]:
        """Pools that spent their restart budget."""
        return [p for p in self.pools.values() if p.state is PoolState.FAILED]
