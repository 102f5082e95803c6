"""`widget-server stats`: requests, answers and deliveries, per kind and per partner."""

from __future__ import annotations

import sqlalchemy as sa
from databases import Database

from . import outbox as outbox_
from . import tables
from .sandbox import live_jobs


async def stats(database: Database) -> str:
    requests = tables.contact_requests
    lines = ["Requests by kind and status:"]
    # Real traffic only: test keys' requests and their emails are counted apart.
    real = requests.c.test.is_(False)
    rows = await database.fetch_all(
        sa.select(requests.c.kind, requests.c.status, sa.func.count())
        .where(real)
        .group_by(requests.c.kind, requests.c.status)
        .order_by(requests.c.kind, requests.c.status)
    )
    totals: dict[str, list[int]] = {}
    for kind, status, count in (tuple(r._mapping.values()) for r in rows):
        lines.append(f"  {kind:<12} {status:<10} {count:>8}")
        counts = totals.setdefault(kind, [0, 0])
        counts[0] += count
        counts[1] += count if status == "answered" else 0
    for kind, (requested, answered) in totals.items():
        lines.append(f"  {kind:<12} answer rate {100 * answered / requested:5.1f} %")
    lines.append("Requests by partner:")
    for caller, count in (
        tuple(r._mapping.values())
        for r in await database.fetch_all(
            sa.select(requests.c.caller, sa.func.count())
            .where(real)
            .group_by(requests.c.caller)
            .order_by(sa.func.count().desc())
            .limit(20)
        )
    ):
        lines.append(f"  {caller:<30} {count:>8}")
    tests = await database.fetch_val(sa.select(sa.func.count()).where(requests.c.test.is_(True)))
    lines.append(f"Test requests (test keys, left out of every figure here): {tests}")
    lines.append("Partner webhooks by status:")
    lines += await _by_status(database, outbox_.WEBHOOK)
    lines.append("Emails by status:")
    lines += await _by_status(database, outbox_.EMAIL)
    lines.append("Failed emails by kind:")
    for kind, count in (await outbox_.failures_by_kind(database)).items():
        lines.append(f"  {kind:<20} {count:>8}")
    return "\n".join(lines)


async def _by_status(database: Database, kind: str) -> list[str]:
    outbox = tables.outbox
    rows = await database.fetch_all(
        sa.select(outbox.c.status, sa.func.count())
        .where(outbox.c.kind == kind, live_jobs())
        .group_by(outbox.c.status)
        .order_by(outbox.c.status)
    )
    return [f"  {status:<12} {count:>8}" for status, count in (tuple(r._mapping.values()) for r in rows)]
