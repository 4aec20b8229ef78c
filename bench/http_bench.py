"""HTTP calls of the pyex echo flow, next to two baselines, measured with wrk.

Run it as ``.venv/bin/python bench/http_bench.py [--duration 5] [--concurrency 1,8,32]``
(needs ``wrk``: ``apt-get install wrk``). For each concurrency it runs, one
after the other on loopback:

drop      ``drop up`` with the original pyex flow installed; wrk POSTs to
          ``/v1/flows/pyex/call`` with a bearer token. Its sync pool keeps one
          line in flight, as the original did.
direct1   a bare ASGI app on the same uvicorn (uvloop, httptools) writing each
          request's line straight into one pyex process, one line at a time
          (bench/_http_baselines.py): the same work as ``drop``, nothing else.
drop-p16  the same flow with ``pipeline: 16``: up to 16 lines in flight.
direct    the bare app writing lines into pyex as they come (pipelined),
          replies matched in order: the least any server can do.
fork      a bare ASGI app starting a new pyex process per request, the model
          of the classic OpenFaaS watchdog.

and prints requests/s, p50 and p99 latency, and DROP's ratios against the
baseline doing the same work: drop/direct1, drop-p16/direct (target >= 0.7)
and drop/fork (target >= 50). Every server runs the same
``examples/pyex/pyex.py``, which logs twice per message to stderr, as the
original did. Each wrk run is bounded by ``--duration``; a run with any
non-2xx answer is reported as failed, not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DROP = str(Path(sys.executable).parent / "drop")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout:g}s")


def start_drop(tmp: Path) -> tuple[subprocess.Popen[bytes], dict[str, str], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp / "drop"
    proc = subprocess.Popen(
        [DROP, "up", "--data-dir", str(data), "--http", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_ready(f"{url}/readyz")
    secret = (data / "secrets" / "initial-admin").read_text().strip()
    token = httpx.post(f"{url}/v1/auth/login", json={"secret": secret}).json()["token"]
    flow = (ROOT / "examples" / "pyex" / "pyex.yaml").read_text()
    # the same flow, its sync pool allowed 16 lines in flight
    piped = flow.replace("name: pyex", "name: pyexp") + "    pipeline: 16\n"
    for text in (flow, piped):
        answer = httpx.post(
            f"{url}/v1/flows",
            content=text,
            params={"base_dir": str(ROOT / "examples" / "pyex"), "start": "true"},
            headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
        )
        answer.raise_for_status()
    urls = {"drop": f"{url}/v1/flows/pyex/call", "drop-p16": f"{url}/v1/flows/pyexp/call"}
    return proc, urls, token


def start_baseline(kind: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "_http_baselines.py"), kind, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.post(url, content=b"ping", timeout=5).text == "ping":
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"baseline {kind} did not come up")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * _UNIT[m.group(2)]


def wrk(
    url: str, token: str | None, connections: int, duration: float, tmp: Path
) -> dict[str, float]:
    script = tmp / "post.lua"
    headers = 'wrk.headers["Content-Type"] = "text/plain"\n'
    if token:
        headers += f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    script.write_text(f'wrk.method = "POST"\nwrk.body = "hello"\n{headers}')
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration:g}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    return {
        "rate": rate,
        "p50_ms": p50,
        "p99_ms": p99,
        "non2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--concurrency", default="1,8,32", help="wrk connections, comma-separated")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/http_bench.py needs wrk: apt-get install wrk")
    levels = [int(c) for c in args.concurrency.split(",")]
    os.environ["NO_PROXY"] = "127.0.0.1"
    names = ("drop", "direct1", "drop-p16", "direct", "fork")
    results: dict[str, dict[int, dict[str, float]]] = {name: {} for name in names}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        drop_proc, drop_urls, token = start_drop(tmp)
        baselines = {kind: start_baseline(kind) for kind in ("direct1", "direct", "fork")}
        targets = {
            "drop": (drop_urls["drop"], token),
            "drop-p16": (drop_urls["drop-p16"], token),
            **{kind: (url, None) for kind, (_, url) in baselines.items()},
        }
        try:
            for c in levels:
                for name in names:
                    url, tok = targets[name]
                    wrk(url, tok, c, 1.0, tmp)  # warm-up
                    results[name][c] = wrk(url, tok, c, args.duration, tmp)
                    r = results[name][c]
                    print(f"  {name:<8} c={c:<3} {r['rate']:>9,.0f} req/s", file=sys.stderr)
        finally:
            stop(drop_proc)
            for proc, _ in baselines.values():
                stop(proc)
    print(
        f"Python {sys.version.split()[0]}, os.cpu_count()={os.cpu_count()}, wrk -t1, "
        f"{args.duration:g}s per run, body 'hello', loopback"
    )
    print(f"{'conc':>4} {'server':<9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}   ratio")
    compare = {"direct1": "drop", "direct": "drop-p16", "fork": "drop"}
    for c in levels:
        for name in names:
            r = results[name][c]
            note = ""
            if r["non2xx"] or r["socket_errors"]:
                note = f"  FAILED: {r['non2xx']:.0f} non-2xx answers"
            ratio = ""
            if name in compare:
                mine = results[compare[name]][c]["rate"]
                ratio = f"{compare[name]}/{name} {mine / r['rate']:.2f}"
            print(
                f"{c:>4} {name:<9} {r['rate']:>9,.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}   "
                f"{ratio}{note}"
            )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
