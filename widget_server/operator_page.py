"""The operator page: the service's figures week by week, as SVG charts drawn on
the server with the same figures beside them in tables. No candidate data: counts,
rates and delays only, by kind and by partner.

There is no account to manage: `widget-server operator-link` prints a link signed
with `SECRET_KEY` (itsdangerous) that carries its own expiry. A bad signature is a
404 (nothing to see here), an expired one a 403 that says how to get a new one.
The page loads nothing from elsewhere, runs no script and refuses to be framed.
"""

from __future__ import annotations

import datetime as dt
import secrets
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from databases import Database
from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import Request
from starlette.responses import Response

from . import tables
from .contact_requests import BOUNCED
from .framing import operator_policy
from .kinds import PRO_EMAILS
from .local_time import PARIS, datetime_fr
from .operator_charts import COLOURS, KIND_LABELS, charts
from .settings import Settings

WEEKS = 12
TOP_PARTNERS = 8
_SALT = "operator-page"


def _serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.secret_key.reveal(), salt=_SALT)


def signed_link(settings: Settings, hours: float, now: dt.datetime | None = None) -> str:
    """The page's address, valid for `hours`."""
    now = now or dt.datetime.now(dt.UTC)
    token = _serializer(settings).dumps({"until": int((now + dt.timedelta(hours=hours)).timestamp())})
    return f"{settings.public_url}/operator/{token}"


# --- the figures ------------------------------------------------------------------


@dataclass
class Week:
    start: dt.date  # Monday, Paris time
    requests: dict[str, int] = field(default_factory=dict)
    delivered: int = 0
    bounced: int = 0
    answered: int = 0
    opt_outs: int = 0
    delays_hours: list[float] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    @property
    def reply_rate(self) -> float | None:
        """Answered among the requests whose email was delivered."""
        return self.answered / self.delivered if self.delivered else None

    @property
    def median_hours(self) -> float | None:
        return statistics.median(self.delays_hours) if self.delays_hours else None


@dataclass
class Figures:
    weeks: list[Week]
    partners: list[tuple[str, list[int]]]  # caller, requests per week


def week_starts(now: dt.datetime, weeks: int = WEEKS) -> list[dt.datetime]:
    """The Mondays 00:00 (Paris) of the last `weeks` weeks, this one last, plus the next
    one as the end, as UTC times."""
    today = now.astimezone(PARIS).date()
    monday = today - dt.timedelta(days=today.weekday())
    days = [monday - dt.timedelta(weeks=weeks - 1 - n) for n in range(weeks + 1)]
    return [dt.datetime.combine(day, dt.time(), PARIS).astimezone(dt.UTC) for day in days]


def _bucket(column: sa.ColumnElement[dt.datetime], bounds: Sequence[dt.datetime]) -> sa.Case[int]:
    # Portable across SQLite and PostgreSQL: the week is found by comparisons.
    return sa.case(*[(column < bounds[n + 1], sa.literal_column(str(n))) for n in range(len(bounds) - 1)])


def _flag(condition: sa.ColumnElement[bool]) -> sa.Case[int]:
    return sa.case((condition, sa.literal_column("1")), else_=sa.literal_column("0"))


async def figures(database: Database, now: dt.datetime | None = None, weeks: int = WEEKS) -> Figures:
    bounds = week_starts(now or dt.datetime.now(dt.UTC), weeks)
    requests, outbox, contacts = tables.contact_requests, tables.outbox, tables.contacts
    table = [Week(start=b.astimezone(PARIS).date()) for b in bounds[:-1]]
    delivered = sa.exists().where(
        outbox.c.request_id == requests.c.id, outbox.c.template.in_(PRO_EMAILS), outbox.c.status == "sent"
    )
    # One row per request of the window, its week computed once; grouped outside, so
    # that PostgreSQL groups by a column, not by an expression full of parameters.
    window = (
        sa.select(
            _bucket(requests.c.created_at, bounds).label("week"),
            requests.c.kind,
            requests.c.caller,
            requests.c.created_at,
            requests.c.answered_at,
            _flag(delivered).label("delivered"),
            _flag(requests.c.status == BOUNCED).label("bounced"),
            _flag(requests.c.answered_at.is_not(None)).label("answered"),
        )
        .where(
            requests.c.created_at >= bounds[0],
            requests.c.created_at < bounds[-1],
            requests.c.test.is_(False),  # real traffic only (sandbox.py)
        )
        .subquery()
    )
    rows = await database.fetch_all(
        sa.select(
            window.c.week,
            window.c.kind,
            sa.func.count().label("count"),
            sa.func.sum(window.c.delivered).label("delivered"),
            sa.func.sum(window.c.bounced).label("bounced"),
            sa.func.sum(window.c.answered).label("answered"),
        ).group_by(window.c.week, window.c.kind)
    )
    for row in (r._mapping for r in rows):
        entry = table[row["week"]]
        entry.requests[row["kind"]] = int(row["count"])
        entry.delivered += int(row["delivered"] or 0)
        entry.bounced += int(row["bounced"] or 0)
        entry.answered += int(row["answered"] or 0)
    answered = await database.fetch_all(
        sa.select(window.c.week, window.c.created_at, window.c.answered_at).where(
            window.c.answered_at.is_not(None)
        )
    )
    for row in (r._mapping for r in answered):
        delay = (row["answered_at"] - row["created_at"]).total_seconds() / 3600
        table[row["week"]].delays_hours.append(max(delay, 0.0))
    for column in (contacts.c.company_opt_out_at, contacts.c.formation_opt_out_at):
        opt_window = (
            sa.select(_bucket(column, bounds).label("week"))
            .where(column >= bounds[0], column < bounds[-1])
            .subquery()
        )
        opt_outs = await database.fetch_all(
            sa.select(opt_window.c.week, sa.func.count().label("count")).group_by(opt_window.c.week)
        )
        for opt_out in (r._mapping for r in opt_outs):
            table[opt_out["week"]].opt_outs += int(opt_out["count"])
    by_partner: dict[str, list[int]] = {}
    callers = await database.fetch_all(
        sa.select(window.c.week, window.c.caller, sa.func.count().label("count")).group_by(
            window.c.week, window.c.caller
        )
    )
    for caller in (r._mapping for r in callers):
        by_partner.setdefault(caller["caller"], [0] * weeks)[caller["week"]] = int(caller["count"])
    partners = sorted(by_partner.items(), key=lambda item: (-sum(item[1]), item[0]))
    if len(partners) > TOP_PARTNERS:
        others = [sum(column) for column in zip(*(c for _, c in partners[TOP_PARTNERS:]), strict=True)]
        partners = [*partners[:TOP_PARTNERS], ("autres partenaires", others)]
    return Figures(table, partners)


