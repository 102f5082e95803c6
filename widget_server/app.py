"""The ASGI application: routes, middleware and lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from . import api, migrations
from .assets import Assets
from .problems import EXCEPTION_HANDLERS, RequestIdMiddleware
from .resources import create_database, create_templates, prepare_sqlite
from .settings import Settings, load_settings


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or load_settings()
    database = create_database(settings)
    assets = Assets()
    templates = create_templates(settings)
    templates.env.globals["asset_url"] = assets.url

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await database.connect()
        await prepare_sqlite(database)
        await migrations.migrate(database)
        try:
            yield
        finally:
            await database.disconnect()

    routes = [
        Route("/healthz", api.healthz, name="healthz"),
        Route("/api/v1/eligibility", api.eligibility_endpoint, name="eligibility"),
        Route("/widget/v1/assets/{name}", assets.endpoint, name="asset"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.templates = templates
    app.state.assets = assets
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return app
