"""Issue #9, item 9: a client trickling its request is cut with 408, on a real
server (the read timeouts live in uvicorn's protocol and in an ASGI middleware).

Each test sends one byte at a time, with a pause between bytes, for a bounded
number of bytes, far more than the timeouts allow; it expects the server to answer
408 and close the connection before the trickle ends."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import RunningServer, create_api_key, make_settings, running_server

PAUSE = 0.25  # seconds between two bytes of the trickle
TRICKLE = 60  # bytes: 15 s of trickle, against timeouts of 1 s


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    settings = make_settings(tmp_path, REQUEST_HEADER_TIMEOUT_SECONDS="1", REQUEST_BODY_TIMEOUT_SECONDS="1")
    key = create_api_key(settings, "mon-site")
    with running_server(settings) as server:
        yield server, key


def trickle(server: tuple[RunningServer, str], start: bytes, drip: bytes) -> tuple[bytes, int]:
    """Send `start`, then `drip` one byte at a time; return what the server answered
    and how many bytes of `drip` it took before it closed the connection."""
    with socket.create_connection(("127.0.0.1", server[0].port), timeout=10) as sock:
        sock.sendall(start)
        sent = 0
        try:
            for byte in drip:
                sock.sendall(bytes([byte]))
                sent += 1
                time.sleep(PAUSE)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return answer, sent


def status_and_body(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def test_headers_sent_one_byte_at_a_time_are_cut_with_408(server: tuple[RunningServer, str]) -> None:
    answer, sent = trickle(server, b"GET /healthz HTTP/1.1\r\n", b"X-Slow: " + b"a" * TRICKLE)
    assert sent < TRICKLE, "the connection stayed open for the whole trickle"
    status, body = status_and_body(answer)
    assert (status, body["code"]) == (408, "request_timeout")
    assert b"application/problem+json" in answer


def test_a_kept_alive_connection_is_cut_on_a_slow_second_request(server: tuple[RunningServer, str]) -> None:
    first = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    answer, sent = trickle(server, first, b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * TRICKLE)
    assert answer.startswith(b"HTTP/1.1 200")
    assert sent < TRICKLE + 30
    assert b"HTTP/1.1 408" in answer


def test_a_body_sent_one_byte_at_a_time_is_cut_with_408(server: tuple[RunningServer, str]) -> None:
    start = (
        b"POST /api/v1/appointment-requests HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + server[1].encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    answer, sent = trickle(server, start, b"{" + b" " * TRICKLE)
    assert sent < TRICKLE
    status, body = status_and_body(answer)
    assert (status, body["code"]) == (408, "request_timeout")
    assert b"connection: close" in answer.lower()


def test_a_silent_connection_is_closed(server: tuple[RunningServer, str]) -> None:
    with socket.create_connection(("127.0.0.1", server[0].port), timeout=10) as sock:
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408")
