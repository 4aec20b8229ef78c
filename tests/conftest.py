"""Shared helpers: real worker scripts, a pool factory that always cleans up,
and ``eventually`` for waiting on a condition instead of sleeping."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import psutil
import pytest

from drop.function import DEFAULT_MAX_LINE, Mode, WorkerConfig
from drop.pool import Pool, PoolConfig, PoolState

FIXTURES = Path(__file__).parent / "fixtures"
#: ``python3`` on the workers' PATH is this interpreter (no pyenv shim, fast start).
PYTHON_DIR = str(Path(sys.executable).parent)


def fixture(name: str) -> str:
    """Absolute path of a helper script in tests/fixtures."""
    return str(FIXTURES / name)


def worker_env(pool: str, **extra: str) -> dict[str, str]:
    """The whole environment a pool's workers get, as a caller would build it."""
    env = dict(os.environ)
    env["PATH"] = PYTHON_DIR + os.pathsep + env.get("PATH", "")
    env["DROP_POOL"] = pool
    env.update(extra)
    return env


async def eventually(pred: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    """Poll ``pred`` until it returns something truthy (and return that), or
    fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:g}s")
        await asyncio.sleep(interval)


class MakePool(Protocol):
    def __call__(
        self,
        name: str,
        argv: tuple[str, ...] | list[str],
        *,
        shell: bool = ...,
        mode: Mode = ...,
        concurrency: int = ...,
        max_line: int = ...,
        memory_mb: int | None = ...,
        stop_timeout: float = ...,
        cwd: str | Path | None = ...,
        env: dict[str, str] | None = ...,
        log_dir: Path | None = ...,
        start: bool = ...,
        **pool_settings: Any,
    ) -> Awaitable[Pool]: ...


@pytest.fixture
async def make_pool(tmp_path: Path) -> AsyncIterator[MakePool]:
    """Build (and by default start) a pool of real worker processes; every pool
    made here is stopped at teardown, whatever the test did."""
    pools: list[Pool] = []

    async def make(
        name: str,
        argv: tuple[str, ...] | list[str],
        *,
        shell: bool = False,
        mode: Mode = Mode.SYNC,
        concurrency: int = 1,
        max_line: int = DEFAULT_MAX_LINE,
        memory_mb: int | None = None,
        stop_timeout: float = 2.0,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
        start: bool = True,
        **pool_settings: Any,
    ) -> Pool:
        worker = WorkerConfig(
            argv=tuple(argv),
            cwd=str(cwd if cwd is not None else tmp_path),
            env=env if env is not None else worker_env(name),
            mode=mode,
            concurrency=concurrency,
            max_line=max_line,
            memory_mb=memory_mb,
            stop_timeout=stop_timeout,
            shell=shell,
        )
        pool = Pool(PoolConfig(name=name, worker=worker, **pool_settings), log_dir=log_dir)
        pools.append(pool)
        if start:
            await pool.start()
        return pool

    yield make
    for pool in pools:
        if pool.state not in (PoolState.STOPPED, PoolState.PENDING):
            await pool.stop(timeout=2.0)


def processes_with(marker: str) -> list[psutil.Process]:
    """Live processes whose command line holds ``marker`` (tests give the
    processes they start a unique one, e.g. with ``exec -a``)."""
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if marker in " ".join(p.info["cmdline"] or []) and p.is_running()
    ]


def wait_until(pred: Callable[[], Any], timeout: float) -> Any:
    """Poll ``pred`` (synchronously) until it is truthy or ``timeout`` passes;
    return its last value."""
    deadline = time.monotonic() + timeout
    value = pred()
    while not value and time.monotonic() < deadline:
        time.sleep(0.05)
        value = pred()
    return value
