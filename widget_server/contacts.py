"""What the service remembers about a directory contact (keyed by the case-folded
address): opted out of spontaneous applications or of rdv requests, bouncing.

The one way to write it: an opt-out page, a bounce and a directory import all
mark a contact through `mark`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from . import tables

_MARKS = ("company_opt_out_at", "formation_opt_out_at", "bounced_at", "bounce_reason")


def _upsert(columns: tuple[str, ...], overwrite: bool) -> sa.TextClause:
    unknown = set(columns) - set(_MARKS)
    if unknown:  # column names go into the SQL text: only ours, never a request's
        raise ValueError(f"not a contact mark: {sorted(unknown)}")
    # Without `overwrite`, a mark sets what is not set yet and never changes what is
    # (a directory import must not move an opt-out's date).
    updates = ", ".join(
        f"{c} = excluded.{c}" if overwrite else f"{c} = COALESCE(contacts.{c}, excluded.{c})" for c in columns
    )
    query = sa.text(
        f"INSERT INTO contacts (email, {', '.join(columns)}) "
        f"VALUES (:email, {', '.join(':' + c for c in columns)}) "
        f"ON CONFLICT (email) DO UPDATE SET {updates}"
    )
    return query.bindparams(
        *(sa.bindparam(c, type_=tables.UTCDateTime()) for c in columns if c.endswith("_at"))
    )


async def mark(
    database: Any, email: str, values: Mapping[str, dt.datetime | str | None], *, overwrite: bool = True
) -> None:
    """Set `values` (columns of `contacts`) for `email`, creating its row if needed.
    `database` is a `Database` or one of its connections."""
    columns = tuple(sorted(values))
    await database.execute(_upsert(columns, overwrite).bindparams(email=email, **values))


async def clear(database: Any, email: str, column: str) -> None:
    if column not in _MARKS:
        raise ValueError(f"not a contact mark: {column}")
    contacts = tables.contacts
    await database.execute(contacts.update().where(contacts.c.email == email).values({column: None}))
