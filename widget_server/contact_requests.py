"""The one pipeline both request kinds go through.

validate → read the target and write the two emails (no transaction open yet) →
in one write transaction: check the target again and the quotas, store the
request, its CV, its reply tokens and its two emails, count it against the
offer's cap → wake the email worker.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from databases import Database
from starlette.datastructures import State

from . import eligibility, emails, outbox, reply_tokens, submission_sql, tables
from .callers import CallerOrigin
from .cv import CV, check_cv
from .cv import verify as verify_cv
from .database import Script, directory_writes, fetch_tuples, run_script
from .kinds import KINDS, TOPIC_LABELS, Quota, RequestKind
from .local_time import datetime_fr
from .problems import Problem
from .settings import Settings
from .targets import BadTarget, Target, make_target
from .validation import FieldErrors, clean_email, clean_name, clean_phone, email_identity


@dataclass(frozen=True)
class Submission:
    """A request as received, from JSON, multipart or a form page."""

    kind: RequestKind
    fields: Mapping[str, Any]
    caller: str
    # "key": named by an API key; "form": signed into a form token. The two never
    # share quota counters (anyone can open a form page in a partner's name).
    caller_origin: CallerOrigin
    cv_filename: str = ""
    cv_data: bytes | None = None
    idempotency_key: str | None = None
    # The API key's row (None for a form): only that key reads the request's status.
    api_key_id: int | None = None
    # Made with a test key (sandbox.py).
    test: bool = False

    @property
    def caller_identity(self) -> str:
        # A test key's idempotency keys never answer for the live key of that partner.
        return f"{self.caller_origin}{'-test' if self.test else ''}:{self.caller}"


@dataclass(frozen=True)
class Accepted:
    id: str
    status: str
    created: bool
    # The candidate's private follow-up link, for the form's success page only
    # (never in the API's answer: that goes to the partner). None on a replay.
    followup_url: str | None = None


# The recruiter or CFA of every test request (sandbox.py): a test request never
# holds the directory's address. `.invalid` never resolves (RFC 6761).
STAND_IN_CONTACT = "recruteur@boite-de-test.invalid"

# A request's id: random, in hex. `is_request_id` checks an id read from a URL
# before any query (PostgreSQL refuses a NUL in text: that must be a 404, not a 500).
REQUEST_ID_BYTES = 10
_REQUEST_ID = re.compile(f"[0-9a-f]{{{2 * REQUEST_ID_BYTES}}}")


def is_request_id(value: str) -> bool:
    return _REQUEST_ID.fullmatch(value) is not None


# A request's status: stored, its email not yet accepted by the mail server;
# accepted by it; answered; its contact's address bounced; withdrawn by the candidate.
RECEIVED, DELIVERED, ANSWERED, BOUNCED = "received", "delivered", "answered", "bounced"
WITHDRAWN = "withdrawn"
STATUSES = (RECEIVED, DELIVERED, ANSWERED, BOUNCED, WITHDRAWN)
# Waiting for an answer.
OPEN = (RECEIVED, DELIVERED)


@dataclass(frozen=True)
class _Clean:
    target: Target
    values: dict[str, Any]
    cv: CV | None


def validate(submission: Submission, max_cv_bytes: int) -> _Clean:
    """Every field is checked before answering, so the candidate fixes all at once."""
    kind, data = submission.kind, submission.fields
    errors = FieldErrors()
    given = [(name, data.get(name)) for name in kind.target_fields if data.get(name)]
    target = Target("offer", "")
    if len(given) != 1:
        names = " ou ".join(kind.target_fields)
        errors.add(names.split(" ")[0], f"Indiquez exactement une cible : {names}.")
    else:
        name, ref = given[0]
        try:
            target = make_target(kind.target_fields[name], str(ref))
        except BadTarget as exc:
            errors.add(name, str(exc))
    values = {
        "last_name": clean_name(errors, "last_name", data.get("last_name"), "nom"),
        "first_name": clean_name(errors, "first_name", data.get("first_name"), "prénom"),
        "email": clean_email(errors, "email", data.get("email")),
        "phone": clean_phone(errors, "phone", data.get("phone")),
        **kind.clean_extras(errors, data),
    }
    cv = None
    if kind.needs_cv:
        if not submission.cv_data:
            errors.add("cv", "Joignez votre CV (PDF ou Word, 3 Mo au maximum).")
        else:
            try:
                cv = check_cv(submission.cv_filename, submission.cv_data, max_cv_bytes)
            except Problem as problem:
                if not errors:
                    raise
                errors.errors.extend(dict(e) for e in problem.errors)
    if errors:
        raise errors.problem()
    return _Clean(target, values, cv)


def _fingerprint(clean: _Clean, kind: RequestKind) -> str:
    payload = json.dumps(
        {"kind": kind.name, "target": str(clean.target), **clean.values}, sort_keys=True, default=str
    )
    digest = hashlib.sha256(payload.encode())
    if clean.cv is not None:
        digest.update(clean.cv.data)
    return digest.hexdigest()


# A target's directory row that changes between the read the emails are written
# from and the write transaction: the emails are written again from the new row.
# More than this many changes in a row (a directory rewritten non-stop): 503.
WRITE_ATTEMPTS = 3


async def submit(state: State, submission: Submission, now: dt.datetime | None = None) -> Accepted:
    """Validate; read the target and write the two emails outside any
    transaction; then, in one write transaction: check the target again (so that
    nothing can change it between the check and the write) and the quotas, store
    the request with its CV, tokens and emails, and count it against the offer's
    application cap (refused past it: nothing stays stored)."""
    settings, database = state.settings, state.database
    now = now or dt.datetime.now(dt.UTC)
    clean = validate(submission, settings.max_cv_bytes)
    # What an Idempotency-Key stands for: hashed only when there is one (it reads the whole CV).
    fingerprint = _fingerprint(clean, submission.kind) if submission.idempotency_key else ""
    if submission.idempotency_key:
        replay = await _replayed(
            database, submission.caller_identity, submission.idempotency_key, fingerprint
        )
        if replay is not None:
            return replay
    if clean.cv is not None:
        # Parsing and scanning take a moment: before the write transaction, never inside.
        await verify_cv(clean.cv, settings)
    statements = submission_sql.statements(database)
    target = clean.target
    # Read where short reads go (SQLite: inline, on the event loop's thread): the
    # emails are written from this row, outside the write transaction, which
    # checks that the row is still the same.
    prepared = statements.target(target.kind)
    rows = await fetch_tuples(
        getattr(state, "reads", None) or database, {database.url.dialect: prepared.sql}, [target.ref]
    )
    assert rows is not None, "a backend of database.py"
    record = prepared.records(rows)[0] if rows else None
    for _ in range(WRITE_ATTEMPTS):
        planned = _plan(settings, submission, clean, fingerprint, _eligible(record, target, settings), now)
        outcome = await run_script(database, _write(statements, settings, submission, clean, planned, now))
        if outcome is None:
            break
        record = outcome  # changed since it was read: written again from the new one
    else:
        raise Problem(
            503,
            "Le destinataire de cette demande vient de changer : réessayez dans un instant.",
            code="target_changing",
            headers={"Retry-After": "1"},
        )
    if target.kind == "offer" and not submission.test:
        # The offer's count changed: in-memory eligibility answers of this process
        # see it at once (a write through `databases` is counted the same way).
        directory_writes(database).bump()
    worker = getattr(state, "outbox_worker", None)
    if worker is not None:
        worker.wake()
    return Accepted(planned.row["id"], planned.row["status"], True, planned.followup_url)


def _eligible(record: Mapping[str, Any] | None, target: Target, settings: Settings) -> dict[str, Any]:
    """The target's row when it may receive requests now; else the Problem to answer."""
    today = dt.datetime.now(dt.UTC).date()
    verdict = eligibility.judge(target, record, settings.offer_max_applications, today)
    if verdict.reason == "unknown_target":
        raise Problem(404, "Cette offre, entreprise ou formation est introuvable.", code="unknown_target")
    if not verdict.eligible:
        raise Problem(
            409, NOT_ELIGIBLE.get(verdict.reason or "", NOT_ELIGIBLE["closed"]), code=verdict.reason
        )
    assert record is not None
    return dict(record)


