"""The read path of eligibility: answers kept a few seconds in memory.

Every listing page of every partner asks about its targets before anyone clicks,
and the same popular offers are asked about again and again; reading them from
the database for every batch made this the slowest path of the service.

The promise (SPEC section 7): an opt-out, a bounce or a closure hides the button
within PROMISE_SECONDS on every instance. An answer may be CACHE_SECONDS old
here, then HTTP_MAX_AGE old in a browser or a shared cache: together, no more
than the promise. Each instance reads the database again once its copy expires,
so what another instance wrote is seen in time too.

Writes made through this process (an opt-out, a bounce, a closure, an import)
empty the cache once committed, so this instance answers from the new rows at
once; other instances within the promise.

Only the widget's question "show a button?" is answered from here. A submission
checks eligibility, and the application cap, against the database inside its
write transaction (contact_requests), never from this cache.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

from databases import Database

from . import eligibility
from .database import DirectoryWrites
from .targets import Target

PROMISE_SECONDS = 5
CACHE_SECONDS = 4.0
HTTP_MAX_AGE = 1
# Bounds on memory (an answer of 100 targets is about 10 kB, one target about
# 150 B): past them, expired answers are dropped, then all of them. A few seconds
# of traffic fit; the `serve` process stays well under its 100 MB budget.
MAX_ENTRIES = 50_000
MAX_PAGES = 2_000

Clock = Callable[[], float]


# Starlette's JSONResponse encoding, so the answer is the same byte for byte
# (one encoder for every answer: `json.dumps` with options makes one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


def _json(value: object) -> bytes:
    return _ENCODER.encode(value).encode()


class EligibilityCache:
    """Each target's JSON answer, kept until `seconds` after it was read."""

    def __init__(
        self,
        database: Database,
        max_offer_applications: int,
        *,
        writes: DirectoryWrites | None = None,
        seconds: float = CACHE_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        if seconds + HTTP_MAX_AGE > PROMISE_SECONDS:
            raise ValueError(f"answers could be {seconds + HTTP_MAX_AGE} s old; promised {PROMISE_SECONDS}")
        self.database = database
        self.max_offer_applications = max_offer_applications
        self.seconds = seconds
        self.clock = clock
        # Writes made through this process are seen at once: they empty the cache.
        self.writes = writes or DirectoryWrites()
        self.generation = self.writes.generation
        self.entries: dict[Target, tuple[float, bytes]] = {}
        # Whole answers by query string: a listing page asks the same question for
        # every visitor, and parsing 50 targets costs more than the rest of the answer.
        self.pages: dict[bytes, tuple[float, bytes]] = {}
        # Answers given from memory only, and those that read the database (the bench
        # reports them).
        self.hits = 0
        self.misses = 0

    def _current(self) -> int:
        generation = self.writes.generation
        if generation != self.generation:
            self.entries, self.pages, self.generation = {}, {}, generation
        return generation

    def page(self, query: bytes) -> bytes | None:
        """The answer given to this exact query string, while it is fresh."""
        self._current()
        entry = self.pages.get(query)
        if entry is not None and entry[0] > self.clock():
            self.hits += 1
            return entry[1]
        return None

    async def answer(self, targets: Sequence[Target | str], query: bytes | None = None) -> bytes:
        """The JSON body `{"results": [...]}` for `targets`, in their order (a
        string: a malformed target, answered `invalid_target`); kept for
        `page(query)` until its oldest part expires. An answer with malformed
        targets is not kept whole: nobody asks it twice but by mistake, or to
        fill memory."""
        # Read before the query: an answer never outlives `seconds` after the read.
        now = self.clock()
        generation = self._current()
        entries = self.entries
        # Each result's JSON, or the target whose JSON is still to be read.
        parts: list[bytes | Target] = []
        missing: dict[Target, None] = {}
        oldest = now + self.seconds
        for target in targets:
            if isinstance(target, str):
                parts.append(_json(eligibility.invalid_json(target)))
                query = None
                continue
            entry = entries.get(target)
            if entry is not None and entry[0] > now:
                parts.append(entry[1])
                oldest = min(oldest, entry[0])
            else:
                parts.append(target)
                missing[target] = None
        if missing:
            if len(entries) + len(missing) > MAX_ENTRIES:
                entries = self._shrink(now)
            fresh = await eligibility.answers(
                self.database, missing, max_offer_applications=self.max_offer_applications
            )
            if fresh is None:
                fresh = {
                    result.target: result.as_json()
                    for result in await eligibility.check_many(
                        self.database, missing, max_offer_applications=self.max_offer_applications
                    )
                }
            expires = now + self.seconds
            found = {target: _json(answer) for target, answer in fresh.items()}
            if self.writes.generation != generation:
                # A write was committed while we read: these rows may predate it.
                query = None
            else:
                for target, part in found.items():
                    entries[target] = (expires, part)
            parts = [found[part] if isinstance(part, Target) else part for part in parts]
        body = b'{"results":[' + b",".join(p for p in parts if isinstance(p, bytes)) + b"]}"
        if missing:
            self.misses += 1
        else:
            self.hits += 1
        if query is not None:
            if len(self.pages) >= MAX_PAGES:
                self.pages = {q: e for q, e in self.pages.items() if e[0] > now}
                if len(self.pages) >= MAX_PAGES // 2:
                    self.pages = {}
            self.pages[query] = (oldest, body)
        return body

    def _shrink(self, now: float) -> dict[Target, tuple[float, bytes]]:
        self.entries = {t: e for t, e in self.entries.items() if e[0] > now}
        if len(self.entries) > MAX_ENTRIES // 2:
            self.entries = {}
        return self.entries
