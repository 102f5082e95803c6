"""Partner webhooks (Standard Webhooks): where they may go, their secrets, and the
outbox courier that sends them.

An event is an outbox job of kind `webhook` (see `partner_events.emit`): its body
and `webhook-id` are fixed when it is queued, so every attempt sends the same
bytes under the same id. The endpoint and the secret are read from the key at
send time: a partner that moved its endpoint or rotated its secret gets the
events still waiting at the new address, signed with the new secret; one that
removed its webhook (or whose key was revoked) gets none.

Where a webhook may go: in production only `https://`, and only to public
addresses — never loopback, private, link-local, shared, multicast or reserved
ones. The URL is checked when it is set, and again before each attempt, on the
literal address or on every address the host name resolves to; the request then
goes to the address that was checked (the name stays in `Host` and in TLS), so a
name that resolves to something else a moment later cannot redirect it.
Redirects are never followed. In development, `http://` and local addresses are
allowed, so a receiver on 127.0.0.1 can be used.

What an answer means: 2xx delivered; 408, 429, 5xx, a timeout, a connection
error or a name that does not resolve are tried again with backoff; any other
answer (4xx, 3xx…) is a refusal for good.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import logging
import math
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2
import sqlalchemy as sa
from databases import Database
from standardwebhooks.webhooks import Webhook

from . import tables
from .mailer import PermanentFailure, TemporaryFailure
from .settings import Settings

log = logging.getLogger("widget_server.webhooks")

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MAX_URL_LENGTH = 2000
USER_AGENT = "widget-server-webhooks/1"
# Statuses worth another try; any other non-2xx answer is final.
RETRIED_STATUSES = frozenset({408, 429})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BadWebhookURL(ValueError):
    """A webhook URL refused, with a message for the operator."""


class EndpointRefused(PermanentFailure):
    """The partner's endpoint answered with a final refusal (a 4xx other than 408/429)."""

    kind = "endpoint_refused"


class NoEndpoint(PermanentFailure):
    """The key has no usable webhook any more (removed, key revoked, URL no longer allowed)."""

    kind = "no_endpoint"


def new_secret() -> str:
    """A `whsec_…` signing secret: 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signed_headers(secret: str, webhook_id: str, now: dt.datetime, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of `body`: `webhook-timestamp` and the
    timestamp inside `webhook-signature` (v1 = HMAC-SHA256) are one value, whole
    seconds since the epoch, whatever the time zone of `now`."""
    seconds = math.floor(now.timestamp())
    # The library signs `timestamp.replace(tzinfo=UTC)`: give it that very instant in UTC.
    signed_at = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(seconds),
        "webhook-signature": Webhook(secret).sign(webhook_id, signed_at, body.decode()),
    }


def check_url(url: str, *, production: bool) -> str:
    """`url` if a webhook may go there, else `BadWebhookURL` saying why. Host
    names are not resolved here (see `resolve`); literal addresses and local
    names are checked."""
    if not url or len(url) > MAX_URL_LENGTH:
        raise BadWebhookURL(f"a webhook URL has 1 to {MAX_URL_LENGTH} characters")
    if not url.isascii() or not url.isprintable() or any(c.isspace() for c in url):
        raise BadWebhookURL("a webhook URL has no spaces, control or non-ASCII characters (encode them)")
    parts = urlsplit(url)
    allowed = ("https",) if production else ("https", "http")
    if parts.scheme not in allowed:
        raise BadWebhookURL(
            "a webhook URL must start with https:// in production"
            if production
            else "a webhook URL must start with https:// or http://"
        )
    if parts.username is not None or parts.password is not None:
        raise BadWebhookURL("a webhook URL carries no user name or password: requests are signed")
    if parts.fragment:
        raise BadWebhookURL("a webhook URL has no #fragment")
    try:
        host, _ = parts.hostname, parts.port
    except ValueError as exc:
        raise BadWebhookURL(f"a webhook URL needs a valid port: {exc}") from exc
    if not host:
        raise BadWebhookURL("a webhook URL needs a host")
    address = _literal(host)
    name = host.rstrip(".")  # `localhost.` is `localhost`
    if address is not None:
        check_address(address, production=production)
    elif _ipv4_shorthand(host):
        # 2130706433, 0177.0.0.1, 127.1: resolvers read them as addresses.
        raise BadWebhookURL(f"{host} reads as an IPv4 address: write it as four decimal numbers a.b.c.d")
    elif production and (name == "localhost" or name.endswith((".localhost", ".local", ".internal"))):
        raise BadWebhookURL(f"{host} is a local name: production webhooks go to public hosts only")
    return url


def check_address(address: IPAddress, *, production: bool) -> None:
    """In production, only public unicast addresses; an IPv6 address that carries
    an IPv4 one (`::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:…`) only
    when that one is public too."""
    if not production:
        return
    for each in (address, *_carried_ipv4(address)):
        if not _public(each):
            raise BadWebhookURL(
                f"{address} is not a public address (loopback, private, link-local or reserved): "
                "production webhooks go to public hosts only"
            )


# The NAT64 well-known prefix (RFC 6052): its last 32 bits are an IPv4 address.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _carried_ipv4(address: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    if address.version == 4:
        return ()
    assert isinstance(address, ipaddress.IPv6Address)
    if address in _NAT64:
        return (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF),)
    return tuple(a for a in (address.ipv4_mapped, address.sixtofour) if a is not None)


