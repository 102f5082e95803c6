"""Request rate limits (429 with Retry-After), with the `limits` library: in memory
for one process, or Redis shared by several instances.

Two kinds of bucket (SPEC section 8): one per client IP, for every request of the
API and the forms, and one per API key's caller, so one partner's burst never
spends another's allowance.

The client IP is the socket's peer, unless that peer is a proxy listed in
`TRUSTED_PROXIES`: then it is the right-most address of `X-Forwarded-For` that is
not a trusted proxy (the left part of that header is whatever the client wrote).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Iterable

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.requests import HTTPConnection

from .problems import Problem

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    def __init__(self, networks: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in networks)

    def __contains__(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client_ip(self, connection: HTTPConnection) -> str:
        peer = connection.client.host if connection.client else "unknown"
        if peer not in self:
            return peer
        forwarded = [
            address.strip()
            for header in connection.headers.getlist("x-forwarded-for")
            for address in header.split(",")
            if address.strip()
        ]
        for address in reversed(forwarded):
            if address not in self:
                return address
        # Every hop is one of ours: the left-most is the nearest to the client we know.
        return forwarded[0] if forwarded else peer


class Throttle:
    def __init__(
        self,
        rate: str,
        storage_url: str,
        *,
        key_rate: str | None = None,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        self.item = parse(rate)
        self.key_item = parse(key_rate) if key_rate else None
        self.proxies = TrustedProxies(trusted_proxies)
        self.limiter = MovingWindowRateLimiter(
            storage_from_string(
                storage_url.replace("memory://", "async+memory://", 1)
                if storage_url.startswith("memory://")
                else storage_url.replace("redis://", "async+redis://", 1)
            )
        )

    async def hit(self, connection: HTTPConnection, bucket: str) -> None:
        """Counts one request of this client IP; raises 429 past the limit."""
        await self._hit(self.item, bucket, self.proxies.client_ip(connection))

    async def hit_caller(self, caller: str, *, test: bool = False) -> None:
        """Counts one request made with an API key of `caller`; raises 429 past its limit.
        Test keys have their own bucket: a partner's tests never slow its live traffic."""
        if self.key_item is not None:
            await self._hit(self.key_item, "api-test-key" if test else "api-key", caller)

    async def _hit(self, item: RateLimitItem, bucket: str, identity: str) -> None:
        if await self.limiter.hit(item, bucket, identity):
            return
        stats = await self.limiter.get_window_stats(item, bucket, identity)
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        raise Problem(
            429,
            "Trop de demandes en peu de temps : réessayez dans un moment.",
            code="rate_limited",
            headers={"Retry-After": str(retry)},
        )
