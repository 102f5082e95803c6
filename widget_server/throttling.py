"""Per-IP request rate limit (429 with Retry-After), with the `limits` library:
in memory for one process, or Redis shared by several instances."""

from __future__ import annotations

import math
import time

from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.requests import Request

from .problems import Problem


class Throttle:
    def __init__(self, rate: str, storage_url: str) -> None:
        self.item = parse(rate)
        self.limiter = MovingWindowRateLimiter(
            storage_from_string(
                storage_url.replace("memory://", "async+memory://", 1)
                if storage_url.startswith("memory://")
                else storage_url.replace("redis://", "async+redis://", 1)
            )
        )

    async def hit(self, request: Request, bucket: str) -> None:
        """Counts one request of this client IP; raises 429 past the limit."""
        ip = request.client.host if request.client else "unknown"
        if await self.limiter.hit(self.item, bucket, ip):
            return
        stats = await self.limiter.get_window_stats(self.item, bucket, ip)
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        raise Problem(
            429,
            "Trop de demandes en peu de temps : réessayez dans un moment.",
            code="rate_limited",
            headers={"Retry-After": str(retry)},
        )
