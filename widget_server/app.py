"""The ASGI application: routes, middleware and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Route, request_response

from . import (
    api,
    bounces,
    delivery,
    followup,
    forms,
    integration,
    mailbox,
    migrations,
    offer_filled,
    openapi,
    operator_page,
    optout,
    pages,
    readiness,
    replies,
    request_status,
    sandbox,
    slash_redirect,
    widget,
)
from .assets import Assets
from .body_limit import BodyLimitMiddleware
from .database import directory_writes, read_database
from .eligibility_cache import EligibilityCache
from .form_tokens import FormTokens
from .framing import FramingMiddleware
from .kinds import CANDIDATURE, RDV
from .logs import configure_logging
from .metrics import Metrics, RequestMetricsMiddleware
from .problems import EXCEPTION_HANDLERS, RequestIdMiddleware
from .read_timeouts import BodyTimeoutMiddleware
from .resources import create_database, create_templates, prepare_sqlite
from .settings import Settings, load_settings
from .submissions import submit_endpoint
from .throttling import Throttle
from .validation import display_phone


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or load_settings()
    database = create_database(settings)
    reads = read_database(database)
    assets = Assets()
    templates = create_templates(settings)
    templates.env.globals["asset_url"] = assets.url
    templates.env.filters["phone"] = display_phone
    # Delivers the outbox; the request pipeline wakes it through app.state.outbox_worker.
    worker = delivery.create_worker(database, settings)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await database.connect()
        await prepare_sqlite(database)
        await migrations.migrate(database)
        if reads is not database:
            await reads.connect()
        if settings.outbox_worker:
            worker.start()  # the reminders are one of its periodic jobs
        try:
            yield
        finally:
            await worker.stop()
            if reads is not database:
                await reads.disconnect()
            await database.disconnect()

    routes = [
        Route("/healthz", api.healthz, methods=["GET"], name="healthz"),
        Route("/readyz", readiness.readyz, methods=["GET"], name="readyz"),
        Route("/metrics", metrics.endpoint, methods=["GET"], name="metrics"),
        # Compressed: a listing page asks about many targets before anyone clicks.
        Route(
            "/api/v1/eligibility",
            GZipMiddleware(request_response(api.eligibility_endpoint), minimum_size=500),
            methods=["GET"],
            name="eligibility",
        ),
        Route("/api/v1/applications", submit_endpoint(CANDIDATURE), methods=["POST"]),
        Route("/api/v1/appointment-requests", submit_endpoint(RDV), methods=["POST"]),
        Route("/api/v1/requests/{id}", request_status.endpoint, methods=["GET"], name="request_status"),
        Route("/widget/v1/assets/{name}", assets.endpoint, methods=["GET"], name="asset"),
        Route("/widget/v1/candidature", forms.form_page(CANDIDATURE), methods=["GET", "POST"]),
        Route("/widget/v1/rdv", forms.form_page(RDV), methods=["GET", "POST"]),
        Route("/widget/v1/check", forms.check_field, methods=["POST"], name="check_field"),
        Route("/confidentialite", pages.privacy, methods=["GET"], name="privacy"),
        Route("/api/v1/openapi.json", openapi.openapi_json, methods=["GET"], name="openapi"),
        Route("/api/docs", openapi.docs, methods=["GET"], name="api_docs"),
        Route("/api/v1/bounces", bounces.webhook, methods=["POST"], name="bounces"),
        *sandbox.routes,
        Route("/reply/{token}", replies.reply_page, methods=["GET", "POST"], name="reply"),
        Route("/optout/{token}", optout.optout_page, methods=["GET", "POST"], name="optout"),
        Route("/filled/{token}", offer_filled.filled_page, methods=["GET", "POST"], name="offer_filled"),
        Route("/suivi/{token}", followup.page, methods=["GET"], name="followup"),
        Route("/suivi/{token}/retirer", followup.withdraw_page, methods=["GET", "POST"], name="withdraw"),
        Route("/operator/{token}", operator_page.page, name="operator"),
        *mailbox.routes(settings),
        *widget.routes,
        *integration.routes,
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(RequestMetricsMiddleware, metrics=metrics, routes=routes),
            Middleware(FramingMiddleware, frame_ancestors=settings.frame_ancestors),
            Middleware(BodyTimeoutMiddleware, seconds=settings.request_body_timeout_seconds),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    slash_redirect.install(app.router, settings.public_url)
    app.state.settings = settings
    app.state.database = database
    # Short indexed reads (SQLite: inline on the event loop's thread; else `database`).
    app.state.reads = reads
    app.state.templates = templates
    app.state.assets = assets
    app.state.outbox_worker = worker
    app.state.eligibility_cache = EligibilityCache(
        reads, settings.offer_max_applications, writes=directory_writes(database)
    )
    app.state.form_tokens = FormTokens(
        settings.secret_key.reveal(), settings.form_token_ttl_seconds, settings.form_min_fill_seconds
    )
    app.state.openapi = openapi.document(settings)
    app.state.throttle = Throttle(
        settings.rate_limit,
        settings.rate_limit_storage,
        key_rate=settings.api_key_rate_limit,
        trusted_proxies=settings.trusted_proxies,
    )
    app.state.metrics = metrics
    configure_logging(settings)
    return app
