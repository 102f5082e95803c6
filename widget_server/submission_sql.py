"""The statements of a submission's write transaction, each built and compiled
once per dialect (`database.Prepared`): a submission binds values only.

Building a SQLAlchemy statement, working out its cache key and binding it cost
more than running it (a dozen statements per submission); these statements have
a fixed shape, so they are made once, like eligibility's raw read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from databases import Database
from sqlalchemy.engine.interfaces import Dialect

from . import tables
from .database import Prepared, Statement, dialect
from .kinds import Quota
from .targets import TARGETS, TargetKind

# The columns a quota's scope compares with the new request's.
QUOTA_SCOPES: Mapping[str, tuple[str, ...]] = {
    "email_target": ("email_key", "target_kind", "target_ref"),
    "email": ("email_key",),
    "caller_company": ("caller_origin", "caller", "siret"),
}

REQUEST_COLUMNS = (
    "id",
    "kind",
    "target_kind",
    "target_ref",
    "siret",
    "caller",
    "caller_origin",
    "api_key_id",
    "test",
    "first_name",
    "last_name",
    "email",
    "email_key",
    "phone",
    "role",
    "topics",
    "message",
    "contact_email",
    "status",
    "created_at",
    "updated_at",
)
CV_COLUMNS = ("request_id", "filename", "content_type", "size", "data")
TOKEN_COLUMNS = ("token_hash", "request_id", "contact_email", "action", "expires_at", "created_at")
OUTBOX_COLUMNS = (
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
    "kind",
    "request_id",
    "test_mailbox",
    "template",
    "envelope_sender",
    "recipient",
    "message_id",
    "raw",
    "attach_cv",
)
IDEMPOTENCY_COLUMNS = ("caller", "key", "fingerprint", "request_id", "created_at")


def _insert(table: sa.Table, columns: Sequence[str], rows: int = 1) -> sa.Insert:
    """`INSERT … VALUES (…)[, (…)]`: the value of column `c` in row `i` is bound as `c_i`."""
    values = [{c: sa.bindparam(f"{c}_{i}", type_=table.c[c].type) for c in columns} for i in range(rows)]
    return table.insert().values(values if rows > 1 else values[0])


def row_values(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The values of `rows` by the names `_insert` binds them under."""
    return {f"{c}_{i}": row[c] for i, row in enumerate(rows) for c in columns}


