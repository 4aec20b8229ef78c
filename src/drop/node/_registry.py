"""The flows a node keeps: installed once, persisted, restored after a restart.

Each flow is one key of the ``flows`` bucket: its YAML text, the folder its
functions run in, and its desired state. A node that restarts (or was
killed) reads the bucket and brings every flow back to that state.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from drop.errors import Conflict, DropError, NotFound
from drop.flow import Flow, FlowState, LoadedFlow, load_flow_text
from drop.pool import Pool, PoolState
from drop.state import KeyValue

RUNNING = "running"
STOPPED = "stopped"


@dataclass(slots=True)
class Installed:
    """One installed flow.

    Attributes:
        loaded: the validated flow.
        text: its YAML, as installed.
        base_dir: where its functions run.
        desired: ``running`` or ``stopped``, as the user last asked.
        installed: unix time of the install.
        flow: the runtime, while running.
        error: why the last start failed, if it did.
    """

    loaded: LoadedFlow
    text: str
    base_dir: str
    desired: str
    installed: float
    flow: Flow | None = None
    error: str = ""

    @property
    def name(self) -> str:
        return self.loaded.spec.name

    @property
    def state(self) -> str:
        """``running``; ``degraded`` (running, but a pool failed or was
        stopped); ``stopped``; or ``failed`` (desired running, could not start)."""
        if self.flow is not None and self.flow.state is FlowState.RUNNING:
            if any(p.state is not PoolState.RUNNING for p in self.flow.pools.values()):
                return "degraded"
            return RUNNING
        return "failed" if self.desired == RUNNING and self.error else STOPPED

    def record(self) -> bytes:
        return json.dumps(
            {
                "yaml": self.text,
                "base_dir": self.base_dir,
                "desired": self.desired,
                "installed": self.installed,
            }
        ).encode()


class FlowRegistry:
    """Installed flows by name, and their pools by name (node-wide).

    Args:
        bucket: where flows are persisted.
        data_dir: the node's data folder (worker logs go under it).
        node: the node's name, for ``DROP_NODE``.
    """

    def __init__(self, bucket: KeyValue, data_dir: Path, node: str) -> None:
        self._bucket = bucket
        self._data_dir = data_dir
        self._node = node
        self._flows: dict[str, Installed] = {}

    # -- reading --------------------------------------------------------------

    def names(self) -> list[str]:
        """Installed flow names, sorted."""
        return sorted(self._flows)

    def get(self, name: str) -> Installed:
        """The installed flow ``name``.

        Raises:
            NotFound: naming the installed flows.
        """
        try:
            return self._flows[name]
        except KeyError:
            raise NotFound(
                f"no flow {name!r} installed (flows: {', '.join(self.names()) or 'none'})"
            ) from None

    def pools(self) -> dict[str, tuple[str, Pool]]:
        """Every pool of a running flow: name -> (flow, pool)."""
        return {
            pool_name: (inst.name, pool)
            for inst in self._flows.values()
            if inst.flow is not None
            for pool_name, pool in inst.flow.pools.items()
        }

    def pool(self, name: str) -> tuple[str, Pool]:
        """The running pool ``name`` and its flow.

        Raises:
            NotFound: naming the running pools.
        """
        pools = self.pools()
        try:
            return pools[name]
        except KeyError:
            raise NotFound(
                f"no running pool {name!r} (pools: {', '.join(sorted(pools)) or 'none'})"
            ) from None

    # -- changing -------------------------------------------------------------

    async def restore(self) -> list[str]:
        """Load every persisted flow and start those desired running.

        Returns:
            one line per flow that could not be restored, naming why.
        """
        problems = []
        for key in await self._bucket.keys():
            item = await self._bucket.get(key)
            if item is None:
                continue
            try:
                record = json.loads(item[0])
                inst = self._load(record["yaml"], record["base_dir"], record["desired"])
                inst.installed = float(record.get("installed", time.time()))
            except (DropError, ValueError, KeyError) as exc:
                problems.append(f"flow {key}: cannot restore: {exc}")
                continue
            self._flows[inst.name] = inst
            if inst.desired == RUNNING:
                try:
                    await self._start(inst)
                except DropError as exc:
                    problems.append(f"flow {inst.name}: cannot start: {exc}")
        return problems

    async def install(
        self, text: str, base_dir: str, *, replace: bool = False, source: str = "body"
    ) -> Installed:
        """Validate and persist a flow (stopped; ``start`` runs it).

        Raises:
            SpecError: the YAML is invalid (every problem, with lines).
            Conflict: the name is installed (without ``replace``), or one of
                its pools is a pool of another flow.
        """
        inst = self._load(text, base_dir, STOPPED, source)
        old = self._flows.get(inst.name)
        if old is not None and not replace:
            raise Conflict(
                f"flow {inst.name} is installed; remove it first or install with replace"
            )
        taken = {
            p.name: other.name
            for other in self._flows.values()
            if other.name != inst.name
            for p in other.loaded.spec.func
        }
        clashes = [
            f"{p.name} (flow {taken[p.name]})" for p in inst.loaded.spec.func if p.name in taken
        ]
        if clashes:
            raise Conflict(f"flow {inst.name}: pool names already used: {', '.join(clashes)}")
        if old is not None:
            inst.desired = old.desired
            await self._stop(old)
        await self._bucket.put(inst.name, inst.record())
        self._flows[inst.name] = inst
        if inst.desired == RUNNING:
            await self._start(inst)
        return inst

    async def start(self, name: str) -> Installed:
        """Start flow ``name`` and remember it as desired running."""
        inst = self.get(name)
        inst.desired = RUNNING
        await self._bucket.put(name, inst.record())
        await self._start(inst)
        return inst

    async def stop(self, name: str) -> Installed:
        """Stop flow ``name`` and remember it as desired stopped."""
        inst = self.get(name)
        inst.desired = STOPPED
        await self._bucket.put(name, inst.record())
        await self._stop(inst)
        return inst

    async def remove(self, name: str) -> None:
        """Stop flow ``name`` and forget it."""
        inst = self.get(name)
        await self._stop(inst)
        await self._bucket.delete(name)
        del self._flows[name]

    async def shutdown(self) -> None:
        """Stop every running flow without changing its desired state."""
        for inst in list(self._flows.values()):
            await self._stop(inst)

    def _load(self, text: str, base_dir: str, desired: str, source: str = "body") -> Installed:
        loaded = load_flow_text(text, source=source, base_dir=Path(base_dir))
        return Installed(loaded, text, base_dir, desired, time.time())

    async def _start(self, inst: Installed) -> None:
        if inst.flow is not None and inst.flow.state is FlowState.RUNNING:
            # running, but a pool may have failed or been stopped by a
            # scenario: start means start those again (a fresh restart budget)
            for pool in inst.flow.pools.values():
                if pool.state in (PoolState.FAILED, PoolState.STOPPED):
                    await pool.start()
            return
        inst.error = ""
        flow = Flow(inst.loaded, data_dir=self._data_dir, node=self._node)
        try:
            await flow.start()
        except DropError as exc:
            inst.error = str(exc)
            raise
        inst.flow = flow

    async def _stop(self, inst: Installed) -> None:
        flow, inst.flow = inst.flow, None
        if flow is not None:
            await flow.stop()
