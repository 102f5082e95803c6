"""Email transports: SMTP through aiosmtplib when `SMTP_URL` is set, otherwise the
dev mailbox, a folder of `.eml` files shown at `/dev/mailbox`.

A transport has one way to send: `send(sender, recipients, data)`, the envelope
and the bytes exactly as the outbox stored them (nothing is parsed again, and
recipients never come from headers). It raises a `DeliveryError` saying what went
wrong: `ServerUnavailable` (the server could not be used at all: the message is not
to blame), `TemporaryFailure` (try this message again later), `RecipientRefused`
(the address does not exist: a bounce) or `MessageRefused` (this message was
refused for good, the address may be fine). `session()` keeps one SMTP connection
for a batch of messages, or for as long as the outbox worker keeps the session.

`send_when(ready, …)` lets no recipient reach the server before `ready()` has
returned: on SMTP it is awaited once the server took the envelope's sender (MAIL)
and before the recipients (RCPT), so the outbox worker records the previous
message while this one starts. If `ready()` raises, the connection is dropped
before RCPT (nothing of the message was accepted); an attempt that ends before
MAIL is answered does not await it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import aiosmtplib

from .mailbox import mailbox_dir
from .settings import Settings

log = logging.getLogger("widget_server.mailer")

SMTP_TIMEOUT_SECONDS = 30.0
# A connection left unused longer than this is checked (NOOP) before its next
# message, and replaced if the server does not answer 250.
IDLE_CHECK_SECONDS = 5.0

_SCHEMES: dict[str, tuple[Literal["none", "starttls", "tls"], int]] = {
    "smtp": ("none", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}


class DeliveryError(Exception):
    """An SMTP answer (`code`, `text`) or a connection problem (`code` is None)."""

    def __init__(self, text: str, *, code: int | None = None) -> None:
        super().__init__(text)
        self.code = code
        self.text = text

    def __str__(self) -> str:
        return f"{self.code} {self.text}" if self.code else self.text


class TemporaryFailure(DeliveryError):
    """Try this message again later (a 4xx answer, a connection lost mid-message)."""


class ServerUnavailable(TemporaryFailure):
    """The server could not be used at all (connection, TLS or login): this says
    nothing about the message, which waits for the server without using up attempts."""


class PermanentFailure(DeliveryError):
    """The server refused for good (5xx); `kind` names what was refused."""

    kind = "refused"


class RecipientRefused(PermanentFailure):
    """The recipient's address was refused: the contact bounces."""

    kind = "recipient_refused"


class MessageRefused(PermanentFailure):
    """This message was refused (too large, content, policy…); the address may be
    fine, so only this message fails."""

    kind = "message_refused"


# RFC 3463 enhanced status code at the start of the answer's text, e.g. "5.1.1".
_ENHANCED_STATUS = re.compile(r"\s*5\.(\d{1,3})\.(\d{1,3})(?![\d.])")
# 550 mailbox unavailable, 551 user not local, 553 mailbox name not allowed.
_RECIPIENT_CODES = frozenset({550, 551, 553})
# X.1.7 and X.1.8 are about the sender's address, not the recipient's.
_SENDER_DETAILS = frozenset({"7", "8"})


def refusal(code: int, text: str, *, at: Literal["RCPT", "DATA", "other"]) -> PermanentFailure:
    """Classifies a 5xx answer. The enhanced status, when the server gives one, is
    the most precise word: 5.1.x (addressing) is a refused recipient wherever it
    comes, and any other one (5.7.1 policy, 5.3.4 too big…) refuses the message
    even at RCPT — a relay refusing us with "550 5.7.1" must not turn every contact
    into a bounce. Without it, 550/551/553 at RCPT refuse the recipient."""
    enhanced = _ENHANCED_STATUS.match(text)
    if enhanced is not None:
        is_recipient = enhanced[1] == "1" and enhanced[2] not in _SENDER_DETAILS
    else:
        is_recipient = at == "RCPT" and code in _RECIPIENT_CODES
    return (RecipientRefused if is_recipient else MessageRefused)(text, code=code)