def _public(address: IPAddress) -> bool:
    if address.version == 6 and address in _NAT64:
        return True  # what counts is the IPv4 address it carries
    # `is_global` alone lets through deprecated site-local IPv6 (fec0::/10) and the
    # reserved ranges that still map to IPv4 (`::a.b.c.d`).
    site_local = isinstance(address, ipaddress.IPv6Address) and address.is_site_local
    return address.is_global and not (address.is_multicast or address.is_reserved or site_local)


def _ipv4_shorthand(host: str) -> bool:
    """Whether `host` is an IPv4 address in a form other than a.b.c.d (decimal,
    octal or hex numbers, fewer parts), which `ipaddress` refuses but resolvers take."""
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve(host: str, port: int, *, production: bool, within: float) -> IPAddress:
    """The address to send to: `host` itself when it is one, else the first address
    it resolves to, once every one of them passed `check_address`. A name that
    does not resolve, or resolves to a forbidden address, fails this attempt only
    (`TemporaryFailure`): DNS may be fixed."""
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            found = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), within
            )
        except (OSError, TimeoutError) as exc:
            raise TemporaryFailure(f"{host} does not resolve: {exc or type(exc).__name__}") from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
        if not addresses:
            raise TemporaryFailure(f"{host} resolves to no address")
    for address in addresses:
        try:
            check_address(address, production=production)
        except BadWebhookURL as exc:
            raise TemporaryFailure(f"{host}: {exc}") from exc
    return addresses[0]


class WebhookCourier:
    """The outbox courier of `webhook` jobs: one signed POST per attempt."""

    kind = "webhook"

    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.database = database
        self.production = settings.production
        # A send must end well within the lease, or another worker could take the job.
        self.timeout = min(settings.webhook_timeout_seconds, settings.outbox_lease_seconds / 4)
        self.max_attempts = settings.webhook_max_attempts
        # The signature's timestamp is the receiver's clock's business: real time.
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))

    def describe(self, row: Mapping[str, Any]) -> str:
        return f"webhook {row['message_id']} ({row['template']}) for {row['recipient']}"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Callable[[Mapping[str, Any]], Any]]:
        """Sends a batch. An endpoint that failed once in the batch is not tried
        again in it: its other events count the same failure (and back off)
        instead of each waiting for a timeout."""
        down: dict[int, TemporaryFailure] = {}
        # No connection reuse: the TLS session of one host name is never lent to
        # another name on the same address; no proxy from the environment either.
        async with httpx2.AsyncClient(
            timeout=self.timeout,
            follow_redirects=False,
            trust_env=False,
            limits=httpx2.Limits(max_keepalive_connections=0),
        ) as client:

            async def send(row: Mapping[str, Any]) -> None:
                key_id = int(row["api_key_id"] or 0)
                if key_id in down:
                    raise down[key_id]
                try:
                    await self._post(client, row)
                except TemporaryFailure as exc:
                    down[key_id] = exc
                    raise

            yield send

    async def _post(self, client: httpx2.AsyncClient, row: Mapping[str, Any]) -> None:
        url, secret = await self._endpoint(row)
        # One budget for the whole attempt (name, connection, TLS, request, the
        # answer's head): the client's timeout bounds each read, not their sum, so
        # a receiver trickling its answer would otherwise hold the job past its lease.
        try:
            async with asyncio.timeout(self.timeout):
                status = await self._exchange(client, url, secret, row)
        except (TimeoutError, httpx2.TimeoutException) as exc:
            raise TemporaryFailure(f"no answer within {self.timeout:g} s") from exc
        except httpx2.TransportError as exc:
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from exc
        if 200 <= status < 300:
            return
        if status >= 500 or status in RETRIED_STATUSES:
            raise TemporaryFailure(f"HTTP {status}", code=status)
        raise EndpointRefused(f"HTTP {status}", code=status)

    async def _exchange(
        self, client: httpx2.AsyncClient, url: str, secret: str, row: Mapping[str, Any]
    ) -> int:
        """POSTs the job's body, signed, to the address `url` resolves to; returns the status."""
        parts = urlsplit(url)
        assert parts.hostname is not None  # check_url
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await resolve(parts.hostname, port, production=self.production, within=self.timeout)
        body = bytes(row["raw"])
        webhook_id = str(row["message_id"])
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "host": parts.netloc,
            **signed_headers(secret, webhook_id, self._clock(), body),
        }
        # To the address checked above; the name stays in Host and in TLS (SNI, certificate).
        literal = f"[{address}]" if address.version == 6 else str(address)
        target = urlunsplit(parts._replace(netloc=f"{literal}:{port}"))
        # Only the status is read: the answer's body, however large, never is.
        async with client.stream(
            "POST", target, content=body, headers=headers, extensions={"sni_hostname": parts.hostname}
        ) as response:
            return response.status_code

    async def _endpoint(self, row: Mapping[str, Any]) -> tuple[str, str]:
        keys = tables.api_keys
        key = await self.database.fetch_one(
            sa.select(keys.c.webhook_url, keys.c.webhook_secret, keys.c.revoked_at).where(
                keys.c.id == row["api_key_id"]
            )
        )
        if key is None or key._mapping["revoked_at"] is not None:
            raise NoEndpoint("the key was revoked")
        url, secret = key._mapping["webhook_url"], key._mapping["webhook_secret"]
        if not url or not secret:
            raise NoEndpoint("the key's webhook was removed")
        try:
            return check_url(str(url), production=self.production), str(secret)
        except BadWebhookURL as exc:
            raise NoEndpoint(f"the webhook URL is not allowed here: {exc}") from exc