def _addressed(record: Mapping[str, Any], target: Target) -> tuple[Any, ...]:
    """What the emails and the stored request take from the target's row."""
    return (record["contact_email"], *target.spec.describe(record, target.ref).values())


def _request_row(
    submission: Submission, clean: _Clean, record: Mapping[str, Any], now: dt.datetime
) -> dict[str, Any]:
    return {
        "id": secrets.token_hex(REQUEST_ID_BYTES),
        "kind": submission.kind.name,
        "target_kind": clean.target.kind,
        "target_ref": clean.target.ref,
        "siret": clean.target.spec.describe(record, clean.target.ref)["siret"],
        "caller": submission.caller,
        "caller_origin": submission.caller_origin,
        "api_key_id": submission.api_key_id,
        "test": submission.test,
        "first_name": clean.values["first_name"],
        "last_name": clean.values["last_name"],
        "email": clean.values["email"],
        "email_key": email_identity(clean.values["email"]),
        "phone": clean.values["phone"],
        "role": clean.values.get("role"),
        "topics": json.dumps(clean.values["topics"]) if "topics" in clean.values else None,
        "message": clean.values.get("message"),
        # A test request never holds the real recruiter's or CFA's address.
        "contact_email": STAND_IN_CONTACT if submission.test else record["contact_email"],
        "status": RECEIVED,
        "created_at": now,
        "updated_at": now,
    }


@dataclass(frozen=True)
class _Plan:
    """What the write transaction stores, all made before it starts."""

    record: dict[str, Any]
    row: dict[str, Any]
    cv: dict[str, Any] | None
    tokens: list[dict[str, Any]]
    emails: list[dict[str, Any]]
    idempotency: dict[str, Any] | None
    followup_url: str


def _plan(
    settings: Settings,
    submission: Submission,
    clean: _Clean,
    fingerprint: str,
    record: dict[str, Any],
    now: dt.datetime,
) -> _Plan:
    """The request's rows and its two emails, written before the transaction (a
    message that may not go out raises here: nothing is stored)."""
    kind = submission.kind
    row = _request_row(submission, clean, record, now)
    request_id = row["id"]
    target_view = clean.target.spec.describe(record, clean.target.ref)
    tokens = reply_tokens.issue_set(
        request_id,
        row["contact_email"],
        kind.actions_for(clean.target.kind),
        ttl=dt.timedelta(days=kind.token_days),
        public_url=settings.public_url,
        now=now,
    )
    # The candidate's link: valid as long as their data is kept (anonymising deletes it).
    followup_url, followup_token = reply_tokens.issue(
        request_id,
        row["email"],
        reply_tokens.FOLLOWUP,
        ttl=dt.timedelta(days=settings.personal_data_retention_days),
        public_url=settings.public_url,
        now=now,
    )
    stored = StoredRequest(row, kind, clean.target, target_view)
    pro = compose_pro_email(settings, stored, tokens, now=now)
    ack = emails.compose(
        settings,
        kind.ack_email,
        # The acknowledgement carries a copy of what was sent, the CV's name included.
        {
            **stored.context(settings.public_url),
            "cv_filename": clean.cv.filename if clean.cv else None,
            "followup_url": followup_url,
        },
        to=emails.address(f"{row['first_name']} {row['last_name']}", row["email"]),
        now=now,
    )
    # Every email about a test key's request stays in the test mailbox (sandbox.py).
    queued = [
        outbox.email_row(
            pro,
            template=kind.pro_email,
            request_id=request_id,
            attach_cv=clean.cv is not None,
            test_mailbox=submission.test,
            now=now,
        ),
        outbox.email_row(
            ack, template=kind.ack_email, request_id=request_id, test_mailbox=submission.test, now=now
        ),
    ]
    cv = None
    if clean.cv is not None:
        cv = {
            "request_id": request_id,
            "filename": clean.cv.filename,
            "content_type": clean.cv.content_type,
            "size": len(clean.cv.data),
            "data": clean.cv.data,
        }
    idempotency = None
    if submission.idempotency_key:
        idempotency = {
            "caller": submission.caller_identity,
            "key": submission.idempotency_key,
            "fingerprint": fingerprint,
            "request_id": request_id,
            "created_at": now,
        }
    return _Plan(record, row, cv, [*tokens.rows, followup_token], queued, idempotency, followup_url)


