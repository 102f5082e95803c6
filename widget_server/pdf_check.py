"""Runs in a child process of its own (`python -m widget_server.pdf_check`): reads
PDFs on stdin, one after the other, and prints a one-line JSON verdict for each.
A PDF parser on untrusted input may take long or use much memory; in a child
with CPU and memory limits, killed on a deadline by the parent
(`pdf_checkers`), it can never hang the service.

The child is started once and kept for many CVs (starting Python and importing
pypdf cost more than parsing a CV): each request is its length in decimal on a
line, then that many bytes. The CPU limit is set again before each PDF, so it
bounds each parse, not the life of the process. Stdin closed: the child exits.

Imports nothing of the service, so it starts fast.
"""

from __future__ import annotations

import io
import json
import logging
import resource
import sys
from typing import Any, BinaryIO

CPU_SECONDS = 10
MEMORY_BYTES = 768 * 1024 * 1024
MAX_INPUT_BYTES = 64 * 1024 * 1024


def verdict(data: bytes) -> str:
    """`ok`, `unreadable` (not a PDF a reader can open, or no page) or `active`
    (JavaScript, launch actions or embedded files: not forwarded to recruiters)."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if len(reader.pages) < 1:
            return "unreadable"
        root: Any = reader.trailer["/Root"].get_object()
        names: Any = root.get("/Names")
        names = names.get_object() if names is not None else {}
        if "/JavaScript" in names or "/EmbeddedFiles" in names or "/AA" in root:
            return "active"
        action: Any = root.get("/OpenAction")
        action = action.get_object() if action is not None else None
        if isinstance(action, dict) and action.get("/S") in ("/JavaScript", "/Launch"):
            return "active"
    except Exception:
        return "unreadable"
    return "ok"


def _limit_cpu_from_now() -> None:
    """SIGXCPU (which ends the process) after CPU_SECONDS more of CPU time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime) + 1 + CPU_SECONDS
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def serve(requests: BinaryIO, replies: io.TextIOBase) -> None:
    while header := requests.readline(32):
        size = int(header)
        if not 0 <= size <= MAX_INPUT_BYTES:
            raise SystemExit("request too large")
        data = requests.read(size)
        _limit_cpu_from_now()
        replies.write(json.dumps({"verdict": verdict(data)}) + "\n")
        replies.flush()


def main() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    logging.disable(logging.CRITICAL)  # pypdf reports what it repairs; only the verdict matters
    import pypdf  # noqa: F401  (imported once, before the first CV)

    serve(sys.stdin.buffer, sys.stdout)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
