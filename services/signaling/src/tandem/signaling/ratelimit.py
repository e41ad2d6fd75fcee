"""A token bucket per client connection."""

from __future__ import annotations

import time


class TokenBucket:
    """Allows `rate_per_s` frames per second on average and bursts of up to `burst` frames."""

    def __init__(self, rate_per_s: float, burst: int, now: float | None = None) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tokens = float(burst)
        self.updated = time.monotonic() if now is None else now

    def allow(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