def _write(
    statements: submission_sql.Statements,
    settings: Settings,
    submission: Submission,
    clean: _Clean,
    plan: _Plan,
    now: dt.datetime,
) -> Script[dict[str, Any] | None]:
    """The write transaction (`database.run_script`: on SQLite, one hand-off to
    aiosqlite's thread from BEGIN to COMMIT). Returns None once stored, or the
    target's row as it is now when it changed since the emails were written
    (nothing stored: the caller writes them again). Raises the Problem to answer
    when the target or a quota refuses the request: everything rolls back."""
    kind, row, target = submission.kind, plan.row, clean.target
    quotas = kind.quotas(settings)
    if statements.postgresql:
        # Serialise concurrent requests of one candidate, so two can't both pass a quota.
        yield [(statements.lock_candidate(), [f"{row['email_key']}|{kind.name}"], 0)]
    read_target = statements.target(target.kind)
    read_quotas = statements.quotas(kind.name, quotas, bool(row["test"]))
    found, counts = yield [
        (read_target.sql, read_target.args({"ref": target.ref}), 1),
        (read_quotas.sql, read_quotas.args(submission_sql.quota_values(quotas, row, now)), 1),
    ]
    # The target checked once more, here, where nothing can change it before the commit.
    record = read_target.records(found)[0] if found else None
    record = _eligible(record, target, settings)
    if _addressed(record, target) != _addressed(plan.record, target):
        return record
    _check_quotas(quotas, read_quotas.records(counts)[0], now)
    inserts = [(statements.request(), submission_sql.row_values(submission_sql.REQUEST_COLUMNS, [row]))]
    if plan.cv is not None:
        inserts.append((statements.cv(), submission_sql.row_values(submission_sql.CV_COLUMNS, [plan.cv])))
    inserts.append(
        (
            statements.tokens(len(plan.tokens)),
            submission_sql.row_values(submission_sql.TOKEN_COLUMNS, plan.tokens),
        )
    )
    inserts.append(
        (
            statements.emails(len(plan.emails)),
            submission_sql.row_values(submission_sql.OUTBOX_COLUMNS, plan.emails),
        )
    )
    if plan.idempotency is not None:
        inserts.append(
            (
                statements.idempotency_key(),
                submission_sql.row_values(submission_sql.IDEMPOTENCY_COLUMNS, [plan.idempotency]),
            )
        )
    # A test application takes none of the offer's real places. The count comes
    # last, so that the offer's row is locked (PostgreSQL) only from there to the
    # commit: concurrent applications to one offer wait on it one after the other.
    counting = target.kind == "offer" and not submission.test
    count = (
        (statements.count_application(), {"ref": target.ref, "cap": settings.offer_max_applications})
        if counting
        else None
    )
    results = yield statements.writes(inserts, count)
    if counting and not results[-1]:
        # Refused here, the transaction rolls back everything stored above.
        raise Problem(409, NOT_ELIGIBLE["closed"], code="closed")
    return None


NOT_ELIGIBLE = {
    "closed": "Cette offre n'est plus ouverte aux candidatures.",
    "no_contact": "Ce destinataire ne peut pas recevoir de demandes pour le moment.",
    "opted_out": "Ce destinataire ne souhaite plus recevoir de demandes par ce service.",
    "bounced": "L'adresse de ce destinataire ne fonctionne plus : il ne peut pas recevoir "
    "de demandes pour le moment.",
}


async def _replayed(database: Database, caller: str, key: str, fingerprint: str) -> Accepted | None:
    keys = tables.idempotency_keys
    row = await database.fetch_one(sa.select(keys).where(keys.c.caller == caller, keys.c.key == key))
    if row is None:
        return None
    if row._mapping["fingerprint"] != fingerprint:
        raise Problem(
            422,
            "Cette clé Idempotency-Key a déjà servi pour une autre demande.",
            code="idempotency_key_reused",
            errors=[{"field": "Idempotency-Key", "message": "déjà utilisée"}],
        )
    status = await database.fetch_val(
        sa.select(tables.contact_requests.c.status).where(
            tables.contact_requests.c.id == row._mapping["request_id"]
        )
    )
    return Accepted(row._mapping["request_id"], status or RECEIVED, False)


def _check_quotas(quotas: Sequence[Quota], counted: Mapping[str, Any], now: dt.datetime) -> None:
    """Raises the Problem of the first quota the request would go past. `counted`:
    per quota, how many requests count and the oldest of them
    (`submission_sql.Statements.quotas`, read inside the write transaction).
    Test requests count apart: a partner testing with a real person's address
    never uses up that person's quotas, nor its own real allowance per company."""
    values = list(counted.values())
    for index, quota in enumerate(quotas):
        count, oldest = values[2 * index] or 0, values[2 * index + 1]
        if count >= quota.max_count:
            raise _quota_problem(quota, oldest, now)


