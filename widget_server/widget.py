"""The embeddable widget's entry points: `/widget/v1/loader.js`, the one URL
partners paste, and `/integration`, the page that tells them how.

The loader is built once per process from `widget_assets/loader/loader.js`:
compacted, with the service's URL and the content-hashed URL of the modal code
written in, so partners never edit their snippet. It is cached briefly (a new
release reaches every page within minutes) and revalidated with an ETag;
everything it loads is content-hashed and cached for good.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from databases import Database
from rjsmin import jsmin
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import eligibility, tables
from .assets import ASSETS_DIR, Assets
from .targets import Target, TargetKind

LOADER_SOURCE = ASSETS_DIR / "loader" / "loader.js"
LOADER_CACHE = "public, max-age=300"
LOADER_PATH = "/widget/v1/loader.js"


@dataclass(frozen=True)
class Loader:
    body: bytes
    gzipped: bytes
    etag: str


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def build_loader(public_url: str, assets: Assets) -> Loader:
    def literal(value: str) -> str:
        # Inside a double-quoted JS string.
        return json.dumps(value)[1:-1]

    text = jsmin(LOADER_SOURCE.read_text(encoding="utf-8"))
    for name, value in (
        ("__LBA_BASE__", public_url),
        ("__LBA_ORIGIN__", origin_of(public_url)),
        ("__LBA_CHUNK__", public_url + assets.url("widget.js")),
    ):
        if name not in text:
            raise ValueError(f"{LOADER_SOURCE}: {name} is missing")
        text = text.replace(name, literal(value))
    body = text.encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return Loader(body, gzip.compress(body, 9, mtime=0), etag)


def _loader(request: Request) -> Loader:
    state = request.app.state
    loader: Loader | None = getattr(state, "widget_loader", None)
    if loader is None:
        loader = state.widget_loader = build_loader(state.settings.public_url, state.assets)
    return loader


def _etag_matches(header: str, etag: str) -> bool:
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag in tags


async def loader_script(request: Request) -> Response:
    loader = _loader(request)
    headers = {
        "Cache-Control": LOADER_CACHE,
        "ETag": loader.etag,
        "Vary": "Accept-Encoding",
        "Cross-Origin-Resource-Policy": "cross-origin",
        "Access-Control-Allow-Origin": "*",
        "X-Content-Type-Options": "nosniff",
    }
    if _etag_matches(request.headers.get("if-none-match", ""), loader.etag):
        return Response(status_code=304, headers=headers)
    media_type = "text/javascript; charset=utf-8"
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(loader.gzipped, media_type=media_type, headers=headers)
    return Response(loader.body, media_type=media_type, headers=headers)


EXAMPLE_TARGETS: tuple[tuple[TargetKind, Any, Any], ...] = (
    ("offer", tables.offers, tables.offers.c.offer_id),
    ("company", tables.companies, tables.companies.c.siret),
    ("formation", tables.formations, tables.formations.c.cle_ministere_educatif),
)


async def example_targets(database: Database, max_offer_applications: int) -> dict[str, str]:
    """One eligible reference per target kind, to fill the live preview."""
    candidates: list[Target] = []
    for kind, table, key in EXAMPLE_TARGETS:
        rows = await database.fetch_all(sa.select(key).select_from(table).order_by(key).limit(20))
        candidates += [Target(kind, row[0]) for row in rows]
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


routes = [
    Route(LOADER_PATH, loader_script, methods=["GET"], name="loader"),
    Route("/integration", integration_page, methods=["GET"], name="integration"),
]
