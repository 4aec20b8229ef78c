"""``drop run`` as a user runs it: the real binary, real files, exit codes."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import processes_with, wait_until

ROOT = Path(__file__).resolve().parents[2]
DROP = str(Path(sys.executable).parent / "drop")
SSHGUARD = ROOT / "examples" / "sshguard" / "flow.yaml"
SAMPLE = ROOT / "examples" / "data" / "OpenSSH_2k.log"
RULE = re.compile(r"authentication failure;.*\brhost=(\S+)")


def drop(*args: str, stdin: bytes | None = None, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DROP_DATA_DIR=str(tmp / "data"))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    proc = subprocess.run(
        [DROP, *args], input=stdin, capture_output=True, timeout=120, env=env, check=False
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


def expected_hosts(lines: list[str], threshold: int = 5) -> str:
    """The sshguard rule computed in plain Python, independently of DROP."""
    counts: Counter[str] = Counter()
    for line in lines:
        m = RULE.search(line)
        if m:
            counts[m.group(1)] += 1
    ranked = sorted(
        ((h, n) for h, n in counts.items() if n >= threshold), key=lambda x: (-x[1], x[0])
    )
    return "".join(f"{h} {n}\n" for h, n in ranked)


def test_sshguard_on_the_bundled_log_matches_a_plain_python_computation(tmp_path: Path) -> None:
    result = drop("run", str(SSHGUARD), "--input", str(SAMPLE), tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = expected_hosts(SAMPLE.read_text(encoding="utf-8").splitlines())
    assert result.stdout == expected
    assert expected.startswith("183.62.140.253 287\n")  # the sample's top host, counted by hand


@pytest.mark.parametrize("threshold", [1, 10, 1000])
def test_sshguard_threshold_is_settable(tmp_path: Path, threshold: int) -> None:
    result = drop(
        "run",
        str(SSHGUARD),
        "--input",
        str(SAMPLE),
        "--set",
        f"threshold={threshold}",
        tmp=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    assert result.stdout == expected_hosts(lines, threshold)


def test_sshguard_holds_for_every_sshd_log_format(tmp_path: Path) -> None:
    # Given a generated log mixing both pam_unix formats with near misses
    rng = random.Random(7)
    hosts = [f"10.0.{i}.{j}" for i in range(3) for j in range(4)] + ["bad.example.org", "h-1"]
    forms = [
        "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0 "
        "euid=0 tty=NODEVssh ruser= rhost={h} ",
        "Dec 10 06:55:48 LabSZ sshd[24200]: pam_unix(sshd:auth): authentication failure; "
        "logname= uid=0 euid=0 tty=ssh ruser= rhost={h}  user=root",
        "Dec 10 06:55:48 LabSZ sshd[24200]: pam_unix(sshd:auth): authentication failure; "
        "logname= uid=0 euid=0 tty=ssh ruser= rhost={h}",
        "x sshd(pam_unix)[1]: authentication failure;rhost={h}",
    ]
    misses = [
        "Dec 10 sshd[1]: PAM 5 more authentication failures; logname= uid=0 euid=0 rhost={h}",
        "Dec 10 sshd[1]: Failed password for root from {h} port 22 ssh2",
        "Dec 10 sshd[1]: authentication failure; xrhost={h}",
        "Dec 10 sshd[1]: authentication failure; rhost= user=root",
    ]
    lines = [
        rng.choice(forms if rng.random() < 0.7 else misses).format(h=rng.choice(hosts))
        for _ in range(3000)
    ]
    log = tmp_path / "auth.log"
    log.write_text("\n".join(lines) + "\n")
    # When sshguard runs over it
    result = drop("run", str(SSHGUARD), "--input", str(log), tmp=tmp_path)
    # Then it agrees with the rule computed in Python
    assert result.returncode == 0, result.stderr
    expected = expected_hosts(lines)
    assert result.stdout == expected
    assert len(expected.splitlines()) == len(hosts)  # every host is over 5 with 3000 lines


def test_pyex_echoes_stdin_with_the_original_function(tmp_path: Path) -> None:
    result = drop(
        "run",
        str(ROOT / "examples" / "pyex" / "pyex.yaml"),
        "--input",
        "-",
        stdin=b"hello\nworld\n",
        tmp=tmp_path,
    )
    assert (result.returncode, result.stdout) == (0, "hello\nworld\n")
    # the function's stderr went to the pool's log, not to the terminal
    log = (tmp_path / "data" / "logs" / "pyex" / "pyex.log").read_text()
    assert "get message: hello" in log and "message send: world" in log


def test_a_broken_flow_file_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    flow = tmp_path / "bad.yaml"
    flow.write_text("name: x\nfunc:\n  - name: a\n    cmd: cat\n    sub: [{name: ghost}]\n")
    result = drop("run", str(flow), "--input", "-", stdin=b"", tmp=tmp_path)
    assert result.returncode == 2
    assert f"{flow}:5: func[0] (a).sub[0].name: unknown pool 'ghost' (pools: a)" in result.stderr
    validate = drop("flow", "validate", str(flow), tmp=tmp_path)
    assert validate.returncode == 2 and "unknown pool 'ghost'" in validate.stderr


def test_bad_input_lines_fail_alone_and_the_rest_is_processed(tmp_path: Path) -> None:
    # Given an upper-casing flow with a 1 KiB line limit
    (tmp_path / "up.py").write_text(
        "import sys\nfor l in sys.stdin: sys.stdout.write(l.upper()); sys.stdout.flush()\n"
    )
    flow = tmp_path / "up.yaml"
    flow.write_text(
        f"name: up\nfunc:\n  - name: up\n    cmd: {sys.executable} up.py\n    max_line: 1KiB\n"
    )
    data = b"a\n" + b"caf\xe9\n" + b"x" * 5000 + b"\nb\n"
    # When it runs over a line of bad UTF-8 and an over-long line
    result = drop("run", str(flow), "--input", "-", stdin=data, tmp=tmp_path)
    # Then the good lines are answered, the bad ones are named, and the exit status says so
    assert result.stdout == "A\nB\n"
    assert result.returncode == 1
    assert "input line 2: not UTF-8 at byte 3" in result.stderr
    assert "input line 3: pool up: message of 5000 bytes is over max_line (1024)" in result.stderr
    assert "2 of 4 input lines failed" in result.stderr


def test_a_crashing_function_fails_the_run_with_its_exit_status(tmp_path: Path) -> None:
    flow = tmp_path / "boom.yaml"
    flow.write_text(
        "name: boom\nfunc:\n  - name: boom\n    cmd: sh -c 'read l; echo kaput >&2; exit 3'\n"
        "    max_restarts: 1\n"
    )
    result = drop("run", str(flow), "--input", "-", stdin=b"one\n", tmp=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "input line 1: worker boom/0 exited with status 3; last stderr: kaput" in result.stderr


def test_unknown_set_name_and_missing_input_exit_2(tmp_path: Path) -> None:
    result = drop("run", str(SSHGUARD), "--input", str(SAMPLE), "--set", "treshold=3", tmp=tmp_path)
    assert result.returncode == 2
    assert "--set treshold: not a var of this flow (declared: threshold)" in result.stderr
    missing = drop("run", str(SSHGUARD), "--input", str(tmp_path / "none.log"), tmp=tmp_path)
    assert missing.returncode == 2 and "cannot read input" in missing.stderr


def test_a_slow_pool_downstream_slows_the_input_and_loses_nothing(tmp_path: Path) -> None:
    # Given a fast pool feeding a slow one whose queue holds only 50 lines
    (tmp_path / "slow.py").write_text(
        "import sys, time\n"
        "for line in sys.stdin:\n"
        "    time.sleep(0.0002)\n"
        "    sys.stdout.write('slow:' + line)\n"
        "    sys.stdout.flush()\n"
    )
    flow = tmp_path / "slow.yaml"
    flow.write_text(
        "name: slowdown\nfunc:\n  - name: fast\n    cmd: cat\n"
        f"  - name: slow\n    cmd: {sys.executable} slow.py\n    queue: 50\n"
        "    sub: [{name: fast}]\n"
    )
    lines = [str(n) for n in range(3000)]
    # When 3000 lines go through
    result = drop("run", str(flow), "--input", "-", stdin="\n".join(lines).encode(), tmp=tmp_path)
    # Then every line comes out of the slow pool
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == sorted(f"slow:{n}" for n in lines)


def test_a_pool_that_fails_stops_the_run_early_with_a_summary(tmp_path: Path) -> None:
    flow = tmp_path / "broken.yaml"
    flow.write_text(
        "name: broken\nfunc:\n  - name: fast\n    cmd: cat\n"
        "  - name: gone\n    cmd: /no/such/program\n    max_restarts: 1\n    backoff: 10ms\n"
        "    sub: [{name: fast}]\n"
    )
    data = "".join(f"{n}\n" for n in range(200_000)).encode()
    result = drop("run", str(flow), "--input", "-", stdin=data, tmp=tmp_path)
    assert result.returncode == 1
    assert "stopped reading input after line" in result.stderr
    assert "failed pool gone:" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_stops_the_run_and_leaves_no_process_behind(tmp_path: Path) -> None:
    # Given a run whose worker hangs in a child of its own (a grandchild of drop)
    marker = f"drop-test-{os.getpid()}-hang"
    (tmp_path / "hang.sh").write_text(f"read line; exec -a {marker} sleep 1000\n")
    flow = tmp_path / "hang.yaml"
    flow.write_text("name: hang\nfunc:\n  - name: h\n    cmd: sh -c 'bash hang.sh; true'\n")
    env = dict(os.environ, DROP_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.Popen(
        [DROP, "run", str(flow), "--input", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None
    proc.stdin.write(b"x\n")
    proc.stdin.flush()

    assert wait_until(lambda: processes_with(marker), 10), "the worker's child never started"
    # When drop run gets SIGTERM
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    # Then it says so, exits 143, and the grandchild is gone too
    assert proc.returncode == 143
    assert b"terminated; the flow was stopped" in err
    assert wait_until(lambda: not processes_with(marker), 5)


def test_the_progress_bar_stays_off_stdout(tmp_path: Path) -> None:
    result = drop("run", str(SSHGUARD), "--input", str(SAMPLE), "--progress", tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected_hosts(SAMPLE.read_text(encoding="utf-8").splitlines())
