"""A ClamAV scan through clamd's INSTREAM command (`CLAMD_URL`, off by default).

    → zINSTREAM\\0, then chunks (4-byte big-endian length + bytes), then 4 zero bytes
    ← "stream: OK\\0" | "stream: <signature> FOUND\\0" | "<message> ERROR\\0"

Anything but a clear answer (unreachable, timeout, an ERROR such as the stream
size limit) raises `ScannerUnavailable`: the caller refuses the file for now
rather than forwarding it unscanned.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from urllib.parse import urlsplit

CHUNK_BYTES = 64 * 1024
TIMEOUT_SECONDS = 15.0
_REPLY_MAX = 4096


class ScannerUnavailable(Exception):
    """clamd could not give a verdict."""


def check_url(url: str) -> str:
    """`tcp://host:port` or `unix:///path/to/clamd.sock`; raises ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme == "tcp" and parts.hostname and parts.port:
        return url
    if parts.scheme == "unix" and parts.path:
        return url
    raise ValueError(f"expected tcp://host:port or unix:///path, not {url!r}")


async def scan(url: str, data: bytes) -> str | None:
    """None when clamd finds nothing, else the name of what it found; at most
    `TIMEOUT_SECONDS` in all."""
    try:
        reply = await asyncio.wait_for(_instream(url, data), TIMEOUT_SECONDS)
    except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
        raise ScannerUnavailable(f"{type(exc).__name__}: {exc}") from exc
    text = reply.rstrip(b"\0").decode("utf-8", "replace").strip()
    if text.endswith(" FOUND"):
        return text.removeprefix("stream:").removesuffix(" FOUND").strip() or "unknown"
    if text == "stream: OK":
        return None
    raise ScannerUnavailable(text[:200] or "empty answer")


async def _instream(url: str, data: bytes) -> bytes:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        reader, writer = await asyncio.open_unix_connection(parts.path, limit=_REPLY_MAX)
    else:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port, limit=_REPLY_MAX)
    try:
        writer.write(b"zINSTREAM\0")
        for start in range(0, len(data), CHUNK_BYTES):
            chunk = data[start : start + CHUNK_BYTES]
            writer.write(struct.pack("!I", len(chunk)) + chunk)
            await writer.drain()
        writer.write(struct.pack("!I", 0))
        await writer.drain()
        return await reader.readuntil(b"\0")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
