"""When to restart a worker that exited, and after how long.

The policy follows OTP's supervisor vocabulary: a pool's workers are
*permanent* (``restart: always``), *transient* (``on-failure``: a clean exit
is final) or *temporary* (``never``). At most ``max_restarts`` restarts are
allowed within ``window`` seconds; one more marks the pool failed instead of
spinning. Delays grow exponentially from ``backoff`` to ``backoff_max`` with
25 % jitter so that many pools do not restart in lockstep.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass


class Restart(enum.StrEnum):
    """Which exits are restarted."""

    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do about one exit.

    Attributes:
        restart: start a new worker in the slot.
        delay: seconds to wait before starting it.
        failed: the budget is spent; mark the pool failed.
        reason: one sentence for logs, events and ``pool status``.
    """

    restart: bool
    delay: float
    failed: bool
    reason: str


class RestartPolicy:
    """Counts exits within a sliding window and decides restarts.

    Args:
        restart: which exits are restarted.
        max_restarts: restarts allowed within ``window``.
        window: seconds of the sliding window.
        backoff: first delay in seconds.
        backoff_max: cap on the delay.
        rng: source of jitter (tests pass a seeded one).
    """

    def __init__(
        self,
        restart: Restart = Restart.ALWAYS,
        *,
        max_restarts: int = 5,
        window: float = 30.0,
        backoff: float = 0.1,
        backoff_max: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self.restart = restart
        self.max_restarts = max_restarts
        self.window = window
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._exits: deque[float] = deque()
        #: Restarts made so far, over the pool's whole life.
        self.total = 0

    def decide(self, now: float, *, clean: bool, why: str) -> Decision:
        """Record an exit at ``now`` and decide.

        Args:
            now: monotonic seconds.
            clean: the worker exited with status 0 on its own.
            why: what happened, quoted in the reason.
        """
        if self.restart is Restart.NEVER or (clean and self.restart is Restart.ON_FAILURE):
            return Decision(False, 0.0, False, f"{why}; not restarted (restart: {self.restart})")
        exits = self._exits
        exits.append(now)
        while exits and exits[0] < now - self.window:
            exits.popleft()
        if len(exits) > self.max_restarts:
            return Decision(
                False,
                0.0,
                True,
                f"{why}; {len(exits)} exits within {self.window:g}s exceed max_restarts "
                f"{self.max_restarts}: pool failed",
            )
        step = len(exits) - 1
        delay = min(self.backoff_max, self.backoff * (2**step))
        delay *= 1.0 + self._rng.uniform(-0.25, 0.25)
        self.total += 1
        return Decision(
            True,
            delay,
            False,
            f"{why}; restart {len(exits)}/{self.max_restarts} in {delay:.2f}s",
        )

    def reset(self) -> None:
        """Forget past exits (a pool restarted by hand starts with a full budget)."""
        self._exits.clear()
