"""The `pdf_check` child processes, started once and reused for many CVs.

Starting a Python process and importing pypdf for every CV cost more than the
rest of a submission (about 0.2 s of CPU each, more than a second on a busy
machine). Here each of CHECKERS threads owns one child and hands it CVs one at a
time; a CV is still parsed out of the service's process, under the child's CPU
and memory limits, and the parent still cuts it at `cv.PDF_CHECK_SECONDS`.

What goes wrong stays with the CV that caused it: a child that runs past the
deadline is killed (`timeout`), one that dies while parsing (its CPU or memory
limit, a crash) gives `unreadable`; either way the next CV gets a fresh child.
A child found dead before it was handed a CV (killed from outside) is replaced
and the CV checked by the new one. A child is also replaced after
CHECKS_PER_CHILD CVs, so nothing one parse leaves behind lasts long.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

# Children (and threads waiting on them): CVs checked at the same time.
CHECKERS = 2
CHECKS_PER_CHILD = 500


class _Child:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "widget_server.pdf_check"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.checks = 0
        # Killed on the deadline, or died while parsing: never handed another CV.
        self.broken = False

    def check(self, data: bytes, seconds: float) -> str:
        """The child's verdict on `data`; raises BrokenPipeError when the child
        was already gone before it could read the CV."""
        process = self.process
        assert process.stdin is not None and process.stdout is not None
        self.checks += 1
        timed_out = threading.Event()

        def cut() -> None:
            timed_out.set()
            process.kill()

        timer = threading.Timer(seconds, cut)
        timer.start()
        try:
            try:
                process.stdin.write(b"%d\n" % len(data))
                process.stdin.flush()
            except BrokenPipeError:
                self.broken = True
                if timed_out.is_set():
                    return "timeout"
                raise
            try:
                process.stdin.write(data)
                process.stdin.flush()
                line = process.stdout.readline(1024)
            except (BrokenPipeError, ValueError):
                line = b""
        finally:
            timer.cancel()
        if timed_out.is_set():
            self.broken = True
            return "timeout"
        try:
            return str(json.loads(line)["verdict"])
        except (ValueError, KeyError, TypeError):
            # Killed by its CPU or memory limit, or crashed: not a PDF we forward.
            self.broken = True
            return "unreadable"

    @property
    def usable(self) -> bool:
        return not self.broken and self.process.poll() is None and self.checks < CHECKS_PER_CHILD

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                # Closing flushes what the dead child never read: a broken pipe then.
                with contextlib.suppress(OSError):
                    pipe.close()


class Checkers:
    """CHECKERS threads, each with its child, started on first use."""

    def __init__(self, size: int = CHECKERS) -> None:
        self._local = threading.local()
        self._children: set[_Child] = set()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(size, thread_name_prefix="pdf-check")

    def _child(self) -> _Child:
        child: _Child | None = getattr(self._local, "child", None)
        if child is not None and child.usable:
            return child
        if child is not None:
            self._retire(child)
        child = self._local.child = _Child()
        with self._lock:
            self._children.add(child)
        return child

    def _retire(self, child: _Child) -> None:
        with self._lock:
            self._children.discard(child)
        child.close()
        self._local.child = None

    def _check(self, data: bytes, seconds: float) -> str:
        for attempt in (1, 2):
            child = self._child()
            try:
                verdict = child.check(data, seconds)
            except BrokenPipeError:
                # Gone before it read anything (killed while idle): a new one.
                self._retire(child)
                if attempt == 2:
                    return "unreadable"
                continue
            if child.broken:
                self._retire(child)
            return verdict
        return "unreadable"

    async def check(self, data: bytes, seconds: float) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._check, data, seconds)

    def pids(self) -> list[int]:
        """The process ids of the live children (tests look at them)."""
        with self._lock:
            return [c.process.pid for c in self._children if c.process.poll() is None]

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            children, self._children = self._children, set()
        for child in children:
            child.close()


_checkers: tuple[int, Checkers] | None = None
_lock = threading.Lock()


def checkers() -> Checkers:
    """This process's checkers (a forked process makes its own)."""
    global _checkers
    with _lock:
        if _checkers is None or _checkers[0] != os.getpid():
            _checkers = (os.getpid(), Checkers())
            atexit.register(_checkers[1].close)
        return _checkers[1]
