"""The one place where a pool's spec becomes the pool runtime's config."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from drop.errors import SpecError
from drop.flow._spec import FlowSpec, PoolSpec
from drop.function import Mode, WorkerConfig
from drop.pool import PoolConfig, Restart


def pool_config(
    flow: FlowSpec,
    spec: PoolSpec,
    *,
    base_dir: Path,
    node: str,
    environ: Mapping[str, str] | None = None,
) -> PoolConfig:
    """Build the runtime config of ``spec``, a pool of ``flow``.

    The function runs in ``dir`` (relative to the flow file) or the flow
    file's folder, with the node's environment, the pool's ``env`` and
    ``DROP_FLOW``, ``DROP_POOL`` and ``DROP_NODE``.

    Raises:
        SpecError: ``cmd`` cannot be split, or ``dir`` does not exist.
    """
    cwd = (base_dir / spec.dir).resolve() if spec.dir else base_dir
    if not cwd.is_dir():
        raise SpecError(f"pool {spec.name}: dir {str(cwd)!r} is not a folder")
    if isinstance(spec.cmd, list):
        argv = tuple(spec.cmd)
    elif spec.shell:
        argv = (spec.cmd,)
    else:
        try:
            argv = tuple(shlex.split(spec.cmd))
        except ValueError as exc:
            raise SpecError(f"pool {spec.name}: cmd {spec.cmd!r} cannot be split: {exc}") from None
    env = dict(os.environ if environ is None else environ)
    env.update(spec.env)
    env.update(DROP_FLOW=flow.name, DROP_POOL=spec.name, DROP_NODE=node)
    restart = spec.restart or (Restart.ON_FAILURE if spec.mode is Mode.STREAM else Restart.ALWAYS)
    return PoolConfig(
        name=spec.name,
        worker=WorkerConfig(
            argv=argv,
            cwd=str(cwd),
            env=env,
            mode=spec.mode,
            concurrency=spec.concurrency if spec.mode is Mode.ASYNC else 1,
            pipeline=spec.pipeline if spec.mode is Mode.SYNC else 1,
            max_line=spec.max_line,
            memory_mb=spec.memory,
            stop_timeout=spec.stop_timeout,
            shell=spec.shell and not isinstance(spec.cmd, list),
        ),
        size_min=spec.size.min,
        size_max=spec.size.max,
        strategy=spec.strategy,
        key=re.compile(spec.key) if spec.key else None,
        timeout=spec.timeout,
        queue=spec.queue,
        idle_timeout=spec.idle_timeout,
        restart=restart,
        max_restarts=spec.max_restarts,
        window=spec.window,
        backoff=spec.backoff,
        backoff_max=spec.backoff_max,
        cache_ttl=spec.cache.ttl if spec.cache else None,
        cache_size=spec.cache.size if spec.cache else 10_000,
        retention=spec.retention,
    )
