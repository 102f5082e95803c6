"""Static files of `widget_assets/`, served under content-hashed names and cached forever.

`asset_url("form.css")` gives `/widget/v1/assets/form.3f2a9c1b.css`; the hash is
computed once at start-up, so a new release never serves a stale file.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from .bundled import data_dir
from .minifier import minify_js
from .problems import Problem

ASSETS_DIR = data_dir("widget_assets")
PREFIX = "/widget/v1/assets/"
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    name: str
    hashed_name: str
    body: bytes
    gzipped: bytes
    media_type: str


class Assets:
    def __init__(self, directory: Path = ASSETS_DIR) -> None:
        self._by_name: dict[str, Asset] = {}
        self._by_hashed: dict[str, Asset] = {}
        for path in sorted(directory.glob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            body = path.read_bytes()
            if path.suffix == ".js":
                body = minify_js(body.decode()).encode()
            digest = hashlib.sha256(body).hexdigest()[:10]
            stem, _, suffix = path.name.rpartition(".")
            hashed = f"{stem}.{digest}.{suffix}"
            media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if media_type.startswith("text/") or media_type.endswith("javascript"):
                media_type += "; charset=utf-8"
            asset = Asset(path.name, hashed, body, gzip.compress(body, 9, mtime=0), media_type)
            self._by_name[path.name] = asset
            self._by_hashed[hashed] = asset

    def url(self, name: str) -> str:
        return PREFIX + self._by_name[name].hashed_name

    def get(self, name: str) -> Asset:
        return self._by_name[name]

    async def endpoint(self, request: Request) -> Response:
        asset = self._by_hashed.get(request.path_params["name"])
        if asset is None:
            raise Problem(404, "Fichier introuvable.")
        headers = {
            "Cache-Control": IMMUTABLE,
            "Vary": "Accept-Encoding",
            "Access-Control-Allow-Origin": "*",
            "Cross-Origin-Resource-Policy": "cross-origin",
        }
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)
