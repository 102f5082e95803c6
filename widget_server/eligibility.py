"""Whether a target can receive requests now, and why not.

One query per target kind, whatever the number of targets asked about.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from databases import Database

from . import tables
from .database import fetch_tuples
from .targets import TARGETS, Target, TargetKind, TargetSpec

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
    return [judge(t, found.get(t), max_offer_applications, today) for t in targets]


async def check(database: Database, target: Target, *, max_offer_applications: int) -> Eligibility:
    [result] = await check_many(database, [target], max_offer_applications=max_offer_applications)
    return result


# What closes an offer (besides its contact): `_reason`'s optional arguments.
_OFFER_CLOSURE = ("status", "closed_reason", "expires_on", "application_count")


def judge(
    target: Target, row: Mapping[str, Any] | None, max_offer_applications: int, today: dt.date
) -> Eligibility:
    """The verdict on a target from its directory row (None: not in the directory)."""
    if row is None:
        return Eligibility(target, "unknown_target")
    view = target.spec.describe(row, target.ref)
    offer = target.kind == "offer"
    closure = [row[c] for c in _OFFER_CLOSURE] if offer else []
    reason = _reason(
        offer,
        row["contact_email"],
        row["opted_out_at"],
        row["bounced_at"],
        *closure,
        max_offer_applications=max_offer_applications,
        today=today,
    )
    return Eligibility(target, reason, name=view["name"], city=view["city"], record=row)


def _reason(
    offer: bool,
    contact_email: str | None,
    opted_out_at: object,
    bounced_at: object,
    status: str | None = None,
    closed_reason: str | None = None,
    expires_on: dt.date | None = None,
    application_count: int = 0,
    *,
    max_offer_applications: int,
    today: dt.date,
) -> str | None:
    """The rule, for a target that exists: the first reason that applies, or None."""
    if offer and (
        status != "active"
        or closed_reason is not None
        or (expires_on is not None and expires_on < today)
        or application_count >= max_offer_applications
    ):
        return "closed"
    if not contact_email:
        return "no_contact"
    if opted_out_at is not None:
        return "opted_out"
    if bounced_at is not None:
        return "bounced"
    return None


# --- the widget's question, read lean ----------------------------------------------
#
# "Show a button?" is asked for every listing page of every partner. Answering it
# through `check_many` built a SQLAlchemy statement for each kind of each batch,
# compiled and bound it, and converted every column of every row. Here one
# statement, written once for each driver, reads the three kinds in one round
# trip (UNION ALL of one select per kind), only the columns the answer and the
# rule need, with the references of each kind as one parameter (a JSON array on
# SQLite, an array on PostgreSQL): the statement is the same whatever the
# targets, so asyncpg prepares it once per connection. The rule is `_reason`,
# the same as above.


def _lean_select(spec: TargetSpec, parameter: str) -> str:
    name, city = spec.view["name"], spec.view["city"]
    opt_out = f'c."{spec.opt_out_column}"' if spec.opt_out_column else "NULL"
    offer = (
        't."status", t."closed_reason", t."expires_on", t."application_count"'
        if spec.name == "offer"
        else "NULL, NULL, NULL, 0"
    )
    return (
        f'SELECT \'{spec.name}\', t."{spec.key}", t."{name}", t."{city}", t."contact_email", '
        f'{opt_out}, c."bounced_at", {offer} FROM "{spec.table.name}" AS t '
        f'LEFT OUTER JOIN "{tables.contacts.name}" AS c ON c."email" = t."contact_email" '
        f'WHERE t."{spec.key}" {parameter}'
    )


_LEAN = {
    "sqlite": " UNION ALL ".join(
        _lean_select(spec, "IN (SELECT value FROM json_each(?))") for spec in TARGETS.values()
    ),
    "postgresql": " UNION ALL ".join(
        _lean_select(spec, f"= ANY(${n}::text[])") for n, spec in enumerate(TARGETS.values(), 1)
    ),
}


async def answers(
    database: Database,
    targets: Iterable[Target],
    *,
    max_offer_applications: int,
    today: dt.date | None = None,
) -> dict[Target, dict[str, Any]] | None:
    """Each target's answer as the API gives it (`Eligibility.as_json`), read
    lean; None when `database` cannot read that way (then use `check_many`)."""
    targets = list(dict.fromkeys(targets))
    today = today or dt.datetime.now(dt.UTC).date()
    refs: dict[str, list[str]] = {kind: [] for kind in TARGETS}
    for target in targets:
        refs[target.kind].append(target.ref)
    postgresql = database.url.dialect == "postgresql"
    rows = await fetch_tuples(
        database, _LEAN, [kind_refs if postgresql else json.dumps(kind_refs) for kind_refs in refs.values()]
    )
    if rows is None:
        return None
    found: dict[Target, dict[str, Any]] = {}
    for kind, key, name, city, contact, opted_out_at, bounced_at, status, closed, expires, count in rows:
        if isinstance(expires, str):  # SQLite keeps dates as ISO text
            expires = dt.date.fromisoformat(expires)
        reason = _reason(
            kind == "offer",
            contact,
            opted_out_at,
            bounced_at,
            status,
            closed,
            expires,
            count,
            max_offer_applications=max_offer_applications,
            today=today,
        )
        found[Target(kind, key)] = {
            "target": f"{kind}:{key}",
            "eligible": reason is None,
            "reason": reason,
            "name": name,
            "city": city,
        }
    unknown = {"eligible": False, "reason": "unknown_target", "name": None, "city": None}
    return {target: found.get(target) or {"target": str(target), **unknown} for target in targets}
