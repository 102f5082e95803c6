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
from .targets import Target, TargetKind

# The order in which reasons are checked; the first that applies is given.
REASONS = ("unknown_target", "closed", "no_contact", "opted_out", "bounced")


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


_TABLES: dict[TargetKind, tuple[sa.Table, sa.Column[Any], sa.Column[Any] | None]] = {
    "offer": (tables.offers, tables.offers.c.offer_id, None),
    "company": (tables.companies, tables.companies.c.siret, tables.contacts.c.company_opt_out_at),
    "formation": (
        tables.formations,
        tables.formations.c.cle_ministere_educatif,
        tables.contacts.c.formation_opt_out_at,
    ),
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
        table, key, opt_out = _TABLES[kind]
        query = (
            sa.select(
                table,
                (opt_out if opt_out is not None else sa.null()).label("opted_out_at"),
                tables.contacts.c.bounced_at,
            )
            .select_from(table.outerjoin(tables.contacts, tables.contacts.c.email == table.c.contact_email))
            .where(key.in_(sorted(refs)))
        )
        for row in await database.fetch_all(query):
            mapping = dict(row._mapping)
            found[Target(kind, mapping[key.name])] = mapping
    return [_judge(t, found.get(t), max_offer_applications, today) for t in targets]


async def check(database: Database, target: Target, *, max_offer_applications: int) -> Eligibility:
    [result] = await check_many(database, [target], max_offer_applications=max_offer_applications)
    return result


def _judge(
    target: Target, row: Mapping[str, Any] | None, max_offer_applications: int, today: dt.date
) -> Eligibility:
    if row is None:
        return Eligibility(target, "unknown_target")
    name = row.get("title") if target.kind != "company" else row["name"]
    info = {"name": name, "city": row["city"], "record": row}
    if target.kind == "offer" and (
        row["status"] != "active"
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