class Transport:
    """Base of the transports; `session()` defaults to no shared state."""

    async def send(self, sender: str, recipients: Sequence[str], data: bytes) -> None:
        """Send `data` (a message serialized for SMTP, CRLF) from `sender` to
        `recipients`, as they are."""
        raise NotImplementedError

    async def send_when(
        self, ready: Callable[[], Awaitable[object]], sender: str, recipients: Sequence[str], data: bytes
    ) -> None:
        """`send`, once `ready()` has returned (here: before anything is sent)."""
        await ready()
        await self.send(sender, recipients, data)

    def session(self) -> AbstractAsyncContextManager[Transport]:
        return _self_session(self)


@asynccontextmanager
async def _self_session(transport: Transport) -> AsyncIterator[Transport]:
    yield transport


def redact(text: str) -> str:
    """Server answers often quote the address; logs keep only its domain."""
    return re.sub(r"[^\s<>\"'@:;,]+@", "…@", text)


# --- SMTP ----------------------------------------------------------------------


@dataclass(frozen=True)
class SMTPConfig:
    host: str
    port: int
    security: Literal["none", "starttls", "tls"]
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_smtp_url(url: str) -> SMTPConfig:
    """`smtp://host:25`, `smtp+starttls://user:pass@host:587`, `smtps://user:pass@host:465`;
    credentials are percent-decoded."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"SMTP_URL scheme must be one of {', '.join(_SCHEMES)}, not {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("SMTP_URL has no host")
    security, default_port = _SCHEMES[parts.scheme]
    return SMTPConfig(
        host=parts.hostname,
        port=parts.port or default_port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


class SMTPTransport(Transport):
    def __init__(
        self,
        config: SMTPConfig,
        *,
        local_hostname: str = "localhost",
        timeout: float = SMTP_TIMEOUT_SECONDS,
    ) -> None:
        self.config = config
        self.local_hostname = local_hostname
        self.timeout = timeout

    async def send(self, sender: str, recipients: Sequence[str], data: bytes) -> None:
        async with self.session() as session:
            await session.send(sender, recipients, data)

    def session(self) -> AbstractAsyncContextManager[Transport]:
        return _smtp_session(self)

    def client(self) -> _Client:
        config = self.config
        return _Client(
            hostname=config.host,
            port=config.port,
            username=config.username,
            password=config.password,
            use_tls=config.security == "tls",
            start_tls=config.security == "starttls",
            local_hostname=self.local_hostname,
            timeout=self.timeout,
        )


@asynccontextmanager
async def _smtp_session(transport: SMTPTransport) -> AsyncIterator[Transport]:
    session = _SMTPSession(transport)
    try:
        yield session
    finally:
        await session.close()


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client, waiting for `ready` (if set) between MAIL and RCPT."""

    ready: Callable[[], Awaitable[object]] | None = None

    async def mail(self, sender: str, /, **options: Any) -> aiosmtplib.SMTPResponse:
        response = await super().mail(sender, **options)
        ready, self.ready = self.ready, None
        if ready is not None:
            try:
                await ready()
            except BaseException:
                # Not ready: nothing of this message may reach the server.
                self.close()
                raise
        return response


