"""``drop up`` and the remote commands as a user runs them: the real ``drop``
binary, a real node on a free loopback port, exit codes and processes.

Nothing here touches the real home: ``HOME`` and ``DROP_CREDENTIALS`` point
into the test's tmp folder, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
DROP = str(Path(sys.executable).parent / "drop")
PYEX = ROOT / "examples" / "pyex" / "pyex.yaml"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def user_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a user whose home is ``tmp/home``: no DROP_* settings
    from the outside, no proxy for loopback traffic."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DROP_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env["HOME"] = str(tmp / "home")
    env["DROP_CREDENTIALS"] = str(tmp / "home" / "creds" / "credentials.json")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.pop("XDG_DATA_HOME", None)
    env.pop("XDG_CONFIG_HOME", None)
    env.update(extra)
    return env


def drop(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DROP, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.05)


def gone(proc: psutil.Process) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as exited)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def cmdline(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(proc.cmdline())
    return ""


class Up:
    """One ``drop up`` running in the background; its stderr goes to a file."""

    def __init__(self, data_dir: Path, port: int, env: dict[str, str], log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._stderr = log.open("ab")
        self.proc = subprocess.Popen(
            [DROP, "up", "--data-dir", str(data_dir), "--http", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=env,
        )
        self.ps = psutil.Process(self.proc.pid)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2, trust_env=False) as http:
            while True:
                code = self.proc.poll()
                assert code is None, f"drop up exited with {code}:\n{self.stderr()}"
                with contextlib.suppress(httpx.TransportError):
                    if http.get("/readyz").status_code == 200:
                        return
                assert time.monotonic() < deadline, f"not ready in {timeout}s:\n{self.stderr()}"
                time.sleep(0.05)

    def descendants(self) -> list[psutil.Process]:
        return self.ps.children(recursive=True)

    def close(self) -> None:
        """Stop this node and what it started, whatever state it is in."""
        left = [] if self.proc.poll() is not None else self.descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for child in left:
            with contextlib.suppress(psutil.Error):
                if not gone(child):
                    child.kill()
        self._stderr.close()


@contextlib.contextmanager
def running(data_dir: Path, port: int, env: dict[str, str], log: Path) -> Iterator[Up]:
    up = Up(data_dir, port, env, log)
    try:
        up.wait_ready()
        yield up
    finally:
        up.close()


def flat(text: str) -> str:
    """``text`` on one line: the CLI's console wraps long messages at 80 columns."""
    return " ".join(text.split())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


# -- a node's life --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_node_keeps_its_flows_across_kill_and_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    env = user_env(tmp_path)
    url = f"http://127.0.0.1:{port}"
    creds = Path(env["DROP_CREDENTIALS"])

    # first start: the admin secret is created and shown once
    with running(data, port, env, tmp_path / "up1.log") as up:
        secret_file = data / "secrets" / "initial-admin"
        secret = secret_file.read_text().strip()
        assert mode(secret_file) == 0o600
        assert len(secret) >= 20
        assert up.stderr().count(secret) == 1

        login = drop("--node", url, "login", "--secret-file", str(secret_file), env=env)
        assert login.returncode == 0, login.stderr
        assert f"logged in to {url} as admin (admin)" in login.stderr
        assert secret not in login.stdout + login.stderr
        assert mode(creds) == 0o600
        token = json.loads(creds.read_text())[url]["token"]

        install = drop("--node", url, "flow", "install", str(PYEX), env=env)
        assert (install.returncode, install.stdout) == (0, "flow pyex installed, running\n"), (
            install.stderr
        )
        call = drop("--node", url, "call", "pyex", "hello", env=env)
        assert (call.returncode, call.stdout) == (0, "hello\n"), call.stderr + up.stderr()
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as http:
            r = http.post(
                "/v1/flows/pyex/call",
                content="hello",
                headers={"Authorization": f"Bearer {token}"},
            )
        assert (r.status_code, r.text) == (200, "hello")

        # kill -9: nats-server and the workers go with the node
        children = up.descendants()
        names = [cmdline(p) for p in children]
        assert any("nats-server" in n and str(data) in n for n in names), names
        assert any("pyex.py" in n for n in names), names
        up.proc.kill()
        assert up.proc.wait(5) == -signal.SIGKILL
        eventually(
            lambda: all(gone(p) for p in children), 8, f"children of the killed node: {names}"
        )

        def orphans() -> list[str]:
            lines = ((p, cmdline(p)) for p in psutil.process_iter())
            return [
                line
                for p, line in lines
                if str(data) in line
                and ("nats-server" in line or "pyex.py" in line)
                and not gone(p)
            ]

        eventually(lambda: not orphans(), 8, "processes naming the data dir")

    # second start on the same data dir and port: the flow comes back running
    with running(data, port, env, tmp_path / "up2.log") as up:
        assert secret not in up.stderr()  # shown once, on the first start only
        call = drop("--node", url, "call", "pyex", "again", env=env)
        assert (call.returncode, call.stdout) == (0, "again\n"), call.stderr + up.stderr()
        stop = drop("--node", url, "flow", "stop", "pyex", env=env)
        assert (stop.returncode, stop.stdout) == (0, "flow pyex stopped\n"), stop.stderr

        # SIGTERM: a clean exit within 10 s that leaves no child behind
        children = up.descendants()
        assert any("nats-server" in cmdline(p) for p in children), [cmdline(p) for p in children]
        up.proc.send_signal(signal.SIGTERM)
        assert up.proc.wait(10) == 0, up.stderr()
        assert [cmdline(p) for p in children if not gone(p)] == []

    # third start: the flow stays stopped, as it was left
    with running(data, port, env, tmp_path / "up3.log"):
        call = drop("--node", url, "call", "pyex", "still", env=env)
        assert (call.returncode, call.stdout) == (1, ""), call.stderr
        assert "flow pyex is stopped" in flat(call.stderr), call.stderr
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as http:
            r = http.get("/v1/flows/pyex", headers={"Authorization": f"Bearer {token}"})
        assert (r.json()["state"], r.json()["desired"]) == ("stopped", "stopped")


