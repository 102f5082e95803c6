"""Runs in a child process of its own (`python -m widget_server.pdf_check`): reads a
PDF on stdin, prints a one-line JSON verdict. A PDF parser on untrusted input may
take long or use much memory; in a child with CPU and memory limits, killed on
a deadline by the parent (`cv.inspect_pdf`), it can never hang the service.

Imports nothing of the service, so it starts fast.
"""

from __future__ import annotations

import io
import json
import logging
import resource
import sys
from typing import Any

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


def main() -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS + 1))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    logging.disable(logging.CRITICAL)  # pypdf reports what it repairs; only the verdict matters
    data = sys.stdin.buffer.read(MAX_INPUT_BYTES)
    sys.stdout.write(json.dumps({"verdict": verdict(data)}) + "\n")


if __name__ == "__main__":
    main()
