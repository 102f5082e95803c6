"""Whether a target can receive requests now, and why not.

One query per target kind, whatever the number of targets asked about.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from databases import Database

from . import tables
from .targets import TARGETS, Target, TargetKind

# The order in which reasons are checked; the first that applies is given.
REASONS = ("unknown_target", "closed", "no_contact", "opted_out", "bounced")
# A value that is not a well-formed reference (SPEC section 11): answered in a
# result of its own, so one bad placeholder never costs a page its other buttons.
INVALID_TARGET = "invalid_target"


def invalid_json(value: str) -> dict[str, Any]:
    """The result for a malformed target, named as it was asked."""
    return {"target": value, "eligible": False, "reason": INVALID_TARGET, "name": None, "city": None}


@dataclass(frozen=True)
class Eligibility:
    target: Target
    reason: str | None
    name: str | None = None
    city: str | None = None
    record: Mapping[str, Any] | None = None

    @property
    def eligible(self) -> bool:
        return self.reason is None

    def as_json(self) -> dict[str, Any]:
        return {
            "target": str(self.target),
            "eligible": self.eligible,
            "reason": self.reason,
            "name": self.name,
            "city": self.city,
        }


async def check_many(
    database: Database,
    targets: Iterable[Target],
    *,
    max_offer_applications: int,
    today: dt.date | None = None,
) -> list[Eligibility]:
    targets = list(targets)
    today = today or dt.datetime.now(dt.UTC).date()
    by_kind: dict[TargetKind, set[str]] = defaultdict(set)
    for target in targets:
        by_kind[target.kind].add(target.ref)
    found: dict[Target, Mapping[str, Any]] = {}
    for kind, refs in by_kind.items():
        spec = TARGETS[kind]
        contacts = tables.contacts
        opt_out = contacts.c[spec.opt_out_column] if spec.opt_out_column else sa.null()
        query = (
            sa.select(spec.table, opt_out.label("opted_out_at"), contacts.c.bounced_at)
            .select_from(spec.table.outerjoin(contacts, contacts.c.email == spec.table.c.contact_email))
            .where(spec.key_column.in_(sorted(refs)))
        )
        for row in await database.fetch_all(query):
            mapping = dict(row._mapping)
            found[Target(kind, mapping[spec.key])] = mapping
    return [_judge(t, found.get(t), max_offer_applications, today) for t in targets]


async def check(database: Database, target: Target, *, max_offer_applications: int) -> Eligibility:
    [result] = await check_many(database, [target], max_offer_applications=max_offer_applications)
    return result


def _judge(
    target: Target, row: Mapping[str, Any] | None, max_offer_applications: int, today: dt.date
) -> Eligibility:
    if row is None:
        return Eligibility(target, "unknown_target")
    view = target.spec.describe(row, target.ref)
    info = {"name": view["name"], "city": view["city"], "record": row}
    if target.kind == "offer" and (
        row["status"] != "active"
        or row["closed_reason"] is not None
        or (row["expires_on"] is not None and row["expires_on"] < today)
        or row["application_count"] >= max_offer_applications
    ):
        return Eligibility(target, "closed", **info)
    if not row["contact_email"]:
        return Eligibility(target, "no_contact", **info)
    if row["opted_out_at"] is not None:
        return Eligibility(target, "opted_out", **info)
    if row["bounced_at"] is not None:
        return Eligibility(target, "bounced", **info)
    return Eligibility(target, None, **info)
