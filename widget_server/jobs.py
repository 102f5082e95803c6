"""Periodic work done by the email workers (the reminders), wherever they run.

Each job has one row in `jobs`. A worker runs a job only after claiming it with one
conditional UPDATE (due, and no live lease), which also sets the next due time: with
any number of workers, a job runs once per period. The lease only matters if a run
outlasts the period; a worker that dies mid-run leaves the job to the next period.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa
from databases import Database

from . import tables

_jobs = tables.jobs


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    every: dt.timedelta
    # Called with the time of the claim; returns how many things it did (for the log).
    run: Callable[[dt.datetime], Awaitable[int]]


_ENSURE = sa.text(
    "INSERT INTO jobs (name, next_run_at) VALUES (:name, :now) ON CONFLICT (name) DO NOTHING"
).bindparams(sa.bindparam("now", type_=tables.UTCDateTime()))


async def claim(
    database: Database, job: PeriodicJob, owner: str, now: dt.datetime, *, lease: dt.timedelta
) -> bool:
    """True when `owner` may run `job` now; the next run is then due `job.every` later."""
    update = (
        _jobs.update()
        .where(
            _jobs.c.name == job.name,
            _jobs.c.next_run_at <= now,
            sa.or_(_jobs.c.lease_until.is_(None), _jobs.c.lease_until < now),
        )
        .values(next_run_at=now + job.every, lease_owner=owner, lease_until=now + lease)
        .returning(_jobs.c.name)
    )
    claimed = await database.fetch_val(update)
    if claimed is None and await due_at(database, job) is None:  # the job's first run ever
        await database.execute(_ENSURE.bindparams(name=job.name, now=now))
        claimed = await database.fetch_val(update)
    return claimed is not None


async def due_at(database: Database, job: PeriodicJob) -> dt.datetime | None:
    """When `job` is next due (None: it never ran)."""
    value = await database.fetch_val(sa.select(_jobs.c.next_run_at).where(_jobs.c.name == job.name))
    return value if isinstance(value, dt.datetime) else None


async def release(database: Database, job: PeriodicJob, owner: str) -> None:
    await database.execute(
        _jobs.update()
        .where(_jobs.c.name == job.name, _jobs.c.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )
