"""`/integration`, the partners' page: the snippet to paste, the attributes and
events of the embed contract (SPEC §3), and a live preview on real targets."""

from __future__ import annotations

import sqlalchemy as sa
from databases import Database
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import eligibility
from .targets import TARGETS, Target
from .widget import LOADER_PATH


async def example_targets(database: Database, max_offer_applications: int) -> dict[str, str]:
    """One eligible reference per target kind, to fill the live preview."""
    candidates: list[Target] = []
    for spec in TARGETS.values():
        key = spec.key_column
        rows = await database.fetch_all(sa.select(key).order_by(key).limit(20))
        candidates += [Target(spec.name, row[0]) for row in rows]
    found: dict[str, str] = {}
    for result in await eligibility.check_many(
        database, candidates, max_offer_applications=max_offer_applications
    ):
        if result.eligible:
            found.setdefault(result.target.kind, result.target.ref)
    return found


async def integration_page(request: Request) -> Response:
    state = request.app.state
    examples = await example_targets(state.database, state.settings.offer_max_applications)
    response: Response = state.templates.TemplateResponse(
        request,
        "pages/integration.html",
        {
            "title": "Intégrer le widget",
            "loader_url": state.settings.public_url + LOADER_PATH,
            "examples": examples,
        },
    )
    return response


routes = [Route("/integration", integration_page, methods=["GET"], name="integration")]
