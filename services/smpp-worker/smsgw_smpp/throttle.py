"""Token bucket per bind, counted per PDU, that halves its rate when the SMSC says
ESME_RTHROTTLED / ESME_RMSGQFUL and climbs back gradually (AIMD): no stall, no flood.
"""

from __future__ import annotations

import asyncio
import time

# After a throttle the rate climbs back fast (x1.5 per second) to 90 % of the rate that
# was throttled, then slower (x1.2 per second) past it: probe again, don't flood.
FAST_RECOVERY = 1.5
SLOW_RECOVERY = 1.2
MIN_RATE = 1.0


class AdaptiveRate:
    """`await acquire(cost)` before sending `cost` PDUs; `throttled()` when the SMSC objects.

    `tps = 0` means unlimited until the first throttle; the rate then starts from half of
    what was measured over the last second and returns to unlimited once it climbs past it.
    """

    def __init__(self, tps: float) -> None:
        self.target = float(tps)
        self.rate = float(tps)  # 0 = unlimited
        self._tokens = max(1.0, self.rate)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()
        self._last_throttle = 0.0
        self._last_recover = 0.0
        # Sent-PDU counter per whole second, to know the rate at which the SMSC objected.
        self._window_start = time.monotonic()
        self._window_count = 0
        self._last_second_count = 0
        self._ceiling = float(tps)
        self.throttle_events = 0

    @property
    def is_throttled(self) -> bool:
        """True while running below the configured rate because of the SMSC."""
        return self._last_throttle > 0 and (self.target == 0 or self.rate < self.target)

    def _count(self, cost: int, now: float) -> None:
        if now - self._window_start >= 1.0:
            self._last_second_count = self._window_count if now - self._window_start < 2 else 0
            self._window_start = now
            self._window_count = 0
        self._window_count += cost

    def observed_rate(self) -> float:
        """PDUs sent over the last second (sliding estimate from two 1-s windows)."""
        elapsed = min(1.0, time.monotonic() - self._window_start)
        return self._window_count + self._last_second_count * (1.0 - elapsed)

    def throttled(self) -> None:
        """The SMSC said slow down: halve the rate (at most once per 200 ms)."""
        now = time.monotonic()
        if now - self._last_throttle < 0.2:
            return  # one burst of throttled answers is one event, not a collapse to 1/s
        self._last_throttle = now
        self._last_recover = now
        self.throttle_events += 1
        current = self.rate if self.rate > 0 else max(self.observed_rate(), 2 * MIN_RATE)
        self._ceiling = current
        self.rate = max(MIN_RATE, current / 2)
        self._tokens = min(self._tokens, 1.0)

    def refresh(self) -> None:
        """Apply the recovery due by now (also while nothing is being sent)."""
        self._recover(time.monotonic())

    def _recover(self, now: float) -> None:
        if self._last_throttle == 0 or now - self._last_recover < 1.0:
            return
        steps = int(now - self._last_recover)
        self._last_recover += steps
        for _ in range(min(steps, 100)):
            knee = 0.9 * self._ceiling
            if self.rate < knee:
                self.rate = min(knee, self.rate * FAST_RECOVERY)
            else:
                self.rate *= SLOW_RECOVERY
        if self.target > 0 and self.rate >= self.target:
            self.rate = self.target
            self._last_throttle = 0.0
        elif self.target == 0 and self.rate >= 4 * self._ceiling:
            self.rate = 0.0  # well past where the SMSC objected: unlimited again
            self._last_throttle = 0.0

    async def acquire(self, cost: int = 1) -> None:
        """Wait until `cost` PDUs may be sent."""
        now = time.monotonic()
        self._recover(now)
        if self.rate <= 0:
            self._count(cost, now)
            return
        async with self._lock:  # FIFO: waiters are served in arrival order
            while True:
                now = time.monotonic()
                self._recover(now)
                if self.rate <= 0:
                    break
                burst = max(float(cost), min(self.rate, 1.0 + self.rate / 10))
                self._tokens = min(burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= cost:
                    self._tokens -= cost
                    break
                await asyncio.sleep((cost - self._tokens) / self.rate)
        self._count(cost, time.monotonic())