# -- settings, refusals and exit statuses -------------------------------------------------


def test_print_config_names_where_each_setting_came_from(tmp_path: Path) -> None:
    env = user_env(tmp_path, DROP_HTTP="127.0.0.1:9999")

    from_env = drop("up", "--print-config", env=env)
    assert from_env.returncode == 0, from_env.stderr
    assert json.loads(from_env.stdout)["http"] == {"value": "127.0.0.1:9999", "from": "env"}

    from_flag = drop("up", "--print-config", "--http", "127.0.0.1:7777", env=env)
    assert from_flag.returncode == 0, from_flag.stderr
    config = json.loads(from_flag.stdout)
    assert config["http"] == {"value": "127.0.0.1:7777", "from": "flag"}
    assert config["insecure_bind"] == {"value": False, "from": "default"}
    assert not (tmp_path / "home" / ".local").exists()  # printing creates nothing


def test_a_non_loopback_bind_without_tls_exits_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = drop(
        "up", "--data-dir", str(data), "--http", f"0.0.0.0:{free_port()}", env=user_env(tmp_path)
    )
    assert result.returncode == 2
    assert "TLS" in result.stderr
    assert "0.0.0.0" in result.stderr
    assert not data.exists()  # refused before anything started


def test_a_bad_http_setting_exits_2(tmp_path: Path) -> None:
    result = drop("up", "--http", "nowhere", env=user_env(tmp_path))
    assert result.returncode == 2
    assert "HOST:PORT" in result.stderr


def test_no_node_at_the_url_exits_3(tmp_path: Path) -> None:
    result = drop("--node", "http://127.0.0.1:1", "node", "info", env=user_env(tmp_path))
    assert (result.returncode, result.stdout) == (3, "")
    assert "no node answers at http://127.0.0.1:1" in flat(result.stderr)


def test_without_login_a_remote_command_exits_4(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(tmp_path / "data", port, env, tmp_path / "up.log"):
        result = drop("--node", url, "flow", "list", env=env)
        assert (result.returncode, result.stdout) == (4, "")
        assert "log in: drop login --secret-file FILE" in flat(result.stderr)
        bad = tmp_path / "bad-secret"
        bad.write_text("not-the-secret\n")
        login = drop("--node", url, "login", "--secret-file", str(bad), env=env)
        assert login.returncode == 4
        assert not Path(env["DROP_CREDENTIALS"]).exists()


def test_a_taken_port_exits_1_and_leaves_nothing_running(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = drop(
            "up", "--data-dir", str(data), "--http", f"127.0.0.1:{port}", env=user_env(tmp_path)
        )
    assert result.returncode == 1
    assert "Address already in use" in result.stderr
    assert not [
        cmdline(p) for p in psutil.process_iter() if str(data) in cmdline(p) and not gone(p)
    ]


def test_a_second_node_on_a_data_dir_in_use_exits_1(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    data = tmp_path / "data"
    with running(data, free_port(), env, tmp_path / "up.log") as first:
        second = drop("up", "--data-dir", str(data), "--http", f"127.0.0.1:{free_port()}", env=env)
        assert second.returncode == 1
        assert "in use by another nats-server" in flat(second.stderr)
        # the first node is untouched
        with httpx.Client(base_url=first.url, timeout=5, trust_env=False) as http:
            assert http.get("/readyz").status_code == 200
