"""Nothing a function started outlives its owner, even a ``kill -9``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

DROP = str(Path(sys.executable).parent / "drop")


def _with_marker(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_a_kill_9_of_drop_run_takes_the_workers_own_children_with_it(tmp_path: Path) -> None:
    # Given a run whose worker started a child of its own (a grandchild of drop)
    marker = f"drop-guard-test-{os.getpid()}"
    (tmp_path / "spawn.sh").write_text(
        f'exec -a {marker} sleep 1000 &\nwhile read l; do echo "$l"; done\n'
    )
    flow = tmp_path / "spawn.yaml"
    flow.write_text("name: spawn\nfunc:\n  - name: s\n    cmd: bash spawn.sh\n")
    env = dict(os.environ, DROP_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.Popen(
        [DROP, "run", str(flow), "--input", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 10
        while not _with_marker(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _with_marker(marker), "the worker's child never started"
        # When drop run is killed outright
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        # Then the guardian kills the child too
        deadline = time.monotonic() + 5
        while _with_marker(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _with_marker(marker) == []
    finally:
        for leftover in _with_marker(marker):
            leftover.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        assert proc.stdin is not None
        proc.stdin.close()