class Statements:
    """The submission's statements for one dialect, made on first use."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.postgresql = dialect.name == "postgresql"
        self._made: dict[Any, Prepared] = {}

    def _get(self, key: Any, build: Any) -> Prepared:
        prepared = self._made.get(key)
        if prepared is None:
            prepared = self._made[key] = Prepared(build(), self.dialect)
        return prepared

    def target(self, kind: TargetKind) -> Prepared:
        """The target's directory row with its contact's opt-out and bounce, as
        `eligibility.check_many` reads it."""

        def build() -> sa.Select[Any]:
            spec = TARGETS[kind]
            contacts = tables.contacts
            opt_out = contacts.c[spec.opt_out_column] if spec.opt_out_column else sa.null()
            return (
                sa.select(spec.table, opt_out.label("opted_out_at"), contacts.c.bounced_at)
                .select_from(spec.table.outerjoin(contacts, contacts.c.email == spec.table.c.contact_email))
                .where(spec.key_column == sa.bindparam("ref", type_=spec.key_column.type))
            )

        return self._get(("target", kind), build)

    def quotas(self, kind: str, quotas: Sequence[Quota], test: bool) -> Prepared:
        """Every quota of a request kind in one query: per quota, how many of the
        candidate's (or caller's) requests count and the oldest of them. Binds
        `kind`, `q<i>_<column>` and, for a quota with a window, `q<i>_since`."""
        shape = tuple((q.scope, q.window is not None) for q in quotas)

        def build() -> sa.Select[Any]:
            requests = tables.contact_requests
            columns: list[Any] = []
            conditions = []
            for index, (scope, windowed) in enumerate(shape):
                parts = [requests.c[name] == sa.bindparam(f"q{index}_{name}") for name in QUOTA_SCOPES[scope]]
                if windowed:
                    parts.append(
                        requests.c.created_at > sa.bindparam(f"q{index}_since", type_=tables.UTCDateTime())
                    )
                condition = sa.and_(*parts)
                conditions.append(condition)
                columns += [
                    sa.func.count(sa.case((condition, requests.c.id))),
                    sa.func.min(sa.case((condition, requests.c.created_at))),
                ]
            # Test requests count apart (see contact_requests._check_quotas).
            return sa.select(*columns).where(
                requests.c.kind == sa.bindparam("kind"), requests.c.test.is_(test), sa.or_(*conditions)
            )

        return self._get(("quotas", kind, shape, test), build)

    def request(self) -> Prepared:
        return self._get("request", lambda: _insert(tables.contact_requests, REQUEST_COLUMNS))

    def cv(self) -> Prepared:
        return self._get("cv", lambda: _insert(tables.cv_files, CV_COLUMNS))

    def tokens(self, rows: int) -> Prepared:
        return self._get(("tokens", rows), lambda: _insert(tables.reply_tokens, TOKEN_COLUMNS, rows))

    def emails(self, rows: int) -> Prepared:
        return self._get(("emails", rows), lambda: _insert(tables.outbox, OUTBOX_COLUMNS, rows))

    def idempotency_key(self) -> Prepared:
        return self._get("idempotency", lambda: _insert(tables.idempotency_keys, IDEMPOTENCY_COLUMNS))

    def count_application(self) -> Prepared:
        """One more application to an offer, only below its cap (the condition is
        in the UPDATE itself: PostgreSQL re-checks it on the row it waited for)."""

        def build() -> sa.Update:
            offers = tables.offers
            return (
                offers.update()
                .where(
                    offers.c.offer_id == sa.bindparam("ref", type_=sa.Text()),
                    offers.c.application_count < sa.bindparam("cap", type_=sa.Integer()),
                )
                .values(application_count=offers.c.application_count + 1)
                .returning(offers.c.offer_id)
            )

        return self._get("count", build)

    def lock_candidate(self) -> str:
        """PostgreSQL: serialises one candidate's concurrent requests of one kind."""
        return "SELECT pg_advisory_xact_lock(hashtext($1))"

    def writes(
        self,
        inserts: Sequence[tuple[Prepared, Mapping[str, Any]]],
        last: tuple[Prepared, Mapping[str, Any]] | None,
    ) -> list[Statement]:
        """The inserts then `last` (whose rows are fetched: RETURNING): on SQLite
        one statement each (one hand-off for the whole transaction anyway); on
        PostgreSQL ONE statement, the inserts as data-modifying `WITH` parts of
        `last` (or of `SELECT 1`), so one round trip."""
        if not self.postgresql:
            statements: list[Statement] = [(p.sql, p.args(v), 0) for p, v in inserts]
            if last is not None:
                statements.append((last[0].sql, last[0].args(last[1]), None))
            return statements
        parts: list[str] = []
        args: list[Any] = []
        for index, (prepared, values) in enumerate(inserts):
            parts.append(f"w{index} AS ({prepared.numbered(len(args))})")
            args += prepared.args(values)
        final = "SELECT 1"
        if last is not None:
            final = last[0].numbered(len(args))
            args += last[0].args(last[1])
        return [(f"WITH {', '.join(parts)} {final}" if parts else final, args, None)]


_BY_DIALECT: dict[str, Statements] = {}


def statements(database: Database) -> Statements:
    """The statements for `database`'s dialect."""
    name = database.url.dialect
    made = _BY_DIALECT.get(name)
    if made is None:
        made = _BY_DIALECT[name] = Statements(dialect(database))
    return made


def quota_values(quotas: Sequence[Quota], row: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    values: dict[str, Any] = {"kind": row["kind"]}
    for index, quota in enumerate(quotas):
        for name in QUOTA_SCOPES[quota.scope]:
            values[f"q{index}_{name}"] = row[name]
        if quota.window is not None:
            values[f"q{index}_since"] = now - quota.window
    return values