# --- the page ---------------------------------------------------------------------


def _check(request: Request) -> Response | None:
    """None when the link is good, else the page that says why not."""
    settings: Settings = request.app.state.settings
    try:
        claims = _serializer(settings).loads(request.path_params["token"])
        until = float(claims["until"])
    except (BadSignature, KeyError, TypeError, ValueError):
        return _refusal(request, 404, "Page introuvable", "Cette adresse ne correspond à aucune page.")
    if dt.datetime.now(dt.UTC).timestamp() >= until:
        return _refusal(
            request,
            403,
            "Lien expiré",
            "Ce lien a expiré. Demandez-en un nouveau avec la commande widget-server operator-link.",
        )
    return None


def _refusal(request: Request, status: int, title: str, text: str) -> Response:
    nonce = secrets.token_urlsafe(16)
    response: Response = request.app.state.templates.TemplateResponse(
        request,
        "pages/operator.html",
        {"title": title, "refusal": text, "nonce": nonce, "colours": COLOURS},
        status_code=status,
    )
    _private(response, nonce)
    return response


def _private(response: Response, nonce: str) -> None:
    response.headers["Content-Security-Policy"] = operator_policy(nonce)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"


@dataclass
class Totals:
    requests: int
    by_kind: dict[str, int]
    delivered: int
    bounced: int
    answered: int
    opt_outs: int
    median_hours: float | None

    @property
    def reply_rate(self) -> float | None:
        return self.answered / self.delivered if self.delivered else None


def totals(data: Figures) -> Totals:
    by_kind: dict[str, int] = {}
    for week in data.weeks:
        for kind, count in week.requests.items():
            by_kind[kind] = by_kind.get(kind, 0) + count
    delays = [d for week in data.weeks for d in week.delays_hours]
    return Totals(
        requests=sum(by_kind.values()),
        by_kind=by_kind,
        delivered=sum(w.delivered for w in data.weeks),
        bounced=sum(w.bounced for w in data.weeks),
        answered=sum(w.answered for w in data.weeks),
        opt_outs=sum(w.opt_outs for w in data.weeks),
        median_hours=statistics.median(delays) if delays else None,
    )


def percent(rate: float | None) -> str:
    return "–" if rate is None else f"{100 * rate:.1f} %".replace(".", ",")


def delay(hours: float | None) -> str:
    """A delay as people say it: "3 h", "2,5 jours"."""
    if hours is None:
        return "–"
    if hours < 48:
        return f"{hours:.1f} h".replace(".", ",")
    return f"{hours / 24:.1f} jours".replace(".", ",")


async def page(request: Request) -> Response:
    """`GET /operator/{token}`."""
    refused = _check(request)
    if refused is not None:
        return refused
    now = dt.datetime.now(dt.UTC)
    data = await figures(request.app.state.database, now)
    nonce = secrets.token_urlsafe(16)
    response: Response = request.app.state.templates.TemplateResponse(
        request,
        "pages/operator.html",
        {
            "title": "Tableau de bord",
            "figures": data,
            "totals": totals(data),
            "charts": charts(data),
            "kinds": KIND_LABELS,
            "colours": COLOURS,
            "percent": percent,
            "delay": delay,
            "generated": datetime_fr(now),
            "nonce": nonce,
        },
    )
    _private(response, nonce)
    return response
