"""`/widget/v1/loader.js`, the one URL partners paste (SPEC §3); the page that
tells them how is `integration.py`.

The loader is built once per process from `widget_assets/loader/loader.js`:
minified (`minifier.py`), with the service's URL and the content-hashed URL of the modal code
written in, so partners never edit their snippet. It is cached briefly (a new
release reaches every page within minutes) and revalidated with an ETag;
everything it loads is content-hashed and cached for good.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .api import MAX_TARGETS
from .assets import ASSETS_DIR, Assets
from .minifier import minify_js

LOADER_SOURCE = ASSETS_DIR / "loader" / "loader.js"
LOADER_CACHE = "public, max-age=300"
LOADER_PATH = "/widget/v1/loader.js"


@dataclass(frozen=True)
class Loader:
    body: bytes
    gzipped: bytes
    etag: str


def build_loader(public_url: str, assets: Assets) -> Loader:
    def literal(value: str) -> str:
        # Inside a double-quoted JS string.
        return json.dumps(value)[1:-1]

    text = minify_js(LOADER_SOURCE.read_text(encoding="utf-8"))
    for name, value in (
        ("__LBA_BASE__", literal(public_url)),
        ("__LBA_CHUNK__", literal(public_url + assets.url("widget.js"))),
        # A number, where the source has a (global, hence never renamed) name.
        ("__LBA_MAX_TARGETS__", str(MAX_TARGETS)),
    ):
        if name not in text:
            raise ValueError(f"{LOADER_SOURCE}: {name} is missing")
        text = text.replace(name, value)
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


routes = [Route(LOADER_PATH, loader_script, methods=["GET"], name="loader")]