class _SMTPSession(Transport):
    """One connection, opened on the first message and reopened after a drop; one
    left idle a while is checked with NOOP before it is used again. Once the server
    could not be reached, the rest of the session fails at once instead of waiting
    for a timeout per message."""

    def __init__(self, transport: SMTPTransport) -> None:
        self._transport = transport
        self._client: _Client | None = None
        self._unreachable: ServerUnavailable | None = None
        self._last_used = 0.0

    async def _connected(self) -> _Client:
        if self._unreachable is not None:
            raise self._unreachable
        if self._client is not None and self._client.is_connected:
            if time.monotonic() - self._last_used < IDLE_CHECK_SECONDS:
                return self._client
            try:
                if (await self._client.noop()).code == 250:
                    return self._client
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                pass
            self._drop()
        client = self._transport.client()
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as exc:
            self._unreachable = ServerUnavailable(f"login refused: {exc.message}", code=exc.code)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._unreachable = ServerUnavailable(_describe(exc))
        if self._unreachable is not None:
            client.close()
            raise self._unreachable
        self._client = client
        self._last_used = time.monotonic()
        return client

    async def send(self, sender: str, recipients: Sequence[str], data: bytes) -> None:
        await self._send(sender, recipients, data, None)

    async def send_when(
        self, ready: Callable[[], Awaitable[object]], sender: str, recipients: Sequence[str], data: bytes
    ) -> None:
        await self._send(sender, recipients, data, ready)

    async def _send(
        self,
        sender: str,
        recipients: Sequence[str],
        data: bytes,
        ready: Callable[[], Awaitable[object]] | None,
    ) -> None:
        if not recipients:
            raise MessageRefused("the message has no recipient")
        client = await self._connected()
        options = []
        if not data.isascii():
            # The service writes 7-bit messages (`emails.SMTP_POLICY`); 8-bit data
            # is only sent as is to a server that says it takes it.
            if not client.supports_extension("8bitmime"):
                raise MessageRefused("8-bit message and the server does not announce 8BITMIME")
            options.append("BODY=8BITMIME")
        if not all(address.isascii() for address in [sender, *recipients]):
            options.append("SMTPUTF8")
        client.ready = ready  # awaited after MAIL (not at all if the attempt ends before)
        try:
            await self._answered(client.sendmail(sender, list(recipients), data, mail_options=options))
        finally:
            client.ready = None
            self._last_used = time.monotonic()

    async def _answered(self, sending: Awaitable[object]) -> None:
        """Awaits `sending`, turning aiosmtplib's errors into ours."""
        try:
            await sending
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients
            if len(refused) == 1:
                text, code = refused[0].message, refused[0].code
            else:
                text, code = "; ".join(f"{r.code} {r.message}" for r in refused), None
            if all(r.code >= 500 for r in refused):
                # Several addresses: a bounce only if every one of them is refused as a recipient.
                kinds = {type(refusal(r.code, r.message, at="RCPT")) for r in refused}
                failure = RecipientRefused if kinds == {RecipientRefused} else MessageRefused
                raise failure(text, code=code) from exc
            raise TemporaryFailure(text, code=code) from exc
        except aiosmtplib.SMTPSenderRefused as exc:
            # Our own address refused: a configuration problem, not the recipient's.
            raise TemporaryFailure(f"sender refused: {exc.message}", code=exc.code) from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                at: Literal["DATA", "other"] = (
                    "DATA" if isinstance(exc, aiosmtplib.SMTPDataError) else "other"
                )
                raise refusal(exc.code, exc.message, at=at) from exc
            raise TemporaryFailure(exc.message, code=exc.code) from exc
        except aiosmtplib.SMTPNotSupported as exc:
            raise MessageRefused(str(exc)) from exc
        except ValueError as exc:  # an address aiosmtplib refuses to put on the wire
            raise MessageRefused(str(exc)) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._drop()
            raise TemporaryFailure(_describe(exc)) from exc

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None or not client.is_connected:
            return
        try:
            await client.quit(timeout=5)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


# --- dev mailbox ---------------------------------------------------------------


class DevMailboxTransport(Transport):
    """Writes each message to `directory/<UTC time>-<random>.eml`: names sort by time,
    and a message appears whole or not at all (written aside, then renamed)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, sender: str, recipients: Sequence[str], data: bytes) -> None:
        await asyncio.to_thread(self._write, data)

    def _write(self, data: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        path = self.directory / f"{now:%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(4)}.eml"
        temporary = self.directory / f".{path.name}.tmp"
        with open(temporary, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
        return path


def transport_from_settings(settings: Settings) -> Transport:
    if not settings.smtp_url:
        if settings.production:
            log.warning("SMTP_URL is unset: emails are only written to %s", mailbox_dir(settings))
        return DevMailboxTransport(mailbox_dir(settings))
    return SMTPTransport(
        parse_smtp_url(settings.smtp_url.reveal()),
        local_hostname=urlsplit(settings.public_url).hostname or "localhost",
        # A send must end well within the lease, or another worker could take the message.
        timeout=min(SMTP_TIMEOUT_SECONDS, settings.outbox_lease_seconds / 4),
    )
