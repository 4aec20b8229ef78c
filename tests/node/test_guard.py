"""Nothing a function started outlives its owner, even a ``kill -9``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import processes_with, wait_until

DROP = str(Path(sys.executable).parent / "drop")


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
        assert wait_until(lambda: processes_with(marker), 10), "the worker's child never started"
        # When drop run is killed outright
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        # Then the guardian kills the child too
        assert wait_until(lambda: not processes_with(marker), 5)
    finally:
        for leftover in processes_with(marker):
            leftover.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        assert proc.stdin is not None
        proc.stdin.close()
