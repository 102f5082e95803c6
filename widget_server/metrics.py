"""`GET /metrics` in the Prometheus text format.

Requests are counted in-process, by route template (never the raw path, so a
token in a URL neither leaks nor multiplies series) and status; Prometheus sums
the instances. Queue figures (outbox depth, oldest waiting message, messages
delivered and failed by email kind, partner webhooks waiting and by event) are
read from the database at scrape time,
so every instance reports the same, right, figures. Each app has its own
`CollectorRegistry`: two apps in one process (tests) never share a counter.

Access: open in development; in production only with `METRICS_TOKEN` as a
Bearer token, and absent (404) without one.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from databases import Database
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import outbox as outbox_
from . import tables
from .problems import Problem
from .sandbox import live_jobs
from .settings import Settings

UNMATCHED = "unmatched"
# Any other method a client makes up is counted as OTHER: label values stay few.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A message counts as waiting until it is sent or given up.
WAITING = ("pending", "sending")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "widget_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "widget_outbox_depth",
            "Emails waiting to be delivered (pending or being sent), all instances.",
            registry=self.registry,
        )
        self.outbox_oldest = Gauge(
            "widget_outbox_oldest_pending_age_seconds",
            "Age of the oldest email still waiting to be delivered (0 when none waits).",
            registry=self.registry,
        )
        self.outbox_messages = Gauge(
            "widget_outbox_messages",
            "Emails in the outbox by kind (template) and status: sent = delivered, failed = given up "
            "(test keys' emails left out).",
            ["kind", "status"],
            registry=self.registry,
        )
        self.outbox_failures = Gauge(
            "widget_outbox_failures",
            "Emails given up, by why: recipient_refused (a bounce), message_refused "
            "(the message refused, the address may be fine), too_many_attempts.",
            ["reason"],
            registry=self.registry,
        )
        self.webhooks_pending = Gauge(
            "widget_webhooks_pending",
            "Partner webhooks waiting to be delivered (pending or being sent), all instances, "
            "test keys' included (they are sent for real).",
            registry=self.registry,
        )
        self.webhooks = Gauge(
            "widget_webhooks",
            "Partner webhooks by event and status: sent = a 2xx answer, failed = given up "
            "(refused with a 4xx, webhook removed, or too many attempts); test keys' left out.",
            ["event", "status"],
            registry=self.registry,
        )

    async def refresh(self, database: Database, now: dt.datetime | None = None) -> None:
        """Read the queue figures from the database (shared by every instance)."""
        now = now or dt.datetime.now(dt.UTC)
        outbox = tables.outbox
        emails = outbox.c.kind == outbox_.EMAIL
        waiting = await database.fetch_one(
            sa.select(
                sa.func.count().label("n"),
                sa.func.min(outbox.c.created_at).label("oldest"),
            ).where(outbox.c.status.in_(WAITING), emails)
        )
        oldest = waiting["oldest"] if waiting else None
        self.outbox_depth.set(waiting["n"] if waiting else 0)
        self.outbox_oldest.set(max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        # By status, real traffic only: test keys' emails and webhooks are left out
        # (sandbox.py), as in `stats`. The queue figures count every job waiting.
        rows = await database.fetch_all(
            sa.select(outbox.c.kind, outbox.c.template, outbox.c.status, sa.func.count().label("n"))
            .where(live_jobs())
            .group_by(outbox.c.kind, outbox.c.template, outbox.c.status)
        )
        self.outbox_messages.clear()
        self.webhooks.clear()
        for row in rows:
            if row["kind"] == outbox_.WEBHOOK:
                self.webhooks.labels(event=row["template"], status=row["status"]).set(row["n"])
            else:
                self.outbox_messages.labels(kind=row["template"], status=row["status"]).set(row["n"])
        self.webhooks_pending.set(
            await database.fetch_val(
                sa.select(sa.func.count()).where(
                    outbox.c.kind == outbox_.WEBHOOK, outbox.c.status.in_(WAITING)
                )
            )
            or 0
        )
        for reason, count in (await outbox_.failures_by_kind(database)).items():
            self.outbox_failures.labels(reason=reason).set(count)

    async def endpoint(self, request: Request) -> Response:
        settings: Settings = request.app.state.settings
        _check_access(request, settings)
        await self.refresh(request.app.state.database)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def _check_access(request: Request, settings: Settings) -> None:
    token = settings.metrics_token.reveal()
    if not token:
        if settings.production:
            raise Problem(404, "Cette page n'existe pas ou plus.")
        return
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(value.strip().encode(), token.encode()):
        raise Problem(401, "Une clé d'accès valide est nécessaire.", headers={"WWW-Authenticate": "Bearer"})


class RequestMetricsMiddleware:
    """Counts every HTTP response by the template of the route that answered it."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    def _template(self, scope: Scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return str(getattr(route, "path", UNMATCHED))
        return UNMATCHED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app fails before answering

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            self.metrics.requests.labels(
                route=self._template(scope),
                method=scope["method"] if scope["method"] in METHODS else "OTHER",
                status=str(status),
            ).inc()
