"""A real SMTP server for tests and benchmarks: aiosmtpd on 127.0.0.1 and a free
port, in its own thread, recording what it receives and answering scripted
codes when told to (`server.answer("RCPT", "451 4.3.0 Try later", times=2)`)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    message: EmailMessage
    login: str | None


class RecordingHandler:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._script: dict[str, list[str]] = {"MAIL": [], "RCPT": [], "DATA": [], "NOOP": []}
        # The client's address and port of each message received (one per connection),
        # and the QUITs: what a test of connection reuse looks at.
        self.peers: list[Any] = []
        self.quits = 0
        # Called (in the server's thread and loop) at each RCPT, before it is answered.
        self.on_recipient: Callable[[str], Awaitable[None]] | None = None
        self._lock = threading.Lock()
        self._hold = False
        self._then_accept = False
        self._released = threading.Event()
        self.held_recipient: str | None = None
        # True while the held client is still waiting for its RCPT's answer.
        self.holding = False

    def answer(self, command: str, reply: str, *, times: int = 1) -> None:
        with self._lock:
            self._script[command].extend([reply] * times)

    def hold_next_recipient(self, *, then_accept: bool = False) -> None:
        """The next RCPT waits, unanswered, until `release()`: its client is stuck
        mid-transaction, before DATA, so nothing of that message was received.
        Released, it is refused for now (451), or accepted with `then_accept`."""
        with self._lock:
            self._hold = True
            self._then_accept = then_accept
            self.held_recipient = None
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    async def _held(self, address: str) -> bool:
        with self._lock:
            if not self._hold or self.held_recipient is not None:
                return False
            self.held_recipient = address
            self._hold = False
            self.holding = True
        try:
            for _ in range(6000):  # bounded: 60 s at most
                if self._released.is_set():
                    break
                await asyncio.sleep(0.01)
        finally:
            # Released, or the client gave up (its timeout) and hung up: cancelled here.
            self.holding = False
        return True

    def _scripted(self, command: str) -> str | None:
        with self._lock:
            return self._script[command].pop(0) if self._script[command] else None

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        reply = self._scripted("MAIL")
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.on_recipient is not None:
            await self.on_recipient(address)
        reply = self._scripted("RCPT")
        if reply:
            return reply
        if await self._held(address) and not self._then_accept:
            return "451 4.3.0 Held by the test, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = self._scripted("DATA")
        if reply:
            return reply
        data = bytes(envelope.original_content or envelope.content)
        message = email.message_from_bytes(data, policy=email.policy.default)
        login = session.auth_data.login.decode() if session.authenticated else None
        with self._lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), data, message, login))
            self.peers.append(session.peer)
        return "250 Message accepted for delivery"

    async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: str) -> str:
        return self._scripted("NOOP") or "250 OK"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.quits += 1
        return "221 Bye"


class Accounts:
    """An aiosmtpd authenticator accepting one login and password."""

    def __init__(self, login: str, password: str) -> None:
        self.login, self.password = login, password
        self.attempts: list[str] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        self.attempts.append(auth_data.login.decode())
        ok = auth_data.login.decode() == self.login and auth_data.password.decode() == self.password
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SMTPServer:
    def __init__(
        self, port: int | None = None, accounts: Accounts | None = None, *, eight_bit: bool = True
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.handler = RecordingHandler()
        options: dict[str, Any] = {}
        if accounts is not None:
            options = {"authenticator": accounts, "auth_require_tls": False}
        if not eight_bit:  # an old server: no 8BITMIME, no SMTPUTF8
            options.update(decode_data=True, enable_SMTPUTF8=False)
        self._controller = Controller(self.handler, hostname=self.host, port=self.port, **options)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def message_ids(self) -> list[str]:
        return [str(r.message["Message-ID"]) for r in self.handler.received]

    def answer(self, command: str, reply: str, *, times: int = 1) -> None:
        self.handler.answer(command, reply, times=times)

    def start(self) -> SMTPServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


@contextmanager
def running(
    port: int | None = None, accounts: Accounts | None = None, *, eight_bit: bool = True
) -> Iterator[SMTPServer]:
    server = SMTPServer(port, accounts, eight_bit=eight_bit).start()
    try:
        yield server
    finally:
        server.stop()