def _quota_problem(quota: Quota, oldest: Any, now: dt.datetime) -> Problem:
    if isinstance(oldest, str):
        oldest = dt.datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.UTC)
    if quota.window is None or oldest is None:
        return Problem(409, quota.message.format(max=quota.max_count), code="duplicate")
    again = oldest + quota.window
    detail = quota.message.format(max=quota.max_count, date=datetime_fr(again))
    extra = {"retry_after": again.isoformat()}
    if quota.scope == "email_target":
        return Problem(409, detail, code="duplicate", extra=extra)
    retry = max(1, int((again - now).total_seconds()))
    return Problem(429, detail, code="quota", extra=extra, headers={"Retry-After": str(retry)})


@dataclass(frozen=True)
class StoredRequest:
    """A stored request with what the pages and emails about it need."""

    row: dict[str, Any]
    kind: RequestKind
    target: Target
    view: dict[str, Any]

    def context(self, public_url: str) -> dict[str, Any]:
        return request_context(self.kind, self.row, self.view, public_url)


async def load_by_link(
    database: Database, token: str, actions: Collection[str]
) -> tuple[dict[str, Any], StoredRequest | None] | None:
    """The stored token of an emailed link made for one of `actions`, with its
    request (None once the request is gone); None when there is no such link."""
    found = await reply_tokens.find(database, token)
    if found is None or found["action"] not in actions:
        return None
    return found, await load(database, found["request_id"])


async def load(database: Database, request_id: str) -> StoredRequest | None:
    row = await database.fetch_one(
        tables.contact_requests.select().where(tables.contact_requests.c.id == request_id)
    )
    if row is None:
        return None
    data = dict(row._mapping)
    target = Target(data["target_kind"], data["target_ref"])
    view = target.spec.describe(await directory_record(database, target), target.ref)
    return StoredRequest(data, KINDS[data["kind"]], target, view)


async def directory_record(database: Database, target: Target) -> dict[str, Any] | None:
    """The target's directory row as it is now, or None when it is gone."""
    spec = target.spec
    record = await database.fetch_one(sa.select(spec.table).where(spec.key_column == target.ref))
    return dict(record._mapping) if record else None


async def ack_message_id(database: Database, stored: StoredRequest) -> str | None:
    """The candidate's acknowledgement: what every later email to them replies to."""
    outbox_ = tables.outbox
    value = await database.fetch_val(
        sa.select(outbox_.c.message_id).where(
            outbox_.c.request_id == stored.row["id"], outbox_.c.template == stored.kind.ack_email
        )
    )
    return str(value) if value else None


def compose_pro_email(
    settings: Settings,
    stored: StoredRequest,
    tokens: reply_tokens.TokenSet,
    *,
    reminder_of: str | None = None,
    now: dt.datetime,
) -> emails.Outgoing:
    """The recruiter's or CFA's email, on submission and as the reminder
    (`reminder_of`: the first one's Message-ID, to thread under it). Complete
    either way: the recruiter may have deleted the first, so the CV comes again."""
    row = stored.row
    context = {
        **stored.context(settings.public_url),
        "reminder": reminder_of is not None,
        "buttons": tokens.buttons,
        "optout_url": tokens.optout_url,
    }
    return emails.compose(
        settings,
        stored.kind.pro_email,
        context,
        to=emails.address(stored.view["contact_name"], row["contact_email"]),
        reply_to=emails.address(f"{row['first_name']} {row['last_name']}", row["email"]),
        in_reply_to=reminder_of,
        unsubscribe_url=tokens.optout_url,
        attachment_slot=stored.kind.needs_cv,
        now=now,
    )


def request_context(
    kind: RequestKind, row: Mapping[str, Any], target_view: Mapping[str, Any], public_url: str
) -> dict[str, Any]:
    """The template context every email about a request starts from."""
    topics = json.loads(row["topics"]) if row.get("topics") else []
    return {
        "kind": kind.name,
        "request_id": row["id"],
        "caller": row["caller"],
        "candidate": {
            "first_name": row["first_name"],
            "last_name": row["last_name"],
            "email": row["email"],
            "phone": row["phone"],
            "role": row.get("role"),
        },
        "message": row.get("message"),
        "topics": [TOPIC_LABELS[t] for t in topics if t in TOPIC_LABELS],
        "target": dict(target_view),
        "spontaneous": target_view["kind"] == "company",
        "sent_on": row["created_at"],
        "reminder": False,
    }
