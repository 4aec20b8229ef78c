"""RestartPolicy on its own: pure decisions, no processes."""

from __future__ import annotations

import random

from drop.pool import Restart, RestartPolicy


def test_restart_delays_double_from_backoff_up_to_the_cap_with_jitter_within_25_percent() -> None:
    policy = RestartPolicy(
        Restart.ALWAYS,
        max_restarts=100,
        window=1000.0,
        backoff=0.1,
        backoff_max=1.0,
        rng=random.Random(7),
    )

    delays = [policy.decide(float(i), clean=False, why="boom").delay for i in range(10)]

    bases = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    for delay, base in zip(delays, bases, strict=True):
        assert 0.75 * base <= delay <= 1.25 * base, (delay, base)
    # the jitter is real (not always zero) and the cap holds after jitter
    assert len({round(d / b, 6) for d, b in zip(delays, bases, strict=True)}) > 1
    assert max(delays) <= 1.25
    assert policy.total == 10


def test_same_seed_gives_the_same_delays() -> None:
    def run(seed: int) -> list[float]:
        p = RestartPolicy(backoff=0.1, backoff_max=5.0, rng=random.Random(seed))
        return [p.decide(float(i), clean=False, why="x").delay for i in range(4)]

    assert run(3) == run(3)


def test_pool_fails_after_max_restarts_within_the_window() -> None:
    policy = RestartPolicy(Restart.ALWAYS, max_restarts=3, window=30.0, backoff=0.05)

    first = [policy.decide(t, clean=False, why="worker p/0 exited") for t in (0.0, 1.0, 2.0)]
    fourth = policy.decide(3.0, clean=False, why="worker p/0 exited")

    assert [d.restart for d in first] == [True, True, True]
    assert [d.failed for d in first] == [False, False, False]
    assert "restart 1/3" in first[0].reason
    assert "restart 3/3" in first[2].reason
    assert (fourth.restart, fourth.failed, fourth.delay) == (False, True, 0.0)
    assert fourth.reason == (
        "worker p/0 exited; 4 exits within 30s exceed max_restarts 3: pool failed"
    )
    assert policy.total == 3


def test_exits_older_than_the_window_are_forgotten() -> None:
    policy = RestartPolicy(Restart.ALWAYS, max_restarts=2, window=10.0, backoff=1.0)
    policy.decide(0.0, clean=False, why="a")
    policy.decide(1.0, clean=False, why="b")

    # 20 s later the two old exits are out of the window: a restart, with the first delay
    later = policy.decide(21.0, clean=False, why="c")

    assert (later.restart, later.failed) == (True, False)
    assert 0.75 <= later.delay <= 1.25
    assert "restart 1/2" in later.reason


def test_reset_gives_a_full_budget_back() -> None:
    policy = RestartPolicy(max_restarts=1, window=30.0)
    policy.decide(0.0, clean=False, why="a")
    policy.reset()

    assert policy.decide(0.5, clean=False, why="b").restart is True


def test_on_failure_does_not_restart_a_clean_exit_but_restarts_a_failed_one() -> None:
    policy = RestartPolicy(Restart.ON_FAILURE, max_restarts=5, window=30.0)

    clean = policy.decide(0.0, clean=True, why="worker p/0 exited with status 0")
    failed = policy.decide(1.0, clean=False, why="worker p/0 exited with status 1")

    assert (clean.restart, clean.failed) == (False, False)
    assert clean.reason == "worker p/0 exited with status 0; not restarted (restart: on-failure)"
    assert (failed.restart, failed.failed) == (True, False)
    # the clean exit did not count against the budget
    assert "restart 1/5" in failed.reason


def test_never_restarts_nothing_and_always_restarts_a_clean_exit() -> None:
    never = RestartPolicy(Restart.NEVER)
    always = RestartPolicy(Restart.ALWAYS)

    assert never.decide(0.0, clean=False, why="x").restart is False
    assert never.decide(0.0, clean=False, why="x").failed is False
    assert always.decide(0.0, clean=True, why="x").restart is True
