"""Enforcing a worker's ``memory`` limit: a cgroup where the machine lets us
make one, else an address-space limit.

A cgroup limits what the worker really uses (resident memory, its children
included) and the kernel's OOM killer stops it when it goes over; the kill
is then reported as "over its memory limit". ``RLIMIT_AS`` is the portable
fallback: it limits address space, per process, and the runtime's allocation
fails (Python raises ``MemoryError``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
from pathlib import Path

#: cgroup v2 (unified) root, and v1's memory controller mount.
_V2 = Path("/sys/fs/cgroup")
_V1 = Path("/sys/fs/cgroup/memory")
_counter = itertools.count(1)


def _base() -> tuple[Path, str] | None:
    """Our cgroup parent and its version, created on first use; ``None`` if
    this machine does not let us."""
    candidates = []
    if (_V2 / "cgroup.controllers").exists():
        candidates.append((_V2 / "drop", "v2"))
    if (_V1 / "memory.limit_in_bytes").exists():
        candidates.append((_V1 / "drop", "v1"))
    for path, version in candidates:
        try:
            path.mkdir(exist_ok=True)
            if version == "v2":
                # children of drop/ need the memory controller handed down
                (_V2 / "cgroup.subtree_control").write_text("+memory")
                (path / "cgroup.subtree_control").write_text("+memory")
            return path, version
        except OSError:
            continue
    return None


class MemoryLimit:
    """The memory limit of one worker process.

    Args:
        name: used in the cgroup's name (``POOL-INDEX``).
        mib: the limit in MiB.
    """

    def __init__(self, name: str, mib: int) -> None:
        self.mib = mib
        self.bytes = mib * 1024 * 1024
        self.kind = "rlimit"
        self._cgroup: Path | None = None
        found = _base()
        if found is None:
            return
        base, version = found
        path = base / f"{name.replace('/', '-')}-{os.getpid()}-{next(_counter)}"
        try:
            path.mkdir()
            limit_file = "memory.max" if version == "v2" else "memory.limit_in_bytes"
            (path / limit_file).write_text(str(self.bytes))
            if version == "v2":
                with contextlib.suppress(OSError):
                    (path / "memory.swap.max").write_text("0")
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return
        self._cgroup = path
        self.kind = f"cgroup {version}"

    def apply_in_child(self) -> None:
        """In the forked child, before exec: join the cgroup or set the rlimit."""
        if self._cgroup is not None:
            try:
                (self._cgroup / "cgroup.procs").write_text(str(os.getpid()))
                return
            except OSError:
                pass
        resource.setrlimit(resource.RLIMIT_AS, (self.bytes, self.bytes))

    def exceeded(self) -> bool:
        """After the worker exited: did the kernel stop it for its memory?"""
        if self._cgroup is None:
            return False
        try:
            events = self._cgroup / "memory.events"
            if events.exists():
                for line in events.read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
                return False
            for line in (self._cgroup / "memory.oom_control").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        except (OSError, ValueError):
            pass
        return False

    def close(self) -> None:
        """Remove the cgroup (its processes are gone by now)."""
        if self._cgroup is not None:
            with contextlib.suppress(OSError):
                self._cgroup.rmdir()
            self._cgroup = None
