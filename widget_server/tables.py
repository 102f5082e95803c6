"""SQLAlchemy Core tables, used to build queries. The DDL lives in `migrations.py`;
a test checks that a migrated database has exactly these columns."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on both databases (SQLite hands back naive ones)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        aware: dt.datetime = value.astimezone(dt.UTC)
        return aware.replace(tzinfo=None) if dialect.name == "sqlite" else aware

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)  # type: ignore[no-any-return]
        return value.astimezone(dt.UTC)  # type: ignore[no-any-return]


metadata = sa.MetaData()

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)

# --- the target directory -------------------------------------------------------

formations = sa.Table(
    "formations",
    metadata,
    sa.Column("cle_ministere_educatif", sa.Text, primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("city", sa.Text, nullable=False),
    sa.Column("postcode", sa.Text, nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("cfa_siret", sa.Text, nullable=False),
    sa.Column("cfa_name", sa.Text, nullable=False),
    sa.Column("cfa_address", sa.Text, nullable=False),
    sa.Column("cfa_phone", sa.Text, nullable=False),
    sa.Column("contact_email", sa.Text),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

offers = sa.Table(
    "offers",
    metadata,
    sa.Column("offer_id", sa.Text, primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("siret", sa.Text, nullable=False),
    sa.Column("company_name", sa.Text, nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("city", sa.Text, nullable=False),
    sa.Column("postcode", sa.Text, nullable=False),
    sa.Column("contact_email", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("posted_on", sa.Date, nullable=False),
    sa.Column("expires_on", sa.Date),
    sa.Column("application_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # Closed by the service (its recruiter stopped applications): kept whatever a
    # later import says about `status`. Like `application_count`, never imported.
    sa.Column("closed_reason", sa.Text),
    sa.Column("closed_at", UTCDateTime),
)

companies = sa.Table(
    "companies",
    metadata,
    sa.Column("siret", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("city", sa.Text, nullable=False),
    sa.Column("postcode", sa.Text, nullable=False),
    sa.Column("naf_code", sa.Text, nullable=False),
    sa.Column("hiring_score", sa.Float, nullable=False),
    sa.Column("contact_email", sa.Text),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# One row per contact email the service has something to remember about.
# `company_opt_out_at`: no more spontaneous applications; `formation_opt_out_at`: no more rdv.
contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("email", sa.Text, primary_key=True),
    sa.Column("company_opt_out_at", UTCDateTime),
    sa.Column("formation_opt_out_at", UTCDateTime),
    sa.Column("bounced_at", UTCDateTime),
    sa.Column("bounce_reason", sa.Text),
)

# --- requests and their delivery ------------------------------------------------

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("caller", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("key_hash", sa.Text, nullable=False, unique=True),
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime),
    # Where this partner's events go (Standard Webhooks), and the `whsec_…` secret
    # that signs them; both NULL without a webhook.
    sa.Column("webhook_url", sa.Text),
    sa.Column("webhook_secret", sa.Text),
    # A test key: its requests are flagged `test` (see sandbox.py).
    sa.Column("test", sa.Boolean, nullable=False, server_default=sa.false()),
)

contact_requests = sa.Table(
    "contact_requests",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("target_kind", sa.Text, nullable=False),
    sa.Column("target_ref", sa.Text, nullable=False),
    sa.Column("siret", sa.Text),
    sa.Column("caller", sa.Text, nullable=False),
    sa.Column("first_name", sa.Text, nullable=False),
    sa.Column("last_name", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("phone", sa.Text, nullable=False),
    sa.Column("role", sa.Text),
    sa.Column("topics", sa.Text),
    sa.Column("message", sa.Text),
    sa.Column("contact_email", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("answer", sa.Text),
    sa.Column("answer_message", sa.Text),
    sa.Column("answer_details", sa.Text),
    sa.Column("answered_at", UTCDateTime),
    sa.Column("reminded_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("anonymised_at", UTCDateTime),
    # Who the candidate is for quotas: the case-folded address (`email` keeps what they typed).
    sa.Column("email_key", sa.Text),
    # "key" or "form": a form caller never shares quota counters with the API key of that name.
    sa.Column("caller_origin", sa.Text, nullable=False, server_default="key"),
    # The key that made the request (only it may read its status); NULL for forms.
    sa.Column("api_key_id", sa.Integer),
    # When the first email to the recruiter or CFA was accepted by the mail server.
    sa.Column("delivered_at", UTCDateTime),
    # Made with a test key: stored like any other, its emails stay in the test mailbox.
    sa.Column("test", sa.Boolean, nullable=False, server_default=sa.false()),
    # Set when the candidate withdrew the request from their follow-up page.
    sa.Column("withdrawn_at", UTCDateTime),
)

cv_files = sa.Table(
    "cv_files",
    metadata,
    sa.Column("request_id", sa.Text, primary_key=True),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("content_type", sa.Text, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("data", sa.LargeBinary),
    sa.Column("deleted_at", UTCDateTime),
)

# A form's valid CV, kept while the candidate fixes another field (`kept_cvs`).
kept_cvs = sa.Table(
    "kept_cvs",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("token_hash", sa.Text, nullable=False),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("content_type", sa.Text, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    # Whose it is (`validation.email_identity` of the form's email field), for `forget`.
    sa.Column("email_key", sa.Text),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("request_id", sa.Text),
    sa.Column("template", sa.Text, nullable=False),
    # The envelope, fixed at queue time: MAIL FROM, and the RCPT TO addresses
    # (", "-separated; one in practice). Never read back from the stored headers.
    sa.Column("envelope_sender", sa.Text),
    sa.Column("recipient", sa.Text, nullable=False),
    sa.Column("message_id", sa.Text, nullable=False, unique=True),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("attach_cv", sa.Boolean, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("lease_owner", sa.Text),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # Why a failed message failed: see outbox.FAILURE_KINDS.
    sa.Column("failure_kind", sa.Text),
    # "email" or "webhook" (outbox.KINDS). A webhook row: `template` is the event
    # type, `message_id` the webhook-id, `raw` the JSON body, `recipient` the
    # partner's name and `api_key_id` the key whose endpoint and secret it goes with.
    sa.Column("kind", sa.Text, nullable=False, server_default="email"),
    sa.Column("api_key_id", sa.Integer),
    # An email of a test request, fixed at queue time: never sent, kept for the test mailbox.
    sa.Column("test_mailbox", sa.Boolean, nullable=False, server_default=sa.false()),
)

# Periodic work claimed by one worker at a time (see jobs.py).
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("next_run_at", UTCDateTime, nullable=False),
    sa.Column("lease_owner", sa.Text),
    sa.Column("lease_until", UTCDateTime),
)

reply_tokens = sa.Table(
    "reply_tokens",
    metadata,
    sa.Column("token_hash", sa.Text, primary_key=True),
    sa.Column("request_id", sa.Text),
    sa.Column("contact_email", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("caller", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("request_id", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)
